//! Matcher test suite: host and path matching, conflicts, normalization and validation, checked
//! through the public API (`SnapshotBuilder` -> `Snapshot::find` -> `Snapshot::resolve`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use proxy_core::PathKind::{Exact as E, ImplementationSpecific as I, Prefix as P};
use proxy_core::{
    normalize_host, normalize_path, AddOutcome, BuildError, DefaultRoute, PathKind, Route, RouteId,
    RouteMeta, RouteOrder, Snapshot, SnapshotBuilder, SnapshotHandle, Target,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn meta(tag: &str, path: &str) -> RouteMeta {
    RouteMeta {
        ingress: tag.into(),
        path: path.into(),
        ..Default::default()
    }
}

fn route_ord(kind: PathKind, path: &str, tag: &str, order: RouteOrder) -> Route {
    Route {
        kind,
        path: path.to_string(),
        target: Target::NotFound,
        meta: meta(tag, path),
        policy: Arc::default(),
        order,
    }
}

fn route(kind: PathKind, path: &str, tag: &str) -> Route {
    route_ord(kind, path, tag, RouteOrder::default())
}

fn fallback(tag: &str) -> DefaultRoute {
    DefaultRoute {
        meta: meta(tag, "/"),
        ..Default::default()
    }
}

fn order(created: i64, name: &str) -> RouteOrder {
    RouteOrder {
        created,
        name: name.to_string(),
    }
}

/// What a request resolved to, identified by the `meta.ingress` tag behind the [`RouteId`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hit {
    /// `RouteId::Rule`: a host/path rule matched.
    Rule(String),
    /// No rule matched: `RouteId::HostDefault` or `RouteId::Default`. Which of the two is used when
    /// the matched host has no default of its own is left to the implementation; the tag tells the
    /// host's default from the table-wide one.
    Miss(String),
}

fn miss(tag: &str) -> Hit {
    Hit::Miss(tag.to_string())
}

fn rule(tag: &str) -> Hit {
    Hit::Rule(tag.to_string())
}

fn hit(s: &Snapshot, host: &str, path: &str) -> Hit {
    let id = s.find(host, path);
    let tag = s.resolve(id).meta.ingress.to_string();
    match id {
        RouteId::Rule { .. } => Hit::Rule(tag),
        RouteId::HostDefault { .. } | RouteId::Default => Hit::Miss(tag),
    }
}

fn kind_tag(kind: PathKind, path: &str) -> String {
    format!("{kind} {path}")
}

// ---------------------------------------------------------------------------------------------
// 1 + 2. Path tables
// ---------------------------------------------------------------------------------------------

type Rules = &'static [(PathKind, &'static str)];
/// (rules of one host, request path, the rule expected to win or `None` for no match)
type Row = (Rules, &'static str, Option<(PathKind, &'static str)>);

/// Every row of the "Examples" table under "Path types" in the Kubernetes Ingress docs
/// (networking.k8s.io/v1), plus the implied positive cases of its negative rows.
const K8S_EXAMPLES: &[Row] = &[
    // Prefix `/` matches all paths.
    (&[(P, "/")], "/", Some((P, "/"))),
    (&[(P, "/")], "/foo", Some((P, "/"))),
    (&[(P, "/")], "/foo/", Some((P, "/"))),
    (&[(P, "/")], "/aaa/bbb/ccc", Some((P, "/"))),
    // Exact `/foo`.
    (&[(E, "/foo")], "/foo", Some((E, "/foo"))),
    (&[(E, "/foo")], "/bar", None),
    (&[(E, "/foo")], "/foo/", None),
    // Exact `/foo/`.
    (&[(E, "/foo/")], "/foo", None),
    (&[(E, "/foo/")], "/foo/", Some((E, "/foo/"))),
    // Prefix `/foo`, `/foo/`.
    (&[(P, "/foo")], "/foo", Some((P, "/foo"))),
    (&[(P, "/foo")], "/foo/", Some((P, "/foo"))),
    (&[(P, "/foo/")], "/foo", Some((P, "/foo/"))),
    (&[(P, "/foo/")], "/foo/", Some((P, "/foo/"))),
    // Element-wise, not string prefix.
    (&[(P, "/aaa/bb")], "/aaa/bbb", None),
    (&[(P, "/aaa/bbb")], "/aaa/bbb", Some((P, "/aaa/bbb"))),
    (&[(P, "/aaa/bbb/")], "/aaa/bbb", Some((P, "/aaa/bbb/"))),
    (&[(P, "/aaa/bbb")], "/aaa/bbb/", Some((P, "/aaa/bbb"))),
    (&[(P, "/aaa/bbb")], "/aaa/bbb/ccc", Some((P, "/aaa/bbb"))),
    (&[(P, "/aaa/bbb")], "/aaa/bbbxyz", None),
    // Multiple prefixes: the longest matching one.
    (&[(P, "/"), (P, "/aaa")], "/aaa/ccc", Some((P, "/aaa"))),
    (
        &[(P, "/"), (P, "/aaa"), (P, "/aaa/bbb")],
        "/aaa/bbb",
        Some((P, "/aaa/bbb")),
    ),
    (
        &[(P, "/"), (P, "/aaa"), (P, "/aaa/bbb")],
        "/ccc",
        Some((P, "/")),
    ),
    // No match: default backend.
    (&[(P, "/aaa")], "/ccc", None),
    // Mixed: Exact is preferred.
    (&[(P, "/foo"), (E, "/foo")], "/foo", Some((E, "/foo"))),
    (&[(P, "/foo"), (E, "/foo")], "/foo/", Some((P, "/foo"))),
];

