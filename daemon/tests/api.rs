//! API mode against a real Kubernetes API server (the project's test server in `testenv/`, on
//! the real `k8s.io/apiserver` library with etcd): the real `weir` binary, `kubectl apply`, and
//! loopback upstreams. These tests fail, never skip, when the test server cannot start.

mod support;

use std::time::{Duration, Instant};

use support::testenv::TestEnv;
use support::tls::*;
use support::*;
use weir_loadtest::echo::EchoServer;

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")
}

#[test]
fn routes_follow_api_objects_and_endpoint_changes() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    env.apply(&[namespace("shop"), INGRESS_CLASS.to_string()].join("---\n"));
    env.apply(&service_slices("shop", "web", &[&[a.addr()]]));
    env.apply(&ingress(
        "shop",
        "web",
        &[("shop.test", "Prefix", "/", "web")],
    ));
    let w = Weir::start_api(env.kubeconfig(), &[]);
    assert_eq!(
        w.get("shop.test", "/").server(),
        "a",
        "served after the first sync"
    );

    // Scale up: a second slice with another endpoint; traffic follows without errors.
    let load = Load::start(w.http, "shop.test", "/", 200);
    env.apply(&service_slices("shop", "web", &[&[a.addr()], &[b.addr()]]));
    poll(Duration::from_secs(5), "traffic to reach b", || {
        (w.get("shop.test", "/").server() == "b").then_some(())
    });
    // Scale down to b only.
    env.kubectl(&["-n", "shop", "delete", "endpointslice", "web-0"]);
    poll(Duration::from_secs(5), "a to leave the pool", || {
        (0..4)
            .all(|_| w.get("shop.test", "/").server() == "b")
            .then_some(())
    });
    load.finish(1);

    // Delete the Ingress: 404.
    env.kubectl(&["-n", "shop", "delete", "ingress", "web"]);
    poll(Duration::from_secs(5), "404 after delete", || {
        (w.get("shop.test", "/").status == 404).then_some(())
    });
}

#[test]
fn ingress_class_semantics_in_api_mode() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    env.apply(&[namespace("ns"), INGRESS_CLASS.to_string()].join("---\n"));
    env.apply(&service_slices("ns", "s", &[&[a.addr()]]));
    let other = edit(
        &ingress("ns", "other", &[("other.test", "Prefix", "/", "s")]),
        "ingressClassName: nginx",
        "ingressClassName: haproxy",
    );
    let unclassed = edit(
        &ingress("ns", "none", &[("none.test", "Prefix", "/", "s")]),
        "  ingressClassName: nginx\n",
        "",
    );
    let ours = ingress("ns", "ours", &[("ours.test", "Prefix", "/", "s")]);
    env.apply(&[other, unclassed, ours].join("---\n"));
    let w = Weir::start_api(env.kubeconfig(), &[]);
    assert_eq!(w.get("ours.test", "/").server(), "a");
    assert_eq!(w.get("other.test", "/").status, 404);
    assert_eq!(w.get("none.test", "/").status, 404);

    // Marking our IngressClass default makes class-less Ingresses ours.
    env.kubectl(&[
        "annotate",
        "ingressclass",
        "nginx",
        "ingressclass.kubernetes.io/is-default-class=true",
    ]);
    poll(Duration::from_secs(5), "class-less Ingress served", || {
        (w.get("none.test", "/").status == 200).then_some(())
    });
    drop(w);
    env.kubectl(&[
        "annotate",
        "ingressclass",
        "nginx",
        "ingressclass.kubernetes.io/is-default-class-",
    ]);
    let w = Weir::start_api(env.kubeconfig(), &["--watch-ingress-without-class"]);
    assert_eq!(w.get("none.test", "/").server(), "a");
    assert_eq!(w.get("other.test", "/").status, 404);
}

fn addresses(env: &TestEnv, ns: &str, name: &str) -> String {
    env.kubectl(&[
        "-n",
        ns,
        "get",
        "ingress",
        name,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ])
}

