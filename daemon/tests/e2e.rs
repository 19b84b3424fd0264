//! End-to-end tests: the real `weir` binary on a manifests folder, real upstream servers on
//! loopback, real HTTP over TCP.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use weir_loadtest::echo::EchoServer;

#[test]
fn routes_by_host_and_path_and_sets_forwarding_headers() {
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    let c = EchoServer::start("c").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &[
            service("web", "a", &[a.addr()]),
            service("web", "b", &[b.addr()]),
            service("web", "c", &[c.addr()]),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress(
            "web",
            "site",
            &[
                ("foo.example.com", "Prefix", "/", "a"),
                ("foo.example.com", "Prefix", "/api", "b"),
                ("foo.example.com", "Exact", "/api/exact", "c"),
                ("*.example.com", "Prefix", "/", "c"),
                ("", "ImplementationSpecific", "/any", "b"),
            ],
        ),
    );
    let w = Weir::start(m.path(), &[]);

    assert_eq!(w.get("foo.example.com", "/").server(), "a");
    assert_eq!(
        w.get("foo.example.com", "/apix").server(),
        "a",
        "Prefix is element-wise"
    );
    assert_eq!(w.get("foo.example.com", "/api").server(), "b");
    assert_eq!(w.get("foo.example.com", "/api/").server(), "b");
    assert_eq!(w.get("foo.example.com", "/api/v1/x").server(), "b");
    assert_eq!(w.get("foo.example.com", "/api/exact").server(), "c");
    assert_eq!(
        w.get("foo.example.com", "/api/exact/").server(),
        "b",
        "Exact does not match a trailing slash"
    );
    assert_eq!(
        w.get("FOO.Example.com:8080", "/").server(),
        "a",
        "host is case-insensitive, port ignored"
    );
    assert_eq!(
        w.get("bar.example.com", "/x").server(),
        "c",
        "wildcard host"
    );
    assert_eq!(
        w.get("a.bar.example.com", "/anything").server(),
        "b",
        "wildcard covers one label only"
    );
    assert_eq!(
        w.get("other.test", "/anything/else").server(),
        "b",
        "host-less rule, string prefix"
    );
    assert_eq!(w.get("other.test", "/x").status, 404);
    assert_eq!(
        w.get("foo.example.com", "/a/../api/v1").server(),
        "b",
        "path normalized before matching"
    );
    assert_eq!(w.get("foo.example.com", "/../etc").status, 400);

    // What the upstream receives: original path and query, Host, ingress-nginx's headers.
    let r = w.get_with(
        "foo.example.com",
        "/api/v1/items?q=1&x=%2F",
        &[
            ("X-Request-ID", "req-123"),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
    );
    let e = r.echo();
    assert_eq!(e["server"], "b");
    assert_eq!(e["path"], "/api/v1/items?q=1&x=%2F");
    assert_eq!(e["host"], "foo.example.com");
    let h = &e["headers"];
    assert_eq!(h["x-request-id"], "req-123");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "client-sent X-Forwarded-For is not trusted by default"
    );
    assert_eq!(h["x-original-forwarded-for"], "203.0.113.9");
    assert_eq!(h["x-forwarded-host"], "foo.example.com");
    assert_eq!(h["x-forwarded-port"], w.http.port().to_string());
    assert_eq!(h["x-forwarded-proto"], "http");
    let generated = w.get("foo.example.com", "/").echo()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(generated.len(), 32);
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn default_backend_answers_404_and_empty_services_503() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &[service("ns", "a", &[a.addr()]), service("ns", "empty", &[])].join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress(
            "ns",
            "i",
            &[
                ("a.test", "Prefix", "/app", "a"),
                ("empty.test", "Prefix", "/", "empty"),
                ("missing.test", "Prefix", "/", "does-not-exist"),
            ],
        ),
    );
    let w = Weir::start(m.path(), &[]);
    let r = w.get("unknown.test", "/");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("404 Not Found"), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(
        w.get("a.test", "/other").status,
        404,
        "a known host does not fall through"
    );
    assert_eq!(w.get("a.test", "/app").server(), "a");
    let r = w.get("empty.test", "/");
    assert_eq!(r.status, 503);
    assert!(r.body.contains("503"), "{}", r.body);
    assert_eq!(w.get("missing.test", "/").status, 503);
}

