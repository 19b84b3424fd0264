//! Property: whatever set of Ingresses is applied, a request is never served by a route of an
//! Ingress whose policy refuses it, and every request for a host some Ingress names is answered
//! under an Ingress's policy (rules, defaultBackend, the host's unmatched paths, catch-all).

use std::path::Path;

use k8s_sync::manifests::parse_manifest;
use k8s_sync::{ObjectSet, SyncOptions, Syncer};
use proptest::prelude::*;
use proxy_core::SnapshotHandle;

const HOSTS: [&str; 2] = ["a.test", "b.test"];
const PATHS: [&str; 3] = ["/", "/x", "/x/y"];

/// One generated Ingress.
#[derive(Debug, Clone)]
struct Ing {
    /// Rules: (index into HOSTS or None for any host, index into PATHS).
    rules: Vec<(Option<usize>, usize)>,
    default_backend: bool,
    /// Carries an annotation that refuses service (authentication not supported).
    refusing: bool,
    /// Carries an allow list the test client is not in.
    allow_list: bool,
    created: u8,
}

fn ing() -> impl Strategy<Value = Ing> {
    (
        prop::collection::vec(
            (prop::option::weighted(0.8, 0..HOSTS.len()), 0..PATHS.len()),
            0..4,
        ),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..4,
    )
        .prop_map(
            |(rules, default_backend, refusing, allow_list, created)| Ing {
                default_backend: default_backend || rules.is_empty(),
                rules,
                refusing,
                allow_list,
                created,
            },
        )
}

fn manifest(ings: &[Ing]) -> String {
    let mut out = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx}\n",
    );
    for svc in ["rule", "fallback"] {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: ns}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {svc}, namespace: ns, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [10.0.0.1]}}]\n"
        ));
    }
    for (i, ing) in ings.iter().enumerate() {
        let mut ann = String::new();
        if ing.refusing {
            ann.push_str("    nginx.ingress.kubernetes.io/auth-keepalive-share-vars: \"true\"\n");
        }
        if ing.allow_list {
            ann.push_str("    nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/8\n");
        }
        let ann = if ann.is_empty() {
            String::new()
        } else {
            format!("  annotations:\n{ann}")
        };
        out.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i{i}\n  namespace: ns\n  creationTimestamp: \"2026-01-01T00:00:0{}Z\"\n{ann}spec:\n  ingressClassName: nginx\n",
            ing.created
        ));
        if ing.default_backend {
            out.push_str("  defaultBackend: {service: {name: fallback, port: {number: 80}}}\n");
        }
        if !ing.rules.is_empty() {
            out.push_str("  rules:\n");
            for (host, path) in &ing.rules {
                match host {
                    Some(h) => out.push_str(&format!("  - host: {}\n    http:\n", HOSTS[*h])),
                    None => out.push_str("  - http:\n"),
                }
                out.push_str(&format!(
                    "      paths:\n      - {{path: {}, pathType: Prefix, backend: {{service: {{name: rule, port: {{number: 80}}}}}}}}\n",
                    PATHS[*path]
                ));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn no_route_of_a_refusing_ingress_is_servable(ings in prop::collection::vec(ing(), 1..6)) {
        let mut objects = ObjectSet::default();
        for o in parse_manifest(Path::new("gen.yaml"), &manifest(&ings), false).unwrap() {
            objects.insert(o);
        }
        let handle = SnapshotHandle::new();
        let mut syncer = Syncer::new(SyncOptions::default(), handle.clone(), None);
        let report = syncer.apply(&objects, &[]);
        prop_assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let snapshot = handle.load();
        let client = Some("192.0.2.1".parse().unwrap());
        for host in HOSTS.iter().chain(&["c.test"]) {
            for path in ["/", "/x", "/x/y/z", "/q"] {
                let r = snapshot.resolve(snapshot.find(host, path));
                let named = ings.iter().any(|i| i.rules.iter().any(|(h, _)| h.map(|h| HOSTS[h]) == Some(*host)));
                if named {
                    prop_assert!(!r.meta.ingress.is_empty(), "{host}{path} is answered under no Ingress's policy");
                }
                if r.meta.ingress.is_empty() {
                    continue;
                }
                let owner: usize = r.meta.ingress[1..].parse().unwrap();
                let status = r.policy.access_status(client).map(|s| s.as_u16());
                if ings[owner].refusing {
                    prop_assert_eq!(status, Some(503), "{}{} served by refusing Ingress i{}", host, path, owner);
                } else if ings[owner].allow_list {
                    prop_assert_eq!(status, Some(403), "{}{} served by allow-listed Ingress i{}", host, path, owner);
                } else {
                    prop_assert_eq!(status, None, "{}{} of Ingress i{}", host, path, owner);
                }
            }
        }
    }
}
