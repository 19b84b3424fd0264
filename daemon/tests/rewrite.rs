//! Rewrites, regex paths and redirects through the real `weir` binary, ported from
//! ingress-nginx's e2e tests (`rewrite.go`, `approot.go`, `redirect.go`, `upstreamvhost.go`,
//! `xforwardedprefix.go`): the status, the `Location`, and the path and headers the upstream saw.

mod support;

use support::*;
use weir_loadtest::echo::EchoServer;

/// An Ingress `name` for `host` with one `ImplementationSpecific` path to Service `app`.
fn ingress_with(name: &str, host: &str, path: &str, annotations: &[(&str, &str)]) -> String {
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
      - path: \"{path}\"
        pathType: ImplementationSpecific
        backend: {{service: {{name: app, port: {{number: 80}}}}}}
"
    )
}

struct Case {
    weir: Weir,
    _app: EchoServer,
    _manifests: Manifests,
}

fn start(ingresses: &[String]) -> Case {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("ing.yaml", &ingresses.join("---\n"));
    let weir = Weir::start(m.path(), &[]);
    Case {
        weir,
        _app: app,
        _manifests: m,
    }
}

/// The path (and query) the upstream received.
fn upstream_path(r: &Response) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    r.echo()["path"].as_str().unwrap().to_string()
}

/// The documented example: `/something(/|$)(.*)` with `rewrite-target: /$2`; the capture
/// groups decide the upstream path and the query string is kept.
#[test]
fn rewrite_target_with_captures_as_documented() {
    let case = start(&[ingress_with(
        "rewrite",
        "rewrite.bar.com",
        "/something(/|$)(.*)",
        &[("use-regex", "true"), ("rewrite-target", "/$2")],
    )]);
    let path = |p| upstream_path(&case.weir.get("rewrite.bar.com", p));
    assert_eq!(path("/something"), "/");
    assert_eq!(path("/something/"), "/");
    assert_eq!(path("/something/new"), "/new");
    assert_eq!(path("/something/new/deeper?a=1&b=2"), "/new/deeper?a=1&b=2");
    assert_eq!(path("/SomeThing/case"), "/case", "case-insensitive");
    // Anchored at the start, `(/|$)` after the word: neither of these matches.
    assert_eq!(
        case.weir.get("rewrite.bar.com", "/somethingelse").status,
        404
    );
    assert_eq!(case.weir.get("rewrite.bar.com", "/x/something").status, 404);
}

/// ingress-nginx's "should use ~* location modifier if regex annotation is present": one Ingress
/// with `use-regex` puts every path of the host in regex mode, including another Ingress's, and
/// the longest path wins; another host keeps literal paths. Only the annotated Ingress rewrites.
#[test]
fn use_regex_on_one_ingress_makes_the_whole_host_regex() {
    let case = start(&[
        ingress_with("plain", "regex.bar.com", "/foo", &[]),
        ingress_with(
            "regex",
            "regex.bar.com",
            "/foo/bar/[a-z]{3}",
            &[("use-regex", "true"), ("rewrite-target", "/new/backend")],
        ),
        ingress_with("literal", "literal.bar.com", "/foo/bar/[a-z]{3}", &[]),
    ]);
    let get = |host, p| case.weir.get(host, p);
    assert_eq!(
        upstream_path(&get("regex.bar.com", "/foo/bar/bar")),
        "/new/backend"
    );
    assert_eq!(
        upstream_path(&get("regex.bar.com", "/FOO/bar/abc?q")),
        "/new/backend?q"
    );
    // `/foo` of the other Ingress: a regex prefix now (not element-wise), no rewrite.
    assert_eq!(
        upstream_path(&get("regex.bar.com", "/foo/bar/12")),
        "/foo/bar/12"
    );
    assert_eq!(upstream_path(&get("regex.bar.com", "/foobar")), "/foobar");
    // The other host is not in regex mode: the path is literal text.
    assert_eq!(get("literal.bar.com", "/foo/bar/abc").status, 404);
    assert_eq!(
        upstream_path(&get("literal.bar.com", "/foo/bar/[a-z]{3}")),
        "/foo/bar/[a-z]{3}"
    );
}

