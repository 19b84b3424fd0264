//! The embedding example (`examples/embed.rs`), compiled here as a module: its gateway runs on
//! a loopback port with two real upstreams and answers a real client.

#[path = "../examples/embed.rs"]
#[allow(dead_code)]
mod embed;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weir_loadtest::echo::EchoServer;

/// A port that was free a moment ago: the example takes a listen address, and Pingora binds it
/// itself (retrying while it is in use), so the port has to be named in advance.
fn port_free_a_moment_ago() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One GET on a new connection: (status, body).
fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

fn server_of(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo reply ({e}): {body}"));
    v["server"].as_str().unwrap().to_string()
}

fn poll<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_example_gateway_routes_swaps_its_table_and_counts_requests() {
    let api = EchoServer::start("api").unwrap();
    let web = EchoServer::start("web").unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], port_free_a_moment_ago()));
    let flip_after = Duration::from_secs(5);
    let (server, registry) =
        embed::gateway(&listen.to_string(), api.addr(), web.addr(), flip_after);
    let started = Instant::now();
    std::thread::spawn(move || server.run_forever());

    let (status, body) = poll(Duration::from_secs(10), "the gateway to answer", || {
        get(listen, "example.local", "/api/x").ok()
    });
    assert_eq!(status, 200, "{body}");
    assert_eq!(server_of(&body), "api");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["path"], "/api/x");
    let (status, body) = get(listen, "example.local", "/web").unwrap();
    assert_eq!((status, server_of(&body).as_str()), (200, "web"));
    let (status, body) = get(listen, "other.test", "/api/x").unwrap();
    assert_eq!(
        (status, server_of(&body).as_str()),
        (200, "web"),
        "/api is example.local's only"
    );
    assert!(
        started.elapsed() < flip_after,
        "checked before the flip (the machine is too slow for this test's timing)"
    );

    // After the flip the web pool has both upstreams: round robin reaches api too.
    poll(
        Duration::from_secs(10),
        "the new table to send web traffic to api",
        || {
            let (status, body) = get(listen, "other.test", "/").ok()?;
            (status == 200 && server_of(&body) == "api").then_some(())
        },
    );

    // Requests are counted with their route's labels: the one request routed to /api.
    let api_requests = || {
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| {
                l.starts_with("nginx_ingress_controller_requests{") && l.contains("service=\"api\"")
            })
            .map(str::to_string)
            .collect();
        (lines, text)
    };
    poll(Duration::from_secs(5), "the request to be counted", || {
        (!api_requests().0.is_empty()).then_some(())
    });
    let (lines, text) = api_requests();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("path=\"/api\""), "{}", lines[0]);
    assert!(lines[0].ends_with(" 1"), "one request: {}", lines[0]);
}
