//! Per-client limits through the real `weir` binary, as ingress-nginx's `limit-*` annotations
//! (its e2e tests `annotations/limit*.go`): request rates with a burst, connections in progress,
//! the allow list, the ConfigMap's status codes, the PROXY protocol client address, and the
//! response bandwidth. Counts are exact or bounded by the configured rate over the measured
//! time, never by a wall-clock threshold alone.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::*;
use weir_loadtest::echo::EchoServer;

/// An Ingress `name` for `host` (path `/`, Service `svc`) with `annotations`.
fn limited(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    let ann = if ann.is_empty() {
        "  annotations: {}\n".to_string()
    } else {
        format!("  annotations:\n{ann}")
    };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: ns
{ann}spec:
  ingressClassName: nginx
  rules:
  - host: \"{host}\"
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}
"
    )
}

fn statuses(w: &Weir, host: &str, n: usize) -> Vec<u16> {
    (0..n).map(|_| w.get(host, "/").status).collect::<Vec<_>>()
}

fn count(list: &[u16], status: u16) -> usize {
    list.iter().filter(|&&s| s == status).count()
}

/// Requests `limit-rps` lets through `elapsed` after the first of a burst: the burst
/// (`limit × 5`), the first request, and what drained meanwhile.
fn allowed(rps: f64, burst: usize, elapsed: Duration) -> usize {
    burst + 1 + (rps * elapsed.as_secs_f64()).ceil() as usize
}

struct Setup {
    weir: Weir,
    app: EchoServer,
    m: Manifests,
}

fn setup(ingresses: &[String], config: &[(&str, &str)]) -> Setup {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("ing.yaml", &ingresses.join("---\n"));
    m.write("config.yaml", &configmap("ns", "cfg", config));
    let weir = Weir::start(m.path(), &["--configmap", "ns/cfg"]);
    Setup { weir, app, m }
}

/// `limit-rps: 1` gives a burst of 5: of 20 back-to-back requests the first and the burst pass
/// (plus one per second elapsed), the rest get 503 and never reach the upstream; another
/// Ingress has its own counts.
#[test]
fn rps_burst_passes_and_the_excess_gets_503() {
    let s = setup(
        &[
            limited("rps", "rps.test", "app", &[("limit-rps", "1")]),
            limited("other", "other.test", "app", &[("limit-rps", "1")]),
        ],
        &[],
    );
    let start = Instant::now();
    let got = statuses(&s.weir, "rps.test", 20);
    let elapsed = start.elapsed();
    let passed = count(&got, 200);
    assert!(
        (6..=allowed(1.0, 5, elapsed)).contains(&passed),
        "{passed} passed in {elapsed:?}: {got:?}"
    );
    assert_eq!(count(&got, 503), 20 - passed, "{got:?}");
    assert_eq!(s.app.received(), passed, "refused requests are not proxied");
    // Another Ingress has its own zone.
    assert_eq!(s.weir.get("other.test", "/").status, 200);
}

/// `limit-rpm: 1` (burst 5) refuses with the ConfigMap's `limit-req-status-code`, and its counts
/// survive a new snapshot while the Ingress's limit is unchanged; an address in
/// `limit-allowlist` is never limited; `limit-burst-multiplier` sets the burst.
#[test]
fn rpm_custom_status_allowlist_and_burst_multiplier() {
    let s = setup(
        &[
            limited("rpm", "rpm.test", "app", &[("limit-rpm", "1")]),
            limited(
                "allowed",
                "allowed.test",
                "app",
                &[
                    ("limit-rps", "1"),
                    ("limit-allowlist", "10.0.0.0/8, 127.0.0.1"),
                ],
            ),
            limited(
                "mult",
                "mult.test",
                "app",
                &[("limit-rpm", "1"), ("limit-burst-multiplier", "2")],
            ),
        ],
        &[("limit-req-status-code", "429")],
    );
    let got = statuses(&s.weir, "rpm.test", 12);
    // One request a minute drains: within this test at most one more passes.
    let passed = count(&got, 200);
    assert!((6..=7).contains(&passed), "{got:?}");
    assert_eq!(count(&got, 429), 12 - passed, "{got:?}");
    // A new snapshot (another Ingress added) keeps the counts of the unchanged Ingress.
    s.m.write("more.yaml", &limited("more", "more.test", "app", &[]));
    s.weir
        .poll(Duration::from_secs(10), "the new snapshot", || {
            (s.weir.get("more.test", "/").status == 200).then_some(())
        });
    let again = statuses(&s.weir, "rpm.test", 5);
    assert!(count(&again, 200) + passed <= 7, "state kept: {again:?}");
    let got = statuses(&s.weir, "allowed.test", 30);
    assert_eq!(count(&got, 200), 30, "allow-listed: {got:?}");
    let got = statuses(&s.weir, "mult.test", 10);
    assert!((3..=4).contains(&count(&got, 200)), "burst 2: {got:?}");
}

