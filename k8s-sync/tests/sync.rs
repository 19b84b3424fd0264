//! Translation and sync: manifests → ObjectSet → Syncer → snapshot, checked through the matcher.

use std::net::SocketAddr;
use std::path::Path;

use k8s_sync::manifests::parse_manifest;
use k8s_sync::{ObjectRef, ObjectSet, SyncOptions, Syncer};
use proxy_core::{SnapshotHandle, Target};

fn objects(yaml: &str) -> ObjectSet {
    let mut set = ObjectSet::default();
    for o in parse_manifest(Path::new("test.yaml"), yaml, false).unwrap() {
        set.insert(o);
    }
    set
}

/// Apply and return, for (host, path), the endpoints of the chosen pool, or None for the 404.
struct Fixture {
    syncer: Syncer,
    handle: SnapshotHandle,
}

impl Fixture {
    fn new(opts: SyncOptions) -> Self {
        let handle = SnapshotHandle::new();
        Fixture {
            syncer: Syncer::new(opts, handle.clone(), None),
            handle,
        }
    }

    fn apply(&mut self, yaml: &str) -> k8s_sync::ApplyReport {
        self.syncer.apply(&objects(yaml), &[])
    }

    fn route(&self, host: &str, path: &str) -> Option<(String, Vec<SocketAddr>)> {
        let snap = self.handle.load();
        let r = snap.resolve(snap.find(host, path));
        match r.target {
            Target::Pool(p) => Some((
                format!("{}/{}", r.meta.ingress, p.key()),
                p.endpoints().to_vec(),
            )),
            Target::NotFound => None,
        }
    }
}

const CLASS: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn service_ports_map_to_endpoint_slice_ports_by_name() {
    let yaml = format!(
        "{CLASS}---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: admin, port: 9000, targetPort: admin}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-abc, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports:
- {{name: http, port: 8080}}
- {{name: admin, port: 9901}}
endpoints:
- addresses: [10.0.0.1]
  conditions: {{ready: true}}
- addresses: [10.0.0.2]
- addresses: [10.0.0.3]
  conditions: {{ready: false}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-v6, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv6
ports:
- {{name: http, port: 8080}}
endpoints:
- addresses: [\"fd00::1\"]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-fqdn, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}
addressType: FQDN
ports:
- {{name: http, port: 8080}}
endpoints:
- addresses: [example.com]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: other, namespace: other-ns, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports:
- {{name: http, port: 8080}}
endpoints:
- addresses: [10.9.9.9]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: shop, namespace: shop}}
spec:
  ingressClassName: nginx
  rules:
  - host: shop.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
      - {{path: /admin, pathType: Prefix, backend: {{service: {{name: web, port: {{name: admin}}}}}}}}
      - {{path: /bad-port, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 81}}}}}}}}
"
    );
    let mut f = Fixture::new(SyncOptions::default());
    let report = f.apply(&yaml);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let (key, eps) = f.route("shop.test", "/x").unwrap();
    assert_eq!(key, "shop/shop/web:80");
    assert_eq!(
        eps,
        vec![
            addr("10.0.0.1:8080"),
            addr("10.0.0.2:8080"),
            addr("[fd00::1]:8080")
        ],
        "ready (or unknown) endpoints only, from this namespace, IPv4 and IPv6"
    );
    let (key, eps) = f.route("shop.test", "/admin").unwrap();
    assert_eq!(key, "shop/shop/web:admin");
    assert_eq!(eps, vec![addr("10.0.0.1:9901"), addr("10.0.0.2:9901")]);
    let (_, eps) = f.route("shop.test", "/bad-port").unwrap();
    assert!(eps.is_empty(), "an unknown Service port answers 503");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.message == "Service shop/web has no port 81"),
        "{:?}",
        report.warnings
    );
}

fn ingress_at(name: &str, created: &str, backend: &str) -> String {
    format!(
        "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: ns, creationTimestamp: \"{created}\"}}
spec:
  ingressClassName: nginx
  rules:
  - host: same.test
    http:
      paths:
      - {{path: /p, pathType: Prefix, backend: {{service: {{name: {backend}, port: {{number: 80}}}}}}}}
"
    )
}

