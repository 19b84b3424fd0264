//! Shutdown as ingress-nginx does it, on the real binary: SIGTERM turns `/healthz` to 503 while
//! Weir keeps serving for `--shutdown-grace-period`, then the listeners close, requests in flight
//! finish (for up to `--worker-shutdown-timeout`), the Lease is released, and Weir exits 0. Also
//! `wait-shutdown`, the preStop hook.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::testenv::TestEnv;
use support::*;
use weir_loadtest::echo::EchoServer;

/// A folder routing `drain.test` to `upstream`.
fn routes(upstream: SocketAddr) -> Manifests {
    let m = Manifests::new();
    m.write(
        "all.yaml",
        &[
            INGRESS_CLASS.to_string(),
            service("ns", "s", &[upstream]),
            ingress("ns", "i", &[("drain.test", "Prefix", "/", "s")]),
        ]
        .join("---\n"),
    );
    m
}

/// A keep-alive connection with one request sent.
fn send_keepalive(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: drain.test\r\n\r\n").as_bytes())
        .unwrap();
    s
}

/// Read one response with a Content-Length body: (status line and lower-cased head, body).
fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "response head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// Whether the peer closes `s` (EOF, or a reset) within 5 s.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match s.read(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe),
    }
}

/// When each request of a load ended, and its status or error.
type Outcomes = Arc<Mutex<Vec<(Instant, Result<u16, String>)>>>;

fn healthz(w: &Weir) -> u16 {
    get(w.admin, "localhost", "/healthz", &[]).unwrap().status
}

#[test]
fn sigterm_keeps_serving_for_the_grace_period_then_drains_and_exits_0() {
    let echo = EchoServer::start("a").unwrap();
    let m = routes(echo.addr());
    let mut w = Weir::start(
        m.path(),
        &[
            "--shutdown-grace-period",
            "2",
            "--worker-shutdown-timeout",
            "20",
        ],
    );
    assert_eq!(w.get("drain.test", "/").server(), "a");
    let grace = Duration::from_secs(2);

    // An idle keep-alive connection (one request done) ...
    let mut idle = send_keepalive(w.http, "/");
    let (head, _) = read_response(&mut idle);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // ... a keep-alive connection whose request (4 s) outlives the grace period ...
    let mut long = send_keepalive(w.http, "/?delay_ms=4000");
    // ... a connection to the HTTPS port that never starts its TLS handshake ...
    let mut silent = TcpStream::connect(w.https).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // ... and a 2 s request in flight.
    let http = w.http;
    let short = std::thread::spawn(move || get(http, "drain.test", "/?delay_ms=2000", &[]));
    // Upstream so far: the first GET, the idle connection's, and the two slow ones.
    poll(
        Duration::from_secs(5),
        "both slow requests upstream",
        || (echo.received() >= 4).then_some(()),
    );

    // Load on fresh connections, each outcome with its time.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Outcomes = Arc::default();
    let load = {
        let (stop, outcomes) = (stop.clone(), outcomes.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let r = get(http, "drain.test", "/", &[])
                    .map(|r| r.status)
                    .map_err(|e| e.to_string());
                outcomes.lock().unwrap().push((Instant::now(), r));
            }
        })
    };

    let sigterm = Instant::now();
    w.signal("TERM");
    w.poll(Duration::from_secs(1), "/healthz to answer 503", || {
        (healthz(&w) == 503).then_some(())
    });
    // Still accepting and serving during the grace period.
    let r = get(w.http, "drain.test", "/", &[]).expect("served during the grace period");
    assert_eq!(r.status, 200);
    assert!(sigterm.elapsed() < grace, "checked within the grace period");
    assert_eq!(healthz(&w), 503);

    // Then new connections are refused.
    w.poll(
        Duration::from_secs(5),
        "new connections to be refused",
        || TcpStream::connect(w.http).is_err().then_some(()),
    );
    let refused_at = sigterm.elapsed();
    assert!(
        refused_at >= grace - Duration::from_millis(100),
        "listeners closed {refused_at:?} after SIGTERM, before the {grace:?} grace period ended"
    );
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();

    // The idle keep-alive connection, and the one without a handshake, are closed now, while a
    // request is still in flight.
    assert!(
        closed_by_peer(&mut idle),
        "idle keep-alive connection closed"
    );
    assert!(
        closed_by_peer(&mut silent),
        "connection without a handshake closed"
    );
    assert!(
        w.try_exit().is_none(),
        "weir still running while a request is in flight"
    );
    // The admin listener still answers until the end.
    assert_eq!(healthz(&w), 503);

    // The 2 s request completed.
    let r = short
        .join()
        .unwrap()
        .expect("the 2 s request got its response");
    assert_eq!(r.server(), "a");
    // The 4 s request completed after the listeners closed, ending its connection.
    let (head, body) = read_response(&mut long);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains("\"server\":\"a\""), "{body}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_by_peer(&mut long), "closed after its response");

    let (status, log) = w.wait_exit_within(Duration::from_secs(10));
    let exited = sigterm.elapsed();
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(
        exited < Duration::from_secs(8),
        "exited {exited:?} after SIGTERM"
    );
    assert!(log.contains("all connections closed"), "{log}");

    // Under load: every request got a 200; failures only once the listeners closed.
    let outcomes = outcomes.lock().unwrap();
    assert!(
        outcomes.len() > 10,
        "load ran ({} requests)",
        outcomes.len()
    );
    for (at, r) in outcomes.iter() {
        match r {
            Ok(status) => assert_eq!(*status, 200, "a request under load"),
            Err(e) => {
                let when = at.saturating_duration_since(sigterm);
                assert!(
                    when >= grace - Duration::from_millis(100),
                    "a request failed {when:?} after SIGTERM, within the grace period: {e}"
                );
            }
        }
    }
}

