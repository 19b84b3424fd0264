//! # Weir k8s-sync
//!
//! Kubernetes objects in, one validated [`proxy_core::Snapshot`] out. The objects come from
//! manifest files ([`manifests`], file mode) or from the API server ([`api`]); either way they are
//! gathered into an [`objects::ObjectSet`] and go through the stages of [`sync::Syncer::apply`],
//! each a module with one job:
//!
//! 1. [`admission`]: ingress class ([`class`]), validation, last valid versions;
//! 2. [`annotations`]: `nginx.ingress.kubernetes.io/*` → typed policy pieces, one module per
//!    family, and the [`annotations::registry`] of every ingress-nginx annotation;
//! 3. [`endpoints`]: Services and EndpointSlices → pools;
//! 4. [`translate`]: routes, each carrying its Ingress's policy (plus [`config`] for the
//!    ConfigMap and [`tls`] for certificates);
//! 5. [`report`]: one sink for logs, metrics and Events.
//!
//! A bad object never removes routes: a rejected Ingress keeps its last valid version, a file
//! that does not parse keeps its last parsed objects, and the reason is logged and counted.
//! In API mode, Ingress status is published by the elected leader ([`leader`]).

pub mod admission;
pub mod annotations;
pub mod api;
mod canary;
pub mod class;
pub mod config;
mod config_limits;
pub mod endpoints;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod objects;
pub mod report;
pub mod sync;
pub mod tls;
pub mod translate;

pub use admission::InvalidIngress;
pub use manifests::{ManifestDir, ManifestError};
pub use metrics::SyncMetrics;
pub use objects::{Object, ObjectRef, ObjectSet};
pub use sync::{ApplyReport, Syncer};

/// Controller options that decide what is served (named after ingress-nginx's flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// `--ingress-class`: the value of the legacy `kubernetes.io/ingress.class` annotation served.
    pub ingress_class: String,
    /// `--controller-class`: IngressClasses whose `spec.controller` equals this are served.
    pub controller_class: String,
    /// `--ingress-class-by-name`: also serve the IngressClass named `ingress_class`.
    pub ingress_class_by_name: bool,
    /// `--watch-ingress-without-class`: serve Ingresses that name no class.
    pub watch_ingress_without_class: bool,
    /// `--watch-namespace`: only objects of this namespace (all when `None`).
    pub watch_namespace: Option<String>,
    /// `--default-backend-service`: where unmatched requests go instead of the built-in 404.
    pub default_backend_service: Option<ObjectRef>,
    /// `--configmap`: the ConfigMap (namespace/name) holding global options.
    pub configmap: Option<ObjectRef>,
    /// `--default-ssl-certificate`: the Secret (namespace/name) served for unknown SNI.
    pub default_ssl_certificate: Option<ObjectRef>,
    /// `--https-port`: used in HTTPS redirects (omitted when 443).
    pub https_port: u16,
    /// `--annotations-prefix`: annotations are read under `PREFIX/` (default
    /// `nginx.ingress.kubernetes.io`).
    pub annotations_prefix: String,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            ingress_class: "nginx".into(),
            controller_class: "k8s.io/ingress-nginx".into(),
            ingress_class_by_name: false,
            watch_ingress_without_class: false,
            watch_namespace: None,
            default_backend_service: None,
            configmap: None,
            default_ssl_certificate: None,
            https_port: 443,
            annotations_prefix: annotations::DEFAULT_PREFIX.to_string(),
        }
    }
}
