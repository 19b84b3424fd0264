//! # Weir k8s-sync
//!
//! Kubernetes objects in, one validated [`proxy_core::Snapshot`] out. The objects come from
//! manifest files ([`manifests`], file mode) or from the API server ([`api`]); either way they are
//! gathered into an [`objects::ObjectSet`], filtered by ingress class ([`class`]), validated and
//! translated ([`translate`]) and published once per change by a [`sync::Syncer`].
//!
//! A bad object never removes routes: a rejected Ingress keeps its last valid version, a file
//! that does not parse keeps its last parsed objects, and the reason is logged and counted.
//! In API mode, Ingress status is published by the elected leader ([`leader`]).

pub mod annotations;
pub mod api;
pub mod class;
pub mod config;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod objects;
pub mod sync;
pub mod tls;
pub mod translate;

pub use manifests::{ManifestDir, ManifestError};
pub use metrics::SyncMetrics;
pub use objects::{Object, ObjectSet};
pub use sync::{ApplyReport, Syncer};
pub use translate::{InvalidIngress, ServiceRef};

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
    pub default_backend_service: Option<ServiceRef>,
    /// `--configmap`: the ConfigMap (namespace/name) holding global options.
    pub configmap: Option<ServiceRef>,
    /// `--default-ssl-certificate`: the Secret (namespace/name) served for unknown SNI.
    pub default_ssl_certificate: Option<ServiceRef>,
    /// `--https-port`: used in HTTPS redirects (omitted when 443).
    pub https_port: u16,
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
        }
    }
}