#[test]
fn the_oldest_ingress_wins_a_conflict() {
    let mut f = Fixture::new(SyncOptions::default());
    let older = ingress_at("zzz-old", "2024-01-01T00:00:00Z", "old");
    let newer = ingress_at("aaa-new", "2025-01-01T00:00:00Z", "new");
    let report = f.apply(&format!("{CLASS}{newer}{older}"));
    assert_eq!(f.route("same.test", "/p").unwrap().0, "zzz-old/ns/old:80");
    assert!(report
        .warnings
        .iter()
        .any(|w| w.ingress == "ns/aaa-new" && w.message.contains("older Ingress ns/zzz-old")));
}

fn classed(name: &str, meta_extra: &str, spec_extra: &str) -> String {
    format!(
        "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: ns
{meta_extra}spec:
{spec_extra}  rules:
  - host: {name}.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: s, port: {{number: 80}}}}}}}}
"
    )
}

#[test]
fn ingress_class_rules() {
    let ings = [
        classed("by-name", "", "  ingressClassName: nginx\n"),
        classed("other-class", "", "  ingressClassName: traefik\n"),
        classed("unknown-class", "", "  ingressClassName: missing\n"),
        classed(
            "annotated",
            "  annotations: {kubernetes.io/ingress.class: nginx}\n",
            "",
        ),
        classed(
            "annotated-other",
            "  annotations: {kubernetes.io/ingress.class: nginx-2}\n",
            "",
        ),
        classed("none", "", ""),
    ]
    .concat();
    let traefik = "---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec: {controller: traefik.io/ingress-controller}
";
    let served = |opts: SyncOptions, classes: &str| -> Vec<String> {
        let mut f = Fixture::new(opts);
        f.apply(&format!("{classes}{ings}"));
        let snap = f.handle.load();
        let mut hosts: Vec<String> = snap
            .table()
            .vhosts()
            .iter()
            .map(|v| v.name().trim_end_matches(".test").to_string())
            .collect();
        hosts.sort();
        hosts
    };
    assert_eq!(
        served(SyncOptions::default(), &format!("{CLASS}{traefik}")),
        ["annotated", "by-name"]
    );
    assert_eq!(
        served(
            SyncOptions {
                watch_ingress_without_class: true,
                ..Default::default()
            },
            &format!("{CLASS}{traefik}")
        ),
        ["annotated", "by-name", "none"]
    );
    let default_class = CLASS.replace(
        "metadata: {name: nginx}",
        "metadata: {name: nginx, annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}}",
    );
    assert_eq!(
        served(SyncOptions::default(), &default_class),
        ["annotated", "by-name", "none"]
    );
    // Without our IngressClass object, ingressClassName: nginx is not ours...
    assert_eq!(served(SyncOptions::default(), traefik), ["annotated"]);
    // ...unless --ingress-class-by-name.
    let by_name = CLASS.replace("k8s.io/ingress-nginx", "example.com/other");
    assert_eq!(
        served(
            SyncOptions {
                ingress_class_by_name: true,
                ..Default::default()
            },
            &by_name
        ),
        ["annotated", "by-name"]
    );
    // Another controller instance with its own class (the seed's "nginx-1").
    assert_eq!(
        served(
            SyncOptions {
                ingress_class: "nginx-2".into(),
                controller_class: "k8s.io/nginx-2".into(),
                ..Default::default()
            },
            &format!("{CLASS}{traefik}")
        ),
        ["annotated-other"]
    );
}

#[test]
fn a_rejected_ingress_keeps_its_last_valid_version_until_deleted() {
    let good = classed("site", "", "  ingressClassName: nginx\n");
    let bad = good.replace("pathType: Prefix", "pathType: Regex");
    let mut f = Fixture::new(SyncOptions::default());
    f.apply(&format!("{CLASS}{good}"));
    assert!(f.route("site.test", "/").is_some());

    let report = f.apply(&format!("{CLASS}{bad}"));
    assert_eq!(report.rejected.len(), 1);
    let (key, err) = &report.rejected[0];
    assert_eq!(key, "ns/site");
    assert_eq!(err.metric_label(), "path_type");
    assert!(
        err.to_string()
            .starts_with("spec.rules[0].http.paths[0].pathType"),
        "{err}"
    );
    assert!(
        f.route("site.test", "/").is_some(),
        "previous version still served"
    );

    let report = f.apply(CLASS);
    assert!(report.rejected.is_empty());
    assert!(
        f.route("site.test", "/").is_none(),
        "deleted Ingress is gone"
    );

    // A brand-new invalid Ingress has nothing to fall back to.
    let report = f.apply(&format!("{CLASS}{bad}"));
    assert_eq!(report.rejected.len(), 1);
    assert!(f.route("site.test", "/").is_none());
}

