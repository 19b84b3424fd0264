//! Request framing at the edge, end to end: raw bytes to the real binary over TCP, and what a raw
//! upstream received, byte by byte. Pipelining, strict `Content-Length` / `Transfer-Encoding` /
//! `Host` as nginx, and a request-smuggling battery that must never desynchronise.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use weir_loadtest::echo::EchoServer;

/// An upstream that records every request it receives (header and body, raw bytes) and answers
/// each with `200 ok`, keeping connections open.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let record = record.clone();
                std::thread::spawn(move || serve(conn, &record));
            }
        });
        Recorder { addr, seen }
    }

    fn requests(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests recorded after the first `before`, as text, leaving out a cut-off
    /// `POST /bad` request: one Weir forwarded before the body turned out malformed may be
    /// recorded only when Weir closes that upstream connection, at any later point.
    fn since_without_bad(&self, before: usize) -> Vec<String> {
        self.requests()[before..]
            .iter()
            .map(|r| String::from_utf8_lossy(r).to_string())
            .filter(|r| !r.starts_with("POST /bad HTTP/1.1\r\n"))
            .collect()
    }
}

fn serve(mut conn: TcpStream, record: &Mutex<Vec<Vec<u8>>>) {
    let mut buf = Vec::new();
    loop {
        while let Some(len) = framed_len(&buf) {
            let request: Vec<u8> = buf.drain(..len).collect();
            record.lock().unwrap().push(request);
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    // An incomplete request is recorded too: the test must see it.
                    record.lock().unwrap().push(std::mem::take(&mut buf));
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The length of the first complete request in `buf` (header plus body framed by
/// `Content-Length` or chunked encoding), if complete.
fn framed_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut at = end;
        loop {
            let nl = buf[at..].windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[at..at + nl]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at += nl + 2;
            if size == 0 {
                // No trailers in these tests.
                return (buf.len() >= at + 2).then_some(at + 2);
            }
            at += size + 2;
            if buf.len() < at {
                return None;
            }
        }
    }
    let len: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
    (buf.len() >= end + len).then_some(end + len)
}

/// Every response on a connection, in order, until the server closes it.
fn responses(raw: &[u8]) -> Vec<(u16, String, String)> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let len: usize = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse().unwrap());
        let body = String::from_utf8_lossy(&rest[end + 4..end + 4 + len]).to_string();
        out.push((status, head, body));
        rest = &rest[end + 4 + len..];
    }
    out
}

