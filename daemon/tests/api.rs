//! API mode against a real Kubernetes API server (the project's test server in `testenv/`, on
//! the real `k8s.io/apiserver` library with etcd): the real `weir` binary, `kubectl apply`, and
//! loopback upstreams. These tests fail, never skip, when the test server cannot start.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::testenv::TestEnv;
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
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let load = {
        let (http, stop, failures) = (w.http, stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                if !matches!(get(http, "shop.test", "/", &[]), Ok(r) if r.status == 200) {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
            }
            n
        })
    };
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
    stop.store(true, Ordering::SeqCst);
    let sent = load.join().unwrap();
    assert!(sent > 0);
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "failed requests while endpoints changed"
    );

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
    let other = ingress("ns", "other", &[("other.test", "Prefix", "/", "s")])
        .replace("ingressClassName: nginx", "ingressClassName: haproxy");
    let unclassed = ingress("ns", "none", &[("none.test", "Prefix", "/", "s")])
        .replace("  ingressClassName: nginx\n", "");
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
    let other = ingress("app", "other", &[("x.test", "Prefix", "/", "echo")])
        .replace("ingressClassName: nginx", "ingressClassName: another");
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

    // A graceful stop releases the Lease.
    drop(replicas);
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
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let load = {
        let (http, stop, failures) = (w.http, stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                if !matches!(get(http, "up.test", "/", &[]), Ok(r) if r.status == 200) {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
            }
            n
        })
    };
    env.stop_apiserver();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        assert_eq!(w.get("up.test", "/").server(), "a");
        std::thread::sleep(Duration::from_millis(200));
    }
    env.start_apiserver();
    stop.store(true, Ordering::SeqCst);
    let sent = load.join().unwrap();
    assert!(sent > 50, "load ran ({sent} requests)");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed while the API server was down"
    );
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
    let pid = w.pid().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    env.stop_apiserver();
    env.start_apiserver();
    env.apply(&service_slices("ns", "s", &[&[a.addr()]]));
    env.apply(&ingress("ns", "j", &[("after.test", "Prefix", "/", "s")]));
    env.compact();
    signal("-CONT");
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

/// A `kubernetes.io/tls` Secret as JSON (the test API server does not merge `stringData`).
fn tls_secret_json(ns: &str, name: &str, host: &str) -> (String, Vec<u8>) {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    let params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_string(), ByteString(cert.pem().into_bytes())),
                (
                    "tls.key".to_string(),
                    ByteString(key.serialize_pem().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let mut v = serde_json::to_value(&secret).unwrap();
    v["apiVersion"] = "v1".into();
    v["kind"] = "Secret".into();
    (v.to_string(), cert.der().to_vec())
}

/// The DER of the certificate the HTTPS listener shows for `sni`, via `openssl s_client`.
fn served_der(https: std::net::SocketAddr, sni: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("served.pem");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {https} -servername {sni} </dev/null 2>/dev/null | openssl x509 -outform DER -out {}",
            pem.display()
        ))
        .status()
        .unwrap();
    assert!(out.success());
    std::fs::read(pem).unwrap()
}

#[test]
fn tls_secrets_from_the_api_are_served_and_rotated() {
    let env = TestEnv::start();
    let a = EchoServer::start("a").unwrap();
    env.apply(&[namespace("web"), INGRESS_CLASS.to_string()].join("---\n"));
    env.apply(&service_slices("web", "s", &[&[a.addr()]]));
    let (secret, der1) = tls_secret_json("web", "site-tls", "site.test");
    env.apply(&secret);
    env.apply(
        &ingress("web", "site", &[("site.test", "Prefix", "/", "s")]).replace(
            "spec:\n",
            "spec:\n  tls: [{hosts: [site.test], secretName: site-tls}]\n",
        ),
    );
    let w = Weir::start_api(env.kubeconfig(), &[]);
    assert_eq!(served_der(w.https, "site.test"), der1);
    let r = w.get("site.test", "/x");
    assert_eq!(r.status, 308, "ssl-redirect for a TLS host");

    let (secret, der2) = tls_secret_json("web", "site-tls", "site.test");
    env.apply(&secret);
    w.poll(Duration::from_secs(10), "the rotated certificate", || {
        (served_der(w.https, "site.test") == der2).then_some(())
    });
}
