//! A gateway step of your own next to Weir's: `example.local/api` needs an `X-Api-Key` header
//! (an Auth-phase step answers 401 without a valid one), everything else is public.
//!
//! ```text
//! cargo run -p weir-proxy-core --example api_key -- 127.0.0.1:8000 127.0.0.1:9001 s3cret
//! curl -i -H 'Host: example.local' http://127.0.0.1:8000/api/x                       # 401
//! curl -i -H 'Host: example.local' -H 'X-Api-Key: s3cret' http://127.0.0.1:8000/api/x # proxied
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use proxy_core::pingora::server::Server;
use proxy_core::{
    async_trait, DefaultRoute, LocalResponse, PathKind, Phase, PoolCache, PoolKey, Route,
    RouteMeta, RoutePolicy, RouteStep, SnapshotBuilder, SnapshotHandle, StepOutcome, StepRequest,
    Steps, Target, WeirProxy,
};

/// Lets a request through only with one of the keys in `X-Api-Key`.
struct ApiKey {
    keys: Vec<HeaderValue>,
}

#[async_trait]
impl RouteStep for ApiKey {
    fn name(&self) -> &str {
        "api-key"
    }

    /// After Weir's redirect and access lists, before limits and proxying.
    fn phase(&self) -> Phase {
        Phase::Auth
    }

    async fn on_request(&self, req: &StepRequest<'_>) -> StepOutcome {
        match req.header().headers.get("x-api-key") {
            Some(key) if self.keys.contains(key) => StepOutcome::Continue,
            _ => StepOutcome::Respond(LocalResponse::page(StatusCode::UNAUTHORIZED).with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("ApiKey"),
            )),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, key] = args.as_slice() else {
        eprintln!("usage: api_key LISTEN_ADDR UPSTREAM API_KEY");
        std::process::exit(2);
    };
    let upstream: SocketAddr = upstream
        .parse()
        .unwrap_or_else(|e| panic!("{upstream}: {e}"));
    let key = HeaderValue::from_str(key).expect("the key is a valid header value");

    let pools = PoolCache::new();
    let pool = pools.get(&PoolKey::from("api"), &[upstream]);
    // One step instance can serve any number of routes.
    let api_key: Arc<dyn RouteStep> = Arc::new(ApiKey { keys: vec![key] });

    let mut b = SnapshotBuilder::new();
    b.add_route(
        Some("example.local"),
        Route {
            kind: PathKind::Prefix,
            path: "/api".into(),
            target: Target::Pool(pool.clone()),
            meta: RouteMeta {
                service: "api".into(),
                path: "/api".into(),
                ..Default::default()
            },
            policy: Arc::new(RoutePolicy {
                steps: Steps::new([api_key]),
                ..Default::default()
            }),
            order: Default::default(),
        },
    )
    .expect("valid rule");
    b.default_route(DefaultRoute {
        target: Target::Pool(pool),
        ..Default::default()
    });
    let handle = SnapshotHandle::new();
    handle.store(b.build());

    let mut server = Server::new(None).expect("server");
    server.bootstrap();
    let mut proxy = proxy_core::pingora::proxy::http_proxy_service(
        &server.configuration,
        WeirProxy::new(handle, None),
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
