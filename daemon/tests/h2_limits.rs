//! HTTP/2 limits through the real binary: the decoded header list with curl over TLS, and with
//! the `h2` crate as client over h2c (`--enable-h2c`): HPACK bombs, header counts, the idle
//! timeout (`keep-alive`) and responses stalled by a closed flow-control window
//! (`send-timeout`).

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use support::*;
use tokio::task::JoinHandle;
use weir_loadtest::echo::EchoServer;

/// `curl --http2` with `count` extra headers of `size` bytes each: (HTTP status, HTTP version).
fn h2_request(w: &Weir, count: usize, size: usize) -> (String, String) {
    let port = w.https.port();
    let resolve = format!("h2.test:{port}:127.0.0.1");
    let url = format!("https://h2.test:{port}/");
    let value = "v".repeat(size);
    let headers: Vec<String> = (0..count).map(|i| format!("x-h{i}: {value}")).collect();
    let mut args = vec![
        "-sk",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        "--resolve",
        &resolve,
    ];
    for h in &headers {
        args.push("-H");
        args.push(h);
    }
    args.push(&url);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, version) = text.split_once(' ').unwrap_or((&text, ""));
    (code.to_string(), version.to_string())
}

/// Weir with an echo upstream for `h2.test`, h2c on the HTTP port, and ConfigMap `config`.
fn start(echo: &EchoServer, config: &[(&str, &str)]) -> (Weir, Manifests) {
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "echo", &[echo.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "h2", &[("h2.test", "Prefix", "/", "echo")]),
    );
    m.write("config.yaml", &configmap("weir", "weir-config", config));
    let w = Weir::start(
        m.path(),
        &[
            "--configmap",
            "weir/weir-config",
            "--watch-namespace",
            "ns",
            "--enable-h2c",
        ],
    );
    (w, m)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An h2c connection (prior knowledge) and the task driving it, which ends when the connection
/// is closed. `window`: the client's initial stream window (0: Weir cannot send any body).
async fn connect(addr: SocketAddr, window: Option<u32>) -> (SendRequest<Bytes>, JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut builder = h2::client::Builder::new();
    if let Some(w) = window {
        builder.initial_window_size(w);
    }
    let (send, conn) = builder.handshake::<_, Bytes>(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, driver)
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://h2.test{path}"))
        .body(())
        .unwrap()
}

/// The status of a request sent with `headers`, or how the stream or connection was refused
/// (reset, GOAWAY) instead.
async fn status(send: &SendRequest<Bytes>, headers: http::HeaderMap) -> Result<u16, h2::Error> {
    let mut req = get("/");
    req.headers_mut().extend(headers);
    let mut ready = send.clone().ready().await?;
    let (response, _) = ready.send_request(req, true)?;
    Ok(response.await?.status().as_u16())
}

/// Wait up to `deadline` for the connection's driver to end; how long it took.
async fn closed_within(driver: impl Future + Unpin, deadline: Duration) -> Option<Duration> {
    let start = Instant::now();
    tokio::time::timeout(deadline, driver)
        .await
        .ok()
        .map(|_| start.elapsed())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn decoded_header_list_is_bounded_as_nginx() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "echo", &[echo.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "h2", &[("h2.test", "Prefix", "/", "echo")]),
    );
    let w = Weir::start(m.path(), &[]);
    // 24 KiB of headers: within the 32 KiB decoded header list.
    assert_eq!(h2_request(&w, 24, 1000), ("200".into(), "2".into()));
    // 40 KiB: over it, not served.
    let (code, _) = h2_request(&w, 40, 1000);
    assert_ne!(code, "200");
    // The listener still serves.
    assert_eq!(h2_request(&w, 1, 10), ("200".into(), "2".into()));
}

/// HPACK bombs: one 3000-byte header indexed in the dynamic table, then referenced again and
/// again (one byte each on the wire), from clients that never open their flow-control window.
/// 40 references (120 KB decoded) get 431 and the connection goes on; 5000 (15 MB decoded)
/// close the connection (GOAWAY). 200 attempts on 10 connections: all refused, Weir's memory
/// stays flat, and every connection is closed in bounded time.
#[test]
fn hpack_bombs_and_header_floods_are_refused_with_bounded_memory() {
    let echo = EchoServer::start("echo").unwrap();
    let (w, _m) = start(&echo, &[("keep-alive", "2")]);
    let rt = runtime();
    rt.block_on(async {
        // Warm up: served over h2c.
        let (send, _driver) = connect(w.http, None).await;
        assert_eq!(status(&send, http::HeaderMap::new()).await.unwrap(), 200);
        let before = rss_kib(w.pid());

        let value = http::HeaderValue::from_maybe_shared(Bytes::from("b".repeat(3000))).unwrap();
        let bomb = |references: usize| {
            let mut headers = http::HeaderMap::new();
            for _ in 0..references {
                headers.append("x-bomb", value.clone());
            }
            headers
        };
        let (small, big) = (bomb(40), bomb(5000));
        let (mut answered_431, mut refused) = (0, 0);
        for _ in 0..10 {
            let (send, driver) = connect(w.http, Some(0)).await;
            for _ in 0..19 {
                let got = status(&send, small.clone()).await;
                assert!(
                    matches!(got, Ok(431)),
                    "a 120 KB header list gets 431, got {got:?}"
                );
                answered_431 += 1;
            }
            let got = status(&send, big.clone()).await;
            assert!(
                matches!(got, Err(_) | Ok(431)),
                "a 15 MB header list is refused, got {got:?}"
            );
            refused += usize::from(got.is_err());
            assert!(
                closed_within(driver, Duration::from_secs(5))
                    .await
                    .is_some(),
                "the connection of a 15 MB header list is closed"
            );
        }
        let after = rss_kib(w.pid());
        eprintln!(
            "{answered_431} HPACK bombs answered 431, {refused} refused with the connection; \
             weir RSS {before} KiB before, {after} KiB after"
        );
        assert!(
            after < before + 50 * 1024,
            "RSS grew from {before} KiB to {after} KiB over 200 HPACK bombs"
        );

        // 10,000 tiny Cookie crumbs: 32 bytes of accounting each, far over the header list.
        let (send, _driver) = connect(w.http, None).await;
        let mut crumbs = http::HeaderMap::new();
        for i in 0..10_000 {
            crumbs.append(
                http::header::COOKIE,
                http::HeaderValue::from_str(&format!("c{i}=1")).unwrap(),
            );
        }
        let got = status(&send, crumbs).await;
        assert!(matches!(got, Err(_) | Ok(431)), "header flood: {got:?}");
        eprintln!("10,000 Cookie crumbs: {got:?}");
        // Weir still serves, on a new connection.
        let (send, _driver) = connect(w.http, None).await;
        assert_eq!(status(&send, http::HeaderMap::new()).await.unwrap(), 200);
    });
}

