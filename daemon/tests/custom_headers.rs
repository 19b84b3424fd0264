//! Header annotations and keys, and custom error pages, through the real `weir` binary, after
//! ingress-nginx's e2e tests (`test/e2e/settings/add_headers.go`, `proxy_set_headers`,
//! `hide_headers`, `test/e2e/annotations/customheaders.go`, `customhttperrors.go`): response
//! headers seen by the client, request headers seen by the echo upstream, ConfigMaps changed
//! while Weir runs, and error responses replaced by a second echo server acting as the default
//! backend, with the `X-*` headers it was asked with.

mod support;

use std::time::Duration;

use support::*;
use weir_loadtest::echo::EchoServer;

/// An Ingress `ns/name` for `host` `/` → Service `svc`, with annotations.
fn ingress_ann(name: &str, host: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    let ing = ingress("ns", name, &[(host, "Prefix", "/", svc)]);
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

/// `add-headers`, `proxy-set-headers` and `hide-headers`: every response (Weir's own pages
/// too) gets the headers of one ConfigMap, every upstream request those of another (replacing the client's), the
/// upstream's `Content-Type` is hidden; edits of the referenced ConfigMap apply while Weir
/// runs; a reference to a missing ConfigMap is reported and adds nothing.
#[test]
fn configmap_headers_follow_their_configmaps() {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("ing.yaml", &ingress_ann("web", "h.test", "app", &[]));
    m.write(
        "resp.yaml",
        &configmap(
            "ns",
            "resp",
            &[("X-Frame-Options", "DENY"), ("X-Global", "one")],
        ),
    );
    m.write(
        "req.yaml",
        &configmap(
            "ns",
            "req",
            &[("X-Upstream", "u"), ("User-Agent", "weir-test")],
        ),
    );
    m.write(
        "cfg.yaml",
        &configmap(
            "weir",
            "cfg",
            &[
                ("add-headers", "ns/resp"),
                ("proxy-set-headers", "ns/req"),
                ("hide-headers", "Content-Type"),
            ],
        ),
    );
    let weir = Weir::start(m.path(), &["--configmap", "weir/cfg"]);
    let r = weir.get_with(
        "h.test",
        "/",
        &[("User-Agent", "curl"), ("X-Upstream", "client")],
    );
    assert_eq!(r.server(), "app");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{r:?}");
    assert_eq!(r.header("x-global"), Some("one"));
    assert_eq!(r.header("content-type"), None, "hidden: {r:?}");
    assert_eq!(echo_header(&r, "x-upstream").as_deref(), Some("u"));
    assert_eq!(echo_header(&r, "user-agent").as_deref(), Some("weir-test"));
    // Weir's own pages get the response headers too (nginx's more_set_headers).
    let page = weir.get("unknown.test", "/");
    assert_eq!(page.status, 404);
    assert_eq!(page.header("x-frame-options"), Some("DENY"), "{page:?}");

    // The referenced ConfigMap changes: the next responses carry the new value.
    m.write(
        "resp.yaml",
        &configmap("ns", "resp", &[("X-Global", "two")]),
    );
    weir.poll(Duration::from_secs(10), "the edited add-headers", || {
        let r = weir.get("h.test", "/");
        (r.header("x-global") == Some("two")).then_some(r)
    });
    let r = weir.get("h.test", "/");
    assert_eq!(r.header("x-frame-options"), None);

    // A missing ConfigMap: reported, nothing added.
    m.write(
        "cfg.yaml",
        &configmap("weir", "cfg", &[("add-headers", "ns/missing")]),
    );
    weir.wait_log("configmap_key=add-headers");
    weir.poll(Duration::from_secs(10), "add-headers dropped", || {
        let r = weir.get("h.test", "/");
        (r.status == 200 && r.header("x-global").is_none()).then_some(())
    });
}

/// `custom-headers`: the Ingress's ConfigMap sets response headers (over `add-headers`), `$`
/// is kept literally; names must be listed in `global-allowed-response-headers`, else the
/// Ingress answers 503, as for a missing ConfigMap.
#[test]
fn custom_headers_annotation_is_gated_by_the_allowed_list() {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write(
        "ing.yaml",
        &ingress_ann("web", "c.test", "app", &[("custom-headers", "ns/custom")]),
    );
    m.write(
        "missing.yaml",
        &ingress_ann(
            "other",
            "missing.test",
            "app",
            &[("custom-headers", "ns/none")],
        ),
    );
    m.write(
        "custom.yaml",
        &configmap(
            "ns",
            "custom",
            &[
                ("My-Custom-Header", "42"),
                ("My-Custom-Header-Dollar", "$remote_addr"),
            ],
        ),
    );
    m.write(
        "resp.yaml",
        &configmap(
            "ns",
            "resp",
            &[("My-Custom-Header", "global"), ("X-Global", "g")],
        ),
    );
    let allowed = [
        ("add-headers", "ns/resp"),
        (
            "global-allowed-response-headers",
            "My-Custom-Header,My-Custom-Header-Dollar",
        ),
    ];
    m.write("cfg.yaml", &configmap("weir", "cfg", &allowed));
    let weir = Weir::start(m.path(), &["--configmap", "weir/cfg"]);
    let r = weir.get("c.test", "/");
    assert_eq!(r.server(), "app");
    assert_eq!(r.header("my-custom-header"), Some("42"), "{r:?}");
    assert_eq!(r.header("my-custom-header-dollar"), Some("$remote_addr"));
    assert_eq!(r.header("x-global"), Some("g"));
    let refused = weir.get("missing.test", "/");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-global"), Some("g"), "{refused:?}");
    assert_eq!(app.received(), 1);

    // Not allowed any more: the Ingress is refused.
    m.write(
        "cfg.yaml",
        &configmap("weir", "cfg", &[("add-headers", "ns/resp")]),
    );
    weir.poll(Duration::from_secs(10), "the refused Ingress", || {
        (weir.get("c.test", "/").status == 503).then_some(())
    });
    weir.wait_log("global-allowed-response-headers");
}

/// Custom error pages: an upstream answer with a listed status, and an error Weir produces
/// itself (502), are replaced by the default backend's answer to a request carrying the
/// client's method and headers and the `X-*` headers; unlisted statuses pass; a Service
/// without endpoints goes to the `default-backend` Service with `X-Code: 503` and its path;
/// the ConfigMap's list uses `--default-backend-service`.
#[test]
fn custom_http_errors_are_served_by_the_default_backend() {
    let app = EchoServer::start("app").unwrap();
    let errors = EchoServer::start("errors").unwrap();
    let global = EchoServer::start("global").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("errors.yaml", &service("ns", "errors", &[errors.addr()]));
    m.write("global.yaml", &service("ns", "global", &[global.addr()]));
    m.write("dead.yaml", &service("ns", "dead", &[closed_addr()]));
    m.write("empty.yaml", &service("ns", "empty", &[]));
    let pages = [
        ("custom-http-errors", "503, 502"),
        ("default-backend", "errors"),
    ];
    m.write("ing.yaml", &ingress_ann("web", "e.test", "app", &pages));
    m.write(
        "dead-ing.yaml",
        &ingress_ann("dead", "dead.test", "dead", &pages),
    );
    m.write(
        "empty-ing.yaml",
        &ingress_ann("empty", "empty.test", "empty", &pages),
    );
    m.write(
        "plain.yaml",
        &ingress_ann("plain", "plain.test", "app", &[]),
    );
    m.write(
        "off.yaml",
        &ingress_ann(
            "off",
            "off.test",
            "app",
            &[
                ("custom-http-errors", "503"),
                ("default-backend", "errors"),
                ("disable-proxy-intercept-errors", "true"),
            ],
        ),
    );
    m.write(
        "cfg.yaml",
        &configmap("weir", "cfg", &[("custom-http-errors", "404")]),
    );
    let weir = Weir::start(
        m.path(),
        &[
            "--configmap",
            "weir/cfg",
            "--default-backend-service",
            "ns/global",
        ],
    );

    // The upstream's 503: the page comes from `errors`, asked for `/` with the original query.
    let r = weir.get_with(
        "e.test",
        "/api/x?status=503",
        &[
            ("Accept", "text/html"),
            ("X-Request-ID", "req-1"),
            ("X-Client", "c"),
        ],
    );
    assert_eq!(r.status, 503, "{r:?}");
    let echo = r.echo();
    assert_eq!(echo["server"], "errors", "{r:?}");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/?status=503");
    assert_eq!(echo["host"], "e.test");
    for (name, value) in [
        ("x-code", "503"),
        ("x-format", "text/html"),
        ("x-original-uri", "/api/x?status=503"),
        ("x-namespace", "ns"),
        ("x-ingress-name", "web"),
        ("x-service-name", "app"),
        ("x-service-port", "80"),
        ("x-request-id", "req-1"),
        ("x-client", "c"),
    ] {
        assert_eq!(
            echo_header(&r, name).as_deref(),
            Some(value),
            "{name}: {r:?}"
        );
    }
    assert_eq!(app.received(), 1, "the upstream was asked first");

    // Not listed for this Ingress (the annotation replaces the ConfigMap's 404): passed on.
    let r = weir.get("e.test", "/?status=404");
    assert_eq!((r.status, r.echo()["server"].as_str()), (404, Some("app")));

    // POST keeps its method (nginx's named location); the body is not sent again.
    let r = exchange(
        weir.http,
        b"POST /form?status=502 HTTP/1.1\r\nHost: e.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.echo()["server"].as_str()),
        (502, Some("errors"))
    );
    assert_eq!(r.echo()["method"], "POST");
    assert_eq!(r.echo()["body_len"], 0);

    // Weir's own 502 (the endpoint refuses connections): the backend's answer, whatever its
    // status (nginx's `error_page 502 = @custom_...`).
    let r = weir.get("dead.test", "/p");
    assert_eq!(r.echo()["server"], "errors", "{r:?}");
    assert_eq!(echo_header(&r, "x-code").as_deref(), Some("502"));
    assert_eq!(echo_header(&r, "x-service-name").as_deref(), Some("dead"));
    assert_eq!(echo_header(&r, "x-format"), None, "no Accept, no X-Format");

    // A Service without endpoints: its requests go to the `default-backend` Service.
    let r = weir.get("empty.test", "/some/path?q=1");
    assert_eq!(r.echo()["server"], "errors", "{r:?}");
    assert_eq!(r.echo()["path"], "/some/path?q=1");
    assert_eq!(echo_header(&r, "x-code").as_deref(), Some("503"));

    // disable-proxy-intercept-errors: the upstream's own 503 passes.
    let r = weir.get("off.test", "/?status=503");
    assert_eq!((r.status, r.echo()["server"].as_str()), (503, Some("app")));

    // The ConfigMap's list, for an Ingress without annotations: `--default-backend-service`.
    let r = weir.get("plain.test", "/missing?status=404");
    assert_eq!(
        (r.status, r.echo()["server"].as_str()),
        (404, Some("global")),
        "{r:?}"
    );
    assert_eq!(echo_header(&r, "x-code").as_deref(), Some("404"));
    assert_eq!(echo_header(&r, "x-ingress-name").as_deref(), Some("plain"));
    let r = weir.get("plain.test", "/?status=503");
    assert_eq!((r.status, r.echo()["server"].as_str()), (503, Some("app")));
}
