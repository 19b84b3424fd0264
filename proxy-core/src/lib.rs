//! # Weir proxy-core
//!
//! The data plane of the Weir ingress controller as a library, usable on its own to build a
//! gateway on [Pingora](https://github.com/cloudflare/pingora). It has no Kubernetes types.
//!
//! The data flow:
//! 1. describe routes ([`Route`], [`DefaultRoute`]) and their [`RoutePolicy`], and collect them
//!    in a [`SnapshotBuilder`]; upstream endpoints live in [`Pool`]s (reuse them across builds
//!    with a [`PoolCache`]);
//! 2. [`SnapshotBuilder::build`] indexes everything into an immutable [`Snapshot`];
//! 3. publish it with [`SnapshotHandle::store`]: one atomic swap, requests in flight keep the
//!    snapshot they loaded;
//! 4. [`WeirProxy`] is a `pingora::proxy::ProxyHttp` that loads the snapshot once per request,
//!    matches host and path ([`RouteTable`]), applies the route's policy in nginx's phase order
//!    ([`policy`]), and forwards to a pool endpoint with the ingress-nginx headers; unmatched
//!    requests get the built-in 404, empty pools a 503;
//! 5. optionally, [`EdgeApp`] wraps the HTTP app for PROXY protocol and TLS with per-SNI
//!    certificates ([`SniResolver`], [`CertIndex`]).
//!
//! Every public item is re-exported here, at one path (`proxy_core::X`); the [`policy`] module
//! also holds the policy pieces and documents their order. A gateway adds its own per-route
//! pieces as [`RouteStep`]s. Complete programs are in `examples/embed.rs` and
//! `examples/api_key.rs`; the guide is `docs/embedding.md`.
//!
//! ```no_run
//! use proxy_core::{PathKind, Pool, Route, RouteMeta, SnapshotBuilder, SnapshotHandle, Target};
//! use std::sync::Arc;
//!
//! let pool = Arc::new(Pool::new("default/echo:80".into(), ["127.0.0.1:8080".parse().unwrap()]));
//! let mut b = SnapshotBuilder::new();
//! b.add_route(Some("example.com"), Route {
//!     kind: PathKind::Prefix,
//!     path: "/".into(),
//!     target: Target::Pool(pool),
//!     meta: RouteMeta::default(),
//!     policy: Default::default(),
//!     order: Default::default(),
//! }).unwrap();
//! let handle = SnapshotHandle::new();
//! handle.store(b.build());
//! let proxy = proxy_core::WeirProxy::new(handle, None);
//! // pingora::proxy::http_proxy_service(&server.configuration, proxy) ...
//! # let _ = proxy;
//! ```

mod access_log;
mod client_ip;
mod edge;
mod metrics;
mod model;
mod pages;
pub mod policy;
mod proxy;
mod routing;
mod snapshot;
mod tls;
mod upstream;

// The route model.
pub use model::{DefaultRoute, PathKind, Route, RouteMeta, RouteOrder, ServerPolicy, Target};

// Route policy (its home is the `policy` module).
#[doc(no_inline)]
pub use policy::{path_regex, Rewrite, UrlRedirect};
#[doc(no_inline)]
pub use policy::{
    AccessList, BodyPolicy, Compression, Cors, CustomErrors, Encoding, HeaderEntry, HeaderPolicy,
    HttpsRedirect, LocalResponse, NextUpstream, OriginPattern, Phase, Refusal, RoutePolicy,
    RouteStep, StepOutcome, StepRequest, Steps, UpstreamPolicy,
};
pub use policy::{
    AuthCache, AuthConfigError, AuthKeepalive, CacheRule, ExternalAuth, Signin, Template,
};
pub use policy::{Bandwidth, LimitSettings, LimitStatus, Rate, RequestLimits};
pub use policy::{BasicAuth, PasswordHash};
#[doc(no_inline)]
pub use policy::{Canary, CanaryHeader, HeaderMatch};

// Snapshots and routing.
pub use routing::{normalize_host, normalize_path, BadPath, RouteId, RouteTable, VirtualHost};
pub use snapshot::{
    validate_rule, AddOutcome, BuildError, Resolved, Snapshot, SnapshotBuilder, SnapshotHandle,
};
pub use upstream::{Pool, PoolCache, PoolKey};

// The proxy, its access log and its metrics.
pub use access_log::{
    AccessLog, AccessLogConfig, Escape, FormatError, LogFormat, ACCESS_LOG_QUEUE,
};
pub use metrics::{ProxyMetrics, METRICS_NAMESPACE};
pub use proxy::{RequestCtx, WeirProxy};

// The listener edge: PROXY protocol, TLS, client address.
pub use client_ip::{parse_cidrs, ClientIpConfig};
pub use edge::{
    read_proxy_header, ConnLimits, ConnPlace, ConnTable, EdgeApp, EdgeMetrics, GuardedStream,
    ProxyHeader, ProxyProtocolError, SniResolver, PROXY_PROTOCOL_TIMEOUT, PROXY_V1_MAX_LEN,
};
// HTTP/2 limits of the listeners.
pub use edge::{
    h2_server_options, H2_GOAWAY_LINGER, H2_HEADER_TABLE_SIZE, H2_MAX_CONCURRENT_RESETS,
    H2_MAX_CONCURRENT_STREAMS, H2_MAX_HEADER_LIST_SIZE, H2_MAX_LOCAL_ERROR_RESETS,
    H2_MAX_PENDING_ACCEPT_RESETS, H2_MAX_SEND_BUFFER,
};
pub use tls::{CertError, CertIndex, TlsCert};

/// Re-export of the Pingora version this crate is built on.
pub use pingora;

/// The attribute for implementing [`RouteStep`] (its `on_request` is an `async fn`).
pub use async_trait::async_trait;