#[test]
fn catch_all_and_per_ingress_default_backends() {
    let a = EchoServer::start("a").unwrap();
    let d = EchoServer::start("default").unwrap();
    let h = EchoServer::start("host-default").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &[
            service("ns", "a", &[a.addr()]),
            service("ns", "d", &[d.addr()]),
            service("ns", "h", &[h.addr()]),
        ]
        .join("---\n"),
    );
    m.write(
        "catchall.yaml",
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catchall, namespace: ns}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: d, port: {number: 80}}}
",
    );
    m.write(
        "site.yaml",
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site, namespace: ns}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: h, port: {name: http}}}
  rules:
  - host: site.test
    http:
      paths:
      - {path: /app, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}
",
    );
    m.write(
        "plain.yaml",
        &ingress("ns", "plain", &[("plain.test", "Prefix", "/app", "a")]),
    );
    let w = Weir::start(m.path(), &[]);
    assert_eq!(w.get("site.test", "/app/1").server(), "a");
    assert_eq!(w.get("site.test", "/other").server(), "host-default");
    assert_eq!(w.get("nothing.test", "/").server(), "default");
    assert_eq!(
        w.get("plain.test", "/other").status,
        404,
        "a defined host's unmatched paths do not go to the catch-all (as ingress-nginx)"
    );
}

#[test]
fn default_backend_service_flag() {
    let d = EchoServer::start("flag-default").unwrap();
    let m = Manifests::new();
    m.write("svc.yaml", &service("kube-system", "fallback", &[d.addr()]));
    let w = Weir::start(
        m.path(),
        &["--default-backend-service", "kube-system/fallback"],
    );
    assert_eq!(w.get("any.test", "/x").server(), "flag-default");
}

#[test]
fn round_robin_and_retry_past_dead_endpoints() {
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    let dead = closed_addr();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "rr", &[a.addr(), b.addr()]));
    m.write("svc2.yaml", &service("ns", "flaky", &[a.addr(), dead]));
    m.write(
        "ing.yaml",
        &ingress(
            "ns",
            "i",
            &[
                ("rr.test", "Prefix", "/", "rr"),
                ("flaky.test", "Prefix", "/", "flaky"),
            ],
        ),
    );
    let w = Weir::start(m.path(), &[]);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..10 {
        *seen.entry(w.get("rr.test", "/").server()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both endpoints used: {seen:?}");
    assert!(seen.values().all(|&n| n >= 3), "balanced: {seen:?}");
    for _ in 0..10 {
        assert_eq!(
            w.get("flaky.test", "/").server(),
            "a",
            "connect failures are retried on another endpoint"
        );
    }

    // Nothing to retry on: 502 with a page, as nginx.
    m.write("svc3.yaml", &service("ns", "dead", &[dead]));
    m.write(
        "ing2.yaml",
        &ingress("ns", "j", &[("dead.test", "Prefix", "/", "dead")]),
    );
    let r = w.poll(Duration::from_secs(3), "dead.test routed", || {
        Some(w.get("dead.test", "/")).filter(|r| r.status != 404)
    });
    assert_eq!(r.status, 502);
    assert!(r.body.contains("502 Bad Gateway"), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html"));
}

#[test]
fn ingress_class_filtering() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "a", &[a.addr()]));
    let other_class = edit(
        &ingress("ns", "other", &[("other.test", "Prefix", "/", "a")]),
        "ingressClassName: nginx",
        "ingressClassName: traefik",
    );
    let annotated = edit(
        &ingress("ns", "legacy", &[("legacy.test", "Prefix", "/", "a")]),
        "metadata: {name: legacy, namespace: ns}\nspec:\n  ingressClassName: nginx\n",
        "metadata:\n  name: legacy\n  namespace: ns\n  annotations: {kubernetes.io/ingress.class: nginx}\nspec:\n",
    );
    let unclassed = edit(
        &ingress("ns", "none", &[("none.test", "Prefix", "/", "a")]),
        "  ingressClassName: nginx\n",
        "",
    );
    m.write(
        "ing.yaml",
        &[other_class, annotated, unclassed].join("---\n"),
    );
    let w = Weir::start(m.path(), &[]);
    assert_eq!(
        w.get("other.test", "/").status,
        404,
        "other controller's class"
    );
    assert_eq!(w.get("legacy.test", "/").server(), "a", "legacy annotation");
    assert_eq!(
        w.get("none.test", "/").status,
        404,
        "no class, no --watch-ingress-without-class"
    );
    drop(w);
    let w = Weir::start(m.path(), &["--watch-ingress-without-class=true"]);
    assert_eq!(w.get("none.test", "/").server(), "a");
    assert_eq!(w.get("other.test", "/").status, 404);
}

