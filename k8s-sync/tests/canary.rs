//! Canary Ingresses in translation: which main rule a canary joins, the main rule's policy kept,
//! one canary per rule (the oldest), and the cases that are reported and not used.

use std::path::Path;

use k8s_sync::manifests::parse_manifest;
use k8s_sync::{ObjectSet, SyncOptions, Syncer};
use proxy_core::{SnapshotHandle, Target};

const CLASS: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
";

fn service(name: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: ns}}
spec: {{ports: [{{name: http, port: 80}}]}}
"
    )
}

/// An Ingress created at `created` (a year), `host` (empty: any host) `/p` → `svc`, or only a
/// defaultBackend when `host` is `None`.
fn ingress(
    name: &str,
    created: u32,
    host: Option<&str>,
    svc: &str,
    ann: &[(&str, &str)],
) -> String {
    let ann: String = ann
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    let backend = format!("{{service: {{name: {svc}, port: {{number: 80}}}}}}");
    let spec = match host {
        None => format!("  defaultBackend: {backend}\n"),
        Some(h) => {
            let host = if h.is_empty() {
                String::new()
            } else {
                format!("host: {h}\n    ")
            };
            format!(
                "  rules:\n  - {host}http:\n      paths:\n      - {{path: /p, pathType: Prefix, backend: {backend}}}\n"
            )
        }
    };
    format!(
        "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: ns
  creationTimestamp: \"{created}-01-01T00:00:00Z\"
  annotations:
{ann}spec:
  ingressClassName: nginx
{spec}"
    )
}

fn apply(yaml: &str) -> (SnapshotHandle, k8s_sync::ApplyReport) {
    let mut set = ObjectSet::default();
    for o in parse_manifest(Path::new("test.yaml"), yaml, false).unwrap() {
        set.insert(o);
    }
    let handle = SnapshotHandle::new();
    let mut syncer = Syncer::new(SyncOptions::default(), handle.clone(), None);
    let report = syncer.apply(&set, &[]);
    (handle, report)
}

/// The canary backend's pool key of `host` `/p`, and the route's Ingress.
fn canary_of(handle: &SnapshotHandle, host: &str) -> (Option<String>, String) {
    let snap = handle.load();
    let r = snap.resolve(snap.find(host, "/p"));
    let canary = r.policy.canary.as_ref().map(|c| match &c.target {
        Target::Pool(p) => p.key().0.to_string(),
        Target::NotFound => "404".into(),
    });
    (canary, r.meta.ingress.to_string())
}

fn warned(report: &k8s_sync::ApplyReport, ingress: &str, needle: &str) -> bool {
    report
        .warnings
        .iter()
        .any(|w| w.ingress == ingress && w.message.contains(needle))
}

const CANARY: (&str, &str) = ("canary", "true");

#[test]
fn a_canary_joins_the_main_rule_which_keeps_its_policy() {
    let yaml = [
        CLASS.to_string(),
        service("main"),
        service("new"),
        service("newer"),
        // The main Ingress is the newest: canaries still never take its rule.
        ingress(
            "main",
            2025,
            Some("a.test"),
            "main",
            &[("whitelist-source-range", "10.0.0.0/8")],
        ),
        ingress("c-old", 2020, Some("a.test"), "new", &[CANARY]),
        ingress("c-young", 2021, Some("a.test"), "newer", &[CANARY]),
        // An invalid guard on a canary Ingress is ignored with the rest of its annotations.
        ingress(
            "c-any",
            2020,
            Some(""),
            "new",
            &[CANARY, ("denylist-source-range", "10.0.0.0/33")],
        ),
        ingress("main-any", 2022, Some(""), "main", &[]),
    ]
    .concat();
    let (handle, report) = apply(&yaml);
    assert_eq!(
        canary_of(&handle, "a.test"),
        (Some("ns/new:80".into()), "main".into())
    );
    let snap = handle.load();
    let r = snap.resolve(snap.find("a.test", "/p"));
    assert!(
        r.policy.access.is_some(),
        "the main Ingress's allow list stays"
    );
    assert!(warned(
        &report,
        "ns/c-young",
        "already has the canary of an older Ingress"
    ));
    assert_eq!(
        canary_of(&handle, "other.test"),
        (Some("ns/new:80".into()), "main-any".into())
    );
    assert!(r.policy.refusal.is_none());
    let snap_any = snap.resolve(snap.find("other.test", "/p"));
    assert!(snap_any.policy.refusal.is_none());
    assert!(warned(&report, "ns/c-any", "so it is not refused"));
}

#[test]
fn canaries_that_cannot_be_used_are_reported() {
    let yaml = [
        CLASS.to_string(),
        service("main"),
        service("new"),
        ingress("main", 2020, Some("a.test"), "main", &[]),
        // The main rule's own Service.
        ingress("c-same", 2021, Some("a.test"), "main", &[CANARY]),
        // No such Service.
        ingress("c-missing", 2021, Some("b.test"), "nowhere", &[CANARY]),
        // No main rule for the host.
        ingress("c-orphan", 2021, Some("c.test"), "new", &[CANARY]),
        // A defaultBackend with no main rule without a host.
        ingress("c-default", 2021, None, "new", &[CANARY]),
        // Canary rules without canary: "true": a plain Ingress.
        ingress(
            "plain",
            2021,
            Some("d.test"),
            "new",
            &[("canary-weight", "50")],
        ),
    ]
    .concat();
    let (handle, report) = apply(&yaml);
    assert_eq!(canary_of(&handle, "a.test"), (None, "main".into()));
    assert!(warned(&report, "ns/c-same", "is also the main backend"));
    assert!(warned(
        &report,
        "ns/c-missing",
        "Service ns/nowhere not found"
    ));
    assert!(warned(
        &report,
        "ns/c-orphan",
        "no main Ingress defines Prefix path /p of host c.test"
    ));
    assert!(warned(
        &report,
        "ns/c-default",
        "no main rule without a host"
    ));
    let snap = handle.load();
    assert!(matches!(
        snap.resolve(snap.find("c.test", "/p")).target,
        Target::NotFound
    ));
    assert_eq!(canary_of(&handle, "d.test"), (None, "plain".into()));
}
