//! Scale benchmarks of the matcher and the snapshot builder.
//!
//! An "Ingress" here is one distinct host (`h{i}.example.test`) with three paths: Prefix `/`,
//! Prefix `/api` and Exact `/api/health`; every table also has as many wildcard hosts
//! (`*.w{i}.test`, same three paths). Lookups are measured at 10, 1,000 and 10,000 Ingresses and
//! should not depend on that number; `build` is measured at 10,000 Ingresses (exact hosts only,
//! 30,000 routes).
//!
//! ```sh
//! cargo bench -p weir-proxy-core --bench routing              # full run
//! cargo bench -p weir-proxy-core --bench routing -- --quick   # short run
//! cargo bench -p weir-proxy-core --bench routing -- lookup/10000
//! ```

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode};
use proxy_core::{
    normalize_host, normalize_path, PathKind, Pool, Route, RouteMeta, RouteOrder, RoutePolicy,
    Snapshot, SnapshotBuilder, Target,
};

/// The allocator of the `weir` binary, so that the numbers are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ingress counts of the lookup benchmarks.
const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Ingress count of the build benchmarks.
const BUILD_SIZE: usize = 10_000;
/// Distinct pools the routes point at (a few endpoints each).
const POOLS: usize = 64;
/// How many different hosts the rotating lookups cycle through.
const ROTATION: usize = 1_024;
/// The request path of the "deep path" lookups: matched by Prefix `/api`.
const DEEP_PATH: &str = "/api/v1/users/42";

fn pools() -> Vec<Arc<Pool>> {
    (0..POOLS)
        .map(|p| {
            let endpoints =
                (0..3u16).map(|e| SocketAddr::from(([10, 0, p as u8, e as u8 + 1], 8080)));
            Arc::new(Pool::new(
                format!("ns{}/svc{p}:80", p % 8).as_str().into(),
                endpoints,
            ))
        })
        .collect()
}

fn route(
    kind: PathKind,
    path: &str,
    target: &Target,
    ingress: &Arc<str>,
    policy: &Arc<RoutePolicy>,
    i: usize,
) -> Route {
    Route {
        kind,
        path: path.to_string(),
        target: target.clone(),
        meta: RouteMeta {
            namespace: "default".into(),
            ingress: ingress.clone(),
            service: "svc".into(),
            path: path.into(),
            ..Default::default()
        },
        policy: policy.clone(),
        order: RouteOrder {
            created: i as i64,
            name: format!("default/{ingress}"),
        },
    }
}

/// The three paths of one "Ingress" for `host`.
fn add_ingress(
    b: &mut SnapshotBuilder,
    host: &str,
    i: usize,
    pools: &[Arc<Pool>],
    policy: &Arc<RoutePolicy>,
) {
    let target = Target::Pool(pools[i % pools.len()].clone());
    let ingress: Arc<str> = format!("ing{i}").into();
    for (kind, path) in [
        (PathKind::Prefix, "/"),
        (PathKind::Prefix, "/api"),
        (PathKind::Exact, "/api/health"),
    ] {
        b.add_route(Some(host), route(kind, path, &target, &ingress, policy, i))
            .unwrap();
    }
}

/// `n` exact hosts, and with `wildcards` also `n` wildcard hosts, three paths each.
fn builder(n: usize, wildcards: bool, pools: &[Arc<Pool>]) -> SnapshotBuilder {
    let policy = Arc::new(RoutePolicy::default());
    let mut b = SnapshotBuilder::new();
    for i in 0..n {
        add_ingress(&mut b, &format!("h{i}.example.test"), i, pools, &policy);
        if wildcards {
            add_ingress(&mut b, &format!("*.w{i}.test"), n + i, pools, &policy);
        }
    }
    b
}

/// One host with 1,000 paths of the given kind (`/svc{j}/api`), plus the `/` root.
fn many_paths(kind: PathKind, pools: &[Arc<Pool>]) -> Snapshot {
    let policy = Arc::new(RoutePolicy::default());
    let mut b = SnapshotBuilder::new();
    let ingress: Arc<str> = "big".into();
    let root = Target::Pool(pools[0].clone());
    b.add_route(
        Some("big.example.test"),
        route(PathKind::Prefix, "/", &root, &ingress, &policy, 0),
    )
    .unwrap();
    for j in 0..1_000 {
        let target = Target::Pool(pools[j % pools.len()].clone());
        let path = format!("/svc{j}/api");
        b.add_route(
            Some("big.example.test"),
            route(kind, &path, &target, &ingress, &policy, j),
        )
        .unwrap();
    }
    b.build()
}

/// What a request does with the snapshot it loaded: find, then resolve the id.
#[inline]
fn lookup<'a>(snap: &'a Snapshot, host: &str, path: &str) -> &'a Target {
    let id = snap.find(black_box(host), black_box(path));
    snap.resolve(id).target
}

