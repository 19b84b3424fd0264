//! HTTP/2 limits on the TLS listener, through the real binary and curl.

mod support;

use support::*;
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