#[test]
fn hot_reload_keeps_in_flight_requests_and_applies_within_two_seconds() {
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "s", &[a.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("reload.test", "Prefix", "/", "s")]),
    );
    let w = Arc::new(Weir::start(m.path(), &[]));
    assert_eq!(w.get("reload.test", "/").server(), "a");
    let before = a.received();

    // A slow request, in flight across the change.
    let slow = {
        let w = w.clone();
        std::thread::spawn(move || w.get("reload.test", "/slow?delay_ms=1500"))
    };
    poll(Duration::from_secs(5), "slow request to reach a", || {
        (a.received() > before).then_some(())
    });

    // Steady traffic during the change: every request must succeed.
    let load = Load::start(w.http, "reload.test", "/load", 200);

    let changed_at = Instant::now();
    m.write("svc.yaml", &service("ns", "s", &[b.addr()]));
    poll(
        Duration::from_secs(2),
        "traffic to move to b within 2 s",
        || (w.get("reload.test", "/").server() == "b").then_some(()),
    );
    let took = changed_at.elapsed();

    let r = slow.join().unwrap();
    assert_eq!(
        r.server(),
        "a",
        "the in-flight request completes on the old endpoint"
    );
    load.finish(1);
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A route added by a new file, then removed with it.
    m.write(
        "more.yaml",
        &ingress("ns", "more", &[("new.test", "Prefix", "/", "s")]),
    );
    poll(Duration::from_secs(2), "new host to be served", || {
        (w.get("new.test", "/").status == 200).then_some(())
    });
    m.remove("more.yaml");
    poll(Duration::from_secs(2), "removed host to 404", || {
        (w.get("new.test", "/").status == 404).then_some(())
    });
}

