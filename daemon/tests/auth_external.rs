//! External authentication (`auth-url` and companions, the ConfigMap's `global-auth-url`,
//! `no-auth-locations`) through the real `weir` binary, after ingress-nginx's
//! `test/e2e/annotations/auth.go` and `test/e2e/settings/global_external_auth.go`: a real auth
//! service (a small HTTP server in this file that records what it is asked and answers by path),
//! a real echo upstream that counts what reaches it, real clients.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use weir_loadtest::echo::EchoServer;

/// One request the auth service received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The test auth service. It answers by what the request path contains:
/// `allow`: 200 with `X-User: alice`, `X-Groups: admins` and a cookie; `token`: 200 with
/// `X-User: bob` when `Authorization: Bearer ok` was sent, else 401; `cached`: 200 (no cookie);
/// `401`: 401 with `WWW-Authenticate`; `403`: 403; `404`: 404; `slow`: no answer for 30 s.
struct AuthServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
}

impl AuthServer {
    fn start() -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, count) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                std::thread::spawn(move || serve(conn, &log));
            }
        });
        AuthServer {
            addr,
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests whose target contains `needle`.
    fn seen_for(&self, needle: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.target.contains(needle))
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn serve(conn: TcpStream, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let target = words.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let seen = Seen {
            method,
            target,
            headers,
        };
        log.lock().unwrap().push(seen.clone());
        let (status, extra) = if seen.target.contains("slow") {
            std::thread::sleep(Duration::from_secs(30));
            return;
        } else if seen.target.contains("allow") {
            (
                "200 OK",
                "X-User: alice\r\nX-Groups: admins\r\nSet-Cookie: auth=1; Path=/\r\n",
            )
        } else if seen.target.contains("token") {
            if seen.header("authorization") == Some("Bearer ok") {
                ("200 OK", "X-User: bob\r\n")
            } else {
                ("401 Unauthorized", "Set-Cookie: tried=1\r\n")
            }
        } else if seen.target.contains("cached") {
            ("200 OK", "X-User: carol\r\n")
        } else if seen.target.contains("401") {
            (
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"sso\"\r\nSet-Cookie: tried=1\r\n",
            )
        } else if seen.target.contains("403") {
            ("403 Forbidden", "")
        } else {
            ("404 Not Found", "")
        };
        let close = seen.header("connection") == Some("close");
        let resp = format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: 2\r\n{}\r\nok",
            if close { "Connection: close\r\n" } else { "" }
        );
        if out.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// An Ingress `ns/name` for `host` `path` (Prefix) → Service `svc`, with annotations.
fn ingress_ann(
    name: &str,
    host: &str,
    path: &str,
    svc: &str,
    annotations: &[(&str, &str)],
) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| {
            format!(
                "    nginx.ingress.kubernetes.io/{k}: {}\n",
                serde_json::to_string(v).unwrap()
            )
        })
        .collect();
    let ing = ingress("ns", name, &[(host, "Prefix", path, svc)]);
    if ann.is_empty() {
        return ing;
    }
    edit(
        &ing,
        &format!("metadata: {{name: {name}, namespace: ns}}\n"),
        &format!("metadata:\n  name: {name}\n  namespace: ns\n  annotations:\n{ann}"),
    )
}

fn echo_header(r: &Response, name: &str) -> Option<String> {
    r.echo()["headers"][name].as_str().map(str::to_string)
}

/// Weir on `ingresses` (plus the echo Service `app`) with `extra` flags.
fn start(app: &EchoServer, ingresses: &[String], extra: &[&str]) -> (Manifests, Weir) {
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("ing.yaml", &ingresses.join("---\n"));
    let w = Weir::start(m.path(), extra);
    (m, w)
}