/// Send `raw` on a new connection and read everything until Weir closes it.
fn send(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

struct Setup {
    weir: Weir,
    recorder: Recorder,
    _echo: EchoServer,
    _m: Manifests,
}

fn setup() -> Setup {
    let recorder = Recorder::start();
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &[
            service("web", "raw", &[recorder.addr]),
            service("web", "echo", &[echo.addr()]),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress(
            "web",
            "site",
            &[
                ("raw.test", "Prefix", "/", "raw"),
                ("echo.test", "Prefix", "/", "echo"),
            ],
        ),
    );
    let weir = Weir::start(m.path(), &[]);
    Setup {
        weir,
        recorder,
        _echo: echo,
        _m: m,
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = setup();
    let raw = b"GET /one HTTP/1.1\r\nHost: echo.test\r\n\r\n\
GET /two HTTP/1.1\r\nHost: echo.test\r\n\r\n\
GET /three HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n";
    let out = responses(&send(s.weir.http, raw));
    let paths: Vec<String> = out
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, 200, "{body}");
            let echo: serde_json::Value = serde_json::from_str(body).unwrap();
            echo["path"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(paths, ["/one", "/two", "/three"]);

    // Also after a local answer (404) and with bodies.
    let raw = b"GET /a HTTP/1.1\r\nHost: nowhere.test\r\n\r\n\
POST /b HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 3\r\n\r\nxyz\
GET /c HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n";
    let out = responses(&send(s.weir.http, raw));
    let statuses: Vec<u16> = out.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [404, 200, 200]);
    let b: serde_json::Value = serde_json::from_str(&out[1].2).unwrap();
    assert_eq!(b["path"], "/b");
    assert_eq!(b["body"], "xyz");
    let c: serde_json::Value = serde_json::from_str(&out[2].2).unwrap();
    assert_eq!(c["path"], "/c");
}

/// Requests nginx refuses while reading the header: Weir answers the same status, closes the
/// connection, and the upstream receives nothing (not even the bytes that follow).
#[test]
fn refused_framing_and_authority_never_reach_the_upstream() {
    let s = setup();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: raw.test\r\n\r\n";
    let cases: &[(&str, &str, u16)] = &[
        ("list-valued Content-Length", "POST / HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
        ("duplicate Content-Length", "POST / HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("conflicting Content-Length", "POST / HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc", 400),
        ("negative Content-Length", "POST / HTTP/1.1\r\nHost: raw.test\r\nContent-Length: -1\r\n\r\n", 400),
        ("huge Content-Length", "POST / HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        ("signed Content-Length", "POST / HTTP/1.1\r\nHost: raw.test\r\nContent-Length: +3\r\n\r\nabc", 400),
        ("Transfer-Encoding list", "POST / HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        ("Transfer-Encoding chunked twice in a list", "POST / HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501),
        // Pingora's parser refuses this one before Weir sees it (nginx: 501).
        ("Transfer-Encoding unknown", "POST / HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
        ("Transfer-Encoding twice", "POST / HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("Transfer-Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400),
        ("absolute-form HTTP/1.1 without Host", "GET http://raw.test/ HTTP/1.1\r\n\r\n", 400),
        ("Host with a space", "GET / HTTP/1.1\r\nHost: raw.test evil\r\n\r\n", 400),
        ("Host with a slash", "GET / HTTP/1.1\r\nHost: raw.test/x\r\n\r\n", 400),
        ("Host with ..", "GET / HTTP/1.1\r\nHost: raw..test\r\n\r\n", 400),
        ("empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
        ("two Hosts", "GET / HTTP/1.1\r\nHost: raw.test\r\nHost: raw.test\r\n\r\n", 400),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: raw.test\r\nX-A: a\r\n b\r\n\r\n", 400),
        ("NUL in a header", "GET / HTTP/1.1\r\nHost: raw.test\r\nX-A: a\0b\r\n\r\n", 400),
        ("space before colon", "POST / HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ];
    for (what, request, status) in cases {
        let before = s.recorder.requests().len();
        let raw = format!("{request}{smuggled}");
        let out = send(s.weir.http, raw.as_bytes());
        let got = responses(&out);
        assert_eq!(
            got.len(),
            1,
            "{what}: one answer, then close: {:?}",
            String::from_utf8_lossy(&out)
        );
        let (got_status, head, _) = &got[0];
        assert_eq!(got_status, status, "{what}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("pingora"),
            "{what}: {head}"
        );
        assert_eq!(
            s.recorder.requests().len(),
            before,
            "{what}: the upstream received {:?}",
            s.recorder
                .requests()
                .iter()
                .map(|r| String::from_utf8_lossy(r).to_string())
                .collect::<Vec<_>>()
        );
    }
}

/// Accepted framings reach the upstream re-framed as exactly one request each; the bytes after
/// a body are the next request, never part of the first.
#[test]
fn accepted_framing_reaches_the_upstream_byte_exact() {
    let s = setup();
    let raw = "POST /cl HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 3\r\n\r\nabc\
POST /te HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n\
GET /last HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n";
    let out = responses(&send(s.weir.http, raw.as_bytes()));
    assert_eq!(out.iter().map(|r| r.0).collect::<Vec<_>>(), [200, 200, 200]);
    let seen = s.recorder.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let text: Vec<String> = seen
        .iter()
        .map(|r| String::from_utf8_lossy(r).to_string())
        .collect();
    assert!(text[0].starts_with("POST /cl HTTP/1.1\r\n"), "{}", text[0]);
    assert!(text[0].ends_with("\r\n\r\nabc"), "{}", text[0]);
    let head0 = text[0].to_ascii_lowercase();
    assert!(head0.contains("\r\ncontent-length: 3\r\n"), "{}", text[0]);
    assert!(!head0.contains("transfer-encoding"), "{}", text[0]);
    assert!(text[1].starts_with("POST /te HTTP/1.1\r\n"), "{}", text[1]);
    let head1 = text[1].to_ascii_lowercase();
    assert!(
        head1.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{}",
        text[1]
    );
    assert!(!head1.contains("content-length"), "{}", text[1]);
    assert!(
        text[1].ends_with("\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"),
        "{}",
        text[1]
    );
    assert!(text[2].starts_with("GET /last HTTP/1.1\r\n"), "{}", text[2]);
    assert!(text[2].ends_with("\r\n\r\n"), "{}", text[2]);

    // A bad chunk size ends the connection; nothing after it reaches the upstream as a request.
    let before = s.recorder.requests().len();
    let raw = "POST /bad HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: raw.test\r\n\r\n";
    let out = send(s.weir.http, raw.as_bytes());
    let got = responses(&out);
    assert!(got.len() <= 1, "{:?}", String::from_utf8_lossy(&out));
    assert!(got.iter().all(|r| r.0 >= 400), "{got:?}");
    let seen = s.recorder.requests();
    for r in &seen[before..] {
        let r = String::from_utf8_lossy(r);
        assert!(!r.contains("/smuggled"), "{r}");
        assert!(r.starts_with("POST /bad HTTP/1.1\r\n"), "{r}");
    }

    // HTTP/0.9 gets no upstream request. (The cut-off /bad request above may be recorded only
    // now, when Weir closes its upstream connection: it is not counted.)
    let before = s.recorder.requests().len();
    let _ = send(s.weir.http, b"GET /\r\n\r\n");
    let new = s.recorder.since_without_bad(before);
    assert!(new.is_empty(), "{new:?}");

    // The request target's authority wins over Host (as nginx): routed by it, so a request to
    // an unknown authority with the known Host is not forwarded.
    let out = responses(&send(
        s.weir.http,
        b"GET http://nowhere.test/ HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n",
    ));
    // Pingora's parser refuses this request form before routing (400); nginx would route it by
    // the authority (404 here). Either way it is not forwarded.
    assert!([400, 404].contains(&out[0].0), "{}", out[0].1);
    let new = s.recorder.since_without_bad(before);
    assert!(new.is_empty(), "{new:?}");

    // Content-Length with Transfer-Encoding: nginx answers 400. Pingora drops the Content-Length
    // before Weir sees the header (RFC 9112 6.3), so the request is re-framed by the chunked
    // encoding alone: one request upstream, chunked, without Content-Length, and the bytes after
    // it are not a request on the upstream connection.
    let before = s.recorder.requests().len();
    let raw = "POST /both HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: raw.test\r\n\r\n";
    let out = responses(&send(s.weir.http, raw.as_bytes()));
    assert_eq!(out.len(), 1, "{out:?}");
    let seen = s.recorder.since_without_bad(before);
    assert!(seen.len() <= 1, "{seen:?}");
    for r in &seen {
        let r = r.to_ascii_lowercase();
        assert!(r.starts_with("post /both http/1.1\r\n"), "{r}");
        assert!(!r.contains("content-length"), "{r}");
        assert!(r.ends_with("\r\n\r\n0\r\n\r\n"), "{r}");
    }
}

/// A client that goes away mid-header is not an error: no ERROR line, counted by phase. Error
/// answers (502 here) say nothing about Pingora.
#[test]
fn client_disconnects_are_quiet_and_counted_and_errors_name_no_server() {
    let s = setup();
    let count = |w: &Weir| {
        w.metrics()
            .value("weir_client_disconnects_total", &[("phase", "header")])
            .unwrap_or(0.0)
    };
    let before = count(&s.weir);
    for _ in 0..3 {
        let mut c = TcpStream::connect(s.weir.http).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: raw.te").unwrap();
        drop(c);
    }
    s.weir.poll(
        Duration::from_secs(10),
        "three header-phase disconnects counted",
        || (count(&s.weir) >= before + 3.0).then_some(()),
    );
    assert_eq!(count(&s.weir), before + 3.0);
    assert!(!s.weir.log().contains("Fail to proxy"), "{}", s.weir.log());
    assert!(!s.weir.log().contains("ERROR"), "{}", s.weir.log());

    // An upstream that refuses: 502 with nginx's page, no Server header at all.
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("web", "gone", &[closed_addr()]));
    m.write(
        "ing.yaml",
        &ingress("web", "site", &[("gone.test", "Prefix", "/", "gone")]),
    );
    let w = Weir::start(m.path(), &[]);
    let r = w.get("gone.test", "/");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.header("server"), None, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html"), "{r:?}");
    assert!(r.body.contains("<title>502 Bad Gateway</title>"), "{r:?}");
}