#[test]
fn broken_manifests_keep_the_last_good_configuration() {
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &[
            service("ns", "a", &[a.addr()]),
            service("ns", "b", &[b.addr()]),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("keep.test", "Prefix", "/", "a")]),
    );
    let w = Weir::start(m.path(), &[]);
    assert_eq!(w.get("keep.test", "/").server(), "a");
    let ok = ("controller_class", "k8s.io/ingress-nginx");
    assert_eq!(
        w.metrics().value(
            "nginx_ingress_controller_config_last_reload_successful",
            &[ok]
        ),
        Some(1.0)
    );

    // A YAML syntax error: the file's last good objects stay, the error names file and document.
    m.write(
        "ing.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i\n",
    );
    w.wait_log("ing.yaml: document 1");
    assert_eq!(w.get("keep.test", "/").server(), "a");
    poll(Duration::from_secs(5), "reload failure metric", || {
        (w.metrics().value(
            "nginx_ingress_controller_config_last_reload_successful",
            &[],
        ) == Some(0.0))
        .then_some(())
    });

    // A type error in one field: reported with the field path.
    m.write(
        "ing.yaml",
        &edit(
            &ingress("ns", "i", &[("keep.test", "Prefix", "/", "b")]),
            "number: 80",
            "number: eighty",
        ),
    );
    w.wait_log("spec.rules[0].http.paths[0].backend.service.port.number");
    assert_eq!(w.get("keep.test", "/").server(), "a");

    // A well-formed Ingress that fails validation keeps its previous version.
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("keep.test", "Sideways", "/", "b")]),
    );
    w.wait_log("unknown pathType \"Sideways\"");
    assert_eq!(w.get("keep.test", "/").server(), "a");
    assert_eq!(
        w.metrics().single(
            "weir_objects_rejected_total",
            &[("kind", "Ingress"), ("reason", "path_type")]
        ),
        Some(1.0)
    );
    // A rejected Ingress does not affect others.
    m.write(
        "other.yaml",
        &ingress("ns", "j", &[("other.test", "Prefix", "/", "b")]),
    );
    poll(Duration::from_secs(3), "other Ingress served", || {
        (w.get("other.test", "/").status == 200).then_some(())
    });
    assert_eq!(w.get("other.test", "/").server(), "b");

    // Fixed: applies, and the reload metric recovers.
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("keep.test", "Prefix", "/", "b")]),
    );
    poll(Duration::from_secs(3), "fixed Ingress applied", || {
        (w.get("keep.test", "/").server() == "b").then_some(())
    });
    assert_eq!(
        w.metrics().value(
            "nginx_ingress_controller_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
}

#[test]
fn yaml_bombs_are_rejected_without_holding_up_the_other_files() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "s", &[a.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("bomb.test", "Prefix", "/", "s")]),
    );
    // 200 KB of nested flow mappings: seconds of parsing for every scan, before limits.
    m.write(
        "bomb-nesting.yaml",
        &format!("{}x{}", "{a: ".repeat(50_000), "}".repeat(50_000)),
    );
    // "Billion laughs": 10^9 values once the aliases are expanded.
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    m.write("bomb-aliases.yaml", &laughs);

    let started = Instant::now();
    let w = Weir::start(m.path(), &[]);
    assert_eq!(w.get("bomb.test", "/").server(), "a");
    let ready = started.elapsed();
    assert!(ready < Duration::from_secs(5), "serving took {ready:?}");
    w.wait_log(
        "bomb-nesting.yaml: document 1: nested too deep: more than 64 levels of sequences and \
         mappings at line 1 column 257",
    );
    w.wait_log("bomb-aliases.yaml: document 1: aliases expand to too many values");
    assert_eq!(
        w.metrics().value(
            "weir_objects_rejected_total",
            &[("kind", "File"), ("reason", "limit")]
        ),
        Some(2.0)
    );

    // A change to another file applies within 2 s while the bombs stay.
    let changed_at = Instant::now();
    m.write(
        "ing.yaml",
        &ingress(
            "ns",
            "i",
            &[
                ("bomb.test", "Prefix", "/", "s"),
                ("after.test", "Prefix", "/", "s"),
            ],
        ),
    );
    w.poll(
        Duration::from_secs(2),
        "the change to apply within 2 s",
        || (w.get("after.test", "/").status == 200).then_some(()),
    );
    let took = changed_at.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(w.get("bomb.test", "/").server(), "a");
    assert_eq!(
        w.metrics().value(
            "nginx_ingress_controller_config_last_reload_successful",
            &[]
        ),
        Some(0.0),
        "the bombs are still there"
    );
    // Reported once, not again at every scan.
    assert_eq!(w.log().matches("bomb-nesting.yaml: document 1").count(), 1);
}