/// 2xx lets the request through with the listed auth headers (one the answer lacks is removed,
/// not taken from the client) and the auth cookie; 401 (with its `WWW-Authenticate`) and 403
/// go back to the client; any other status answers 500; the auth service is asked with the
/// headers ingress-nginx sends; `auth-method`, a templated `auth-url` and a malformed one.
#[test]
fn auth_answers_decide_and_the_sub_request_carries_the_original_request() {
    let auth = AuthServer::start();
    let app = EchoServer::start("app").unwrap();
    let ings = [
        ingress_ann(
            "allow",
            "allow.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/allow")),
                ("auth-response-headers", "X-User, X-Groups, X-Missing"),
            ],
        ),
        ingress_ann(
            "d401",
            "d401.test",
            "/",
            "app",
            &[("auth-url", &auth.url("/401"))],
        ),
        ingress_ann(
            "d403",
            "d403.test",
            "/",
            "app",
            &[("auth-url", &auth.url("/403"))],
        ),
        ingress_ann(
            "d404",
            "d404.test",
            "/",
            "app",
            &[("auth-url", &auth.url("/404"))],
        ),
        ingress_ann(
            "post",
            "post.test",
            "/",
            "app",
            &[
                (
                    "auth-url",
                    &auth.url("/allow/post?h=$host&u=$escaped_request_uri"),
                ),
                ("auth-method", "POST"),
                ("auth-request-redirect", "https://$host/back"),
            ],
        ),
        ingress_ann(
            "bad",
            "bad.test",
            "/",
            "app",
            &[("auth-url", "auth.example/check")],
        ),
        ingress_ann(
            "nocm",
            "nocm.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/allow")),
                ("auth-proxy-set-headers", "missing"),
            ],
        ),
        ingress_ann(
            "othns",
            "othns.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/allow")),
                ("auth-proxy-set-headers", "other/hdrs"),
            ],
        ),
    ];
    let (_m, w) = start(&app, &ings, &[]);

    let r = w.get_with(
        "allow.test",
        "/p?q=1",
        &[
            ("X-Client", "c"),
            ("X-Missing", "forged"),
            ("X-User", "forged"),
        ],
    );
    assert_eq!(r.server(), "app");
    assert_eq!(echo_header(&r, "x-user").as_deref(), Some("alice"), "{r:?}");
    assert_eq!(echo_header(&r, "x-groups").as_deref(), Some("admins"));
    assert_eq!(
        echo_header(&r, "x-missing"),
        None,
        "not taken from the client"
    );
    assert_eq!(r.header("set-cookie"), Some("auth=1; Path=/"), "{r:?}");
    let s = auth
        .seen_for("/allow")
        .pop()
        .expect("the auth service was asked");
    assert_eq!(s.method, "GET");
    assert_eq!(s.target, "/allow");
    assert_eq!(s.header("x-original-url"), Some("http://allow.test/p?q=1"));
    assert_eq!(s.header("x-original-method"), Some("GET"));
    assert_eq!(s.header("x-sent-from"), Some("nginx-ingress-controller"));
    assert_eq!(s.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(s.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(s.header("x-auth-request-redirect"), Some("/p?q=1"));
    assert_eq!(s.header("host"), Some("127.0.0.1"), "Host of the auth URL");
    assert_eq!(s.header("x-client"), Some("c"), "original headers go along");
    assert_eq!(s.header("content-length"), None, "no body");

    let served = app.received();
    let r = w.get("d401.test", "/");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"sso\""));
    assert_eq!(
        r.header("set-cookie"),
        None,
        "only with auth-always-set-cookie"
    );
    assert_eq!(w.get("d403.test", "/").status, 403);
    assert_eq!(
        w.get("d404.test", "/").status,
        500,
        "another status is an error"
    );
    assert_eq!(
        app.received(),
        served,
        "no denied request reached the upstream"
    );

    let r = w.get("post.test", "/a%20b?x=1");
    assert_eq!(r.server(), "app");
    let s = auth.seen_for("/allow/post").pop().unwrap();
    assert_eq!(s.method, "POST");
    assert_eq!(s.target, "/allow/post?h=post.test&u=%2Fa%2520b%3Fx%3D1");
    assert_eq!(s.header("x-original-uri"), Some("/a%20b?x=1"));
    assert_eq!(s.header("x-scheme"), Some("http"));
    assert_eq!(
        s.header("x-auth-request-redirect"),
        Some("https://post.test/back")
    );

    let r = w.get("bad.test", "/");
    assert_eq!(r.status, 503, "a malformed auth-url fails closed: {r:?}");
    w.wait_log("auth.example/check");
    // auth-proxy-set-headers naming a missing ConfigMap, or one in another namespace.
    assert_eq!(w.get("nocm.test", "/").status, 503);
    w.wait_log("ConfigMap ns/missing not found");
    assert_eq!(w.get("othns.test", "/").status, 503);
    w.wait_log("not in the Ingress's namespace");
}

