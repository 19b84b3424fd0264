//! CORS and response headers through the real `weir` binary, ported from ingress-nginx's e2e
//! assertions (`test/e2e/annotations/cors.go`): preflight requests answered by Weir with 204
//! and never reaching the upstream, CORS headers on the upstream's responses, wildcard origins
//! matched and not matched, and no `Server: Pingora`; gzip compression from the ConfigMap
//! (`test/e2e/settings/gzip.go`).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;
use weir_loadtest::echo::EchoServer;

/// One `weir` serving host `cors.test` (`/` → Service `app`) with `annotations`.
struct Case {
    weir: Weir,
    app: EchoServer,
    _manifests: Manifests,
}

impl Case {
    fn start(annotations: &[(&str, &str)]) -> Case {
        let app = EchoServer::start("app").unwrap();
        let m = Manifests::new();
        m.write("class.yaml", INGRESS_CLASS);
        m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
        let ann: String = annotations
            .iter()
            .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
            .collect();
        let ing = ingress("ns", "web", &[("cors.test", "Prefix", "/", "app")]).replacen(
            "metadata: {name: web, namespace: ns}\n",
            &format!("metadata:\n  name: web\n  namespace: ns\n  annotations:\n{ann}"),
            1,
        );
        assert!(ing.contains("annotations:"), "{ing}");
        m.write("ing.yaml", &ing);
        let weir = Weir::start(m.path(), &[]);
        Case {
            weir,
            app,
            _manifests: m,
        }
    }

    /// A request with `method` and extra header lines, on a new connection.
    fn send(&self, method: &str, headers: &[(&str, &str)]) -> Response {
        let mut raw = format!("{method} /api HTTP/1.1\r\nHost: cors.test\r\nConnection: close\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        exchange(self.weir.http, raw.as_bytes())
            .unwrap_or_else(|e| panic!("{method}: {e}\n{}", self.weir.log()))
    }
}

const CORS_HEADERS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
];

fn cors_headers(r: &Response) -> Vec<(&str, &str)> {
    CORS_HEADERS
        .iter()
        .filter_map(|h| r.header(h).map(|v| (*h, v)))
        .collect()
}

/// `enable-cors` alone: ingress-nginx's defaults. A preflight is answered 204 by Weir (the
/// upstream sees nothing); a GET reaches the upstream and its response carries the headers.
#[test]
fn cors_defaults_preflight_and_simple_request() {
    let case = Case::start(&[("enable-cors", "true")]);
    let pre = case.send(
        "OPTIONS",
        &[
            ("Origin", "https://origin.test"),
            ("Access-Control-Request-Method", "PUT"),
        ],
    );
    assert_eq!(pre.status, 204, "{pre:?}");
    assert_eq!(
        cors_headers(&pre),
        [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            (
                "access-control-allow-methods",
                "GET, PUT, POST, DELETE, PATCH, OPTIONS"
            ),
            (
                "access-control-allow-headers",
                "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
            ),
            ("access-control-max-age", "1728000"),
        ]
    );
    assert_eq!(pre.header("content-length"), Some("0"));
    assert_eq!(
        case.app.received(),
        0,
        "the preflight never reaches the upstream"
    );

    let get = case.send("GET", &[("Origin", "https://origin.test")]);
    assert_eq!(get.server(), "app");
    assert_eq!(case.app.received(), 1);
    assert_eq!(get.header("access-control-allow-origin"), Some("*"));
    assert_eq!(get.header("access-control-max-age"), Some("1728000"));
}

/// Every CORS annotation set; a wildcard origin matches one label of its domain, and an origin
/// that is not listed gets no CORS header at all (its preflight goes to the upstream, as any
/// `OPTIONS`).
#[test]
fn cors_values_and_wildcard_origins() {
    let case = Case::start(&[
        ("enable-cors", "true"),
        (
            "cors-allow-origin",
            "https://origin.test:8443, https://*.example.com",
        ),
        ("cors-allow-methods", "GET, POST"),
        ("cors-allow-headers", "X-Foo, X-Bar"),
        ("cors-expose-headers", "X-Expose"),
        ("cors-allow-credentials", "false"),
        ("cors-max-age", "60"),
    ]);
    let expected = |origin: &'static str| {
        vec![
            ("access-control-allow-origin", origin),
            ("access-control-allow-methods", "GET, POST"),
            ("access-control-allow-headers", "X-Foo, X-Bar"),
            ("access-control-expose-headers", "X-Expose"),
            ("access-control-max-age", "60"),
        ]
    };
    for origin in ["https://sub.example.com", "https://origin.test:8443"] {
        let pre = case.send(
            "OPTIONS",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
            ],
        );
        assert_eq!(pre.status, 204, "{origin}: {pre:?}");
        assert_eq!(cors_headers(&pre), expected(origin), "{origin}");
        let get = case.send("GET", &[("Origin", origin)]);
        assert_eq!(get.server(), "app");
        assert_eq!(cors_headers(&get), expected(origin), "{origin}");
    }
    assert_eq!(case.app.received(), 2, "only the GETs reached the upstream");
    for origin in [
        "https://example.com",
        "https://a.b.example.com",
        "http://sub.example.com",
        "https://origin.test",
        "https://sub.example.com.evil.test",
    ] {
        let get = case.send("GET", &[("Origin", origin)]);
        assert_eq!(get.server(), "app", "{origin}");
        assert_eq!(cors_headers(&get), [], "{origin}");
        let pre = case.send(
            "OPTIONS",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
            ],
        );
        assert_eq!(pre.echo()["method"], "OPTIONS", "{origin}: proxied");
        assert_eq!(cors_headers(&pre), [], "{origin}");
    }
    let get = case.send("GET", &[]);
    assert_eq!(cors_headers(&get), [], "no Origin");
}