/// `ImplementationSpecific` is a plain string prefix; the longest rule wins across kinds (Prefix
/// counts without its trailing slashes); at equal length Exact > Prefix > ImplementationSpecific.
const KIND_PRECEDENCE: &[Row] = &[
    // Plain string prefix.
    (&[(I, "/foo")], "/foo", Some((I, "/foo"))),
    (&[(I, "/foo")], "/foobar", Some((I, "/foo"))),
    (&[(I, "/foo")], "/foo/", Some((I, "/foo"))),
    (&[(I, "/foo")], "/foo/bar", Some((I, "/foo"))),
    (&[(I, "/foo")], "/fo", None),
    (&[(I, "/foo")], "/bar", None),
    (&[(I, "/foo/")], "/foo", None),
    (&[(I, "/")], "/anything/at/all", Some((I, "/"))),
    // All kinds are case-sensitive.
    (&[(I, "/foo")], "/FOO", None),
    (&[(P, "/foo")], "/Foo", None),
    (&[(E, "/foo")], "/fOO", None),
    // Longest wins across kinds.
    (&[(P, "/foo"), (I, "/foob")], "/foobar", Some((I, "/foob"))),
    (&[(P, "/foo"), (I, "/foob")], "/foo/x", Some((P, "/foo"))),
    (
        &[(P, "/foo/bar"), (I, "/foo")],
        "/foo/bar/x",
        Some((P, "/foo/bar")),
    ),
    (
        &[(P, "/foo"), (I, "/foo/b")],
        "/foo/bar",
        Some((I, "/foo/b")),
    ),
    (
        &[(P, "/foo"), (I, "/foobar")],
        "/foo/bar",
        Some((P, "/foo")),
    ),
    (&[(I, "/a"), (P, "/")], "/ab", Some((I, "/a"))),
    (&[(I, "/"), (P, "/a")], "/a/b", Some((P, "/a"))),
    (
        &[(E, "/foo/bar"), (I, "/foo/ba"), (P, "/foo")],
        "/foo/bar",
        Some((E, "/foo/bar")),
    ),
    (
        &[(E, "/foo/bar"), (I, "/foo/ba"), (P, "/foo")],
        "/foo/bart",
        Some((I, "/foo/ba")),
    ),
    // Prefix length is measured without the trailing slash.
    (&[(P, "/foo/"), (I, "/foo/")], "/foo/x", Some((I, "/foo/"))),
    (&[(P, "/foo/"), (I, "/foo")], "/foo/x", Some((P, "/foo/"))),
    // Equal length: Exact > Prefix > ImplementationSpecific.
    (
        &[(I, "/foo"), (P, "/foo"), (E, "/foo")],
        "/foo",
        Some((E, "/foo")),
    ),
    (
        &[(I, "/foo"), (P, "/foo"), (E, "/foo")],
        "/foo/",
        Some((P, "/foo")),
    ),
    (
        &[(I, "/foo"), (P, "/foo"), (E, "/foo")],
        "/foobar",
        Some((I, "/foo")),
    ),
    (&[(I, "/foo/"), (E, "/foo/")], "/foo/", Some((E, "/foo/"))),
    (&[(I, "/foo"), (E, "/foo")], "/foo", Some((E, "/foo"))),
    (&[(I, "/foo"), (P, "/foo")], "/foo/x", Some((P, "/foo"))),
    (&[(I, "/"), (P, "/")], "/", Some((P, "/"))),
    (&[(I, "/"), (P, "/")], "/x", Some((P, "/"))),
];

/// Run each row with the rules on a named host and on the any-host server, inserted forwards and
/// backwards, with and without a host default.
fn run_table(name: &str, rows: &[Row]) {
    const HOST: &str = "foo.example.com";
    for (i, &(rules, request, expected)) in rows.iter().enumerate() {
        for host in [Some(HOST), None] {
            for reversed in [false, true] {
                for with_host_default in [false, true] {
                    let mut b = SnapshotBuilder::new();
                    b.default_route(fallback("global-default"));
                    let mut ordered: Vec<_> = rules.to_vec();
                    if reversed {
                        ordered.reverse();
                    }
                    for &(kind, path) in &ordered {
                        let outcome = b.add_route(host, route(kind, path, &kind_tag(kind, path)));
                        assert_eq!(outcome, Ok(AddOutcome::Added), "{name} row {i}: add {path}");
                    }
                    if with_host_default {
                        b.host_default(host, fallback("host-default"), RouteOrder::default())
                            .unwrap();
                    }
                    let s = b.build();
                    let want = match expected {
                        Some((kind, path)) => Hit::Rule(kind_tag(kind, path)),
                        None if with_host_default => miss("host-default"),
                        None => miss("global-default"),
                    };
                    assert_eq!(
                        hit(&s, HOST, request),
                        want,
                        "{name} row {i}: rules {rules:?} request {request:?} \
                         (host {host:?}, reversed {reversed}, host default {with_host_default})"
                    );
                }
            }
        }
    }
}

#[test]
fn kubernetes_path_type_examples() {
    run_table("k8s examples", K8S_EXAMPLES);
}

#[test]
fn implementation_specific_and_kind_precedence() {
    run_table("kind precedence", KIND_PRECEDENCE);
}

#[test]
fn no_match_is_route_id_default_or_host_default() {
    let mut b = SnapshotBuilder::new();
    b.add_route(Some("foo.com"), route(P, "/aaa", "aaa"))
        .unwrap();
    let s = b.build();
    assert!(matches!(s.find("foo.com", "/aaa/x"), RouteId::Rule { .. }));
    let id = s.find("foo.com", "/ccc");
    match id {
        RouteId::Default => {}
        RouteId::HostDefault { .. } => assert_eq!(s.resolve(id).host, "foo.com"),
        RouteId::Rule { .. } => panic!("/ccc matched {id:?}"),
    }
    assert!(matches!(s.resolve(id).target, Target::NotFound));
    assert_eq!(s.resolve(id).meta, s.resolve(RouteId::Default).meta);
    // A host that is not defined at all gets the table default.
    assert_eq!(s.find("bar.com", "/aaa"), RouteId::Default);

    let mut b = SnapshotBuilder::new();
    b.add_route(Some("foo.com"), route(P, "/aaa", "aaa"))
        .unwrap();
    b.host_default(Some("foo.com"), fallback("fb"), RouteOrder::default())
        .unwrap();
    let s = b.build();
    let id = s.find("foo.com", "/ccc");
    assert!(matches!(id, RouteId::HostDefault { .. }), "{id:?}");
    assert_eq!(s.resolve(id).host, "foo.com");
    assert_eq!(&*s.resolve(id).meta.ingress, "fb");
}