#[test]
fn validation_errors_name_the_field() {
    let cases = [
        ("    http:\n", "    http:\n", ""), // valid baseline
        (
            "- host: x.test",
            "- host: \"*.*.test\"",
            "spec.rules[0].host: invalid host",
        ),
        (
            "path: /,",
            "path: relative,",
            "spec.rules[0].http.paths[0].path: invalid Prefix path",
        ),
        (
            "{service: {name: s, port: {number: 80}}}",
            "{resource: {kind: Bucket, name: b}}",
            "spec.rules[0].http.paths[0].backend: only service backends",
        ),
        (
            "{service: {name: s, port: {number: 80}}}",
            "{service: {name: s}}",
            "spec.rules[0].http.paths[0].backend.service.port: a service backend needs",
        ),
    ];
    for (from, to, expected) in cases {
        let ing = classed("x", "", "  ingressClassName: nginx\n").replace(from, to);
        let mut f = Fixture::new(SyncOptions::default());
        let report = f.apply(&format!("{CLASS}{ing}"));
        if expected.is_empty() {
            assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        } else {
            assert_eq!(report.rejected.len(), 1, "{to}");
            let msg = report.rejected[0].1.to_string();
            assert!(msg.starts_with(expected), "{msg}");
        }
    }
    let empty = "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: empty}
spec: {ingressClassName: nginx}
";
    let mut f = Fixture::new(SyncOptions::default());
    let report = f.apply(&format!("{CLASS}{empty}"));
    assert_eq!(report.rejected[0].1.metric_label(), "empty");
}

#[test]
fn watch_namespace_and_default_backend_service() {
    let yaml = format!(
        "{CLASS}{}{}---
apiVersion: v1
kind: Service
metadata: {{name: fallback, namespace: infra}}
spec: {{ports: [{{name: http, port: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: fallback-1, namespace: infra, labels: {{kubernetes.io/service-name: fallback}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: [10.1.1.1]}}]
",
        classed("in-ns", "", "  ingressClassName: nginx\n"),
        classed("elsewhere", "", "  ingressClassName: nginx\n")
            .replace("namespace: ns", "namespace: other")
    );
    let mut f = Fixture::new(SyncOptions {
        watch_namespace: Some("ns".into()),
        ..Default::default()
    });
    f.apply(&yaml);
    assert!(f.route("in-ns.test", "/").is_some());
    assert!(f.route("elsewhere.test", "/").is_none());

    let mut f = Fixture::new(SyncOptions {
        default_backend_service: Some(ObjectRef {
            namespace: "infra".into(),
            name: "fallback".into(),
        }),
        ..Default::default()
    });
    f.apply(&yaml);
    let (_, eps) = f.route("unknown.test", "/").unwrap();
    assert_eq!(eps, vec![addr("10.1.1.1:8080")]);
    let (_, eps) = f.route("in-ns.test", "/").unwrap();
    assert!(
        eps.is_empty(),
        "Service s does not exist: 503, not the default backend"
    );
}

#[test]
fn unchanged_endpoints_keep_the_same_pool_and_hash() {
    let yaml = format!(
        "{CLASS}{}---
apiVersion: v1
kind: Service
metadata: {{name: s, namespace: ns}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: s-1, namespace: ns, labels: {{kubernetes.io/service-name: s}}}}
addressType: IPv4
ports: [{{port: 8080}}]
endpoints: [{{addresses: [10.0.0.1]}}]
",
        classed("site", "", "  ingressClassName: nginx\n")
    );
    let mut f = Fixture::new(SyncOptions::default());
    let r1 = f.apply(&yaml);
    let pool = |f: &Fixture| {
        let snap = f.handle.load();
        match snap.resolve(snap.find("site.test", "/")).target {
            Target::Pool(p) => p.clone(),
            Target::NotFound => panic!("no pool"),
        }
    };
    let p1 = pool(&f);
    assert_eq!(
        p1.endpoints(),
        &[addr("10.0.0.1:8080")],
        "unnamed ports match"
    );
    let r2 = f.apply(&yaml);
    assert!(std::sync::Arc::ptr_eq(&p1, &pool(&f)));
    assert_eq!(r1.hash, r2.hash);
    let r3 = f.apply(&yaml.replace("10.0.0.1", "10.0.0.2"));
    assert!(!std::sync::Arc::ptr_eq(&p1, &pool(&f)));
    assert_ne!(r1.hash, r3.hash);
}

/// Sources share unchanged objects between sets (API stores, parsed files); a rebuild reuses
/// what it resolved from them and re-reads exactly what was replaced, added or removed.
#[test]
fn rebuilds_reread_replaced_objects_and_reuse_the_rest() {
    let service = |name: &str, ip: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: ns}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: ns, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{port: 8080}}]
