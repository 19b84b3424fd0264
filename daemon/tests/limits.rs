//! Connection lifecycle limits through the real `weir` binary, with small ConfigMap values:
//! `keep-alive`, `client-header-timeout` (whole header and TLS handshake),
//! `large-client-header-buffers`, `client-body-timeout` and `max-worker-connections`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use weir_loadtest::echo::EchoServer;

/// Weir with one echo upstream for `limits.test` and the ConfigMap `data`.
fn weir_with(m: &Manifests, upstream: SocketAddr, data: &[(&str, &str)]) -> Weir {
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[upstream]));
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("limits.test", "Prefix", "/", "app")]),
    );
    m.write("config.yaml", &configmap("weir", "weir-config", data));
    Weir::start(
        m.path(),
        &["--configmap", "weir/weir-config", "--watch-namespace", "ns"],
    )
}

/// Read one response (head and a Content-Length body) from a kept-alive connection.
fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "closed in the response head: {raw:?}"
        );
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A GET on `s`, kept alive.
fn get_on(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET / HTTP/1.1\r\nHost: limits.test\r\n\r\n")
        .unwrap();
    read_response(s).0
}

/// Wait until the peer closes `s` (EOF or reset); what it sent before, and when.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Instant) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Instant::now()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, Instant::now())
            }
            Err(e) => panic!("not closed within {limit:?}: {e}; got {got:?}"),
        }
    }
}

