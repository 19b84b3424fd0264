//! # Weir proxy-core
//!
//! The data plane of the Weir ingress controller as a library, usable on its own to build a
//! gateway on [Pingora](https://github.com/cloudflare/pingora). It has no Kubernetes types.
//!
//! The data flow:
//! 1. describe routes with the [model] types and collect them in a [`SnapshotBuilder`];
//!    upstream endpoints live in [`Pool`]s (reuse them across builds with a [`PoolCache`]);
//! 2. [`SnapshotBuilder::build`] indexes everything into an immutable [`Snapshot`];
//! 3. publish it with [`SnapshotHandle::store`]: one atomic swap, requests in flight keep the
//!    snapshot they loaded;
//! 4. [`WeirProxy`] is a `pingora::proxy::ProxyHttp` that loads the snapshot once per request,
//!    matches host and path ([`routing`]), and forwards to a pool endpoint with the
//!    ingress-nginx headers; unmatched requests get the built-in 404, empty pools a 503.
//!
//! Routing semantics (Kubernetes `networking.k8s.io/v1` plus ingress-nginx's choices) are
//! described in [`routing`]. A complete program is in `examples/embed.rs`:
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

pub mod client_ip;
pub mod edge;
pub mod metrics;
pub mod model;
mod pages;
pub mod policy;
pub mod proxy;
pub mod routing;
pub mod snapshot;
pub mod tls;
pub mod upstream;

pub use edge::SniResolver;
pub use metrics::ProxyMetrics;
pub use model::{DefaultRoute, PathKind, Route, RouteMeta, RouteOrder, ServerPolicy, Target};
pub use policy::{
    AccessList, HttpsRedirect, LocalResponse, Phase, Refusal, RoutePolicy, RouteStep, StepOutcome,
    StepRequest, Steps, UpstreamPolicy,
};
pub use proxy::WeirProxy;
pub use routing::{RouteId, RouteTable};
pub use snapshot::{AddOutcome, BuildError, Resolved, Snapshot, SnapshotBuilder, SnapshotHandle};
pub use tls::{CertError, CertIndex, TlsCert};
pub use upstream::{Pool, PoolCache, PoolKey};

/// Re-export of the Pingora version this crate is built on.
pub use pingora;

/// The attribute for implementing [`RouteStep`] (its `on_request` is an `async fn`).
pub use async_trait::async_trait;