/// `auth-signin`: a 401 becomes a 302 to the sign-in URL with `rd=` the original URL escaped
/// (or the `auth-signin-redirect-param`), with the auth service's cookie; with
/// `auth-always-set-cookie` a 401 carries the cookie too; a request the auth service accepts
/// goes through.
#[test]
fn signin_redirects_with_the_original_url() {
    let auth = AuthServer::start();
    let app = EchoServer::start("app").unwrap();
    let ings = [
        ingress_ann(
            "signin",
            "signin.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/token")),
                ("auth-signin", "http://login.test/auth/start"),
            ],
        ),
        ingress_ann(
            "orig",
            "orig.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/token")),
                ("auth-signin", "http://$host/auth/start"),
                ("auth-signin-redirect-param", "orig"),
            ],
        ),
        ingress_ann(
            "always",
            "always.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/401")),
                ("auth-always-set-cookie", "true"),
            ],
        ),
    ];
    let (_m, w) = start(&app, &ings, &[]);
    let r = w.get("signin.test", "/?a=b&c=d");
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("http://login.test/auth/start?rd=http://signin.test%2F%3Fa%3Db%26c%3Dd")
    );
    assert_eq!(r.header("set-cookie"), Some("tried=1"));
    let r = w.get("orig.test", "/?a=b&c=d");
    assert_eq!(
        r.header("location"),
        Some("http://orig.test/auth/start?orig=http://orig.test%2F%3Fa%3Db%26c%3Dd"),
        "{r:?}"
    );
    let r = w.get_with("signin.test", "/", &[("Authorization", "Bearer ok")]);
    assert_eq!(r.server(), "app");
    let r = w.get("always.test", "/");
    assert_eq!(
        (r.status, r.header("set-cookie")),
        (401, Some("tried=1")),
        "{r:?}"
    );
}

/// The auth service down (a closed port) or not answering within `proxy-read-timeout` (1 s):
/// 500, within a bound, and the request never reaches the upstream.
#[test]
fn auth_service_down_or_slow_answers_500() {
    let auth = AuthServer::start();
    let app = EchoServer::start("app").unwrap();
    let down = format!("http://{}/check", closed_addr());
    let ings = [
        ingress_ann("down", "down.test", "/", "app", &[("auth-url", &down)]),
        ingress_ann(
            "slow",
            "slow.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/slow")),
                ("proxy-read-timeout", "1"),
            ],
        ),
    ];
    let (_m, w) = start(&app, &ings, &[]);
    assert_eq!(w.get("down.test", "/").status, 500);
    let started = Instant::now();
    let r = w.get("slow.test", "/");
    let took = started.elapsed();
    assert_eq!(r.status, 500, "{r:?}");
    assert!(
        took >= Duration::from_millis(900),
        "waited for the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "bounded by the read timeout: {took:?}"
    );
    assert_eq!(app.received(), 0);
}