// ---------------------------------------------------------------------------------------------
// 3. Hosts
// ---------------------------------------------------------------------------------------------

#[test]
fn exact_host_beats_wildcard_beats_any_host() {
    let mut b = SnapshotBuilder::new();
    b.default_route(fallback("global"));
    b.add_route(Some("bar.foo.com"), route(P, "/", "exact"))
        .unwrap();
    b.add_route(Some("*.foo.com"), route(P, "/", "wild"))
        .unwrap();
    b.add_route(None, route(P, "/", "any")).unwrap();
    let s = b.build();

    assert_eq!(hit(&s, "bar.foo.com", "/x"), rule("exact"));
    assert_eq!(hit(&s, "baz.foo.com", "/x"), rule("wild"));
    assert_eq!(hit(&s, "x-1.foo.com", "/"), rule("wild"));
    // A wildcard covers exactly one label.
    assert_eq!(hit(&s, "baz.bar.foo.com", "/x"), rule("any"));
    assert_eq!(hit(&s, "a.b.foo.com", "/x"), rule("any"));
    assert_eq!(hit(&s, "foo.com", "/x"), rule("any"));
    assert_eq!(hit(&s, "com", "/x"), rule("any"));
    assert_eq!(hit(&s, "foo.com.evil.org", "/x"), rule("any"));
    assert_eq!(hit(&s, "example.org", "/x"), rule("any"));
    assert_eq!(hit(&s, "localhost", "/"), rule("any"));

    // Resolved::host names the virtual host that answered.
    assert_eq!(s.resolve(s.find("bar.foo.com", "/")).host, "bar.foo.com");
    assert_eq!(s.resolve(s.find("baz.foo.com", "/")).host, "*.foo.com");
    assert_eq!(s.resolve(s.find("example.org", "/")).host, "_");
}

#[test]
fn wildcard_without_any_host_rules() {
    let mut b = SnapshotBuilder::new();
    b.default_route(fallback("global"));
    b.add_route(Some("*.foo.com"), route(P, "/", "wild"))
        .unwrap();
    let s = b.build();
    assert_eq!(hit(&s, "bar.foo.com", "/"), rule("wild"));
    assert_eq!(hit(&s, "foo.com", "/"), miss("global"));
    assert_eq!(hit(&s, "baz.bar.foo.com", "/"), miss("global"));
    assert_eq!(s.find("baz.bar.foo.com", "/"), RouteId::Default);
}

#[test]
fn defined_hosts_do_not_fall_through() {
    let build = |with_defaults: bool| {
        let mut b = SnapshotBuilder::new();
        b.default_route(fallback("global"));
        b.add_route(Some("foo.com"), route(E, "/only", "foo-only"))
            .unwrap();
        b.add_route(Some("bar.foo.com"), route(E, "/only", "bar-only"))
            .unwrap();
        b.add_route(Some("*.foo.com"), route(E, "/only", "wild-only"))
            .unwrap();
        b.add_route(None, route(P, "/", "any")).unwrap();
        b.declare_host("Declared.com").unwrap();
        if with_defaults {
            b.host_default(Some("foo.com"), fallback("foo-fb"), RouteOrder::default())
                .unwrap();
            b.host_default(
                Some("*.foo.com"),
                fallback("wild-fb"),
                RouteOrder::default(),
            )
            .unwrap();
        }
        b.build()
    };

    let s = build(false);
    // Matching paths still work.
    assert_eq!(hit(&s, "foo.com", "/only"), rule("foo-only"));
    assert_eq!(hit(&s, "bar.foo.com", "/only"), rule("bar-only"));
    assert_eq!(hit(&s, "qux.foo.com", "/only"), rule("wild-only"));
    // Not to the any-host rules, and an exact host not to the wildcard either.
    assert_eq!(hit(&s, "foo.com", "/other"), miss("global"));
    assert_eq!(hit(&s, "bar.foo.com", "/other"), miss("global"));
    assert_eq!(hit(&s, "qux.foo.com", "/other"), miss("global"));
    // A declared host without rules is still a host.
    assert_eq!(hit(&s, "declared.com", "/"), miss("global"));
    // Undefined hosts do reach the any-host rules.
    assert_eq!(hit(&s, "other.org", "/other"), rule("any"));

    let s = build(true);
    assert_eq!(hit(&s, "foo.com", "/other"), miss("foo-fb"));
    assert_eq!(hit(&s, "qux.foo.com", "/other"), miss("wild-fb"));
    let id = s.find("qux.foo.com", "/x");
    assert!(matches!(id, RouteId::HostDefault { .. }), "{id:?}");
    assert_eq!(s.resolve(id).host, "*.foo.com");
    // bar.foo.com is its own host: neither the wildcard's default nor the any-host rules.
    assert_eq!(hit(&s, "bar.foo.com", "/other"), miss("global"));
    assert_eq!(hit(&s, "foo.com", "/only"), rule("foo-only"));
    assert_eq!(hit(&s, "other.org", "/other"), rule("any"));
}