#[test]
fn publish_service_address_and_leader_election() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    env.apply(
        &[
            namespace("weir"),
            namespace("app"),
            INGRESS_CLASS.to_string(),
        ]
        .join("---\n"),
    );
    env.apply(
        "apiVersion: v1
kind: Service
metadata: {name: weir-slb, namespace: weir}
spec:
  type: LoadBalancer
  ports: [{name: http, port: 80}]
",
    );
    env.apply(&service_slices("app", "echo", &[&[a.addr()]]));
    env.apply(&ingress("app", "echo", &[("", "Prefix", "/", "echo")]));
    let other = edit(
        &ingress("app", "other", &[("x.test", "Prefix", "/", "echo")]),
        "ingressClassName: nginx",
        "ingressClassName: another",
    );
    env.apply(&other);

    let flags = [
        "--publish-service=weir/weir-slb",
        "--election-id=weir-leader",
        "--election-ttl=4s",
    ];
    let names = ["weir-0", "weir-1"];
    let mut replicas: Vec<Weir> = names
        .iter()
        .map(|n| Weir::start_api_as(env.kubeconfig(), n, "weir", &flags))
        .collect();

    // The cloud controller sets the SLB address: every served Ingress shows it.
    env.set_lb_address("weir", "weir-slb", "192.0.2.10");
    poll(
        Duration::from_secs(10),
        "Ingress status to show the SLB address",
        || (addresses(&env, "app", "echo") == "192.0.2.10").then_some(()),
    );
    let listing = env.kubectl(&["get", "ing", "-A"]);
    let line = listing
        .lines()
        .find(|l| l.contains(" echo "))
        .unwrap_or_default();
    assert!(
        line.contains("192.0.2.10"),
        "kubectl get ing shows the ADDRESS:\n{listing}"
    );
    assert_eq!(
        addresses(&env, "app", "other"),
        "",
        "another controller's Ingress is untouched"
    );

    // Exactly one leader, and it holds the Lease.
    let is_leader = |w: &Weir| {
        w.metrics().value(
            "nginx_ingress_controller_leader_election_status",
            &[("name", "weir-leader")],
        ) == Some(1.0)
    };
    let leader = poll(Duration::from_secs(10), "exactly one leader", || {
        let l: Vec<bool> = replicas.iter().map(is_leader).collect();
        (l.iter().filter(|x| **x).count() == 1).then(|| l.iter().position(|x| *x).unwrap())
    });
    let follower = 1 - leader;
    let holder = || {
        env.kubectl(&[
            "-n",
            "weir",
            "get",
            "lease",
            "weir-leader",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    };
    assert_eq!(holder(), names[leader]);

    // A change of address is written by the leader only.
    env.set_lb_address("weir", "weir-slb", "192.0.2.11");
    poll(
        Duration::from_secs(10),
        "status to follow the new address",
        || (addresses(&env, "app", "echo") == "192.0.2.11").then_some(()),
    );
    assert!(replicas[leader].log().contains("updated Ingress status"));
    assert!(
        !replicas[follower].log().contains("updated Ingress status"),
        "the follower wrote status:\n{}",
        replicas[follower].log()
    );

    // Kill the leader (no graceful release): the other replica takes over within the lease.
    let killed_at = Instant::now();
    replicas[leader].kill();
    poll(Duration::from_secs(15), "the follower to take over", || {
        is_leader(&replicas[follower]).then_some(())
    });
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "takeover took {took:?} with a 4 s lease"
    );
    assert_eq!(holder(), names[follower]);
    env.set_lb_address("weir", "weir-slb", "192.0.2.12");
    poll(
        Duration::from_secs(10),
        "the new leader to update status",
        || (addresses(&env, "app", "echo") == "192.0.2.12").then_some(()),
    );
}

#[test]
fn api_server_outage_keeps_serving_and_changes_flow_after() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    env.apply(&[namespace("ns"), INGRESS_CLASS.to_string()].join("---\n"));
    env.apply(&service_slices("ns", "s", &[&[a.addr()]]));
    env.apply(&ingress("ns", "i", &[("up.test", "Prefix", "/", "s")]));
    let w = Weir::start_api(env.kubeconfig(), &[]);
    assert_eq!(w.get("up.test", "/").server(), "a");

    // Under load, the API server goes away for 10 s.
    let load = Load::start(w.http, "up.test", "/", 200);
    env.stop_apiserver();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        assert_eq!(w.get("up.test", "/").server(), "a");
        std::thread::sleep(Duration::from_millis(200));
    }
    env.start_apiserver();
    load.finish(50);
    assert!(
        w.log().contains("watch failed"),
        "the outage was noticed:\n{}",
        w.log()
    );

    // Changes flow again.
    env.apply(&service_slices("ns", "s", &[&[b.addr()]]));
    poll(Duration::from_secs(30), "change after restart", || {
        (w.get("up.test", "/").server() == "b").then_some(())
    });

    // Compaction while weir is frozen: its watches resume from a compacted revision (410 Gone)
    // and must re-list.
    w.signal("STOP");
    env.stop_apiserver();
    env.start_apiserver();
    env.apply(&service_slices("ns", "s", &[&[a.addr()]]));
    env.apply(&ingress("ns", "j", &[("after.test", "Prefix", "/", "s")]));
    env.compact();
    w.signal("CONT");
    poll(Duration::from_secs(30), "re-list after compaction", || {
        (w.get("after.test", "/").status == 200 && w.get("up.test", "/").server() == "a")
            .then_some(())
    });
}

