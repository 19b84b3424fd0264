//! Regex mode of a virtual host (`use-regex`, `rewrite-target`): paths are nginx's
//! `location ~* "^<path>"`, tried longest first; other hosts keep the plain matcher.

use std::sync::Arc;

use proxy_core::PathKind::{Exact as E, ImplementationSpecific as I, Prefix as P};
use proxy_core::{
    BuildError, PathKind, Route, RouteId, RouteMeta, RouteOrder, Snapshot, SnapshotBuilder, Target,
};

fn route(kind: PathKind, path: &str) -> Route {
    Route {
        kind,
        path: path.to_string(),
        target: Target::NotFound,
        meta: RouteMeta {
            path: path.into(),
            ..Default::default()
        },
        policy: Arc::default(),
        order: RouteOrder::default(),
    }
}

/// The path of the rule a request matched, `None` when no rule did.
fn hit(s: &Snapshot, host: &str, path: &str) -> Option<String> {
    match s.find(host, path) {
        id @ RouteId::Rule { .. } => Some(s.resolve(id).meta.path.to_string()),
        _ => None,
    }
}

fn snapshot() -> Snapshot {
    let mut b = SnapshotBuilder::new();
    b.regex_host(Some("re.test")).unwrap();
    for (kind, path) in [
        (I, "/something(/|$)(.*)"),
        (P, "/foo"),
        (E, "/exact"),
        (I, "/v[0-9]+/api"),
    ] {
        b.add_route(Some("re.test"), route(kind, path)).unwrap();
        b.add_route(Some("plain.test"), route(kind, path)).unwrap();
    }
    b.build()
}

#[test]
fn regex_host_matches_case_insensitive_regexes_anchored_at_the_start() {
    let s = snapshot();
    let h = |p| hit(&s, "re.test", p);
    assert_eq!(h("/something").as_deref(), Some("/something(/|$)(.*)"));
    assert_eq!(h("/SOMETHING/new").as_deref(), Some("/something(/|$)(.*)"));
    assert_eq!(h("/somethingelse"), None, "(/|$) after the word");
    assert_eq!(h("/v12/api/x").as_deref(), Some("/v[0-9]+/api"));
    assert_eq!(h("/x/v12/api"), None, "anchored at the start");
    // Prefix and Exact become string-prefix regexes too, not anchored at the end.
    assert_eq!(h("/foobar").as_deref(), Some("/foo"));
    assert_eq!(h("/Exact/more").as_deref(), Some("/exact"));
    assert!(s.table().vhosts().iter().any(|v| v.is_regex()));
}

#[test]
fn plain_hosts_keep_literal_matching() {
    let s = snapshot();
    let h = |p| hit(&s, "plain.test", p);
    assert_eq!(h("/something"), None);
    assert_eq!(h("/v1/api"), None);
    assert_eq!(h("/foobar"), None, "Prefix is element-wise");
    assert_eq!(h("/foo/bar").as_deref(), Some("/foo"));
    assert_eq!(h("/exact/more"), None);
}

#[test]
fn longest_path_wins_in_regex_mode() {
    let mut b = SnapshotBuilder::new();
    b.regex_host(None).unwrap();
    b.add_route(None, route(I, "/")).unwrap();
    b.add_route(None, route(I, "/a.*")).unwrap();
    b.add_route(None, route(I, "/a/b/c")).unwrap();
    let s = b.build();
    assert_eq!(hit(&s, "any", "/a/b/c/d").as_deref(), Some("/a/b/c"));
    assert_eq!(hit(&s, "any", "/a/b").as_deref(), Some("/a.*"));
    assert_eq!(hit(&s, "any", "/z").as_deref(), Some("/"));
}

#[test]
fn paths_the_regex_crate_refuses_are_reported() {
    let mut b = SnapshotBuilder::new();
    b.regex_host(Some("re.test")).unwrap();
    let err = b
        .add_route(Some("re.test"), route(I, "/(?=look)ahead"))
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidRegex { .. }), "{err}");
    assert!(err.to_string().contains("/(?=look)ahead"));
    // The same path is fine on a host that is not in regex mode.
    b.add_route(Some("plain.test"), route(I, "/(?=look)ahead"))
        .unwrap();
}