#[test]
fn any_host_default() {
    let mut b = SnapshotBuilder::new();
    b.default_route(fallback("global"));
    b.add_route(None, route(E, "/x", "any-x")).unwrap();
    b.host_default(None, fallback("any-fb"), RouteOrder::default())
        .unwrap();
    b.add_route(Some("foo.com"), route(E, "/y", "foo-y"))
        .unwrap();
    let s = b.build();
    assert_eq!(hit(&s, "unknown.org", "/x"), rule("any-x"));
    assert_eq!(hit(&s, "unknown.org", "/z"), miss("any-fb"));
    assert_eq!(hit(&s, "foo.com", "/z"), miss("global"));
    assert_eq!(hit(&s, "foo.com", "/x"), miss("global"));
}

#[test]
fn empty_snapshot_serves_default() {
    let s = SnapshotBuilder::new().build();
    assert_eq!(s.find("foo.com", "/"), RouteId::Default);
    assert!(matches!(
        s.resolve(RouteId::Default).target,
        Target::NotFound
    ));
    assert_eq!(s.route_count(), 0);

    let mut b = SnapshotBuilder::new();
    b.default_route(fallback("global"));
    let s = b.build();
    assert_eq!(hit(&s, "foo.com", "/"), miss("global"));
    assert_eq!(s.resolve(RouteId::Default).host, "_");
}

#[test]
fn rule_hosts_are_case_insensitive() {
    let mut b = SnapshotBuilder::new();
    b.add_route(Some("MiXeD.Example.COM"), route(P, "/", "mixed"))
        .unwrap();
    b.add_route(Some("*.Wild.Example"), route(P, "/", "wild"))
        .unwrap();
    let s = b.build();
    assert_eq!(hit(&s, "mixed.example.com", "/"), rule("mixed"));
    assert_eq!(hit(&s, "a.wild.example", "/"), rule("wild"));
}