#[test]
fn rejected_ingress_gets_an_event_and_keeps_serving_others() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    env.apply(&[namespace("ns"), INGRESS_CLASS.to_string()].join("---\n"));
    env.apply(&service_slices("ns", "s", &[&[a.addr()]]));
    env.apply(&ingress("ns", "good", &[("good.test", "Prefix", "/", "s")]));
    let w = Weir::start_api(env.kubeconfig(), &[]);
    // The API server here does no validation, as a real one would for this field; Weir must.
    env.apply(&ingress(
        "ns",
        "bad",
        &[("bad.test", "Prefix", "relative/path", "s")],
    ));
    env.apply(&ingress(
        "ns",
        "missing",
        &[("missing.test", "Prefix", "/", "nope")],
    ));
    w.poll(
        Duration::from_secs(10),
        "Events for the bad and partial Ingresses",
        || {
            let events = env.kubectl(&[
                "-n",
                "ns",
                "get",
                "events",
                "-o",
                r#"jsonpath={range .items[*]}{.reason} {.involvedObject.name}: {.message}{"\n"}{end}"#,
            ]);
            (events.contains("Rejected bad: spec.rules[0].http.paths[0].path: invalid Prefix path \"relative/path\"")
                && events.contains("Warning missing: Service ns/nope not found"))
            .then_some(())
        },
    );
    assert_eq!(w.get("good.test", "/").server(), "a");
    assert_eq!(w.get("bad.test", "/").status, 404);
    assert_eq!(w.get("missing.test", "/").status, 503);
}

#[test]
fn not_ready_until_the_first_sync() {
    let env = TestEnv::start();
    env.stop_apiserver();
    let w = Weir::spawn_with(
        &["--kubeconfig".as_ref(), env.kubeconfig().as_os_str()],
        &[],
    );
    poll(Duration::from_secs(10), "admin listener", || {
        get(w.admin, "x", "/healthz", &[]).ok()
    });
    assert_eq!(get(w.admin, "x", "/healthz", &[]).unwrap().status, 503);
    env.start_apiserver();
    poll(
        Duration::from_secs(30),
        "ready after the API server comes up",
        || {
            get(w.admin, "x", "/healthz", &[])
                .ok()
                .filter(|r| r.status == 200)
        },
    );
}

#[test]
fn tls_secrets_from_the_api_are_served_and_rotated() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    env.apply(&[namespace("web"), INGRESS_CLASS.to_string()].join("---\n"));
    env.apply(&service_slices("web", "s", &[&[a.addr()]]));
    let one = TestCert::self_signed(&["site.test"]);
    env.apply(&tls_secret("web", "site-tls", &one));
    env.apply(&edit(
        &ingress("web", "site", &[("site.test", "Prefix", "/", "s")]),
        "spec:\n",
        "spec:\n  tls: [{hosts: [site.test], secretName: site-tls}]\n",
    ));
    let w = Weir::start_api(env.kubeconfig(), &[]);
    assert_eq!(served_certificate(w.https, Some("site.test")).der, one.der);
    let r = w.get("site.test", "/x");
    assert_eq!(r.status, 308, "ssl-redirect for a TLS host");

    let two = TestCert::self_signed(&["site.test"]);
    env.apply(&tls_secret("web", "site-tls", &two));
    w.poll(Duration::from_secs(10), "the rotated certificate", || {
        (served_certificate(w.https, Some("site.test")).der == two.der).then_some(())
    });
    assert_eq!(
        w.metrics().single(
            "nginx_ingress_controller_ssl_expire_time_seconds",
            &[("host", "site.test"), ("secret_name", "site-tls")]
        ),
        Some(two.not_after as f64)
    );
}

