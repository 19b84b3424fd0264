//! Canary Ingresses through the real `weir` binary, as ingress-nginx's
//! `test/e2e/annotations/canary.go`: `canary-by-header` (`always`/`never`, `-value`,
//! `-pattern`), `canary-by-cookie`, `canary-weight` (0, 100, 50 within statistical bounds,
//! `canary-weight-total`), the precedence header → cookie → weight, a canary without a main
//! Ingress serving nothing and never taking a path over, the main backend back once the canary
//! is removed, and the `canary` metric label and `$proxy_alternative_upstream_name`.

mod support;

use std::time::Duration;

use support::*;
use weir_loadtest::echo::EchoServer;

/// An Ingress `ns/name`: `host` `path` (Prefix) → Service `svc`, with annotations.
fn ing(name: &str, host: &str, path: &str, svc: &str, annotations: &[(&str, &str)]) -> String {
    let ing = ingress("ns", name, &[(host, "Prefix", path, svc)]);
    if annotations.is_empty() {
        return ing;
    }
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    edit(
        &ing,
        &format!("metadata: {{name: {name}, namespace: ns}}\n"),
        &format!("metadata:\n  name: {name}\n  namespace: ns\n  annotations:\n{ann}"),
    )
}

/// A main Ingress (`main` Service) and its canary (`canary` Service) for `host` `/`.
fn pair(host: &str, canary: &[(&str, &str)]) -> String {
    let mut annotations = vec![("canary", "true")];
    annotations.extend_from_slice(canary);
    [
        ing(&format!("{host}-main"), host, "/", "main", &[]),
        ing(&format!("{host}-canary"), host, "/", "canary", &annotations),
    ]
    .join("---\n")
}

/// The upstreams (`main`, `canary`) and a manifests folder with their Services.
struct Setup {
    _main: EchoServer,
    _canary: EchoServer,
    m: Manifests,
}

fn setup() -> Setup {
    let main = EchoServer::start("main").unwrap();
    let canary = EchoServer::start("canary").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &[
            service("ns", "main", &[main.addr()]),
            service("ns", "canary", &[canary.addr()]),
        ]
        .join("---\n"),
    );
    Setup {
        _main: main,
        _canary: canary,
        m,
    }
}

/// Which upstream answered a GET of `host` `/` with `headers`.
fn served(w: &Weir, host: &str, headers: &[(&str, &str)]) -> String {
    w.get_with(host, "/", headers).server()
}

/// How many of `n` requests went to the canary.
fn canary_share(w: &Weir, host: &str, n: usize) -> usize {
    (0..n)
        .filter(|_| match served(w, host, &[]).as_str() {
            "canary" => true,
            "main" => false,
            other => panic!("unexpected upstream {other}"),
        })
        .count()
}

/// Request headers of a case.
type Headers<'a> = &'a [(&'a str, &'a str)];

#[test]
fn header_cookie_and_their_precedence_over_the_weight() {
    let s = setup();
    s.m.write(
        "ing.yaml",
        &[
            pair("header.test", &[("canary-by-header", "X-Canary")]),
            pair(
                "value.test",
                &[
                    ("canary-by-header", "X-Canary"),
                    ("canary-by-header-value", "v2"),
                ],
            ),
            pair(
                "pattern.test",
                &[
                    ("canary-by-header", "X-Canary"),
                    ("canary-by-header-pattern", "^v[0-9]$"),
                    ("canary-by-cookie", "Canary"),
                ],
            ),
            pair("cookie.test", &[("canary-by-cookie", "Canary")]),
            pair(
                "precedence.test",
                &[
                    ("canary-by-header", "X-Canary"),
                    ("canary-by-cookie", "Canary"),
                    ("canary-weight", "100"),
                ],
            ),
        ]
        .join("---\n"),
    );
    let w = Weir::start(s.m.path(), &[]);
    let cases: &[(&str, Headers, &str)] = &[
        // canary-by-header: always / never; other values and no header fall through (weight 0).
        ("header.test", &[], "main"),
        ("header.test", &[("X-Canary", "always")], "canary"),
        ("header.test", &[("x-canary", "always")], "canary"),
        ("header.test", &[("X-Canary", "never")], "main"),
        ("header.test", &[("X-Canary", "Always")], "main"),
        ("header.test", &[("X-Other", "always")], "main"),
        // -value: only the value; `always` is no longer special.
        ("value.test", &[("X-Canary", "v2")], "canary"),
        ("value.test", &[("X-Canary", "always")], "main"),
        ("value.test", &[("X-Canary", "v22")], "main"),
        // -pattern: a match; anything else falls through to the cookie.
        ("pattern.test", &[("X-Canary", "v7")], "canary"),
        ("pattern.test", &[("X-Canary", "v77")], "main"),
        (
            "pattern.test",
            &[("X-Canary", "never"), ("Cookie", "Canary=always")],
            "canary",
        ),
        // canary-by-cookie: always / never, other values fall through.
        ("cookie.test", &[("Cookie", "a=1; Canary=always")], "canary"),
        ("cookie.test", &[("Cookie", "Canary=never")], "main"),
        ("cookie.test", &[("Cookie", "Canary=maybe")], "main"),
        ("cookie.test", &[("Cookie", "Other=always")], "main"),
        // header → cookie → weight (100).
        ("precedence.test", &[], "canary"),
        ("precedence.test", &[("Cookie", "Canary=never")], "main"),
        (
            "precedence.test",
            &[("X-Canary", "always"), ("Cookie", "Canary=never")],
            "canary",
        ),
        (
            "precedence.test",
            &[("X-Canary", "never"), ("Cookie", "Canary=always")],
            "main",
        ),
        (
            "precedence.test",
            &[("X-Canary", "other"), ("Cookie", "Canary=never")],
            "main",
        ),
    ];
    for (host, headers, want) in cases {
        assert_eq!(&served(&w, host, headers), want, "{host} {headers:?}");
    }
}