#[test]
fn request_metrics_have_ingress_nginx_names_and_labels() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("shop", "cart", &[a.addr()]));
    m.write(
        "ing.yaml",
        &ingress("shop", "store", &[("shop.test", "Prefix", "/cart", "cart")]),
    );
    let w = Weir::start(m.path(), &[]);
    let mut body_bytes = 0;
    for _ in 0..3 {
        let r = w.get("shop.test", "/cart/items");
        assert_eq!(r.status, 200);
        body_bytes += r.body.len();
    }
    assert_eq!(w.get("shop.test", "/nothing").status, 404);
    let labels = [
        ("status", "200"),
        ("method", "GET"),
        ("path", "/cart"),
        ("namespace", "shop"),
        ("ingress", "store"),
        ("service", "cart"),
        ("host", "shop.test"),
        ("canary", ""),
        ("controller_class", "k8s.io/ingress-nginx"),
    ];
    // Metrics are recorded after the response is sent: poll.
    poll(Duration::from_secs(5), "request counter", || {
        (w.metrics()
            .value("nginx_ingress_controller_requests", &labels)
            == Some(3.0))
        .then_some(())
    });
    let mtx = w.metrics();
    assert_eq!(
        mtx.value(
            "nginx_ingress_controller_request_duration_seconds_count",
            &labels
        ),
        Some(3.0)
    );
    assert_eq!(
        mtx.value(
            "nginx_ingress_controller_response_duration_seconds_count",
            &labels
        ),
        Some(3.0)
    );
    assert_eq!(
        mtx.value("nginx_ingress_controller_response_size_count", &labels),
        Some(3.0)
    );
    assert_eq!(
        mtx.value("nginx_ingress_controller_response_size_sum", &labels),
        Some(body_bytes as f64),
        "response bodies, in bytes"
    );
    // As ingress-nginx, a host's unmatched paths belong to the host's oldest Ingress (its
    // generated `/` location), answered by the default backend.
    poll(Duration::from_secs(5), "404 counted", || {
        w.metrics()
            .value(
                "nginx_ingress_controller_requests",
                &[
                    ("status", "404"),
                    ("host", "shop.test"),
                    ("namespace", "shop"),
                    ("ingress", "store"),
                    ("path", "/"),
                    ("service", ""),
                ],
            )
            .filter(|v| *v == 1.0)
    });
    assert_eq!(mtx.value("weir_ingresses_served", &[]), Some(1.0));
    assert_eq!(mtx.value("weir_snapshot_routes", &[]), Some(1.0));
    assert_eq!(
        mtx.value("weir_snapshot_build_duration_seconds_count", &[]),
        mtx.value("nginx_ingress_controller_success", &[]),
        "one build per configuration applied"
    );
}

/// The `hash=` of weir's last `configuration applied` log line, as the gauge shows it.
fn logged_hash(w: &Weir) -> Option<f64> {
    let log = w.log();
    let line = log.lines().rfind(|l| l.contains("configuration applied"))?;
    let hex = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("hash="))?;
    Some(u64::from_str_radix(hex, 16).ok()? as f64)
}

#[test]
fn config_hash_changes_with_the_configuration_and_only_then() {
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "s", &[a.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("hash.test", "Prefix", "/", "s")]),
    );
    let w = Weir::start(m.path(), &[]);
    let hash = || {
        w.metrics()
            .single("nginx_ingress_controller_config_hash", &[])
            .unwrap()
    };
    let applied = || {
        w.metrics()
            .single("nginx_ingress_controller_success", &[])
            .unwrap()
    };
    let first = hash();
    assert_eq!(Some(first), logged_hash(&w), "the gauge is the logged hash");

    // New endpoints: a new hash.
    m.write("svc.yaml", &service("ns", "s", &[b.addr()]));
    let second = w.poll(Duration::from_secs(3), "a new hash", || {
        Some(hash()).filter(|h| *h != first)
    });
    assert_eq!(w.get("hash.test", "/").server(), "b");
    assert_eq!(Some(second), logged_hash(&w));

    // A change that does not touch routes or endpoints (an Ingress of another class) is
    // applied, and keeps the hash.
    let before = applied();
    m.write(
        "other.yaml",
        &edit(
            &ingress("ns", "other", &[("other.test", "Prefix", "/", "s")]),
            "ingressClassName: nginx",
            "ingressClassName: traefik",
        ),
    );
    w.poll(Duration::from_secs(3), "the change to be applied", || {
        (applied() > before).then_some(())
    });
    assert_eq!(hash(), second, "same routes and endpoints, same hash");

    // Back to the first endpoints: the first hash again.
    m.write("svc.yaml", &service("ns", "s", &[a.addr()]));
    w.poll(Duration::from_secs(3), "the first hash back", || {
        (hash() == first).then_some(())
    });
    assert_eq!(w.get("hash.test", "/").server(), "a");
}