/// The ConfigMaps named by `add-headers` and the `custom-headers` annotation are watched like
/// the `--configmap`: editing one changes the responses without a restart.
#[test]
fn configmaps_of_headers_are_watched() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    env.apply(
        &[
            namespace("web"),
            namespace("weir"),
            INGRESS_CLASS.to_string(),
        ]
        .join("---\n"),
    );
    env.apply(&service_slices("web", "s", &[&[a.addr()]]));
    env.apply(&configmap("web", "resp", &[("X-Global", "one")]));
    env.apply(&configmap("web", "custom", &[("X-Team", "blue")]));
    env.apply(&configmap(
        "weir",
        "cfg",
        &[
            ("add-headers", "web/resp"),
            ("global-allowed-response-headers", "X-Team"),
        ],
    ));
    env.apply(&edit(
        &ingress("web", "site", &[("site.test", "Prefix", "/", "s")]),
        "metadata: {name: site, namespace: web}\n",
        "metadata:\n  name: site\n  namespace: web\n  annotations: {nginx.ingress.kubernetes.io/custom-headers: web/custom}\n",
    ));
    let w = Weir::start_api(env.kubeconfig(), &["--configmap", "weir/cfg"]);
    let r = w.get("site.test", "/");
    assert_eq!(r.server(), "a");
    assert_eq!(
        (r.header("x-global"), r.header("x-team")),
        (Some("one"), Some("blue")),
        "{r:?}"
    );

    env.apply(&configmap("web", "resp", &[("X-Global", "two")]));
    env.apply(&configmap("web", "custom", &[("X-Team", "red")]));
    w.poll(Duration::from_secs(10), "the edited ConfigMaps", || {
        let r = w.get("site.test", "/");
        (r.header("x-global") == Some("two") && r.header("x-team") == Some("red")).then_some(())
    });
}

