//! Request metrics through a real `WeirProxy`: each virtual host's series carry its own `host`
//! label, also when hosts share one fallback route.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use proxy_core::{
    DefaultRoute, PathKind, PoolCache, PoolKey, ProxyMetrics, Route, RouteMeta, SnapshotBuilder,
    SnapshotHandle, Target, WeirProxy,
};
use support::{get, Served};
use weir_loadtest::echo::EchoServer;

/// `host` label → request count, for the series of `ingress`.
fn requests_by_host(registry: &prometheus::Registry, ingress: &str) -> BTreeMap<String, u64> {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("nginx_ingress_controller_requests{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        if label("ingress").as_deref() == Some(ingress) {
            *out.entry(label("host").unwrap()).or_default() += value.parse::<u64>().unwrap();
        }
    }
    out
}

/// Metrics are recorded after the response is sent: wait for them.
fn wait_for(
    registry: &prometheus::Registry,
    ingress: &str,
    want: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = requests_by_host(registry, ingress);
        if &got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hosts_sharing_a_fallback_each_get_their_own_host_label() {
    let upstream = EchoServer::start("upstream").unwrap();
    let pools = PoolCache::new();
    let pool = pools.get(&PoolKey::from("echo"), &[upstream.addr()]);
    let meta = |ingress: &str| RouteMeta {
        namespace: "ns".into(),
        ingress: ingress.into(),
        service: "echo".into(),
        path: "/".into(),
        canary: false,
    };
    let mut b = SnapshotBuilder::new();
    // One fallback, cloned for two hosts (as an Ingress's defaultBackend is for each host it names).
    let fallback = DefaultRoute {
        target: Target::Pool(pool.clone()),
        meta: meta("fallback"),
        policy: Default::default(),
    };
    for host in ["a.test", "b.test"] {
        b.add_route(
            Some(host),
            Route {
                kind: PathKind::Exact,
                path: "/rule".into(),
                target: Target::Pool(pool.clone()),
                meta: meta("rules"),
                policy: Default::default(),
                order: Default::default(),
            },
        )
        .unwrap();
        b.host_default(Some(host), fallback.clone(), Default::default())
            .unwrap();
    }
    // Hosts without a fallback of their own use the default route, each under its own name.
    b.declare_host("c.test").unwrap();
    b.declare_host("d.test").unwrap();
    b.default_route(DefaultRoute {
        target: Target::Pool(pool),
        meta: meta("default"),
        policy: Default::default(),
    });
    let handle = SnapshotHandle::new();
    handle.store(b.build());
    let registry = prometheus::Registry::new();
    let metrics = ProxyMetrics::register(&registry, &HashMap::new()).unwrap();
    let proxy = Served::start(WeirProxy::new(handle, Some(metrics)));

    for (host, path, times) in [
        ("a.test", "/other", 2),
        ("b.test", "/other", 1),
        ("a.test", "/rule", 1),
        ("b.test", "/rule", 3),
        ("c.test", "/", 1),
        ("d.test", "/x", 2),
        ("unknown.test", "/", 1),
    ] {
        for _ in 0..times {
            assert_eq!(get(proxy.addr(), host, path, &[]).status, 200);
        }
    }
    let counts = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(h, n)| (h.to_string(), *n)).collect()
    };
    let want = counts(&[("a.test", 2), ("b.test", 1)]);
    assert_eq!(wait_for(&registry, "fallback", &want), want);
    let want = counts(&[("a.test", 1), ("b.test", 3)]);
    assert_eq!(wait_for(&registry, "rules", &want), want);
    let want = counts(&[("_", 1), ("c.test", 1), ("d.test", 2)]);
    assert_eq!(wait_for(&registry, "default", &want), want);
}