#[test]
fn worker_shutdown_timeout_cuts_what_is_still_running() {
    let echo = EchoServer::start("a").unwrap();
    let m = routes(echo.addr());
    let w = Weir::start(
        m.path(),
        &[
            "--shutdown-grace-period",
            "1",
            "--worker-shutdown-timeout",
            "1",
        ],
    );
    let http = w.http;
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let r = get(http, "drain.test", "/?delay_ms=8000", &[]);
        (r, started.elapsed())
    });
    poll(Duration::from_secs(5), "the 8 s request upstream", || {
        (echo.received() >= 1).then_some(())
    });
    let sigterm = Instant::now();
    w.signal("TERM");
    let (status, log) = w.wait_exit_within(Duration::from_secs(10));
    let exited = sigterm.elapsed();
    assert!(status.success(), "exit status {status}:\n{log}");
    // 1 s grace period + 1 s for requests in flight.
    assert!(
        exited >= Duration::from_millis(1900) && exited < Duration::from_millis(4500),
        "exited {exited:?} after SIGTERM:\n{log}"
    );
    assert!(log.contains("worker shutdown timeout"), "{log}");
    let (r, took) = slow.join().unwrap();
    assert!(r.is_err(), "the 8 s request was cut: {r:?}");
    assert!(took < Duration::from_secs(6), "cut after {took:?}");
}