#[test]
fn normalize_host_cases() {
    let cases: &[(&str, &str)] = &[
        ("foo.com", "foo.com"),
        ("Foo.Example.COM", "foo.example.com"),
        ("foo.com:8080", "foo.com"),
        ("FOO.com:443", "foo.com"),
        ("foo.com.", "foo.com"),
        ("Foo.COM.:8443", "foo.com"),
        ("[::1]:80", "[::1]"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]:8443", "[2001:db8::1]"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("localhost", "localhost"),
    ];
    for &(raw, want) in cases {
        assert_eq!(normalize_host(raw), want, "normalize_host({raw:?})");
    }
    assert!(matches!(
        normalize_host("foo.com"),
        Cow::Borrowed("foo.com")
    ));
    assert!(matches!(
        normalize_host("foo.com:80"),
        Cow::Borrowed("foo.com")
    ));

    // End to end: raw Host header -> normalize -> find.
    let mut b = SnapshotBuilder::new();
    b.add_route(Some("bar.foo.com"), route(P, "/", "exact"))
        .unwrap();
    b.add_route(Some("*.foo.com"), route(P, "/", "wild"))
        .unwrap();
    let s = b.build();
    assert_eq!(
        hit(&s, &normalize_host("BAR.foo.com.:8443"), "/"),
        rule("exact")
    );
    assert_eq!(
        hit(&s, &normalize_host("Baz.Foo.Com:80"), "/"),
        rule("wild")
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Conflicts
// ---------------------------------------------------------------------------------------------

#[test]
fn conflicting_rules_lower_order_wins() {
    let older = order(1, "ns/older");
    let newer = order(2, "ns/newer");
    let older_route = || route_ord(P, "/app", "older", older.clone());
    let newer_route = || route_ord(P, "/app", "newer", newer.clone());

    // Older first: the newer one is shadowed.
    let mut b = SnapshotBuilder::new();
    assert_eq!(
        b.add_route(Some("a.com"), older_route()),
        Ok(AddOutcome::Added)
    );
    assert_eq!(
        b.add_route(Some("a.com"), newer_route()),
        Ok(AddOutcome::Shadowed(meta("older", "/app")))
    );
    let s = b.build();
    assert_eq!(s.route_count(), 1);
    assert_eq!(hit(&s, "a.com", "/app/x"), rule("older"));

    // Newer first: the older one replaces it.
    let mut b = SnapshotBuilder::new();
    assert_eq!(
        b.add_route(Some("a.com"), newer_route()),
        Ok(AddOutcome::Added)
    );
    assert_eq!(
        b.add_route(Some("a.com"), older_route()),
        Ok(AddOutcome::Replaced(meta("newer", "/app")))
    );
    let s = b.build();
    assert_eq!(s.route_count(), 1);
    assert_eq!(hit(&s, "a.com", "/app/x"), rule("older"));
}

/// Whatever `RouteOrder`'s `Ord` says is lower wins, in either insertion order.
#[test]
fn conflicts_follow_route_order() {
    let pairs = [
        (order(1, "ns/b"), order(2, "ns/a")),
        (order(2, "ns/a"), order(1, "ns/b")),
        (order(-5, "x"), order(0, "x")),
        (order(7, "ns-a/ing"), order(7, "ns-z/ing")),
        (order(7, "ns/ing"), order(7, "ns/ing-2")),
    ];
    for (x, y) in pairs {
        assert_ne!(x.cmp(&y), std::cmp::Ordering::Equal);
        let (low, high) = if x < y { (x, y) } else { (y, x) };
        for low_first in [true, false] {
            let low_route = route_ord(E, "/x", "low", low.clone());
            let high_route = route_ord(E, "/x", "high", high.clone());
            let mut b = SnapshotBuilder::new();
            let (first, second, want) = if low_first {
                (
                    low_route,
                    high_route,
                    AddOutcome::Shadowed(meta("low", "/x")),
                )
            } else {
                (
                    high_route,
                    low_route,
                    AddOutcome::Replaced(meta("high", "/x")),
                )
            };
            assert_eq!(b.add_route(None, first), Ok(AddOutcome::Added));
            assert_eq!(b.add_route(None, second), Ok(want), "{low:?} < {high:?}");
            let s = b.build();
            assert_eq!(s.route_count(), 1);
            assert_eq!(hit(&s, "h.com", "/x"), rule("low"), "{low:?} < {high:?}");
        }
    }
}

/// `RouteOrder` as documented (ingress-nginx's Ingress sort): the earlier `created` wins, and at
/// equal `created` the lexically greater `name`.
#[test]
fn route_order_ties_prefer_greater_name() {
    assert!(order(1, "ns-z/ing") < order(2, "ns-a/ing"));
    assert!(order(7, "ns-z/ing") < order(7, "ns-a/ing"));
    for z_first in [true, false] {
        let a = route_ord(P, "/x", "a", order(7, "ns-a/ing"));
        let z = route_ord(P, "/x", "z", order(7, "ns-z/ing"));
        let (first, second) = if z_first { (z, a) } else { (a, z) };
        let mut b = SnapshotBuilder::new();
        b.add_route(Some("h.com"), first).unwrap();
        b.add_route(Some("h.com"), second).unwrap();
        let s = b.build();
        assert_eq!(hit(&s, "h.com", "/x/y"), rule("z"), "z first: {z_first}");
    }
}

#[test]
fn prefix_conflicts_ignore_trailing_slash() {
    let mut b = SnapshotBuilder::new();
    assert_eq!(
        b.add_route(None, route_ord(P, "/app/", "slash", order(2, "b"))),
        Ok(AddOutcome::Added)
    );
    assert_eq!(
        b.add_route(None, route_ord(P, "/app", "bare", order(1, "a"))),
        Ok(AddOutcome::Replaced(meta("slash", "/app/")))
    );
    assert_eq!(
        b.add_route(None, route_ord(P, "/app//", "double", order(3, "c"))),
        Ok(AddOutcome::Shadowed(meta("bare", "/app")))
    );
    // Exact and ImplementationSpecific keep the slash: different rules.
    assert_eq!(
        b.add_route(None, route_ord(I, "/app/", "is-slash", order(9, "z"))),
        Ok(AddOutcome::Added)
    );
    assert_eq!(
        b.add_route(None, route_ord(I, "/app", "is-bare", order(9, "z"))),
        Ok(AddOutcome::Added)
    );
    let s = b.build();
    assert_eq!(s.route_count(), 3);
    assert_eq!(hit(&s, "h", "/app"), rule("bare"));
    assert_eq!(hit(&s, "h", "/app/"), rule("is-slash"));
    assert_eq!(hit(&s, "h", "/apple"), rule("is-bare"));
}

#[test]
fn non_conflicts_are_all_added() {
    let mut b = SnapshotBuilder::new();
    let o = order(1, "same");
    for (host, kind, tag) in [
        (Some("a.com"), E, "a-exact"),
        (Some("a.com"), P, "a-prefix"),
        (Some("a.com"), I, "a-impl"),
        (Some("b.com"), P, "b-prefix"),
        (Some("*.a.com"), P, "wild-prefix"),
        (None, P, "any-prefix"),
    ] {
        assert_eq!(
            b.add_route(host, route_ord(kind, "/p", tag, o.clone())),
            Ok(AddOutcome::Added),
            "{tag}"
        );
    }
    // Host case does not make a different rule.
    assert_eq!(
        b.add_route(Some("A.COM"), route_ord(P, "/p", "upper", order(2, "x"))),
        Ok(AddOutcome::Shadowed(meta("a-prefix", "/p")))
    );
    let s = b.build();
    assert_eq!(s.route_count(), 6);
    assert_eq!(hit(&s, "a.com", "/p"), rule("a-exact"));
    assert_eq!(hit(&s, "a.com", "/p/q"), rule("a-prefix"));
    assert_eq!(hit(&s, "a.com", "/pq"), rule("a-impl"));
    assert_eq!(hit(&s, "b.com", "/p"), rule("b-prefix"));
    assert_eq!(hit(&s, "x.a.com", "/p"), rule("wild-prefix"));
    assert_eq!(hit(&s, "c.com", "/p"), rule("any-prefix"));
}

#[test]
fn host_default_lower_order_wins() {
    for older_first in [true, false] {
        let mut b = SnapshotBuilder::new();
        let older = (fallback("older"), order(1, "x"));
        let newer = (fallback("newer"), order(5, "a"));
        let (first, second) = if older_first {
            (older, newer)
        } else {
            (newer, older)
        };
        b.host_default(Some("a.com"), first.0, first.1).unwrap();
        b.host_default(Some("a.com"), second.0, second.1).unwrap();
        let s = b.build();
        assert_eq!(
            hit(&s, "a.com", "/"),
            miss("older"),
            "older first: {older_first}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. normalize_path
// ---------------------------------------------------------------------------------------------

#[test]
fn normalize_path_rewrites() {
    let cases: &[(&str, &str)] = &[
        ("", "/"),
        // Percent decoding.
        ("/a%2Fb", "/a/b"),
        ("/a%2fb", "/a/b"),
        ("/%61bc", "/abc"),
        ("/a%20b", "/a b"),
        ("/a%zzb", "/a%zzb"),
        ("/a%2", "/a%2"),
        ("/a%", "/a%"),
        ("/a%252F", "/a%2F"),
        // Slash merging.
        ("//", "/"),
        ("//a///b", "/a/b"),
        ("/a//", "/a/"),
        ("/a%2F%2Fb", "/a/b"),
        // Dot segments.
        ("/.", "/"),
        ("/./", "/"),
        ("/a/./b", "/a/b"),
        ("/a/.", "/a/"),
        ("/a/b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/b/../", "/a/"),
        ("/a/..", "/"),
        ("/a/b/../../c/", "/c/"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        ("/aaa//bbb/../bbb/./ccc", "/aaa/bbb/ccc"),
    ];
    for &(raw, want) in cases {
        assert_eq!(
            normalize_path(raw).as_deref(),
            Ok(want),
            "normalize_path({raw:?})"
        );
    }
}

#[test]
fn normalize_path_rejects_escaping_the_root() {
    for raw in [
        "/..",
        "/../",
        "/../a",
        "/a/../..",
        "/a/../../b",
        "/%2e%2e",
        "/%2E%2E/etc/passwd",
        "/a/%2e%2e%2f%2e%2e",
        "//../a",
    ] {
        assert!(
            normalize_path(raw).is_err(),
            "normalize_path({raw:?}) should fail"
        );
    }
}

#[test]
fn normalize_path_borrows_normal_paths() {
    for raw in [
        "/",
        "/foo",
        "/foo/",
        "/foo/bar",
        "/foo/bar/",
        "/a..b/.c",
        "/a/..b",
        "/a/.b/",
        "/...",
    ] {
        match normalize_path(raw) {
            Ok(Cow::Borrowed(p)) => assert_eq!(p, raw),
            other => panic!("normalize_path({raw:?}) = {other:?}, want Borrowed"),
        }
    }
}

#[test]
fn normalized_paths_match_rules() {
    let mut b = SnapshotBuilder::new();
    b.add_route(None, route(P, "/aaa/bbb", "bbb")).unwrap();
    b.add_route(None, route(E, "/aaa/x", "x")).unwrap();
    let s = b.build();
    let find = |raw: &str| hit(&s, "h", &normalize_path(raw).unwrap());
    assert_eq!(find("/aaa//bbb/"), rule("bbb"));
    assert_eq!(find("/aaa/ccc/../bbb/d"), rule("bbb"));
    assert_eq!(find("/aaa%2Fbbb"), rule("bbb"));
    assert_eq!(find("/aaa/./x"), rule("x"));
    assert_eq!(find("/%61aa/x"), rule("x"));
}

// ---------------------------------------------------------------------------------------------
// 6. Invalid input
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_hosts_are_rejected() {
    let long_label = format!("{}.com", "a".repeat(64));
    let bad_hosts: Vec<&str> = vec![
        "Foo..com",
        "*.*.foo.com",
        "foo.*.com",
        "*",
        "*.",
        "*foo.com",
        "foo.com*",
        "-foo.com",
        "foo-.com",
        "foo_bar.com",
        "foo bar.com",
        "foo.com:80",
        "",
        ".foo.com",
        "foo.com.",
        &long_label,
    ];
    let mut b = SnapshotBuilder::new();
    for host in bad_hosts {
        let is_invalid_host = |r: Result<(), BuildError>| matches!(r, Err(BuildError::InvalidHost(h)) if h.eq_ignore_ascii_case(host));
        assert!(
            is_invalid_host(b.add_route(Some(host), route(P, "/", "x")).map(drop)),
            "add_route({host:?})"
        );
        assert!(
            is_invalid_host(b.host_default(Some(host), fallback("x"), RouteOrder::default())),
            "host_default({host:?})"
        );
        assert!(
            is_invalid_host(b.declare_host(host)),
            "declare_host({host:?})"
        );
    }
    // Rejected rules leave no trace in the snapshot.
    let s = b.build();
    assert_eq!(s.route_count(), 0);
    assert!(s.table().vhosts().is_empty());
}

#[test]
fn valid_hosts_are_accepted() {
    let long_label = format!("{}.com", "a".repeat(63));
    for host in [
        "foo.com",
        "Foo.com",
        "*.foo.com",
        "*.com",
        "a-b.c0.example",
        "xn--bcher-kva.example",
        "localhost",
        long_label.as_str(),
    ] {
        let mut b = SnapshotBuilder::new();
        assert_eq!(
            b.add_route(Some(host), route(P, "/", "x")),
            Ok(AddOutcome::Added),
            "{host:?}"
        );
    }
}

#[test]
fn invalid_paths_are_rejected() {
    let mut b = SnapshotBuilder::new();
    for kind in [E, P, I] {
        for path in [
            "",
            "foo",
            "foo/bar",
            "*",
            "/foo bar",
            " /foo",
            "/foo\tbar",
            "/foo\n",
            "/foo\r\nbar",
            "/foo\0",
            "/foo\u{7f}",
        ] {
            assert_eq!(
                b.add_route(Some("foo.com"), route(kind, path, "x")),
                Err(BuildError::InvalidPath {
                    kind,
                    path: path.to_string()
                }),
                "{kind} {path:?}"
            );
            assert_eq!(
                b.add_route(None, route(kind, path, "x")),
                Err(BuildError::InvalidPath {
                    kind,
                    path: path.to_string()
                }),
                "{kind} {path:?} without host"
            );
        }
    }
    let s = b.build();
    assert_eq!(s.route_count(), 0);
    assert!(s.table().vhosts().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 7. Property test against a naive reference matcher
// ---------------------------------------------------------------------------------------------

/// Rule hosts: exact names (one in upper case), wildcards at two depths, and "any host".
const RULE_HOSTS: &[Option<&str>] = &[
    None,
    Some("a.x"),
    Some("A.x"),
    Some("b.a.x"),
    Some("*.a.x"),
    Some("*.x"),
    Some("c.y"),
];
/// Request hosts (already normalized).
const REQ_HOSTS: &[&str] = &[
    "a.x", "b.a.x", "c.a.x", "c.b.a.x", "x", "b.x", "c.y", "d.c.y", "z",
];
const RULE_SEGMENTS: &[&str] = &["a", "b", "ab", ""];
const REQ_SEGMENTS: &[&str] = &["a", "b", "ab", "abc", "ba"];
const KINDS: &[PathKind] = &[E, P, I];

#[derive(Debug, Clone)]
struct GenRule {
    host: Option<&'static str>,
    kind: PathKind,
    path: String,
    created: i64,
    name: u8,
}

fn rule_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(RULE_SEGMENTS), 0..4),
        any::<bool>(),
    )
        .prop_map(|(segs, trailing)| {
            let mut p = format!("/{}", segs.join("/"));
            if trailing {
                p.push('/');
            }
            p
        })
}

/// Already-normal request paths: leading `/`, no empty segments, optional trailing slash.
fn request_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(REQ_SEGMENTS), 0..4),
        any::<bool>(),
    )
        .prop_map(|(segs, trailing)| {
            let mut p = format!("/{}", segs.join("/"));
            if trailing && !segs.is_empty() {
                p.push('/');
            }
            p
        })
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        prop::sample::select(RULE_HOSTS),
        prop::sample::select(KINDS),
        rule_path(),
        0i64..4,
        0u8..3,
    )
        .prop_map(|(host, kind, path, created, name)| GenRule {
            host,
            kind,
            path,
            created,
            name,
        })
}

/// A request aimed at a generated rule, so that rule hits are frequent: the rule's host (a label
/// added to wildcards) and its path with empty segments dropped plus one of a few suffixes.
fn request_near(rule: &GenRule, fallback_host: &'static str, suffix: usize) -> (String, String) {
    let host = match rule.host {
        None => fallback_host.to_string(),
        Some(h) => match h.strip_prefix("*.") {
            Some(parent) => format!("q.{parent}"),
            None => h.to_ascii_lowercase(),
        },
    };
    let segs: Vec<&str> = rule.path.split('/').filter(|s| !s.is_empty()).collect();
    let mut path = format!("/{}", segs.join("/"));
    if rule.path.ends_with('/') && !segs.is_empty() {
        path.push('/');
    }
    match suffix {
        0 => {}
        1 if !path.ends_with('/') => path.push('/'),
        1 => {}
        2 => path.push('a'),
        _ => {
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push('b');
        }
    }
    (host, path)
}

fn reference_rank(kind: PathKind) -> u8 {
    match kind {
        PathKind::Exact => 0,
        PathKind::Prefix => 1,
        PathKind::ImplementationSpecific => 2,
    }
}

/// Rule path with trailing slashes removed; `/` for the root.
fn reference_prefix_key(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        k => k,
    }
}