fn bench_lookup(c: &mut Criterion) {
    let pools = pools();
    let mut g = c.benchmark_group("lookup");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let snap = builder(n, true, &pools).build();
        assert_eq!(snap.route_count(), 6 * n);
        let mid = n / 2;

        // Sanity: each case resolves to what it claims to measure.
        let exact = format!("h{mid}.example.test");
        let wild = format!("x.w{mid}.test");
        assert!(matches!(
            snap.find(&exact, DEEP_PATH),
            proxy_core::RouteId::Rule { .. }
        ));
        assert_eq!(
            snap.resolve(snap.find(&exact, DEEP_PATH))
                .meta
                .path
                .as_ref(),
            "/api"
        );
        assert_eq!(
            snap.resolve(snap.find(&wild, DEEP_PATH)).host,
            format!("*.w{mid}.test")
        );
        assert_eq!(
            snap.find("unknown.example.org", DEEP_PATH),
            proxy_core::RouteId::Default
        );

        g.bench_with_input(BenchmarkId::new("exact_host_deep_path", n), &n, |b, _| {
            b.iter(|| black_box(lookup(&snap, &exact, DEEP_PATH)))
        });
        g.bench_with_input(BenchmarkId::new("wildcard_host", n), &n, |b, _| {
            b.iter(|| black_box(lookup(&snap, &wild, DEEP_PATH)))
        });
        g.bench_with_input(BenchmarkId::new("unknown_host_default", n), &n, |b, _| {
            b.iter(|| black_box(lookup(&snap, "unknown.example.org", DEEP_PATH)))
        });

        // The same exact-host lookup over up to 1,024 different hosts spread over the table, so a
        // big table is not served from a single hot cache line.
        let hosts: Vec<String> = (0..ROTATION.min(n))
            .map(|k| format!("h{}.example.test", k * n / ROTATION.min(n)))
            .collect();
        g.bench_with_input(
            BenchmarkId::new("exact_host_deep_path_rotating", n),
            &n,
            |b, _| {
                let mut k = 0usize;
                b.iter(|| {
                    k = (k + 1) % hosts.len();
                    black_box(lookup(&snap, &hosts[k], DEEP_PATH))
                })
            },
        );
    }

    // 1,000 paths on one host: Prefix paths (hash probe per segment) and ImplementationSpecific
    // paths (hash probe per distinct length).
    for (label, kind) in [
        ("prefix", PathKind::Prefix),
        ("implementation_specific", PathKind::ImplementationSpecific),
    ] {
        let snap = many_paths(kind, &pools);
        assert_eq!(
            snap.resolve(snap.find("big.example.test", "/svc500/api/v1/users/42"))
                .meta
                .path
                .as_ref(),
            "/svc500/api"
        );
        g.bench_function(BenchmarkId::new("1000_paths_one_host_hit", label), |b| {
            b.iter(|| black_box(lookup(&snap, "big.example.test", "/svc500/api/v1/users/42")))
        });
        g.bench_function(
            BenchmarkId::new("1000_paths_one_host_root_fallthrough", label),
            |b| b.iter(|| black_box(lookup(&snap, "big.example.test", "/other/v1/users/42"))),
        );
    }
    g.finish();
}

fn bench_normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (label, raw) in [
        ("already_normal", "api.example.com"),
        ("port", "api.example.com:8080"),
        ("uppercase_port_dot", "API.Example.COM.:443"),
        ("ipv6_port", "[2001:db8::1]:8080"),
    ] {
        g.bench_with_input(BenchmarkId::new("host", label), raw, |b, raw| {
            b.iter(|| black_box(normalize_host(black_box(raw))))
        });
    }
    for (label, raw) in [
        ("already_normal", "/api/v1/users/42"),
        ("root", "/"),
        ("dot_segments", "/api//v1/./users/../users/42/"),
        ("percent_encoded", "/api/v1/%7Euser/caf%C3%A9"),
    ] {
        g.bench_with_input(BenchmarkId::new("path", label), raw, |b, raw| {
            b.iter(|| black_box(normalize_path(black_box(raw))))
        });
    }
    g.finish();
}

fn bench_build(c: &mut Criterion) {
    let pools = pools();
    let mut g = c.benchmark_group("build");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    // `build` alone: the builder is filled outside the measurement.
    g.bench_function(BenchmarkId::new("build", BUILD_SIZE), |b| {
        b.iter_batched(
            || builder(BUILD_SIZE, false, &pools),
            |builder| builder.build(),
            BatchSize::PerIteration,
        )
    });
    // What a sync does: every add_route, then build.
    g.bench_function(BenchmarkId::new("add_routes_and_build", BUILD_SIZE), |b| {
        b.iter_with_large_drop(|| builder(BUILD_SIZE, false, &pools).build())
    });
    g.finish();
}

// `criterion_group!` would generate an undocumented `pub fn` (denied by the workspace lints).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench_lookup(&mut c);
    bench_normalize(&mut c);
    bench_build(&mut c);
}

criterion_main!(benches);