/// `x-forwarded-prefix` is sent with a rewrite; `upstream-vhost` replaces the `Host` sent
/// upstream.
#[test]
fn x_forwarded_prefix_and_upstream_vhost() {
    let case = start(&[
        ingress_with(
            "prefix",
            "xfp.bar.com",
            "/foo(/|$)(.*)",
            &[("rewrite-target", "/$2"), ("x-forwarded-prefix", "/foo")],
        ),
        ingress_with(
            "vhost",
            "upstreamvhost.bar.com",
            "/",
            &[("upstream-vhost", "upstreamvhost.other.com")],
        ),
    ]);
    let r = case.weir.get("xfp.bar.com", "/foo/x");
    assert_eq!(upstream_path(&r), "/x");
    assert_eq!(r.echo()["headers"]["x-forwarded-prefix"], "/foo");
    let r = case.weir.get("upstreamvhost.bar.com", "/a");
    assert_eq!(upstream_path(&r), "/a");
    assert_eq!(r.echo()["host"], "upstreamvhost.other.com");
    assert_eq!(r.echo()["headers"].get("x-forwarded-prefix"), None);
}

/// `app-root` (302 from `/` only), `permanent-redirect` (301, or its code), `temporal-redirect`
/// (302, or its code, and it wins over `permanent-redirect`); nothing reaches the upstream.
#[test]
fn app_root_and_fixed_redirects() {
    let case = start(&[
        ingress_with("approot", "approot.bar.com", "/", &[("app-root", "/foo")]),
        ingress_with(
            "permanent",
            "permanent.bar.com",
            "/",
            &[("permanent-redirect", "https://www.google.com")],
        ),
        ingress_with(
            "permanent-code",
            "permanent-code.bar.com",
            "/",
            &[
                ("permanent-redirect", "https://www.google.com"),
                ("permanent-redirect-code", "308"),
            ],
        ),
        ingress_with(
            "temporal",
            "temporal.bar.com",
            "/",
            &[
                ("temporal-redirect", "http://t.example/x?y=1"),
                ("permanent-redirect", "https://www.google.com"),
            ],
        ),
        ingress_with(
            "temporal-code",
            "temporal-code.bar.com",
            "/",
            &[
                ("temporal-redirect", "http://t.example/"),
                ("temporal-redirect-code", "307"),
            ],
        ),
    ]);
    let redirect = |host, path| {
        let r = case.weir.get(host, path);
        (
            r.status,
            r.header("location").unwrap_or_default().to_string(),
        )
    };
    assert_eq!(
        redirect("approot.bar.com", "/"),
        (302, "http://approot.bar.com/foo".to_string())
    );
    assert_eq!(
        upstream_path(&case.weir.get("approot.bar.com", "/bar")),
        "/bar"
    );
    let google = "https://www.google.com".to_string();
    assert_eq!(
        redirect("permanent.bar.com", "/any/path"),
        (301, google.clone())
    );
    assert_eq!(redirect("permanent-code.bar.com", "/"), (308, google));
    assert_eq!(
        redirect("temporal.bar.com", "/a"),
        (302, "http://t.example/x?y=1".to_string())
    );
    assert_eq!(
        redirect("temporal-code.bar.com", "/a"),
        (307, "http://t.example/".to_string())
    );
    assert_eq!(
        case._app.received(),
        1,
        "only the app-root request for /bar reached it"
    );
}