/// Without `enable-cors` the other CORS annotations do nothing.
#[test]
fn cors_needs_enable_cors() {
    let case = Case::start(&[("cors-allow-origin", "*"), ("enable-cors", "false")]);
    let pre = case.send(
        "OPTIONS",
        &[
            ("Origin", "https://origin.test"),
            ("Access-Control-Request-Method", "PUT"),
        ],
    );
    assert_eq!(pre.echo()["method"], "OPTIONS");
    assert_eq!(cors_headers(&pre), []);
    assert_eq!(case.app.received(), 1);
}

/// `server-tokens` is off, as ingress-nginx's default: Weir's own answers (a CORS preflight, the
/// built-in 404, a 502 for an upstream that refuses connections) name no server, and never
/// `Pingora`.
#[test]
fn weir_names_no_server() {
    let case = Case::start(&[("enable-cors", "true")]);
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "down", &[closed_addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "down", &[("down.test", "Prefix", "/", "down")]),
    );
    let down = Weir::start(m.path(), &[]);
    let bad_gateway = down.get("down.test", "/");
    assert_eq!(bad_gateway.status, 502, "{bad_gateway:?}");
    let not_found = case.weir.get("unknown.test", "/");
    assert_eq!(not_found.status, 404);
    let preflight = case.send("OPTIONS", &[("Origin", "https://o.test")]);
    assert_eq!(preflight.status, 204);
    for r in [bad_gateway, not_found, preflight] {
        assert_eq!(r.header("server"), None, "{r:?}");
    }
}

/// A GET of `/` on `host` with `headers`: status, lowercase headers and the raw body (chunked
/// transfer coding removed), for bodies that are not text.
fn get_bytes(
    addr: std::net::SocketAddr,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET /data HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        let (mut out, mut rest) = (Vec::new(), &body[..]);
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 4 + size..];
        }
        body = out;
    }
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `use-gzip: "true"` (ConfigMap): the upstream's JSON is gzipped, streamed, with
/// `Vary: Accept-Encoding`, when the client accepts gzip; sent as it is otherwise, and when its
/// type is not in `gzip-types`. By default nothing is compressed.
#[test]
fn gzip_from_the_configmap() {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "web", &[("gzip.test", "Prefix", "/", "app")]),
    );
    m.write("cfg.yaml", &configmap("ns", "cfg", &[]));
    let weir = Weir::start(m.path(), &["--configmap", "ns/cfg"]);
    // Long enough for the default gzip-min-length (256 bytes).
    let padding = "x".repeat(400);
    let accept = [("Accept-Encoding", "gzip"), ("X-Padding", padding.as_str())];
    let (status, headers, body) = get_bytes(weir.http, "gzip.test", &accept);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), None, "off by default");
    assert!(body.starts_with(b"{"));

    m.write("cfg.yaml", &configmap("ns", "cfg", &[("use-gzip", "true")]));
    let (headers, body) = weir.poll(Duration::from_secs(10), "gzip to be on", || {
        let (status, headers, body) = get_bytes(weir.http, "gzip.test", &accept);
        assert_eq!(status, 200);
        (header(&headers, "content-encoding") == Some("gzip")).then_some((headers, body))
    });
    assert_eq!(header(&headers, "vary"), Some("accept-encoding"));
    assert_eq!(header(&headers, "content-length"), None, "streamed");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut json)
        .unwrap();
    let echo: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(echo["server"], "app");
    assert_eq!(echo["headers"]["x-padding"], padding.as_str());

    let (_, headers, body) = get_bytes(weir.http, "gzip.test", &accept[1..]);
    assert_eq!(header(&headers, "content-encoding"), None, "not accepted");
    assert!(body.starts_with(b"{"));

    m.write(
        "cfg.yaml",
        &configmap(
            "ns",
            "cfg",
            &[("use-gzip", "true"), ("gzip-min-length", "100000")],
        ),
    );
    weir.poll(Duration::from_secs(10), "gzip-min-length to apply", || {
        let (_, headers, body) = get_bytes(weir.http, "gzip.test", &accept);
        (header(&headers, "content-encoding").is_none() && body.starts_with(b"{")).then_some(())
    });

    m.write(
        "cfg.yaml",
        &configmap(
            "ns",
            "cfg",
            &[("use-gzip", "true"), ("gzip-types", "text/plain")],
        ),
    );
    weir.poll(Duration::from_secs(10), "gzip-types to apply", || {
        let (_, headers, body) = get_bytes(weir.http, "gzip.test", &accept);
        (header(&headers, "content-encoding").is_none() && body.starts_with(b"{")).then_some(())
    });
}