#[test]
fn healthz_and_unknown_admin_paths() {
    let m = Manifests::new();
    let w = Weir::start(m.path(), &[]);
    let r = get(w.admin, "x", "/healthz", &[]).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(get(w.admin, "x", "/nope", &[]).unwrap().status, 404);
    assert_eq!(
        w.get("x", "/").status,
        404,
        "empty folder: everything gets the default backend"
    );
}

#[test]
fn bad_flags_and_unreadable_folder_exit_non_zero_with_a_reason() {
    let w = Weir::spawn(std::path::Path::new("/nonexistent/weir-conf"), &[]);
    let (status, log) = w.wait_exit();
    assert!(!status.success());
    assert!(
        log.contains("cannot read manifests folder /nonexistent/weir-conf"),
        "{log}"
    );

    let m = Manifests::new();
    let w = Weir::spawn(m.path(), &["--default-backend-service", "no-slash"]);
    let (status, log) = w.wait_exit();
    assert!(!status.success());
    assert!(log.contains("expected namespace/name"), "{log}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--http-port", "not-a-port"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--http-port"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let w = Weir::spawn(m.path(), &["--http-port", &port]);
    let (status, log) = w.wait_exit();
    assert!(!status.success());
    assert!(log.contains("cannot listen on 127.0.0.1:"), "{log}");
}

#[test]
fn quickstart_manifests_route_as_the_readme_says() {
    // conf/quickstart points its EndpointSlice at 127.0.0.1:8080; use a free port instead.
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/quickstart");
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("port: 8080", &format!("port: {}", echo.addr().port()));
        m.write(&path.file_name().unwrap().to_string_lossy(), &text);
    }
    let w = Weir::start(m.path(), &[]);
    let r = w.get("127.0.0.1", "/hello");
    assert_eq!(r.server(), "echo");
    assert_eq!(r.echo()["path"], "/hello");
    assert_eq!(w.get("echo.localhost", "/api/v1").server(), "echo");
    assert_eq!(w.get("echo.localhost", "/x").status, 404);

    // The same through curl, as the README shows.
    let out = curl(&[
        "-s",
        "-H",
        "Host: echo.localhost",
        &format!("http://{}/api", w.http),
    ]);
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["server"], "echo");
    assert_eq!(
        body["headers"]["user-agent"]
            .as_str()
            .map(|u| u.starts_with("curl/")),
        Some(true)
    );
}