/// A malformed value is reported naming the annotation and the value, and the rest of the
/// Ingress is served; a path the `regex` crate cannot compile (a lookahead) is refused with a
/// warning naming the Ingress and the path, the host's other paths still served.
#[test]
fn malformed_values_and_unsupported_regexes_are_reported() {
    let case = start(&[
        ingress_with(
            "bad-target",
            "bad.bar.com",
            "/",
            &[
                ("rewrite-target", "/x;return 200"),
                ("upstream-vhost", "a b"),
            ],
        ),
        ingress_with(
            "lookahead",
            "la.bar.com",
            "/(?=x)y",
            &[("use-regex", "true")],
        ),
        ingress_with("ok", "la.bar.com", "/ok", &[]),
    ]);
    let r = case.weir.get("bad.bar.com", "/a?b");
    assert_eq!(upstream_path(&r), "/a?b", "served, not rewritten");
    assert_eq!(r.echo()["host"], "bad.bar.com");
    let log = case.weir.log();
    assert!(
        log.contains("nginx.ingress.kubernetes.io/rewrite-target") && log.contains("/x;return 200"),
        "{log}"
    );
    assert!(
        log.contains("nginx.ingress.kubernetes.io/upstream-vhost"),
        "{log}"
    );
    assert!(
        log.contains("ns/lookahead") && log.contains("/(?=x)y"),
        "{log}"
    );
    assert_eq!(
        upstream_path(&case.weir.get("la.bar.com", "/ok/1")),
        "/ok/1"
    );
    assert_eq!(case.weir.get("la.bar.com", "/xy").status, 404);
}

/// `from-to-www-redirect` (ingress-nginx's `fromtowwwredirect.go`): `www.` of the host redirects
/// to it with `http-redirect-code` (308 by default), the URI kept without a trailing slash; the
/// apex of a `www.` host redirects to it; not when an Ingress names the other host.
#[test]
fn from_to_www_redirect_and_http_redirect_code() {
    let ingresses = [
        ingress_with(
            "www",
            "fromtowwwredirect.bar.com",
            "/foo",
            &[("from-to-www-redirect", "true")],
        ),
        ingress_with(
            "apex",
            "www.apex.bar.com",
            "/",
            &[("from-to-www-redirect", "true")],
        ),
        ingress_with(
            "taken",
            "taken.bar.com",
            "/",
            &[("from-to-www-redirect", "true")],
        ),
        ingress_with("taken-www", "www.taken.bar.com", "/", &[]),
    ];
    let case = start(&ingresses);
    let r = case.weir.get("www.fromtowwwredirect.bar.com", "/foo");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("http://fromtowwwredirect.bar.com:80/foo")
    );
    let r = case.weir.get("apex.bar.com", "/a/?q=1");
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("http://www.apex.bar.com:80/a/?q=1"))
    );
    let r = case.weir.get("www.apex.bar.com", "/");
    assert_eq!(r.echo()["host"], "www.apex.bar.com");
    assert_eq!(
        upstream_path(&case.weir.get("www.taken.bar.com", "/x")),
        "/x"
    );
    assert!(case.weir.log().contains("www.taken.bar.com"));
    drop(case);

    // The ConfigMap's http-redirect-code sets the status.
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("ing.yaml", &ingresses[0]);
    m.write(
        "cm.yaml",
        &configmap(
            "ingress-nginx",
            "ingress-nginx-controller",
            &[("http-redirect-code", "301")],
        ),
    );
    let weir = Weir::start(
        m.path(),
        &["--configmap", "ingress-nginx/ingress-nginx-controller"],
    );
    let r = weir.get("www.fromtowwwredirect.bar.com", "/foo/");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("http://fromtowwwredirect.bar.com:80/foo"))
    );
}

/// `server-alias` (ingress-nginx's `alias.go`): the aliases are served by the host's rules (of
/// every Ingress on the host), an alias another Ingress defines as its host is not taken, and an
/// unknown name still gets the default 404.
#[test]
fn server_alias_serves_the_host_rules() {
    let case = start(&[
        ingress_with(
            "alias",
            "foo",
            "/",
            &[("server-alias", "bar, Baz.test, taken")],
        ),
        ingress_with("second", "foo", "/second", &[]),
        ingress_with("taken", "taken", "/only", &[]),
    ]);
    for host in ["foo", "bar", "baz.test"] {
        let r = case.weir.get(host, "/x");
        assert_eq!(upstream_path(&r), "/x", "{host}");
        assert_eq!(r.echo()["host"], host);
        assert_eq!(
            upstream_path(&case.weir.get(host, "/second/y")),
            "/second/y"
        );
    }
    assert_eq!(case.weir.get("taken", "/x").status, 404, "not an alias");
    assert_eq!(case.weir.get("other", "/x").status, 404);
}