/// `keep-alive: "2"` closes an HTTP/2 connection with no stream in progress (GOAWAY, then the
/// socket), but not one whose request is still being sent.
#[test]
fn idle_h2_connections_are_closed_after_keep_alive() {
    let echo = EchoServer::start("echo").unwrap();
    let (w, _m) = start(&echo, &[("keep-alive", "2")]);
    let rt = runtime();
    rt.block_on(async {
        // Idle after one request: closed after about 2 s.
        let (send, idle) = connect(w.http, None).await;
        assert_eq!(status(&send, http::HeaderMap::new()).await.unwrap(), 200);
        let took = closed_within(idle, Duration::from_secs(10))
            .await
            .expect("an idle h2 connection is closed");
        assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
        eprintln!("idle h2 connection closed after {took:?}");

        // Never used: closed as well.
        let (_send, unused) = connect(w.http, None).await;
        assert!(closed_within(unused, Duration::from_secs(10))
            .await
            .is_some());

        // A request whose body is still coming: the connection stays open past keep-alive.
        let (send, mut busy) = connect(w.http, None).await;
        let mut send = send.ready().await.unwrap();
        let req = http::Request::post("http://h2.test/").body(()).unwrap();
        let (response, mut body) = send.send_request(req, false).unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !busy.is_finished(),
            "a connection with a stream in progress is kept"
        );
        body.send_data(Bytes::from_static(b"done"), true).unwrap();
        let response = response.await.expect("the slow request is answered");
        assert_eq!(response.status(), 200);
        // Then it is idle, and closed.
        assert!(closed_within(&mut busy, Duration::from_secs(10))
            .await
            .is_some());
    });
}

/// Over `max-worker-connections`, the oldest idle HTTP/2 connection is closed for a new one.
#[test]
fn idle_h2_connections_make_room_over_the_connection_cap() {
    let echo = EchoServer::start("echo").unwrap();
    let (w, _m) = start(&echo, &[("max-worker-connections", "2")]);
    let rt = runtime();
    rt.block_on(async {
        let (send, oldest) = connect(w.http, None).await;
        assert_eq!(status(&send, http::HeaderMap::new()).await.unwrap(), 200);
        let (send, younger) = connect(w.http, None).await;
        assert_eq!(status(&send, http::HeaderMap::new()).await.unwrap(), 200);
        // A third connection: the oldest idle one goes (keep-alive is 75 s).
        let (send, _third) = connect(w.http, None).await;
        assert_eq!(status(&send, http::HeaderMap::new()).await.unwrap(), 200);
        assert!(
            closed_within(oldest, Duration::from_secs(5))
                .await
                .is_some(),
            "the oldest idle h2 connection is closed for room"
        );
        assert!(!younger.is_finished(), "the younger one is kept");
    });
}

/// A client that never opens its flow-control window: the response cannot be sent; after
/// `send-timeout` the stream is reset, and the connection, now idle, closes after
/// `keep-alive`.
#[test]
fn streams_stalled_by_flow_control_are_reset_after_send_timeout() {
    let echo = EchoServer::start("echo").unwrap();
    let (w, _m) = start(&echo, &[("keep-alive", "2"), ("send-timeout", "1")]);
    let rt = runtime();
    rt.block_on(async {
        let (send, stalled) = connect(w.http, Some(0)).await;
        let start = Instant::now();
        let mut send = send.ready().await.unwrap();
        let (response, _) = send.send_request(get("/"), true).unwrap();
        let response = response
            .await
            .expect("the response header is not flow-controlled");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        // No window: no data, then the reset.
        let end = tokio::time::timeout(Duration::from_secs(10), body.data()).await;
        assert!(
            matches!(end, Ok(Some(Err(_)))),
            "the stalled stream is reset, got {end:?}"
        );
        let reset = start.elapsed();
        eprintln!("stalled stream reset after {reset:?}");
        assert!(reset >= Duration::from_millis(800), "reset after {reset:?}");
        // send-timeout (1 s) + keep-alive (2 s), with room for a slow machine.
        assert!(
            closed_within(stalled, Duration::from_secs(8))
                .await
                .is_some(),
            "the stalled connection is closed"
        );
        assert!(start.elapsed() < Duration::from_secs(9));
    });
}