#[test]
fn weights_and_weight_total() {
    let s = setup();
    s.m.write(
        "ing.yaml",
        &[
            pair("w0.test", &[("canary-weight", "0")]),
            pair("w100.test", &[("canary-weight", "100")]),
            pair("w50.test", &[("canary-weight", "50")]),
            pair(
                "total.test",
                &[("canary-weight", "100"), ("canary-weight-total", "200")],
            ),
            pair(
                "all.test",
                &[("canary-weight", "1000"), ("canary-weight-total", "1000")],
            ),
        ]
        .join("---\n"),
    );
    let w = Weir::start(s.m.path(), &[]);
    assert_eq!(canary_share(&w, "w0.test", 200), 0);
    assert_eq!(canary_share(&w, "w100.test", 200), 200);
    assert_eq!(canary_share(&w, "all.test", 200), 200);
    // Binomial(1000, 1/2): σ ≈ 15.8, so 400..=600 is ±6.3σ (a flake every ~10^9 runs).
    let half = canary_share(&w, "w50.test", 1000);
    assert!((400..=600).contains(&half), "{half} of 1000");
    // 100 out of 200: Binomial(600, 1/2), σ ≈ 12.2; 200..=400 is ±8σ. Out of the default
    // total (100) every request would go to the canary.
    let total = canary_share(&w, "total.test", 600);
    assert!((200..=400).contains(&total), "{total} of 600");
}

#[test]
fn a_canary_never_takes_a_path_over_and_removing_it_restores_the_main_backend() {
    let s = setup();
    s.m.write(
        "main.yaml",
        &ing("shop-main", "shop.test", "/", "main", &[]),
    );
    s.m.write(
        "canary.yaml",
        &ing(
            "shop-canary",
            "shop.test",
            "/",
            "canary",
            &[("canary", "true"), ("canary-weight", "100")],
        ),
    );
    // No main Ingress for this host, nor for this path of shop.test.
    s.m.write(
        "orphans.yaml",
        &[
            ing(
                "lone-canary",
                "lone.test",
                "/",
                "canary",
                &[("canary", "true"), ("canary-weight", "100")],
            ),
            ing(
                "path-canary",
                "shop.test",
                "/other",
                "canary",
                &[("canary", "true"), ("canary-by-header", "X-Canary")],
            ),
        ]
        .join("---\n"),
    );
    let w = Weir::start(s.m.path(), &[]);
    assert_eq!(served(&w, "shop.test", &[]), "canary");
    assert_eq!(w.get("lone.test", "/").status, 404);
    assert_eq!(
        w.get_with("lone.test", "/", &[("X-Canary", "always")])
            .status,
        404
    );
    // /other is still the main Ingress's `/` rule, with its canary (weight 100) and not the
    // path-canary's header rule.
    assert_eq!(
        w.get_with("shop.test", "/other", &[("X-Canary", "never")])
            .server(),
        "canary"
    );
    w.wait_log("no main Ingress defines Prefix path / of host lone.test");
    w.wait_log("no main Ingress defines Prefix path /other of host shop.test");

    // The metric: the route's labels (main Ingress and Service), `canary` names the canary
    // backend; the access log's `$proxy_alternative_upstream_name` too.
    let labels = [
        ("host", "shop.test"),
        ("ingress", "shop-main"),
        ("service", "main"),
        ("path", "/"),
        ("status", "200"),
    ];
    w.poll(Duration::from_secs(5), "canary-labelled requests", || {
        let m = w.metrics();
        let with = |canary| {
            let mut l = labels.to_vec();
            l.push(("canary", canary));
            m.value("nginx_ingress_controller_requests", &l)
        };
        (with("ns-canary-80") == Some(2.0) && with("").is_none()).then_some(())
    });
    let line = w.wait_access_line("\"GET /other HTTP/1.1\"");
    assert!(line.contains(" [ns-main-80] [ns-canary-80] "), "{line}");

    // The canary goes: every request goes to the main backend again.
    s.m.remove("canary.yaml");
    w.poll(Duration::from_secs(10), "the main backend again", || {
        (served(&w, "shop.test", &[]) == "main").then_some(())
    });
    assert_eq!(canary_share(&w, "shop.test", 50), 0);
    w.poll(Duration::from_secs(5), "an unlabelled request", || {
        let mut l = labels.to_vec();
        l.push(("canary", ""));
        w.metrics()
            .value("nginx_ingress_controller_requests", &l)
            .filter(|&n| n >= 50.0)
    });
    w.wait_access_line("[ns-main-80] []");
}
