//! Request metrics under the names ingress-nginx dashboards use
//! (`nginx_ingress_controller_requests`, `..._request_duration_seconds`, ...).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Prefix shared by all metrics that keep ingress-nginx's names.
pub const METRICS_NAMESPACE: &str = "nginx_ingress_controller";

/// Per-request label names, in the order values are passed.
const REQUEST_LABELS: [&str; 8] = [
    "status",
    "method",
    "path",
    "namespace",
    "ingress",
    "service",
    "host",
    "canary",
];

/// Duration buckets (seconds), as ingress-nginx's `--time-buckets` default.
const TIME_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Size buckets (bytes), as ingress-nginx's `--size-buckets` default.
const SIZE_BUCKETS: [f64; 7] = [10.0, 100.0, 1000.0, 10000.0, 100000.0, 1e6, 1e7];

/// Request metrics, registered into a caller-provided registry.
#[derive(Clone)]
pub struct ProxyMetrics {
    /// `nginx_ingress_controller_requests`: requests served, by status and route.
    pub requests: IntCounterVec,
    /// `..._request_duration_seconds`: from the first request byte to the last response byte.
    pub request_duration: HistogramVec,
    /// `..._response_duration_seconds`: time spent waiting for and receiving the upstream response.
    pub response_duration: HistogramVec,
    /// `..._header_duration_seconds`: time until the upstream response header arrived.
    pub header_duration: HistogramVec,
    /// `..._request_size`: request length including headers (bytes).
    pub request_size: HistogramVec,
    /// `..._response_size`: response body bytes sent to the client.
    pub response_size: HistogramVec,
    /// `weir_client_disconnects_total{phase}`: clients that closed, reset or timed out before
    /// their exchange was complete (`header`: while sending the request header; `request`: before
    /// the response header was sent; `response`: while receiving the response).
    pub client_disconnects: IntCounterVec,
}

impl ProxyMetrics {
    /// Create and register the metrics. `const_labels` are added to every series
    /// (ingress-nginx uses `controller_namespace`, `controller_class`, `controller_pod`).
    pub fn register(
        registry: &Registry,
        const_labels: &HashMap<String, String>,
    ) -> prometheus::Result<Self> {
        let hist = |name: &str, help: &str, buckets: &[f64]| -> prometheus::Result<HistogramVec> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help)
                    .namespace(METRICS_NAMESPACE)
                    .const_labels(const_labels.clone())
                    .buckets(buckets.to_vec()),
                &REQUEST_LABELS,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let requests = IntCounterVec::new(
            Opts::new("requests", "The total number of client requests")
                .namespace(METRICS_NAMESPACE)
                .const_labels(const_labels.clone()),
            &REQUEST_LABELS,
        )?;
        registry.register(Box::new(requests.clone()))?;
        let client_disconnects = IntCounterVec::new(
            Opts::new(
                "weir_client_disconnects_total",
                "Clients that closed, reset or timed out before their exchange was complete",
            )
            .const_labels(const_labels.clone()),
            &["phase"],
        )?;
        registry.register(Box::new(client_disconnects.clone()))?;
        Ok(ProxyMetrics {
            requests,
            client_disconnects,
            request_duration: hist(
                "request_duration_seconds",
                "The request processing time in seconds",
                &TIME_BUCKETS,
            )?,
            response_duration: hist(
                "response_duration_seconds",
                "The time spent on receiving the response from the upstream server in seconds",
                &TIME_BUCKETS,
            )?,
            header_duration: hist(
                "header_duration_seconds",
                "The time spent on receiving first header from the upstream server",
                &TIME_BUCKETS,
            )?,
            request_size: hist(
                "request_size",
                "The request length (including request line, header, and request body)",
                &SIZE_BUCKETS,
            )?,
            response_size: hist(
                "response_size",
                "The response length (including request line, header, and request body)",
                &SIZE_BUCKETS,
            )?,
        })
    }
}

/// The series of one route for one (status, method): resolved once, then updated without
/// hashing label strings on every request.
pub(crate) struct RouteSeries {
    /// `requests`.
    pub requests: IntCounter,
    /// `request_duration_seconds`.
    pub request_duration: Histogram,
    /// `response_duration_seconds`.
    pub response_duration: Histogram,
    /// `header_duration_seconds`.
    pub header_duration: Histogram,
    /// `request_size`.
    pub request_size: Histogram,
    /// `response_size`.
    pub response_size: Histogram,
}

/// The [`RouteSeries`] of one route of one virtual host, kept by the snapshot (so they live as
/// long as it does), one cache per route, per virtual host fallback and for the default route.
#[derive(Default)]
pub(crate) struct SeriesCache(RwLock<Vec<CachedSeries>>);

/// One cache entry: status, method, sent to the route's canary, series.
type CachedSeries = (u16, http::Method, bool, Arc<RouteSeries>);

impl std::fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeriesCache")
    }
}

/// Most distinct (status, method) pairs cached per route; beyond that, labels are looked up.
const SERIES_PER_ROUTE: usize = 32;

impl SeriesCache {
    /// The series for `status`, `method` and whether the request went to the route's canary,
    /// resolving `labels` (in [`REQUEST_LABELS`] order) only the first time.
    pub(crate) fn get(
        &self,
        metrics: &ProxyMetrics,
        status: u16,
        method: &http::Method,
        canary: bool,
        labels: impl FnOnce() -> [String; 8],
    ) -> Arc<RouteSeries> {
        if let Ok(cache) = self.0.read() {
            if let Some((_, _, _, s)) = cache
                .iter()
                .find(|(st, m, c, _)| *st == status && m == method && *c == canary)
            {
                return s.clone();
            }
        }
        let labels = labels();
        let l: [&str; 8] = std::array::from_fn(|i| labels[i].as_str());
        let series = Arc::new(RouteSeries {
            requests: metrics.requests.with_label_values(&l),
            request_duration: metrics.request_duration.with_label_values(&l),
            response_duration: metrics.response_duration.with_label_values(&l),
            header_duration: metrics.header_duration.with_label_values(&l),
            request_size: metrics.request_size.with_label_values(&l),
            response_size: metrics.response_size.with_label_values(&l),
        });
        if let Ok(mut cache) = self.0.write() {
            if cache.len() < SERIES_PER_ROUTE {
                cache.push((status, method.clone(), canary, series.clone()));
            }
        }
        series
    }
}