/// `limit-connections: 2`: with two requests held open by a slow upstream, the third gets 503
/// (`limit-conn-status-code`); once they end, requests pass again.
#[test]
fn connections_in_progress_are_limited_and_released() {
    let s = setup(
        &[limited(
            "conn",
            "conn.test",
            "app",
            &[("limit-connections", "2")],
        )],
        &[],
    );
    let addr = s.weir.http;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                get(addr, "conn.test", "/?delay_ms=4000", &[])
                    .unwrap()
                    .status
            })
        })
        .collect();
    poll(
        Duration::from_secs(10),
        "two requests held upstream",
        || (s.app.received() >= 2).then_some(()),
    );
    assert_eq!(s.weir.get("conn.test", "/").status, 503, "third at once");
    for t in slow {
        assert_eq!(t.join().unwrap(), 200);
    }
    // Released when they ended (a request that ends with an error is released the same way:
    // the place is held by a guard dropped with the request).
    assert_eq!(s.weir.get("conn.test", "/").status, 200);
    assert_eq!(s.weir.get("conn.test", "/").status, 200);
}

/// Raw request after a PROXY header on a fresh connection: the status.
fn via_proxy(addr: SocketAddr, client: &str, host: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PROXY TCP4 {client} 10.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Behind a load balancer speaking PROXY protocol, each client address has its own bucket.
#[test]
fn limits_are_per_proxy_protocol_client_address() {
    let s = setup(
        &[limited("pp", "pp.test", "app", &[("limit-rps", "1")])],
        &[("use-proxy-protocol", "true")],
    );
    let start = Instant::now();
    let a: Vec<u16> = (0..12)
        .map(|_| via_proxy(s.weir.http, "203.0.113.7", "pp.test"))
        .collect();
    let b: Vec<u16> = (0..12)
        .map(|_| via_proxy(s.weir.http, "198.51.100.1", "pp.test"))
        .collect();
    let most = allowed(1.0, 5, start.elapsed());
    for got in [&a, &b] {
        let passed = count(got, 200);
        assert!((6..=most).contains(&passed), "{got:?}");
        assert_eq!(count(got, 503), 12 - passed, "{got:?}");
    }
}

/// An upstream answering every request with `len` bytes of body.
fn big_upstream(len: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&vec![b'x'; len]);
            });
        }
    });
    addr
}

/// Seconds to download `host`'s response, and its size.
fn download(addr: SocketAddr, host: &str) -> (f64, usize) {
    let start = Instant::now();
    let r = get(addr, host, "/", &[]).unwrap();
    assert_eq!(r.status, 200);
    (start.elapsed().as_secs_f64(), r.body.len())
}

/// `limit-rate` (KB/s) paces the response body; `limit-rate-after` (KB) goes at full speed
/// first. The time is within 10% of what the rate gives (and a route without it is fast).
#[test]
fn bandwidth_follows_limit_rate_and_limit_rate_after() {
    const LEN: usize = 400 << 10;
    let big = big_upstream(LEN);
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "big", &[big]));
    m.write(
        "ing.yaml",
        &[
            limited("rate", "rate.test", "big", &[("limit-rate", "200")]),
            limited(
                "after",
                "after.test",
                "big",
                &[("limit-rate", "100"), ("limit-rate-after", "100")],
            ),
            limited("free", "free.test", "big", &[]),
        ]
        .join("---\n"),
    );
    let w = Weir::start(m.path(), &[]);
    let (free, len) = download(w.http, "free.test");
    assert_eq!(len, LEN);
    assert!(free < 1.0, "unlimited: {free}s");
    // 400 KiB at 200 KiB/s: 2 s.
    let (t, len) = download(w.http, "rate.test");
    assert_eq!(len, LEN);
    assert!((1.8..=2.2).contains(&t), "limit-rate 200: {t}s");
    // 100 KiB at once, then 300 KiB at 100 KiB/s: 3 s.
    let (t, len) = download(w.http, "after.test");
    assert_eq!(len, LEN);
    assert!((2.7..=3.3).contains(&t), "limit-rate-after 100: {t}s");
}
