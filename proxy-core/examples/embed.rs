//! A minimal gateway built on proxy-core alone: routes `example.local/api` and everything else to
//! upstreams given on the command line, records request metrics in a Prometheus registry, and
//! swaps the routing table at runtime without a restart.
//!
//! ```text
//! cargo run -p weir-proxy-core --example embed -- 127.0.0.1:8000 127.0.0.1:9001 127.0.0.1:9002
//! curl -H 'Host: example.local' http://127.0.0.1:8000/api/x
//! ```
//!
//! `proxy-core/tests/embed.rs` compiles this file as a module and runs [`gateway`] with real
//! upstreams and a real client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proxy_core::pingora::server::Server;
use proxy_core::{
    DefaultRoute, PathKind, PoolCache, PoolKey, ProxyMetrics, Route, RouteMeta, SnapshotBuilder,
    SnapshotHandle, Target, WeirProxy,
};

/// Build a snapshot: `example.local` Prefix `/api` → `api`, anything else → `web`.
fn build(pools: &PoolCache, api: &[SocketAddr], web: &[SocketAddr]) -> proxy_core::Snapshot {
    let api_pool = pools.get(&PoolKey::from("api"), api);
    let web_pool = pools.get(&PoolKey::from("web"), web);
    let mut b = SnapshotBuilder::new();
    b.add_route(
        Some("example.local"),
        Route {
            kind: PathKind::Prefix,
            path: "/api".into(),
            target: Target::Pool(api_pool),
            meta: RouteMeta {
                service: "api".into(),
                path: "/api".into(),
                ..Default::default()
            },
            policy: Default::default(),
            order: Default::default(),
        },
    )
    .expect("valid rule");
    b.default_route(DefaultRoute {
        target: Target::Pool(web_pool),
        ..Default::default()
    });
    b.build()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, api, web] = args.as_slice() else {
        eprintln!("usage: embed LISTEN_ADDR API_UPSTREAM WEB_UPSTREAM");
        std::process::exit(2);
    };
    let parse = |s: &str| -> SocketAddr { s.parse().unwrap_or_else(|e| panic!("{s}: {e}")) };
    let (server, _metrics) = gateway(listen, parse(api), parse(web), Duration::from_secs(10));
    server.run_forever();
}

/// The gateway on `listen`, ready to run, and the registry its request metrics are in. After
/// `flip_after`, the web pool becomes both upstreams.
pub fn gateway(
    listen: &str,
    api: SocketAddr,
    web: SocketAddr,
    flip_after: Duration,
) -> (Server, prometheus::Registry) {
    let pools = Arc::new(PoolCache::new());
    let handle = SnapshotHandle::new();
    handle.store(build(&pools, &[api], &[web]));

    // Anything can publish a new snapshot at any time; here a thread flips the web pool to
    // both upstreams. Requests in flight keep the snapshot they started with.
    {
        let (pools, handle) = (pools.clone(), handle.clone());
        std::thread::spawn(move || {
            std::thread::sleep(flip_after);
            handle.store(build(&pools, &[api], &[web, api]));
        });
    }

    let registry = prometheus::Registry::new();
    let metrics =
        ProxyMetrics::register(&registry, &HashMap::new()).expect("metrics register once");

    let mut server = Server::new(None).expect("server");
    server.bootstrap();
    let mut proxy = proxy_core::pingora::proxy::http_proxy_service(
        &server.configuration,
        WeirProxy::new(handle, Some(metrics)),
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    (server, registry)
}
