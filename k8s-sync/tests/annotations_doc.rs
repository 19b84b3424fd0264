//! `docs/annotations.md` is generated from the annotation registry: this test fails when the page
//! and `k8s_sync::annotations::registry::markdown` differ.
//!
//! After changing the registry, rewrite the page with
//! `WEIR_BLESS=1 cargo test -p weir-k8s-sync --test annotations_doc`.

use k8s_sync::annotations::registry::markdown;

#[test]
fn annotations_page_is_generated() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/annotations.md");
    let expected = markdown("nginx.ingress.kubernetes.io");
    if std::env::var_os("WEIR_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()))
            + 1;
        panic!(
            "docs/annotations.md is out of date (first difference at line {line}); \
             run `WEIR_BLESS=1 cargo test -p weir-k8s-sync --test annotations_doc`"
        );
    }
}
