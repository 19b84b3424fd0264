//! Annotation parsing (`k8s_sync::annotations::IngressAnnotations::parse`, driven by the registry
//! of every ingress-nginx annotation; values reach the boolean and CIDR-list parsers): never
//! panic, and the result is consistent with the input.
//!
//! Input: one annotation per line, `name=value`. A name without `/` gets the default prefix
//! (`nginx.ingress.kubernetes.io/`), so short seeds reach the registry.
#![no_main]

use std::collections::BTreeMap;

use k8s_sync::annotations::{AnnotationProblem, IngressAnnotations, DEFAULT_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let name = if name.contains('/') {
            name.to_string()
        } else {
            format!("{DEFAULT_PREFIX}/{name}")
        };
        map.insert(name, value.to_string());
    }
    let parsed = IngressAnnotations::parse(&map, DEFAULT_PREFIX);
    // Deterministic.
    assert_eq!(parsed, IngressAnnotations::parse(&map, DEFAULT_PREFIX));
    // At most one problem per annotation, each naming an annotation of the input.
    assert!(parsed.problems.len() <= map.len());
    let mut guard_problem = false;
    for p in &parsed.problems {
        let (AnnotationProblem::Invalid { annotation, .. }
        | AnnotationProblem::InvalidGuard { annotation, .. }
        | AnnotationProblem::Refused { annotation, .. }
        | AnnotationProblem::NotYetGuard { annotation, .. }
        | AnnotationProblem::NotYet { annotation }
        | AnnotationProblem::Unknown { annotation }) = p;
        assert!(map.contains_key(annotation), "{annotation:?}");
        let _ = (p.to_string(), p.metric_label());
        guard_problem |= matches!(
            p,
            AnnotationProblem::InvalidGuard { .. } | AnnotationProblem::NotYetGuard { .. }
        );
    }
    // Fail closed: the Ingress is refused exactly when an access guard could not be honoured.
    assert_eq!(parsed.refusal.is_some(), guard_problem, "{parsed:?}");
    // Under another prefix none of the (prefixed) names apply.
    let other = IngressAnnotations::parse(&map, "weir.invalid");
    if map.keys().all(|k| !k.starts_with("weir.invalid/")) {
        assert_eq!(other, IngressAnnotations::default());
    }
});
