//! Host and path normalisation (`proxy_core::{normalize_host, normalize_path}`) and route
//! lookup (`Snapshot::find` on a small fixed snapshot), as the proxy runs them on every request.
//!
//! Properties: nothing panics; a normalized host is lowercase and normalizing it again changes
//! nothing; a normalized path starts with `/` and has no empty, `.` or `..` segment (so it cannot
//! climb above the root), and normalizing it again changes nothing unless it still holds a `%`
//! (paths are percent-decoded exactly once, as nginx does: `/a%252F` is `/a%2F`); the route
//! found is the one a brute-force reading of the matching rules picks.
//!
//! Input: `HOST\nPATH` (without a newline, the whole input is the path and the host is empty).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use proxy_core::{normalize_host, normalize_path};
use proxy_core::{
    DefaultRoute, PathKind, Route, RouteId, RouteMeta, Snapshot, SnapshotBuilder, Target,
};

/// Hosts and rules chosen to share prefixes, mix the three path types, have a wildcard, an
/// any-host server, a host without a matching root (so its default is reachable) and multi-byte
/// characters (so prefix lengths can fall inside a character).
const RULES: &[(Option<&str>, PathKind, &str)] = &[
    (Some("example.com"), PathKind::Prefix, "/"),
    (Some("example.com"), PathKind::Exact, "/"),
    (Some("example.com"), PathKind::Prefix, "/api"),
    (Some("example.com"), PathKind::Exact, "/api"),
    (Some("example.com"), PathKind::Prefix, "/api/v1/"),
    (Some("example.com"), PathKind::Exact, "/api/v1/"),
    (Some("example.com"), PathKind::ImplementationSpecific, "/ap"),
    (
        Some("example.com"),
        PathKind::ImplementationSpecific,
        "/api/v1/x",
    ),
    (
        Some("example.com"),
        PathKind::ImplementationSpecific,
        "/api",
    ),
    (Some("example.com"), PathKind::Prefix, "/static/"),
    (Some("example.com"), PathKind::Prefix, "/\u{e9}t\u{e9}"),
    (
        Some("example.com"),
        PathKind::ImplementationSpecific,
        "/\u{e9}",
    ),
    (Some("example.com"), PathKind::ImplementationSpecific, "/e"),
    (Some("example.com"), PathKind::Prefix, "/a%2Fb"),
    (Some("*.example.com"), PathKind::Prefix, "/app"),
    (Some("*.example.com"), PathKind::ImplementationSpecific, "/"),
    (Some("a.example.com"), PathKind::Exact, "/exact"),
    (Some("only-exact.test"), PathKind::Exact, "/x"),
    (Some("xn--bcher-kva.test"), PathKind::Prefix, "/"),
    (None, PathKind::Exact, "/healthz"),
    (None, PathKind::Prefix, "/public/"),
    (None, PathKind::ImplementationSpecific, "/p"),
];

static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let mut b = SnapshotBuilder::new();
    for (i, &(host, kind, path)) in RULES.iter().enumerate() {
        let meta = RouteMeta {
            ingress: format!("rule{i}").into(),
            ..Default::default()
        };
        b.add_route(
            host,
            Route {
                kind,
                path: path.into(),
                target: Target::NotFound,
                meta,
                policy: Arc::default(),
                order: Default::default(),
            },
        )
        .unwrap();
    }
    b.default_route(DefaultRoute::default());
    b.build()
});

/// The virtual host a normalized host resolves to, found by reading every name.
fn reference_host(s: &Snapshot, host: &str) -> Option<u32> {
    let names: Vec<&str> = s.table().vhosts().iter().map(|v| v.name()).collect();
    let position = |name: &str| names.iter().position(|&n| n == name).map(|i| i as u32);
    // Exact names (the wildcard and any-host servers are not found by their names).
    if host != "_" && !host.starts_with("*.") {
        if let Some(i) = position(host) {
            return Some(i);
        }
    }
    if let Some((label, parent)) = host.split_once('.') {
        if !label.is_empty() && !parent.is_empty() {
            if let Some(i) = position(&format!("*.{parent}")) {
                return Some(i);
            }
        }
    }
    position("_")
}

/// Whether `route` matches `path`, and how specific the match is (longer wins; at equal length
/// Exact, then Prefix, then ImplementationSpecific).
fn reference_match(route: &Route, path: &str) -> Option<(usize, u8)> {
    match route.kind {
        PathKind::Exact => (route.path == path).then_some((usize::MAX, 2)),
        PathKind::Prefix => {
            let key = route.path.trim_end_matches('/');
            let trimmed = path.trim_end_matches('/');
            if key.is_empty() {
                Some((1, 1))
            } else if trimmed == key
                || trimmed
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('/'))
            {
                Some((key.len(), 1))
            } else {
                None
            }
        }
        PathKind::ImplementationSpecific => path
            .starts_with(route.path.as_str())
            .then_some((route.path.len(), 0)),
    }
}

fn reference(s: &Snapshot, host: &str, path: &str) -> RouteId {
    let Some(vhost) = reference_host(s, host) else {
        return RouteId::Default;
    };
    let routes = s.table().vhosts()[vhost as usize].routes();
    let best = routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| reference_match(r, path).map(|score| (score, i)))
        .max_by_key(|&(score, _)| score);
    match best {
        Some((_, route)) => RouteId::Rule {
            vhost,
            route: route as u32,
        },
        None => RouteId::HostDefault { vhost },
    }
}

/// A normalized path: starts with `/`; no empty segment but a trailing one; no `.` or `..`.
fn check_path_shape(raw: &str, p: &str) {
    assert!(p.starts_with('/'), "normalize_path({raw:?}) = {p:?}");
    let segments: Vec<&str> = p[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(
            (last || !seg.is_empty()) && *seg != "." && *seg != "..",
            "normalize_path({raw:?}) = {p:?}"
        );
    }
    assert!(!p.contains("/../") && !p.contains("/./") && !p.contains("//"));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (raw_host, raw_path) = text.split_once('\n').unwrap_or(("", text));
    let s = &*SNAPSHOT;

    let host = normalize_host(raw_host);
    assert!(
        !host.bytes().any(|b| b.is_ascii_uppercase()),
        "normalize_host({raw_host:?}) = {host:?}"
    );
    assert_eq!(
        normalize_host(&host),
        host,
        "normalize_host is not idempotent on {raw_host:?}"
    );

    // Raw, unnormalized strings must not break the lookup either.
    let _ = s.resolve(s.find(raw_host, raw_path));

    let Ok(path) = normalize_path(raw_path) else {
        return;
    };
    check_path_shape(raw_path, &path);
    if !path.contains('%') {
        assert_eq!(
            normalize_path(&path).as_deref(),
            Ok(&*path),
            "normalize_path is not idempotent on {raw_path:?}"
        );
    }

    let found = s.find(&host, &path);
    let _ = s.resolve(found);
    assert_eq!(
        found,
        reference(s, &host, &path),
        "find({host:?}, {path:?}) from {raw_host:?}, {raw_path:?}"
    );
});