#[test]
fn configmap_options_set_timeouts_and_retries() {
    let a = EchoServer::start("a").unwrap();
    let dead = closed_addr();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &[
            service("ns", "slow", &[a.addr()]),
            service("ns", "flaky", &[a.addr(), dead]),
            service("ns", "ws", &[upgrade_upstream()]),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress(
            "ns",
            "i",
            &[
                ("slow.test", "Prefix", "/", "slow"),
                ("flaky.test", "Prefix", "/", "flaky"),
                ("ws.test", "Prefix", "/", "ws"),
            ],
        ),
    );
    let config = |tries: &str| {
        configmap(
            "weir",
            "weir-config",
            &[
                ("proxy-read-timeout", "1"),
                ("proxy-next-upstream-tries", tries),
                ("enable-opentelemetry", "true"),
            ],
        )
    };
    m.write("config.yaml", &config("1"));
    let w = Weir::start(
        m.path(),
        &["--configmap", "weir/weir-config", "--watch-namespace", "ns"],
    );

    let r = w.get("slow.test", "/?delay_ms=2500");
    assert_eq!(r.status, 504, "proxy-read-timeout 1s: {r:?}");
    assert!(r.body.contains("504 Gateway Time-out"));
    assert_eq!(w.get("slow.test", "/?delay_ms=10").server(), "a");

    // An upgraded connection on which the upstream stays silent for the read timeout is closed.
    let (mut s, head) = connect_upgrade(w.http, "ws.test", "/chat");
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert_echoes(&mut s);
    let idle = Instant::now();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut rest).expect("closed before the socket timeout");
    assert!(rest.is_empty());
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle.elapsed()
    );

    // One try: round robin sends every other request to the dead endpoint.
    let statuses: Vec<u16> = (0..6).map(|_| w.get("flaky.test", "/").status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        3,
        "{statuses:?}"
    );

    // A key Weir does not implement is reported once (log and counter) and has no effect.
    let reported = "ConfigMap option not applied configmap_key=enable-opentelemetry";
    w.wait_log(reported);
    let not_applied = || {
        w.metrics().single(
            "weir_objects_rejected_total",
            &[("kind", "ConfigMap"), ("reason", "option")],
        )
    };
    assert_eq!(not_applied(), Some(1.0));
    let r = w.get_with("slow.test", "/", &[("Accept-Encoding", "br")]);
    assert_eq!(r.server(), "a");
    assert_eq!(r.header("content-encoding"), None, "not compressed");

    m.write("config.yaml", &config("3"));
    w.poll(Duration::from_secs(3), "retries back on", || {
        (0..6)
            .all(|_| w.get("flaky.test", "/").status == 200)
            .then_some(())
    });
    assert_eq!(
        not_applied(),
        Some(1.0),
        "the same problem is not counted again"
    );
    assert_eq!(w.log().matches(reported).count(), 1, "nor logged again");

    // A value that cannot be used is reported too, and its key keeps the default (3 tries).
    m.write("config.yaml", &config("many"));
    w.poll(Duration::from_secs(3), "the bad value reported", || {
        (not_applied() == Some(2.0)).then_some(())
    });
    w.wait_log("configmap_key=proxy-next-upstream-tries");
    assert!(
        (0..6).all(|_| w.get("flaky.test", "/").status == 200),
        "retries at their default"
    );
}

#[test]
fn unsupported_authentication_annotations_fail_closed() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "a", &[a.addr()]));
    let protected = edit(
        &ingress("ns", "protected", &[("auth.test", "Prefix", "/", "a")]),
        "metadata: {name: protected, namespace: ns}\n",
        "metadata:\n  name: protected\n  namespace: ns\n  annotations:\n    nginx.ingress.kubernetes.io/auth-keepalive-share-vars: \"true\"\n",
    );
    let snippet = edit(
        &ingress("ns", "snippet", &[("snippet.test", "Prefix", "/", "a")]),
        "metadata: {name: snippet, namespace: ns}\n",
        "metadata:\n  name: snippet\n  namespace: ns\n  annotations:\n    nginx.ingress.kubernetes.io/configuration-snippet: \"more_set_headers 'X: y';\"\n",
    );
    m.write("ing.yaml", &[protected, snippet].join("---\n"));
    let w = Weir::start(m.path(), &[]);
    assert_eq!(
        w.get("auth.test", "/").status,
        503,
        "never served without its authentication"
    );
    w.wait_log("auth-keepalive-share-vars (authentication) is not supported");
    assert_eq!(w.get("snippet.test", "/").server(), "a");
    w.wait_log("configuration-snippet is refused");
}

