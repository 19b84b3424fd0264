//! Request bodies, per-Ingress timeouts and retries through the real `weir` binary, after
//! ingress-nginx's e2e suites `annotations/proxy.go`, `annotations/clientbodybuffersize.go` and
//! `settings/proxy_next_upstream*`: 413 on an announced or streamed oversize body (the upstream
//! never gets a complete one), `proxy-body-size: 0`, the 1m default, small bodies read before
//! connecting, `proxy-next-upstream` conditions, tries, `retry-non-idempotent`, and a per-Ingress
//! read timeout.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use weir_loadtest::echo::EchoServer;

/// What a [`Fake`] upstream does with each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Reads until the peer closes, records the bytes, never answers.
    Record,
    /// Reads a request header (and what came with it), then closes without answering.
    Close,
    /// Answers every request header with this status and closes.
    Status(u16),
}

/// One connection's bytes, and whether it has ended.
type Conn = Arc<Mutex<(Vec<u8>, bool)>>;

/// A raw upstream that keeps, per connection, the bytes it read.
struct Fake {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Conn>>>,
}

impl Fake {
    fn start(behaviour: Behaviour) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Conn>>> = Default::default();
        let all = conns.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let rec = Arc::new(Mutex::new((Vec::new(), false)));
                all.lock().unwrap().push(rec.clone());
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut buf = [0u8; 8192];
                    loop {
                        let n = s.read(&mut buf).unwrap_or(0);
                        let mut r = rec.lock().unwrap();
                        r.0.extend_from_slice(&buf[..n]);
                        let head = r.0.windows(4).any(|w| w == b"\r\n\r\n");
                        if n == 0 {
                            r.1 = true;
                            return;
                        }
                        match behaviour {
                            Behaviour::Record => {}
                            Behaviour::Close if head => {
                                r.1 = true;
                                return;
                            }
                            Behaviour::Status(code) if head => {
                                let _ = s.write_all(
                                    format!("HTTP/1.1 {code} Fake\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfake")
                                        .as_bytes(),
                                );
                                r.1 = true;
                                return;
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        Fake { addr, conns }
    }

    /// Connections accepted so far.
    fn count(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// The bytes of connection `i` once it has ended.
    fn ended(&self, i: usize) -> Vec<u8> {
        poll(
            Duration::from_secs(20),
            "the upstream connection to end",
            || {
                let c = self.conns.lock().unwrap().get(i).cloned()?;
                let r = c.lock().unwrap();
                r.1.then(|| r.0.clone())
            },
        )
    }
}

/// An Ingress `name` for `host` → Service `svc` with `annotations`.
fn annotated(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let mut out = ingress("ns", name, &[(host, "Prefix", "/", svc)]);
    if !annotations.is_empty() {
        let ann: String = annotations
            .iter()
            .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
            .collect();
        out = edit(
            &out,
            &format!("metadata: {{name: {name}, namespace: ns}}\n"),
            &format!("metadata:\n  name: {name}\n  namespace: ns\n  annotations:\n{ann}"),
        );
    }
    out
}

/// A request with a `Content-Length` body of `len` bytes.
fn with_length(method: &str, host: &str, len: usize) -> Vec<u8> {
    let mut r = format!(
        "{method} /upload HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes();
    r.extend(std::iter::repeat_n(b'x', len));
    r
}

/// A POST with a chunked body of `chunks` chunks of `size` bytes.
fn chunked(host: &str, chunks: usize, size: usize) -> Vec<u8> {
    let mut r = format!(
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..chunks {
        r.extend(format!("{size:x}\r\n").as_bytes());
        r.extend(std::iter::repeat_n(b'y', size));
        r.extend(b"\r\n");
    }
    r.extend(b"0\r\n\r\n");
    r
}

fn send(w: &Weir, raw: &[u8]) -> Response {
    exchange(w.http, raw).unwrap_or_else(|e| panic!("exchange: {e}\n{}", w.log()))
}

#[test]
fn body_size_limit_announced_streamed_unlimited_and_default() {
    let echo = EchoServer::start("echo").unwrap();
    let rec = Fake::start(Behaviour::Record);
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("echo.yaml", &service("ns", "echo", &[echo.addr()]));
    m.write("rec.yaml", &service("ns", "rec", &[rec.addr]));
    m.write(
        "small.yaml",
        &annotated("small", "small.test", "rec", &[("proxy-body-size", "1k")]),
    );
    m.write(
        "open.yaml",
        &annotated("open", "open.test", "echo", &[("proxy-body-size", "0")]),
    );
    m.write("dflt.yaml", &annotated("dflt", "default.test", "echo", &[]));
    m.write(
        "bad.yaml",
        &annotated("bad", "bad.test", "echo", &[("proxy-body-size", "1 MB")]),
    );
    let w = Weir::start(m.path(), &[]);

    // Announced too large: 413 with nginx's page, and the upstream is never connected.
    let r = send(&w, &with_length("POST", "small.test", 1025));
    assert_eq!(r.status, 413, "{r:?}");
    assert!(
        r.body
            .contains("<title>413 Request Entity Too Large</title>"),
        "{}",
        r.body
    );
    assert_eq!(
        rec.count(),
        0,
        "nothing sent upstream for an announced oversize body"
    );

    // Streamed too large (chunked): 413, and the upstream connection is closed before the body's
    // end: it never sees the terminating chunk, so never a complete body.
    let r = send(&w, &chunked("small.test", 4, 1000));
    assert_eq!(r.status, 413, "{r:?}");
    // The upstream may record the connection after the client has its answer: wait for it.
    let got = rec.ended(0);
    assert_eq!(rec.count(), 1);
    let body_start = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        got.len() - body_start < 4 * 1006,
        "{} body bytes",
        got.len() - body_start
    );

    // `0`: no limit.
    let r = send(&w, &with_length("POST", "open.test", 3 << 20));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.echo()["body_len"], 3 << 20);
    let r = send(&w, &chunked("open.test", 40, 64 * 1024));
    assert_eq!(r.echo()["body_len"], 40 * 64 * 1024);

    // Default 1m, announced and streamed; exactly 1m passes.
    let r = send(&w, &with_length("PUT", "default.test", 1 << 20));
    assert_eq!(r.echo()["body_len"], 1 << 20);
    assert_eq!(
        send(&w, &with_length("PUT", "default.test", (1 << 20) + 1)).status,
        413
    );
    assert_eq!(
        send(&w, &chunked("default.test", 17, 64 * 1024)).status,
        413
    );
    assert_eq!(
        send(&w, &chunked("default.test", 16, 64 * 1024)).status,
        200
    );

    // A malformed value is reported and ignored: the default applies, the Ingress serves.
    assert_eq!(send(&w, &with_length("POST", "bad.test", 10)).status, 200);
    assert_eq!(
        send(&w, &with_length("POST", "bad.test", (1 << 20) + 1)).status,
        413
    );
    w.wait_log("proxy-body-size");
    assert!(w.log().contains("\"1 MB\""), "{}", w.log());
}

#[test]
fn configmap_body_size_and_per_ingress_override() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("echo.yaml", &service("ns", "echo", &[echo.addr()]));
    m.write("dflt.yaml", &annotated("dflt", "default.test", "echo", &[]));
    m.write(
        "big.yaml",
        &annotated("big", "big.test", "echo", &[("proxy-body-size", "8m")]),
    );
    m.write(
        "config.yaml",
        &configmap("weir", "weir-config", &[("proxy-body-size", "2k")]),
    );
    let w = Weir::start(m.path(), &["--configmap", "weir/weir-config"]);
    assert_eq!(
        send(&w, &with_length("POST", "default.test", 2048)).status,
        200
    );
    assert_eq!(
        send(&w, &with_length("POST", "default.test", 2049)).status,
        413
    );
    assert_eq!(
        send(&w, &with_length("POST", "big.test", 4 << 20)).status,
        200
    );
}

/// Sends the header and half the body of a 100-byte POST, then waits for `proceed` before
/// sending the rest; returns the response.
fn slow_post(w: &Weir, host: &str, proceed: impl FnOnce()) -> Response {
    let mut s = TcpStream::connect(w.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let raw = with_length("POST", host, 100);
    let (first, rest) = raw.split_at(raw.len() - 50);
    s.write_all(first).unwrap();
    proceed();
    s.write_all(rest).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    Response {
        status,
        headers: vec![],
        body: text.split_once("\r\n\r\n").unwrap().1.to_string(),
    }
}

#[test]
fn small_bodies_are_read_before_connecting_unless_buffering_is_off() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("echo.yaml", &service("ns", "echo", &[echo.addr()]));
    m.write("on.yaml", &annotated("on", "on.test", "echo", &[]));
    m.write(
        "off.yaml",
        &annotated(
            "off",
            "off.test",
            "echo",
            &[("proxy-request-buffering", "off")],
        ),
    );
    let w = Weir::start(m.path(), &[]);

    // Buffering on: while the client is slow, the upstream gets nothing; a later request that
    // completes first is the first the upstream sees.
    let r = slow_post(&w, "on.test", || {
        assert_eq!(w.get("on.test", "/other").status, 200);
        assert_eq!(
            echo.received(),
            1,
            "the slow request must not have reached the upstream"
        );
    });
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"body_len\":100"), "{}", r.body);
    assert_eq!(echo.received(), 2);

