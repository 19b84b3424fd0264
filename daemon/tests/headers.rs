//! CORS and response headers through the real `weir` binary, ported from ingress-nginx's e2e
//! assertions (`test/e2e/annotations/cors.go`): preflight requests answered by Weir with 204
//! and never reaching the upstream, CORS headers on the upstream's responses, wildcard origins
//! matched and not matched, and no `Server: Pingora`.

mod support;

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