/// `auth-cache-key` + `auth-cache-duration`: N requests with the same key within the duration
/// ask the auth service once; another key asks again; a status not listed is not cached.
#[test]
fn cached_answers_are_reused_within_the_duration() {
    let auth = AuthServer::start();
    let app = EchoServer::start("app").unwrap();
    let ings = [
        ingress_ann(
            "cache",
            "cache.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/cached")),
                ("auth-cache-key", "$http_x_api_key"),
                ("auth-cache-duration", "200 202 10m"),
                ("auth-response-headers", "X-User"),
            ],
        ),
        ingress_ann(
            "nocache",
            "nocache.test",
            "/",
            "app",
            &[
                ("auth-url", &auth.url("/403")),
                ("auth-cache-key", "fixed"),
                ("auth-cache-duration", "200 10m"),
            ],
        ),
    ];
    let (_m, w) = start(&app, &ings, &[]);
    for _ in 0..5 {
        let r = w.get_with("cache.test", "/", &[("X-Api-Key", "k1")]);
        assert_eq!(echo_header(&r, "x-user").as_deref(), Some("carol"), "{r:?}");
    }
    assert_eq!(auth.seen_for("/cached").len(), 1, "one auth request for 5");
    w.get_with("cache.test", "/", &[("X-Api-Key", "k2")]);
    assert_eq!(auth.seen_for("/cached").len(), 2, "another key asks again");
    for _ in 0..3 {
        assert_eq!(w.get("nocache.test", "/").status, 403);
    }
    assert_eq!(auth.seen_for("/403").len(), 3, "403 is not a cached status");
}

/// The ConfigMap's `global-auth-url` covers every Ingress without its own `auth-url`, except
/// one with `enable-global-auth: "false"` and paths under `no-auth-locations` (default
/// `/.well-known/acme-challenge`); an Ingress's own `auth-url` wins.
#[test]
fn global_auth_from_the_configmap_with_exemptions() {
    let auth = AuthServer::start();
    let app = EchoServer::start("app").unwrap();
    let ings = [
        ingress_ann("covered", "g.test", "/", "app", &[]),
        ingress_ann(
            "exempt",
            "free.test",
            "/",
            "app",
            &[("enable-global-auth", "false")],
        ),
        ingress_ann("acme", "g.test", "/.well-known/acme-challenge", "app", &[]),
        ingress_ann(
            "own",
            "own.test",
            "/",
            "app",
            &[("auth-url", &auth.url("/allow"))],
        ),
    ];
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("ing.yaml", &ings.join("---\n"));
    m.write(
        "cfg.yaml",
        &configmap(
            "weir",
            "cfg",
            &[
                ("global-auth-url", &auth.url("/token")),
                ("global-auth-response-headers", "X-User"),
            ],
        ),
    );
    let w = Weir::start(m.path(), &["--configmap", "weir/cfg"]);
    assert_eq!(w.get("g.test", "/").status, 401);
    let r = w.get_with("g.test", "/", &[("Authorization", "Bearer ok")]);
    assert_eq!(echo_header(&r, "x-user").as_deref(), Some("bob"), "{r:?}");
    let asked = auth.seen().len();
    assert_eq!(w.get("free.test", "/").server(), "app");
    assert_eq!(
        w.get("g.test", "/.well-known/acme-challenge/t").server(),
        "app"
    );
    assert_eq!(auth.seen().len(), asked, "exempt requests ask nobody");
    let r = w.get("own.test", "/");
    assert_eq!(
        echo_header(&r, "x-user"),
        None,
        "global response headers do not apply"
    );
    assert_eq!(r.server(), "app");
    assert_eq!(auth.seen_for("/allow").len(), 1);

    // no-auth-locations set: the default is replaced.
    m.write(
        "cfg.yaml",
        &configmap(
            "weir",
            "cfg",
            &[
                ("global-auth-url", &auth.url("/token")),
                ("no-auth-locations", "/public"),
            ],
        ),
    );
    w.poll(Duration::from_secs(10), "the new no-auth-locations", || {
        (w.get("g.test", "/.well-known/acme-challenge/t").status == 401).then_some(())
    });
}