fn lease_holder(env: &TestEnv, ns: &str, name: &str) -> String {
    env.kubectl(&[
        "-n",
        ns,
        "get",
        "lease",
        name,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

fn is_leader(w: &Weir, lease: &str) -> bool {
    w.metrics().single(
        "nginx_ingress_controller_leader_election_status",
        &[("name", lease)],
    ) == Some(1.0)
}

#[test]
fn sigterm_releases_the_lease_so_another_replica_leads_at_once() {
    let env = TestEnv::start();
    env.apply(&[namespace("weir"), INGRESS_CLASS.to_string()].join("---\n"));
    // A 20 s Lease: taken over by expiry it would change hands after 20 s; released, within a
    // retry period (5 s).
    let flags = ["--election-id=weir-leader", "--election-ttl=20s"];
    let names = ["weir-0", "weir-1"];
    let mut replicas: Vec<Option<Weir>> = names
        .iter()
        .map(|n| Some(Weir::start_api_as(env.kubeconfig(), n, "weir", &flags)))
        .collect();
    let leader = poll(Duration::from_secs(20), "exactly one leader", || {
        let l: Vec<bool> = replicas
            .iter()
            .map(|w| is_leader(w.as_ref().unwrap(), "weir-leader"))
            .collect();
        (l.iter().filter(|x| **x).count() == 1).then(|| l.iter().position(|x| *x).unwrap())
    });
    let follower = 1 - leader;
    assert_eq!(lease_holder(&env, "weir", "weir-leader"), names[leader]);

    let stopped_at = Instant::now();
    let (status, log) = replicas[leader].take().unwrap().terminate();
    assert!(status.success(), "SIGTERM is a clean exit: {status}\n{log}");
    let released = log
        .find("released leadership")
        .unwrap_or_else(|| panic!("the Lease was not released:\n{log}"));
    let stopping = log
        .find("SIGTERM received")
        .unwrap_or_else(|| panic!("the server was not told to stop:\n{log}"));
    assert!(
        released < stopping,
        "released before the services were stopped:\n{log}"
    );
    let new_leader = replicas[follower].as_ref().unwrap();
    poll(Duration::from_secs(15), "the other replica to lead", || {
        is_leader(new_leader, "weir-leader").then_some(())
    });
    let took = stopped_at.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "took over after {took:?}: by expiry, not release"
    );
    assert_eq!(lease_holder(&env, "weir", "weir-leader"), names[follower]);
}

/// `status.loadBalancer.ingress` of an Ingress, as JSON (`null` when unset).
fn lb_status(env: &TestEnv, ns: &str, name: &str) -> serde_json::Value {
    let ing: serde_json::Value =
        serde_json::from_str(&env.kubectl(&["-n", ns, "get", "ingress", name, "-o", "json"]))
            .unwrap();
    ing["status"]["loadBalancer"]["ingress"].clone()
}

const SLB: &str = "apiVersion: v1
kind: Service
metadata: {name: slb, namespace: infra}
spec:
  type: LoadBalancer
  ports: [{name: http, port: 80}]
";

#[test]
fn publish_status_address_wins_and_update_status_false_writes_nothing() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    env.apply(
        &[
            namespace("infra"),
            namespace("app"),
            INGRESS_CLASS.to_string(),
            SLB.to_string(),
        ]
        .join("---\n"),
    );
    env.set_lb_address("infra", "slb", "192.0.2.10");
    env.apply(&service_slices("app", "s", &[&[a.addr()]]));
    env.apply(&ingress("app", "one", &[("one.test", "Prefix", "/", "s")]));

    // Static addresses (an IP and a host name, sorted) win over the publish Service's.
    let w = Weir::start_api_as(
        env.kubeconfig(),
        "weir-0",
        "infra",
        &[
            "--publish-status-address=lb.example.com,192.0.2.20",
            "--publish-service=infra/slb",
            "--election-id=first",
        ],
    );
    let expected = serde_json::json!([{"ip": "192.0.2.20"}, {"hostname": "lb.example.com"}]);
    w.poll(Duration::from_secs(10), "the static addresses", || {
        (lb_status(&env, "app", "one") == expected).then_some(())
    });
    let (status, _) = w.terminate();
    assert!(status.success());

    // --update-status=false: a leader that writes nothing.
    let w = Weir::start_api_as(
        env.kubeconfig(),
        "weir-1",
        "infra",
        &[
            "--update-status=false",
            "--publish-status-address=192.0.2.30",
            "--election-id=second",
        ],
    );
    w.poll(Duration::from_secs(10), "weir-1 to lead", || {
        is_leader(&w, "second").then_some(())
    });
    env.apply(&ingress("app", "two", &[("two.test", "Prefix", "/", "s")]));
    w.poll(Duration::from_secs(10), "two.test served", || {
        (w.get("two.test", "/").status == 200).then_some(())
    });
    // One more change after it: the pass that served two.test (and would have written its
    // status) is over.
    env.apply(&ingress(
        "app",
        "three",
        &[("three.test", "Prefix", "/", "s")],
    ));
    w.poll(Duration::from_secs(10), "three.test served", || {
        (w.get("three.test", "/").status == 200).then_some(())
    });
    assert_eq!(lb_status(&env, "app", "two"), serde_json::Value::Null);
    assert_eq!(
        lb_status(&env, "app", "one"),
        expected,
        "status written before is left as it is"
    );
    assert!(!w.log().contains("updated Ingress status"), "{}", w.log());
}

#[test]
fn watch_namespace_limits_ingresses_but_not_the_publish_service_or_configmap() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    env.apply(
        &[
            namespace("team"),
            namespace("other"),
            namespace("infra"),
            INGRESS_CLASS.to_string(),
            SLB.to_string(),
            configmap("infra", "cfg", &[("proxy-read-timeout", "1")]),
        ]
        .join("---\n"),
    );
    env.set_lb_address("infra", "slb", "192.0.2.40");
    for (ns, upstream) in [("team", a.addr()), ("other", b.addr())] {
        env.apply(&service_slices(ns, "s", &[&[upstream]]));
        env.apply(&ingress(
            ns,
            "i",
            &[(&format!("{ns}.test"), "Prefix", "/", "s")],
        ));
    }
    let w = Weir::start_api(
        env.kubeconfig(),
        &[
            "--watch-namespace=team",
            "--publish-service=infra/slb",
            "--configmap=infra/cfg",
        ],
    );
    assert_eq!(w.get("team.test", "/").server(), "a");
    assert_eq!(
        w.get("other.test", "/").status,
        404,
        "outside the namespace"
    );

    // The publish Service is read outside --watch-namespace; other namespaces are not written.
    w.poll(Duration::from_secs(10), "team's Ingress status", || {
        (lb_status(&env, "team", "i") == serde_json::json!([{"ip": "192.0.2.40"}])).then_some(())
    });
    assert_eq!(lb_status(&env, "other", "i"), serde_json::Value::Null);

    // So is the ConfigMap, and its changes apply.
    assert_eq!(w.get("team.test", "/?delay_ms=2500").status, 504);
    env.apply(&configmap("infra", "cfg", &[("proxy-read-timeout", "10")]));
    w.poll(Duration::from_secs(10), "the longer read timeout", || {
        (w.get("team.test", "/?delay_ms=1500").status == 200).then_some(())
    });

    // Changes in another namespace are not seen (this one would send team.test/x to b).
    env.apply(&ingress("other", "j", &[("team.test", "Exact", "/x", "s")]));
    env.apply(&ingress("team", "k", &[("k.test", "Prefix", "/", "s")]));
    w.poll(Duration::from_secs(10), "team's new Ingress", || {
        (w.get("k.test", "/").status == 200).then_some(())
    });
    assert_eq!(w.get("team.test", "/x").server(), "a");
    assert_eq!(
        w.metrics().single("weir_ingresses_served", &[]),
        Some(2.0),
        "team/i and team/k only"
    );
}
