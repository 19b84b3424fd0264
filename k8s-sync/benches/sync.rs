//! Scale benchmark of a full sync: 10,000 Ingresses (one distinct host and 2 paths each) on 2,000
//! Services whose EndpointSlices hold 50,000 endpoints in total.
//!
//! `Syncer::apply` is a full rebuild: class filter, validation, translation, pools, snapshot build
//! and swap. It is measured on a fresh syncer (first apply: every pool is created) and on a syncer
//! that already applied the same objects (steady state: pools are reused). The steady state is also
//! measured with 2,500 and 5,000 Ingresses on the same Services, to show how its cost grows with
//! the number of Ingresses (linear growth is ×2 per step). Steady state re-applies the very same
//! objects; the `one_*_changed` runs replace one EndpointSlice or one Ingress before each apply,
//! as a watcher does after an edit (unchanged objects are shared, so only the replaced one is
//! read again).
//!
//! Before the benchmarks, one apply runs outside criterion and the process RSS growth it caused is
//! printed to stderr (`sync-memory:` lines).
//!
//! ```sh
//! cargo bench -p weir-k8s-sync --bench sync              # full run
//! cargo bench -p weir-k8s-sync --bench sync -- --quick   # short run
//! ```

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_sync::objects::SERVICE_NAME_LABEL;
use k8s_sync::{Object, ObjectSet, SyncOptions, Syncer};
use proxy_core::{PoolCache, PoolKey, SnapshotHandle, Target};

/// The allocator of the `weir` binary, so that the numbers are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INGRESSES: usize = 10_000;
/// Smaller Ingress counts of the steady-state scaling series.
const SCALING: [usize; 2] = [2_500, 5_000];
const SERVICES: usize = 2_000;
const ENDPOINTS_PER_SERVICE: usize = 25;
const NAMESPACES: usize = 10;

fn meta(namespace: Option<&str>, name: String) -> ObjectMeta {
    ObjectMeta {
        namespace: namespace.map(str::to_string),
        name: Some(name),
        ..Default::default()
    }
}

fn backend(service: usize) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: format!("svc{service}"),
            port: Some(ServiceBackendPort {
                number: Some(80),
                name: None,
            }),
        }),
        resource: None,
    }
}

fn path(kind: &str, p: &str, service: usize) -> HTTPIngressPath {
    HTTPIngressPath {
        path: Some(p.to_string()),
        path_type: kind.to_string(),
        backend: backend(service),
    }
}

/// The IngressClass, the Services with their EndpointSlices, and the Ingresses.
///
/// Service `s` lives in namespace `ns{s % 10}`; Ingress `i` (host `h{i}.example.test`) sends
/// Prefix `/` to Service `i % 2000` and Exact `/api` to Service `(i + 10) % 2000`, both in its
/// own namespace `ns{i % 10}`.
fn objects(ingresses: usize) -> ObjectSet {
    let mut set = ObjectSet::default();
    set.insert(Object::IngressClass(Arc::new(IngressClass {
        metadata: meta(None, "nginx".into()),
        spec: Some(IngressClassSpec {
            controller: Some("k8s.io/ingress-nginx".into()),
            parameters: None,
        }),
    })));
    for s in 0..SERVICES {
        let ns = format!("ns{}", s % NAMESPACES);
        set.insert(Object::Service(Arc::new(Service {
            metadata: meta(Some(&ns), format!("svc{s}")),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(8080)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        })));
        let mut slice_meta = meta(Some(&ns), format!("svc{s}-abcde"));
        slice_meta.labels = Some(BTreeMap::from([(
            SERVICE_NAME_LABEL.to_string(),
            format!("svc{s}"),
        )]));
        let endpoints = (0..ENDPOINTS_PER_SERVICE)
            .map(|e| Endpoint {
                addresses: vec![format!("10.{}.{}.{}", s >> 8, s & 255, e + 1)],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some(format!("node{}", e % 50)),
                ..Default::default()
            })
            .collect();
        set.insert(Object::EndpointSlice(Arc::new(EndpointSlice {
            metadata: slice_meta,
            address_type: "IPv4".into(),
            endpoints: Some(endpoints),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
        })));
    }
    for i in 0..ingresses {
        let ns = format!("ns{}", i % NAMESPACES);
        let mut metadata = meta(Some(&ns), format!("ing{i}"));
        metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap(),
        ));
        set.insert(Object::Ingress(Arc::new(Ingress {
            metadata,
            spec: Some(IngressSpec {
                ingress_class_name: Some("nginx".into()),
                rules: Some(vec![IngressRule {
                    host: Some(format!("h{i}.example.test")),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![
                            path("Prefix", "/", i % SERVICES),
                            path("Exact", "/api", (i + 10) % SERVICES),
                        ],
                    }),
                }]),
                ..Default::default()
            }),
            status: None,
        })));
    }
    set
}