/// An HTTPS auth URL (Weir's own HTTPS listener, with its self-signed fallback certificate, in
/// front of the auth service), and `auth-proxy-set-headers`: the ConfigMap's headers go to the
/// auth service.
#[test]
fn https_auth_url_and_headers_from_a_configmap() {
    let auth = AuthServer::start();
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &format!(
            "{}---\n{}",
            service("ns", "app", &[app.addr()]),
            service("ns", "authsvc", &[auth.addr])
        ),
    );
    m.write(
        "hdrs.yaml",
        &configmap(
            "ns",
            "auth-hdrs",
            &[("X-Tenant", "blue"), ("X-Asked-For", "$host")],
        ),
    );
    let mut w = Weir::start(m.path(), &[]);
    let tls_url = format!("https://127.0.0.1:{}/tls-auth/allow", w.https.port());
    let ings = [
        ingress_ann("authsvc", "", "/tls-auth", "authsvc", &[]),
        ingress_ann(
            "tls",
            "tls.test",
            "/",
            "app",
            &[
                ("auth-url", &tls_url),
                ("auth-response-headers", "X-User"),
                ("auth-proxy-set-headers", "auth-hdrs"),
            ],
        ),
    ];
    m.write("ing.yaml", &ings.join("---\n"));
    let r = w.poll(Duration::from_secs(10), "the HTTPS auth route", || {
        let r = w.get("tls.test", "/");
        (r.status == 200).then_some(r)
    });
    assert_eq!(echo_header(&r, "x-user").as_deref(), Some("alice"), "{r:?}");
    let s = auth.seen_for("/tls-auth/allow").pop().unwrap();
    assert_eq!(s.header("x-tenant"), Some("blue"));
    assert_eq!(s.header("x-asked-for"), Some("tls.test"));
    assert_eq!(s.header("x-original-url"), Some("http://tls.test/"));
    // The upstream of the HTTPS route saw TLS: it was asked through Weir's HTTPS listener.
    assert_eq!(s.header("x-forwarded-proto"), Some("https"), "{s:?}");
    w.kill();
}

/// `auth-keepalive`: sub-requests reuse idle connections to the auth service; without it (the
/// default) each sub-request has its own connection, closed after the answer.
#[test]
fn keepalive_reuses_connections_to_the_auth_service() {
    let pooled = AuthServer::start();
    let fresh = AuthServer::start();
    let app = EchoServer::start("app").unwrap();
    let ings = [
        ingress_ann(
            "pooled",
            "pooled.test",
            "/",
            "app",
            &[
                ("auth-url", &pooled.url("/allow")),
                ("auth-keepalive", "4"),
                ("auth-keepalive-timeout", "30"),
            ],
        ),
        ingress_ann(
            "fresh",
            "fresh.test",
            "/",
            "app",
            &[("auth-url", &fresh.url("/allow"))],
        ),
    ];
    let (_m, w) = start(&app, &ings, &[]);
    for _ in 0..5 {
        assert_eq!(w.get("pooled.test", "/").server(), "app");
        assert_eq!(w.get("fresh.test", "/").server(), "app");
    }
    assert_eq!(pooled.seen().len(), 5);
    assert_eq!(
        pooled.connections.load(Ordering::SeqCst),
        1,
        "one reused connection"
    );
    assert!(pooled
        .seen()
        .iter()
        .all(|s| s.header("connection").is_none()));
    assert_eq!(fresh.seen().len(), 5);
    assert_eq!(
        fresh.connections.load(Ordering::SeqCst),
        5,
        "a connection each"
    );
    assert!(fresh
        .seen()
        .iter()
        .all(|s| s.header("connection") == Some("close")));
}
