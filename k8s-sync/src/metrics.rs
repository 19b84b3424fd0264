//! Metrics about configuration changes: ingress-nginx's reload metrics plus Weir's own.

use std::collections::HashMap;

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

const NS: &str = proxy_core::METRICS_NAMESPACE;

/// Configuration-sync metrics, registered into a caller-provided registry.
#[derive(Clone)]
pub struct SyncMetrics {
    /// `nginx_ingress_controller_config_last_reload_successful`: 1 when the last change applied
    /// cleanly (every source readable), 0 otherwise.
    pub last_reload_successful: IntGauge,
    /// `..._config_last_reload_successful_timestamp_seconds`.
    pub last_reload_timestamp: Gauge,
    /// `..._config_hash`: fingerprint of the running configuration.
    pub config_hash: Gauge,
    /// `..._success`: configuration changes applied.
    pub success: IntCounter,
    /// `..._errors`: configuration changes that failed (a source could not be read).
    pub errors: IntCounter,
    /// `weir_snapshot_build_duration_seconds`: time to translate and build one snapshot.
    pub build_duration: Histogram,
    /// `weir_objects_rejected_total{kind,reason}`: objects (and files) refused.
    pub rejected: IntCounterVec,
    /// `weir_ingresses_served`: Ingresses in the running snapshot.
    pub ingresses_served: IntGauge,
    /// `weir_snapshot_routes`: host/path rules in the running snapshot.
    pub routes: IntGauge,
    /// `nginx_ingress_controller_ssl_expire_time_seconds{host,namespace,secret_name}`.
    pub ssl_expire: prometheus::GaugeVec,
}

impl SyncMetrics {
    /// Create and register; `const_labels` are added to the ingress-nginx-named series.
    pub fn register(
        registry: &Registry,
        const_labels: &HashMap<String, String>,
    ) -> prometheus::Result<Self> {
        let opts = |name: &str, help: &str| {
            Opts::new(name, help)
                .namespace(NS)
                .const_labels(const_labels.clone())
        };
        let m = SyncMetrics {
            last_reload_successful: IntGauge::with_opts(opts(
                "config_last_reload_successful",
                "Whether the last configuration reload attempt was successful",
            ))?,
            last_reload_timestamp: Gauge::with_opts(opts(
                "config_last_reload_successful_timestamp_seconds",
                "Timestamp of the last successful configuration reload",
            ))?,
            config_hash: Gauge::with_opts(opts(
                "config_hash",
                "Running configuration hash actually running",
            ))?,
            success: IntCounter::with_opts(opts(
                "success",
                "Cumulative number of Ingress controller reload operations",
            ))?,
            errors: IntCounter::with_opts(opts(
                "errors",
                "Cumulative number of Ingress controller errors during reload operations",
            ))?,
            build_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "weir_snapshot_build_duration_seconds",
                    "Time to translate objects and build one routing snapshot",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "weir_objects_rejected_total",
                    "Objects and manifest files refused, by kind and reason",
                ),
                &["kind", "reason"],
            )?,
            ingresses_served: IntGauge::new(
                "weir_ingresses_served",
                "Ingresses in the running snapshot",
            )?,
            routes: IntGauge::new(
                "weir_snapshot_routes",
                "Host/path rules in the running snapshot",
            )?,
            ssl_expire: prometheus::GaugeVec::new(
                opts(
                    "ssl_expire_time_seconds",
                    "Number of seconds since 1970 to the SSL Certificate expire.",
                ),
                &["host", "namespace", "secret_name"],
            )?,
        };
        registry.register(Box::new(m.ssl_expire.clone()))?;
        registry.register(Box::new(m.last_reload_successful.clone()))?;
        registry.register(Box::new(m.last_reload_timestamp.clone()))?;
        registry.register(Box::new(m.config_hash.clone()))?;
        registry.register(Box::new(m.success.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.build_duration.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.ingresses_served.clone()))?;
        registry.register(Box::new(m.routes.clone()))?;
        Ok(m)
    }
}