fn syncer() -> Syncer {
    Syncer::new(SyncOptions::default(), SnapshotHandle::new(), None)
}

/// Check that the generated objects produce what the benchmark claims to measure.
fn check(syncer: &Syncer, report: &k8s_sync::ApplyReport, ingresses: usize) {
    assert_eq!(report.served, ingresses);
    assert_eq!(report.routes, 2 * ingresses);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected.first());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings.first());
    assert!(report.ignored.is_empty(), "{:?}", report.ignored.first());
    let snap = syncer.handle().load();
    let i = ingresses / 2 + 3;
    let r = snap.resolve(snap.find(&format!("h{i}.example.test"), "/api"));
    match r.target {
        Target::Pool(p) => {
            assert_eq!(
                p.key().0.as_ref(),
                format!("ns3/svc{}:80", (i + 10) % SERVICES)
            );
            assert_eq!(p.endpoints().len(), ENDPOINTS_PER_SERVICE);
        }
        Target::NotFound => panic!("h{i}.example.test/api has no pool"),
    }
    let pools: std::collections::HashMap<_, _> = snap
        .pools()
        .map(|p| (p.key().clone(), p.endpoints().len()))
        .collect();
    assert_eq!(pools.len(), SERVICES.min(2 * ingresses));
    if ingresses >= SERVICES {
        let endpoints: usize = pools.values().sum();
        assert_eq!(endpoints, SERVICES * ENDPOINTS_PER_SERVICE);
    }
}

/// VmRSS of this process in KiB, from `/proc/self/status` (None where unavailable).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn growth(before: Option<u64>, after: Option<u64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{:+.1} MiB", (a as f64 - b as f64) / 1024.0),
        _ => "?".into(),
    }
}

/// One apply outside criterion: how much the process grows for the objects and for the snapshot.
/// RSS growth is an upper bound of what stays allocated (freed temporaries may stay mapped).
fn report_memory() {
    // The pools alone, for comparison (kept alive until the end so that the apply below cannot
    // reuse their memory).
    let start = rss_kib();
    let cache = PoolCache::new();
    let pools: Vec<_> = (0..SERVICES)
        .map(|s| {
            let endpoints: Vec<SocketAddr> = (0..ENDPOINTS_PER_SERVICE)
                .map(|e| SocketAddr::from(([10, (s >> 8) as u8, s as u8, e as u8 + 1], 8080)))
                .collect();
            cache.get(&PoolKey::from(format!("ns/svc{s}:80").as_str()), &endpoints)
        })
        .collect();
    let with_pools = rss_kib();

    let objects = objects(INGRESSES);
    let with_objects = rss_kib();
    let mut s = syncer();
    let before = rss_kib();
    let t = Instant::now();
    let report = s.apply(&objects, &[]);
    let took = t.elapsed();
    let after = rss_kib();
    check(&s, &report, INGRESSES);
    drop(report);
    let second = s.apply(&objects, &[]);
    drop(second);
    let after_second = rss_kib();
    eprintln!(
        "sync-memory: {SERVICES} proxy_core Pools of {ENDPOINTS_PER_SERVICE} endpoints alone \
         (PoolCache::get): VmRSS {} -> {} ({})",
        mib(start),
        mib(with_pools),
        growth(start, with_pools)
    );
    eprintln!(
        "sync-memory: ObjectSet of {INGRESSES} Ingresses, {SERVICES} Services, {} endpoints: \
         VmRSS {} -> {} ({})",
        SERVICES * ENDPOINTS_PER_SERVICE,
        mib(with_pools),
        mib(with_objects),
        growth(with_pools, with_objects)
    );
    eprintln!(
        "sync-memory: first Syncer::apply ({:.0} ms, {} routes, {SERVICES} pools): VmRSS {} -> {} \
         (growth {}: snapshot + pools + syncer state + retained temporaries)",
        took.as_secs_f64() * 1000.0,
        2 * INGRESSES,
        mib(before),
        mib(after),
        growth(before, after)
    );
    eprintln!(
        "sync-memory: second apply of the same objects: VmRSS {} (growth {} over the first)",
        mib(after_second),
        growth(after, after_second)
    );
    drop(pools);
}