#[test]
fn websocket_upgrades_pass_through() {
    use std::io::{Read, Write};
    let up = upgrade_upstream();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    let dead = closed_addr();
    m.write("svc.yaml", &service("ns", "ws", &[up]));
    m.write("svc2.yaml", &service("ns", "flaky", &[up, dead]));
    m.write("svc3.yaml", &service("ns", "dead", &[dead]));
    m.write(
        "ing.yaml",
        &ingress(
            "ns",
            "ws",
            &[
                ("ws.test", "Prefix", "/", "ws"),
                ("flaky.test", "Prefix", "/", "flaky"),
                ("dead.test", "Prefix", "/", "dead"),
            ],
        ),
    );
    let w = Weir::start(m.path(), &[]);

    let (mut s, head) = connect_upgrade(w.http, "ws.test", "/chat");
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert_echoes(&mut s);
    // The tunnel ends when the client leaves; the upstream sees it go.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    // An upstream whose 101 is waiting before the proxy reads the answer: every tunnel must
    // stay open (the answer and the end of the empty request body race inside the proxy).
    for _ in 0..40 {
        assert_tunnel(w.http, "ws.test", "/early");
    }

    // A refused upgrade is an ordinary response, body included, and the connection stays usable.
    let (mut s, head) = connect_upgrade(w.http, "ws.test", "/elsewhere");
    assert!(head.starts_with("http/1.1 403"), "{head}");
    let mut body = [0u8; 14];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"no chat here\r\n");
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\n\r\n")
        .unwrap();
    let mut next = [0u8; 12];
    s.read_exact(&mut next).unwrap();
    assert_eq!(&next, b"HTTP/1.1 403");

    // Connect failures are retried on another endpoint; with none left the answer is a 502.
    for _ in 0..6 {
        assert_tunnel(w.http, "flaky.test", "/chat");
    }
    let (_, head) = connect_upgrade(w.http, "dead.test", "/chat");
    assert!(head.starts_with("http/1.1 502"), "{head}");

    // Upgrades are counted like any request, under their own status.
    let switched = |host| {
        w.metrics()
            .value(
                "nginx_ingress_controller_requests",
                &[("host", host), ("status", "101")],
            )
            .unwrap_or(0.0)
    };
    w.poll(Duration::from_secs(5), "upgrades counted", || {
        (switched("ws.test") == 41.0 && switched("flaky.test") == 6.0).then_some(())
    });
    assert_eq!(
        w.metrics().value(
            "nginx_ingress_controller_requests",
            &[("host", "dead.test"), ("status", "502")]
        ),
        Some(1.0)
    );
}

#[test]
fn metrics_lookups_read_the_exposition_format_strictly() {
    let text = r#"# HELP req Requests.
# TYPE req counter
req{path="/a,b=c",host="x"} 2
req{path="/q\"uote\\d",host="y"} 3
# HELP lat Latency.
# TYPE lat histogram
lat_bucket{le="0.5"} 1
lat_bucket{le="+Inf"} 4
lat_sum 1.5
lat_count 4
"#;
    let m = Metrics(text.to_string());
    assert_eq!(m.value("req", &[("path", "/a,b=c")]), Some(2.0));
    assert_eq!(m.value("req", &[("path", "/q\"uote\\d")]), Some(3.0));
    assert_eq!(m.value("req", &[]), Some(5.0), "value() sums what matches");
    assert_eq!(m.value("req", &[("host", "z")]), None);
    assert_eq!(m.value("lat_count", &[]), Some(4.0));
    assert_eq!(m.value("lat_bucket", &[("le", "+Inf")]), Some(4.0));
    assert_eq!(m.single("req", &[("host", "y")]), Some(3.0));
    let many = std::panic::catch_unwind(|| Metrics(text.to_string()).single("req", &[]));
    assert!(many.is_err(), "single() refuses an ambiguous lookup");
    // One broken line is an error, not a missing series.
    let broken = format!("{text}req{{path=\"/c\" 1\n");
    let r = std::panic::catch_unwind(|| Metrics(broken).value("lat_count", &[]));
    assert!(r.is_err(), "malformed exposition text must fail the lookup");
}