/// The specificity of `kind`/`path` for `request`, or `None` when it does not match.
fn reference_match(kind: PathKind, path: &str, request: &str) -> Option<usize> {
    match kind {
        PathKind::Exact => (request == path).then_some(path.len()),
        PathKind::ImplementationSpecific => request.starts_with(path).then_some(path.len()),
        PathKind::Prefix => {
            let key = reference_prefix_key(path);
            if key == "/" {
                return Some(1);
            }
            // Element-wise: the rule's `/`-separated elements are a prefix of the request's.
            let rule_elems: Vec<&str> = key.split('/').collect();
            let req_elems: Vec<&str> = request.trim_end_matches('/').split('/').collect();
            req_elems.starts_with(&rule_elems).then_some(key.len())
        }
    }
}

#[derive(Debug, Clone)]
struct RefRule {
    /// Lowercased host, "" for any host.
    host: String,
    kind: PathKind,
    path: String,
    order: RouteOrder,
    tag: String,
}

#[derive(Debug, Default)]
struct Reference {
    rules: Vec<RefRule>,
    /// Host ("" for any host) -> (order, tag) of its default.
    defaults: HashMap<String, (RouteOrder, String)>,
}

/// What the snapshot should say: the resolved kind, the vhost name and the `meta.ingress` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Rule { vhost: String, tag: String },
    HostDefault { vhost: String, tag: String },
    Default { tag: String },
}