fn elapsed_between(from: Instant, to: Instant, low: f64, high: f64, what: &str) {
    let t = to.duration_since(from).as_secs_f64();
    assert!(
        t >= low && t <= high,
        "{what}: closed after {t:.2}s, expected {low}..{high}s"
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_after_keep_alive() {
    let echo = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    let w = weir_with(&m, echo.addr(), &[("keep-alive", "2")]);
    let mut s = TcpStream::connect(w.http).unwrap();
    assert_eq!(get_on(&mut s), 200);
    // A second request within the timeout is served on the same connection.
    assert_eq!(get_on(&mut s), 200);
    let idle = Instant::now();
    let (got, closed) = wait_closed(&mut s, Duration::from_secs(10));
    assert!(got.is_empty(), "nothing is sent on close: {got:?}");
    elapsed_between(idle, closed, 1.5, 5.0, "keep-alive 2");
}

#[test]
fn keep_alive_zero_closes_after_each_response() {
    let echo = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    let w = weir_with(&m, echo.addr(), &[("keep-alive", "0")]);
    let mut s = TcpStream::connect(w.http).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: limits.test\r\n\r\n")
        .unwrap();
    let (got, _) = wait_closed(&mut s, Duration::from_secs(5));
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
}

#[test]
fn header_trickled_past_client_header_timeout_is_closed() {
    let echo = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    let w = weir_with(&m, echo.addr(), &[("client-header-timeout", "2")]);
    let mut s = TcpStream::connect(w.http).unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: limits.test\r\n")
        .unwrap();
    // One byte every 300 ms: each read comes well within the timeout, the header never ends.
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..40 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let (got, closed) = wait_closed(&mut s, Duration::from_secs(10));
    assert!(
        got.is_empty(),
        "closed without an answer, as nginx: {got:?}"
    );
    elapsed_between(start, closed, 1.5, 5.0, "client-header-timeout 2");
    trickle.join().unwrap();
    // A prompt request is still served.
    assert_eq!(w.get("limits.test", "/").status, 200);
}

#[test]
fn too_large_headers_get_nginx_statuses_and_memory_stays_flat() {
    let echo = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    let w = weir_with(&m, echo.addr(), &[]);
    // One 16 KiB header line: larger than one 8k buffer.
    let big = "a".repeat(16 * 1024);
    let r = w.get_with("limits.test", "/", &[("X-Big", &big)]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("Request Header Or Cookie Too Large"),
        "{r:?}"
    );
    // A request line longer than 8k: 414.
    let r = w.get("limits.test", &format!("/{}", "p".repeat(9 * 1024)));
    assert_eq!(r.status, 414, "{r:?}");
    // Lines that fit, a header that does not (5 × 7k > 4 × 8k).
    let line = "c".repeat(7 * 1024);
    let headers: Vec<(String, String)> = (0..5).map(|i| (format!("X-{i}"), line.clone())).collect();
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(w.get_with("limits.test", "/", &refs).status, 400);
    // Within the limits (7k line, 28k in all): served.
    let r = w.get_with("limits.test", "/", &refs[..4]);
    assert_eq!(r.status, 200, "{r:?}");

    // 100 clients each trying to send a 1 MB header, then staying connected.
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", w.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    let before = rss();
    let chunk = format!("X-Slow: {}\r\n", "s".repeat(4000));
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(w.http).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: limits.test\r\n");
        for _ in 0..250 {
            if s.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        clients.push(s);
    }
    let after = rss();
    assert!(
        after < before + 40 * 1024,
        "RSS grew from {before} kB to {after} kB for 100 large-header clients"
    );
    for mut s in clients {
        let (got, _) = wait_closed(&mut s, Duration::from_secs(10));
        let head = String::from_utf8_lossy(&got);
        assert!(
            head.is_empty() || head.starts_with("HTTP/1.1 400"),
            "{head}"
        );
    }
}

#[test]
fn silent_and_half_handshake_tls_clients_are_closed_after_the_header_timeout() {
    let echo = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    let w = weir_with(&m, echo.addr(), &[("client-header-timeout", "2")]);
    let mut silent = TcpStream::connect(w.https).unwrap();
    let start = Instant::now();
    let mut half = TcpStream::connect(w.https).unwrap();
    // A TLS record header announcing a 512-byte ClientHello, and only its first bytes.
    half.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .unwrap();
    for (name, s) in [("silent", &mut silent), ("half ClientHello", &mut half)] {
        let (got, closed) = wait_closed(s, Duration::from_secs(10));
        assert!(got.is_empty(), "{name}: {got:?}");
        elapsed_between(start, closed, 1.5, 5.0, name);
    }
    w.poll(
        Duration::from_secs(5),
        "both handshake timeouts counted",
        || {
            let m = w.metrics();
            (m.value(
                "weir_connection_errors_total",
                &[("listener", "https"), ("reason", "handshake_timeout")],
            ) == Some(2.0))
            .then_some(())
        },
    );
}

#[test]
fn stalled_body_gets_408_and_the_upstream_connection_is_released() {
    // An upstream that reads requests and counts connections opened and closed.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    {
        let (opened, closed) = (opened.clone(), closed.clone());
        std::thread::spawn(move || {
            for conn in upstream.incoming() {
                let Ok(mut conn) = conn else { return };
                opened.fetch_add(1, Ordering::SeqCst);
                let closed = closed.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
    }
    let m = Manifests::new();
    let w = weir_with(&m, addr, &[("client-body-timeout", "2")]);
    let stall = |length: usize| {
        let mut s = TcpStream::connect(w.http).unwrap();
        let start = Instant::now();
        let head =
            format!("POST / HTTP/1.1\r\nHost: limits.test\r\nContent-Length: {length}\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(b"0123456789").unwrap();
        let (got, done) = wait_closed(&mut s, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{length}: {text}");
        assert!(text.contains("408 Request Time-out"), "{length}: {text}");
        elapsed_between(start, done, 1.5, 5.0, "client-body-timeout 2");
    };
    // A small body is read before an upstream is picked (`proxy-request-buffering`): the
    // stalled client never holds an upstream connection.
    stall(100);
    assert_eq!(
        opened.load(Ordering::SeqCst),
        0,
        "no upstream connection for a small body"
    );
    // A body larger than `client-body-buffer-size` streams: its upstream connection is closed.
    stall(100_000);
    poll(
        Duration::from_secs(5),
        "the upstream connection to be closed",
        || {
            let o = opened.load(Ordering::SeqCst);
            (o > 0 && closed.load(Ordering::SeqCst) == o).then_some(())
        },
    );
}

#[test]
fn over_the_connection_cap_the_oldest_idle_connections_are_closed() {
    let echo = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    let w = weir_with(&m, echo.addr(), &[("max-worker-connections", "20")]);
    let mut idle: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut s = TcpStream::connect(w.http).unwrap();
            assert_eq!(get_on(&mut s), 200);
            s
        })
        .collect();
    // New connections are served, /healthz answers.
    for _ in 0..5 {
        assert_eq!(w.get("limits.test", "/").status, 200);
    }
    assert_eq!(
        get(w.admin, "localhost", "/healthz", &[]).unwrap().status,
        200
    );
    // The oldest idle ones made room; the youngest are still open and served.
    for s in idle.iter_mut().take(5) {
        let (got, _) = wait_closed(s, Duration::from_secs(5));
        assert!(got.is_empty(), "{got:?}");
    }
    let youngest = idle.last_mut().unwrap();
    assert_eq!(get_on(youngest), 200);
}

/// `send-timeout`: a client that takes nothing of a large response for that long loses the
/// connection, as nginx's `send_timeout` (the time between two writes that make progress).
#[test]
fn a_client_that_stops_reading_is_cut_off_after_send_timeout() {
    const SIZE: usize = 64 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
                let chunk = vec![b'x'; 1 << 16];
                for _ in 0..SIZE / chunk.len() {
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let m = Manifests::new();
    let w = weir_with(&m, upstream, &[("send-timeout", "1")]);
    let mut s = TcpStream::connect(w.http).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: limits.test\r\n\r\n")
        .unwrap();
    // The stimulus, not a synchronisation: the client takes nothing for 3 send timeouts.
    std::thread::sleep(Duration::from_secs(3));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("no close after {got} bytes: {e}"),
        }
    }
    assert!(got < SIZE, "the whole response arrived: {got} bytes");
}

/// Whether the peer closed `s` (nothing is expected to be sent on it).
fn at_eof(mut s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let eof = matches!(s.read(&mut [0u8; 16]), Ok(0));
    s.set_nonblocking(false).unwrap();
    eof
}

/// Connections that never send a byte are idle too, as in nginx (a connection waiting for its
/// first request is reusable): over the cap the oldest are closed for new ones, so a flood of
/// silent connections does not keep clients out until `client-header-timeout`.
#[test]
fn over_the_connection_cap_silent_connections_are_closed_for_new_ones() {
    let echo = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    let w = weir_with(&m, echo.addr(), &[("max-worker-connections", "20")]);
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(w.http).unwrap())
        .collect();
    // Five new clients that stay connected: each needs room.
    let _new: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(w.http).unwrap();
            assert_eq!(get_on(&mut s), 200);
            s
        })
        .collect();
    let closed = |silent: &[TcpStream]| silent.iter().filter(|s| at_eof(s)).count();
    w.poll(
        Duration::from_secs(10),
        "5 silent connections closed",
        || (closed(&silent) >= 5).then_some(()),
    );
    assert_eq!(closed(&silent), 5);
    let open = silent.iter_mut().rev().find(|s| !at_eof(s)).unwrap();
    assert_eq!(get_on(open), 200);
}