#[test]
fn a_second_sigterm_skips_the_drain() {
    let echo = EchoServer::start("a").unwrap();
    let m = routes(echo.addr());
    let mut w = Weir::start(
        m.path(),
        &[
            "--shutdown-grace-period",
            "30",
            "--worker-shutdown-timeout",
            "30",
        ],
    );
    w.signal("TERM");
    w.poll(Duration::from_secs(1), "/healthz to answer 503", || {
        (healthz(&w) == 503).then_some(())
    });
    assert!(w.try_exit().is_none(), "draining for 30 s");
    let second = Instant::now();
    w.signal("INT");
    let (status, log) = w.wait_exit_within(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(second.elapsed() < Duration::from_secs(3));
    assert!(log.contains("second signal"), "{log}");
    assert!(!log.contains("shutdown_signal error"), "{log}");
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
}

#[test]
fn sigterm_releases_the_lease_and_another_replica_takes_over_at_once() {
    let env = TestEnv::start();
    env.apply(&[namespace("weir"), INGRESS_CLASS.to_string()].join("---\n"));
    // An 8 s Lease: without a release the other replica would wait at least 8 s.
    let flags = ["--election-id=weir-leader", "--election-ttl=8s"];
    let is_leader = |w: &Weir| {
        w.metrics().value(
            "nginx_ingress_controller_leader_election_status",
            &[("name", "weir-leader")],
        ) == Some(1.0)
    };
    let first = Weir::start_api_as(env.kubeconfig(), "weir-0", "weir", &flags);
    first.poll(Duration::from_secs(10), "weir-0 to lead", || {
        is_leader(&first).then_some(())
    });
    let second = Weir::start_api_as(env.kubeconfig(), "weir-1", "weir", &flags);
    assert!(
        !is_leader(&second),
        "weir-1 follows while weir-0 holds the Lease"
    );

    let sigterm = Instant::now();
    first.signal("TERM");
    let (status, log) = first.wait_exit_within(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(log.contains("released leadership"), "{log}");

    // Read back right after the exit: released (no holder, 1 s), or already weir-1's.
    let lease: serde_json::Value = serde_json::from_str(&env.kubectl(&[
        "-n",
        "weir",
        "get",
        "lease",
        "weir-leader",
        "-o",
        "json",
    ]))
    .unwrap();
    let spec = &lease["spec"];
    match spec["holderIdentity"].as_str().unwrap_or_default() {
        "" => assert_eq!(spec["leaseDurationSeconds"], 1, "{lease}"),
        "weir-1" => {}
        other => panic!("Lease still held by {other}: {lease}"),
    }

    // weir-1 takes over within one retry period (2 s), well before the 8 s TTL.
    second.poll(Duration::from_secs(10), "weir-1 to take over", || {
        is_leader(&second).then_some(())
    });
    let took = sigterm.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "takeover {took:?} after SIGTERM"
    );
    let holder = env.kubectl(&[
        "-n",
        "weir",
        "get",
        "lease",
        "weir-leader",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "weir-1");
}

/// A copy of the `weir` binary in `dir` with a `wait-shutdown` link to it, as in the image: the
/// copy's path is this test's alone, so `wait-shutdown` finds no weir of another test.
fn copy_binary(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let weir = dir.join("weir");
    std::fs::copy(env!("CARGO_BIN_EXE_weir"), &weir).unwrap();
    let link = dir.join("wait-shutdown");
    std::os::unix::fs::symlink(&weir, &link).unwrap();
    (weir, link)
}

#[test]
fn wait_shutdown_stops_weir_and_returns_once_it_has_exited() {
    let bin = tempfile::tempdir().unwrap();
    let (weir, wait_shutdown) = copy_binary(bin.path());
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    let mut w = Weir::spawn_bin(
        &weir,
        &["--manifests".as_ref(), m.path().as_os_str()],
        &["--shutdown-grace-period", "1"],
        &[],
    );
    w.wait_ready();

    let started = Instant::now();
    let out = Command::new(&wait_shutdown).output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", w.log());
    assert!(
        stderr.contains(&format!("sent SIGTERM to weir (pid {})", w.pid())),
        "{stderr}"
    );
    // It waited for the drain (the 1 s grace period) and for the exit.
    assert!(took >= Duration::from_secs(1), "returned after {took:?}");
    let status = w
        .try_exit()
        .expect("weir had exited when wait-shutdown returned");
    assert!(status.success(), "{status}\n{}", w.log());
    assert!(w.log().contains("signal=\"SIGTERM\""), "{}", w.log());

    // The subcommand form, with nothing left to stop: it says so and fails.
    let out = Command::new(&weir)
        .args(["wait-shutdown", "--timeout", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no running weir controller"), "{stderr}");
}