impl Reference {
    fn same_rule(a: &RefRule, host: &str, kind: PathKind, path: &str) -> bool {
        let norm = |p: &str| -> String {
            match kind {
                PathKind::Prefix => reference_prefix_key(p).to_string(),
                _ => p.to_string(),
            }
        };
        a.host == host && a.kind == kind && norm(&a.path) == norm(path)
    }

    fn add(
        &mut self,
        host: Option<&str>,
        kind: PathKind,
        path: &str,
        order: RouteOrder,
        tag: &str,
    ) -> AddOutcome {
        let host = host.map(str::to_ascii_lowercase).unwrap_or_default();
        let new = RefRule {
            host: host.clone(),
            kind,
            path: path.to_string(),
            order,
            tag: tag.to_string(),
        };
        match self
            .rules
            .iter_mut()
            .find(|r| Self::same_rule(r, &host, kind, path))
        {
            None => {
                self.rules.push(new);
                AddOutcome::Added
            }
            Some(old) if new.order < old.order => {
                let old_meta = meta(&old.tag, &old.path);
                *old = new;
                AddOutcome::Replaced(old_meta)
            }
            Some(old) => AddOutcome::Shadowed(meta(&old.tag, &old.path)),
        }
    }

    fn add_default(&mut self, host: Option<&str>, order: RouteOrder, tag: &str) {
        let host = host.map(str::to_ascii_lowercase).unwrap_or_default();
        match self.defaults.get(&host) {
            Some((old, _)) if *old <= order => {}
            _ => {
                self.defaults.insert(host, (order, tag.to_string()));
            }
        }
    }

    fn host_defined(&self, host: &str) -> bool {
        self.rules.iter().any(|r| r.host == host) || self.defaults.contains_key(host)
    }