/// The attack that took the edge down: thousands of idle keep-alive connections from one client.
/// With 1024 open files Weir caps client connections at (1024 − 256) / 2 = 384 and closes the
/// oldest idle ones for new ones, so after 3,000 connections new requests are still served,
/// `/healthz` answers and a manifest change still applies (descriptors were left for them).
#[test]
fn thousands_of_idle_connections_do_not_exhaust_the_open_files() {
    // This test holds up to 3,000 sockets itself.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard < 4096 {
        panic!("this test needs an open files hard limit of at least 4096, not {hard}");
    }
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let echo = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[echo.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("limits.test", "Prefix", "/", "app")]),
    );
    let weir_bin = env!("CARGO_BIN_EXE_weir");
    let mut w = Weir::spawn_bin(
        "prlimit".as_ref(),
        &[
            "--nofile=1024:1024".as_ref(),
            weir_bin.as_ref(),
            "--manifests".as_ref(),
            m.path().as_os_str(),
        ],
        &[],
        &[],
    );
    w.wait_ready();
    w.wait_log("open files limit open_files=1024 connection_cap=384");
    let mut idle = Vec::new();
    for i in 0..3000 {
        let mut s = TcpStream::connect(w.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // One request, then the connection stays open as an idle keep-alive connection.
        assert_eq!(get_on(&mut s), 200, "connection {i}");
        idle.push(s);
    }
    for _ in 0..5 {
        assert_eq!(w.get("limits.test", "/").status, 200);
    }
    assert_eq!(
        get(w.admin, "localhost", "/healthz", &[]).unwrap().status,
        200
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", w.pid()))
        .unwrap()
        .count();
    assert!(fds < 1024, "{fds} descriptors open");
    m.write(
        "ing2.yaml",
        &ingress("ns", "j", &[("later.test", "Prefix", "/", "app")]),
    );
    w.poll(
        Duration::from_secs(10),
        "the new Ingress to be served",
        || (w.get("later.test", "/").status == 200).then_some(()),
    );
    drop(idle);
}