fn id(ingresses: usize) -> String {
    format!(
        "{ingresses}_ingresses_{}_endpoints",
        SERVICES * ENDPOINTS_PER_SERVICE
    )
}

/// Re-applying the very objects a syncer already applied.
fn steady_state(g: &mut BenchmarkGroup<'_, WallTime>, objects: &ObjectSet, ingresses: usize) {
    let mut s = syncer();
    let report = s.apply(objects, &[]);
    check(&s, &report, ingresses);
    g.bench_function(BenchmarkId::new("steady_state", id(ingresses)), |b| {
        b.iter(|| black_box(s.apply(objects, &[])))
    });
}

/// Applies after `swap` put one version or the other of one object into `set`.
fn one_change(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut set: ObjectSet,
    swap: &dyn Fn(&mut ObjectSet, bool),
) {
    let mut s = syncer();
    let report = s.apply(&set, &[]);
    check(&s, &report, INGRESSES);
    swap(&mut set, true);
    let report = s.apply(&set, &[]);
    check(&s, &report, INGRESSES);
    let mut flip = false;
    g.bench_function(BenchmarkId::new(name, id(INGRESSES)), |b| {
        b.iter(|| {
            swap(&mut set, flip);
            flip = !flip;
            black_box(s.apply(&set, &[]))
        })
    });
}

fn bench_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let set = objects(INGRESSES);

    // A fresh syncer each time: every pool is built. The syncer (and its snapshot) is dropped
    // outside the measurement.
    g.bench_function(BenchmarkId::new("first", id(INGRESSES)), |b| {
        b.iter_batched(
            syncer,
            |mut s| {
                let report = s.apply(&set, &[]);
                (s, report)
            },
            BatchSize::PerIteration,
        )
    });

    // The same objects again: pools are reused, the previous snapshot is swapped out and dropped.
    steady_state(&mut g, &set, INGRESSES);

    // One object replaced per apply, alternating between two versions: what a rebuild costs
    // after the most frequent changes in a cluster (one EndpointSlice, one Ingress).
    let slice_key = set.endpoint_slices.keys().next().unwrap().clone();
    let slices = {
        let original = set.endpoint_slices[&slice_key].clone();
        let mut moved = (*original).clone();
        for e in moved.endpoints.iter_mut().flatten() {
            e.addresses = vec![e.addresses[0].replace("10.", "10.1")];
        }
        [original, Arc::new(moved)]
    };
    one_change(
        &mut g,
        "one_endpointslice_changed",
        set.clone(),
        &|set, second| {
            let v = slices[usize::from(second)].clone();
            set.endpoint_slices.insert(slice_key.clone(), v);
        },
    );
    let ing_key = set.ingresses.keys().next().unwrap().clone();
    let ingresses = {
        let original = set.ingresses[&ing_key].clone();
        let mut edited = (*original).clone();
        let rules = edited.spec.as_mut().and_then(|s| s.rules.as_mut()).unwrap();
        let paths = &mut rules[0].http.as_mut().unwrap().paths;
        paths[1].path = Some("/api/v2".to_string());
        [original, Arc::new(edited)]
    };
    one_change(
        &mut g,
        "one_ingress_changed",
        set.clone(),
        &|set, second| {
            let v = ingresses[usize::from(second)].clone();
            set.ingresses.insert(ing_key.clone(), v);
        },
    );
    drop(set);
    for n in SCALING {
        steady_state(&mut g, &objects(n), n);
    }
    g.finish();
}

fn main() {
    // Only in `cargo bench` (criterion's test mode, without `--bench`, runs each routine once).
    if std::env::args().any(|a| a == "--bench") {
        report_memory();
    }
    let mut c = Criterion::default().configure_from_args();
    bench_apply(&mut c);
    c.final_summary();
}