endpoints: [{{addresses: [{ip}]}}]
"
        )
    };
    let ing = |name: &str, backend: &str| {
        ingress_at(name, "2024-01-01T00:00:00Z", backend)
            .replace("host: same.test", &format!("host: {name}.test"))
            .replace("path: /p,", "path: /,")
    };
    let mut set = objects(&format!(
        "{CLASS}---\n{}---\n{}{}{}",
        service("a", "10.0.0.1"),
        service("b", "10.0.0.2"),
        ing("one", "a"),
        ing("two", "b"),
    ));
    let mut f = Fixture::new(SyncOptions::default());
    let pool = |f: &Fixture, host: &str| {
        let snap = f.handle.load();
        match snap.resolve(snap.find(host, "/")).target {
            Target::Pool(p) => p.clone(),
            Target::NotFound => panic!("no pool for {host}"),
        }
    };
    let hosts = |f: &Fixture| {
        let snap = f.handle.load();
        ["one.test", "two.test"].map(|h| snap.resolve(snap.find(h, "/")).host.to_string())
    };
    f.syncer.apply(&set, &[]);
    assert_eq!(hosts(&f), ["one.test", "two.test"], "{:?}", hosts(&f));
    let (a1, b1) = (pool(&f, "one.test"), pool(&f, "two.test"));
    assert_eq!(a1.endpoints(), &[addr("10.0.0.1:8080")]);

    // Only b's EndpointSlice is a new object: b is re-read, a is reused as it was.
    let fresh = objects(&service("b", "10.0.0.3"));
    set.endpoint_slices
        .insert("ns/b-1".into(), fresh.endpoint_slices["ns/b-1"].clone());
    f.syncer.apply(&set, &[]);
    assert!(std::sync::Arc::ptr_eq(&a1, &pool(&f, "one.test")));
    assert_eq!(pool(&f, "two.test").endpoints(), &[addr("10.0.0.3:8080")]);
    assert!(!std::sync::Arc::ptr_eq(&b1, &pool(&f, "two.test")));

    // A second slice for a, then its Service removed.
    let extra = objects(&service("a", "10.0.0.9").replace("a-1", "a-2"));
    set.endpoint_slices
        .insert("ns/a-2".into(), extra.endpoint_slices["ns/a-2"].clone());
    f.syncer.apply(&set, &[]);
    assert_eq!(
        pool(&f, "one.test").endpoints(),
        &[addr("10.0.0.1:8080"), addr("10.0.0.9:8080")]
    );
    set.services.remove("ns/a");
    let report = f.syncer.apply(&set, &[]);
    assert!(pool(&f, "one.test").endpoints().is_empty());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.message == "Service ns/a not found"),
        "{:?}",
        report.warnings
    );

    // An Ingress replaced by a broken version is re-validated (and its last good one kept);
    // putting the Service back serves it again.
    let broken = objects(&ing("two", "b").replace("pathType: Prefix", "pathType: Fuzzy"));
    set.ingresses
        .insert("ns/two".into(), broken.ingresses["ns/two"].clone());
    set.services.insert(
        "ns/a".into(),
        objects(&service("a", "10.0.0.1")).services["ns/a"].clone(),
    );
    let report = f.syncer.apply(&set, &[]);
    assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
    assert_eq!(report.rejected[0].0, "ns/two");
    assert_eq!(pool(&f, "two.test").endpoints(), &[addr("10.0.0.3:8080")]);
    assert_eq!(
        pool(&f, "one.test").endpoints(),
        &[addr("10.0.0.1:8080"), addr("10.0.0.9:8080")]
    );
}