    // Buffering off: the request reaches the upstream before its body is complete.
    let r = slow_post(&w, "off.test", || {
        w.poll(
            Duration::from_secs(10),
            "the streamed request to reach the upstream",
            || (echo.received() == 3).then_some(()),
        );
    });
    assert!(r.body.contains("\"body_len\":100"), "{}", r.body);
}

#[test]
fn next_upstream_conditions_tries_and_off() {
    let echo = EchoServer::start("echo").unwrap();
    let unavailable = Fake::start(Behaviour::Status(503));
    let refused = closed_addr();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    for (svc, bad) in [
        ("refused", refused),
        ("refused-off", refused),
        ("refused-one", refused),
        ("u503", unavailable.addr),
        ("u503-plain", unavailable.addr),
    ] {
        m.write(
            &format!("{svc}.yaml"),
            &service("ns", svc, &[bad, echo.addr()]),
        );
    }
    m.write("a.yaml", &annotated("a", "refused.test", "refused", &[]));
    m.write(
        "b.yaml",
        &annotated(
            "b",
            "off.test",
            "refused-off",
            &[("proxy-next-upstream", "off")],
        ),
    );
    m.write(
        "c.yaml",
        &annotated(
            "c",
            "one.test",
            "refused-one",
            &[("proxy-next-upstream-tries", "1")],
        ),
    );
    m.write(
        "d.yaml",
        &annotated(
            "d",
            "u503.test",
            "u503",
            &[("proxy-next-upstream", "error timeout http_503")],
        ),
    );
    m.write(
        "e.yaml",
        &annotated("e", "plain503.test", "u503-plain", &[]),
    );
    let w = Weir::start(m.path(), &[]);

    // Connection refused is retried on the next endpoint (default `error timeout`, 3 tries).
    for _ in 0..4 {
        assert_eq!(w.get("refused.test", "/").server(), "echo");
    }
    // `off` and `tries: 1`: the refused endpoint's turn is a 502.
    for host in ["off.test", "one.test"] {
        let statuses: Vec<u16> = (0..4).map(|_| w.get(host, "/").status).collect();
        assert_eq!(
            statuses.iter().filter(|&&s| s == 502).count(),
            2,
            "{host}: {statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|&&s| s == 200).count(),
            2,
            "{host}: {statuses:?}"
        );
    }
    // http_503 listed: the 503 is not passed on, the next endpoint answers.
    for _ in 0..4 {
        assert_eq!(w.get("u503.test", "/").server(), "echo");
    }
    let tried = unavailable.count();
    assert!(tried >= 2, "the 503 endpoint had its turns: {tried}");
    // Not listed: the upstream's 503 goes to the client as it is.
    let statuses: Vec<u16> = (0..4).map(|_| w.get("plain503.test", "/").status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(unavailable.count(), tried + 2);
}

#[test]
fn sent_post_is_not_retried_unless_retry_non_idempotent() {
    for retry_non_idempotent in [false, true] {
        let echo = EchoServer::start("echo").unwrap();
        let dropper = Fake::start(Behaviour::Close);
        let m = Manifests::new();
        m.write("class.yaml", INGRESS_CLASS);
        m.write(
            "svc.yaml",
            &service("ns", "svc", &[dropper.addr, echo.addr()]),
        );
        m.write("i.yaml", &annotated("i", "post.test", "svc", &[]));
        let flag = retry_non_idempotent.to_string();
        m.write(
            "config.yaml",
            &configmap("weir", "weir-config", &[("retry-non-idempotent", &flag)]),
        );
        let w = Weir::start(m.path(), &["--configmap", "weir/weir-config"]);
        let mut dropped = Vec::new();
        for _ in 0..4 {
            let before = dropper.count();
            let r = send(&w, &with_length("POST", "post.test", 10));
            if dropper.count() > before {
                dropped.push(r.status);
            } else {
                assert_eq!(r.status, 200, "{r:?}");
            }
        }
        let expected = if retry_non_idempotent { 200 } else { 502 };
        assert!(!dropped.is_empty(), "the closing endpoint had its turn");
        assert!(
            dropped.iter().all(|&s| s == expected),
            "retry-non-idempotent {flag}: {dropped:?}"
        );
        // A GET failing the same way is retried either way.
        let before = dropper.count();
        for _ in 0..4 {
            assert_eq!(w.get("post.test", "/").status, 200);
        }
        assert!(dropper.count() > before);
    }
}

#[test]
fn per_ingress_read_timeout_answers_504_at_its_value() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("echo.yaml", &service("ns", "echo", &[echo.addr()]));
    m.write(
        "fast.yaml",
        &annotated("fast", "fast.test", "echo", &[("proxy-read-timeout", "1")]),
    );
    m.write("slow.yaml", &annotated("slow", "slow.test", "echo", &[]));
    m.write(
        "config.yaml",
        &configmap("weir", "weir-config", &[("proxy-read-timeout", "86400")]),
    );
    let w = Weir::start(m.path(), &["--configmap", "weir/weir-config"]);
    let start = Instant::now();
    let r = w.get("fast.test", "/?delay_ms=3000");
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.body.contains("504 Gateway Time-out"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // The other Ingress keeps the ConfigMap's value (86400 s is accepted, as ingress-nginx).
    assert_eq!(w.get("slow.test", "/?delay_ms=1500").server(), "echo");
    assert!(!w.log().contains("proxy-read-timeout"), "{}", w.log());
}