    fn find(&self, host: &str, path: &str) -> Expect {
        let wildcard = host
            .split_once('.')
            .filter(|(label, _)| !label.is_empty())
            .map(|(_, parent)| format!("*.{parent}"));
        let vhost = if self.host_defined(host) {
            host.to_string()
        } else if let Some(w) = wildcard.filter(|w| self.host_defined(w)) {
            w
        } else if self.host_defined("") {
            String::new()
        } else {
            return Expect::Default {
                tag: "global".into(),
            };
        };
        let best = self
            .rules
            .iter()
            .filter(|r| r.host == vhost)
            .filter_map(|r| reference_match(r.kind, &r.path, path).map(|len| (len, r)))
            .min_by_key(|(len, r)| (std::cmp::Reverse(*len), reference_rank(r.kind)));
        let name = if vhost.is_empty() {
            "_".to_string()
        } else {
            vhost.clone()
        };
        match (best, self.defaults.get(&vhost)) {
            (Some((_, r)), _) => Expect::Rule {
                vhost: name,
                tag: r.tag.clone(),
            },
            (None, Some((_, tag))) => Expect::HostDefault {
                vhost: name,
                tag: tag.clone(),
            },
            (None, None) => Expect::Default {
                tag: "global".into(),
            },
        }
    }
}

fn actual(s: &Snapshot, host: &str, path: &str) -> Expect {
    let id = s.find(host, path);
    let r = s.resolve(id);
    let tag = r.meta.ingress.to_string();
    match id {
        RouteId::Rule { .. } => Expect::Rule {
            vhost: r.host.to_string(),
            tag,
        },
        // A host without a default of its own may answer `HostDefault` resolving to the table
        // default; that is the same outcome as `Default`.
        RouteId::HostDefault { .. } if tag != "global" => Expect::HostDefault {
            vhost: r.host.to_string(),
            tag,
        },
        RouteId::HostDefault { .. } | RouteId::Default => Expect::Default { tag },
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn matcher_agrees_with_reference(
        rules in prop::collection::vec(gen_rule(), 0..14),
        defaults in prop::collection::vec((prop::sample::select(RULE_HOSTS), 0i64..4), 0..3),
        requests in prop::collection::vec(
            (prop::sample::select(REQ_HOSTS), request_path(), any::<prop::sample::Index>(), 0usize..7),
            1..20,
        ),
    ) {
        let mut b = SnapshotBuilder::new();
        b.default_route(fallback("global"));
        let mut reference = Reference::default();
        for (i, r) in rules.iter().enumerate() {
            // The index makes every order distinct; `created` and `name` make them collide on
            // the leading fields.
            let o = order(r.created, &format!("n{}-{i:02}", r.name));
            let tag = format!("r{i}");
            let want = reference.add(r.host, r.kind, &r.path, o.clone(), &tag);
            let got = b.add_route(r.host, route_ord(r.kind, &r.path, &tag, o));
            prop_assert_eq!(got, Ok(want), "adding rule {} {:?}", i, r);
        }
        for (i, &(host, created)) in defaults.iter().enumerate() {
            let o = order(created, &format!("d-{i:02}"));
            let tag = format!("d{i}");
            reference.add_default(host, o.clone(), &tag);
            b.host_default(host, fallback(&tag), o).unwrap();
        }
        let s = b.build();
        prop_assert_eq!(s.route_count(), reference.rules.len());
        for (host, path, pick, choice) in requests {
            // Choices 0..4 aim at a generated rule, the others use the random request.
            let (host, path) = match rules.get(pick.index(rules.len().max(1))) {
                Some(r) if choice < 4 => request_near(r, host, choice),
                _ => (host.to_string(), path),
            };
            prop_assert_eq!(
                actual(&s, &host, &path),
                reference.find(&host, &path),
                "request {} {}",
                host,
                path
            );
        }
    }

    #[test]
    fn normalize_path_output_is_normal(raw in "[/.a%2eEfF]{0,12}") {
        if let Ok(out) = normalize_path(&raw) {
            prop_assert!(out.starts_with('/'), "{:?} -> {:?}", raw, out);
            prop_assert!(!out.contains("//"), "{:?} -> {:?}", raw, out);
            prop_assert!(
                !out.split('/').any(|seg| seg == "." || seg == ".."),
                "{:?} -> {:?}",
                raw,
                out
            );
            // Without escapes left, the output is a fixed point and borrowed.
            if !out.contains('%') {
                prop_assert!(
                    matches!(normalize_path(&out), Ok(Cow::Borrowed(p)) if p == out),
                    "{:?} -> {:?} is not stable",
                    raw,
                    out
                );
            }
        }
    }
}

#[test]
fn wildcard_needs_a_non_empty_first_label() {
    let mut b = SnapshotBuilder::new();
    b.add_route(Some("*.foo.com"), route(PathKind::Prefix, "/", "wild"))
        .unwrap();
    let s = b.build();
    assert_eq!(s.find(".foo.com", "/"), RouteId::Default);
    assert!(matches!(s.find("a.foo.com", "/"), RouteId::Rule { .. }));
}

#[test]
fn replace_publishes_the_new_snapshot_and_hands_back_the_old_one() {
    let handle = SnapshotHandle::new();
    assert!(!handle.is_ready());
    let mut b = SnapshotBuilder::new();
    b.add_route(Some("a.test"), route(P, "/", "first")).unwrap();
    handle.store(b.build());
    let first = handle.load();
    let mut b = SnapshotBuilder::new();
    b.add_route(Some("b.test"), route(P, "/", "second"))
        .unwrap();
    let old = handle.replace(b.build());
    assert!(
        Arc::ptr_eq(&old, &first),
        "the previous snapshot comes back"
    );
    assert!(handle.is_ready());
    let now = handle.load();
    assert_eq!(hit(&now, "b.test", "/"), rule("second"));
    assert_eq!(
        hit(&old, "a.test", "/"),
        rule("first"),
        "requests holding it still route"
    );
}
