//! Objects → one validated snapshot → `SnapshotHandle::store`, once per change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::networking::v1::Ingress;
use proxy_core::{PoolCache, Snapshot, SnapshotHandle};
use tokio::sync::watch;

use crate::class::{ClassDecision, ClassFilter};
use crate::config::GlobalConfig;
use crate::manifests::{ManifestDir, ManifestError};
use crate::metrics::SyncMetrics;
use crate::objects::ObjectSet;
use crate::translate::{
    translate, validate_ingress, BackendCache, InvalidIngress, TranslateSettings, ValidIngress,
    Warning,
};
use crate::SyncOptions;

/// What one [`Syncer::apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Ingresses in the new snapshot.
    pub served: usize,
    /// Host/path rules in the new snapshot.
    pub routes: usize,
    /// Ingresses refused in this round (`namespace/name`, reason). Those with an earlier valid
    /// version keep serving that version.
    pub rejected: Vec<(String, InvalidIngress)>,
    /// Problems that do not reject an Ingress (missing Service, shadowed path, ...).
    pub warnings: Vec<Warning>,
    /// Ingresses left to other controllers (`namespace/name`, why).
    pub ignored: Vec<(String, String)>,
    /// The new snapshot's configuration hash.
    pub hash: u64,
    /// `namespace/name` of every Ingress in the new snapshot.
    pub served_keys: Vec<String>,
    /// Rejections and warnings not reported by an earlier apply (`namespace/name`, reason,
    /// whether it rejected the Ingress): what deserves an Event.
    pub news: Vec<(String, String, bool)>,
}

/// Turns object sets into snapshots and publishes them, remembering the last valid version of
/// every Ingress so a broken edit never removes routes.
pub struct Syncer {
    opts: SyncOptions,
    handle: SnapshotHandle,
    pools: PoolCache,
    backends: BackendCache,
    metrics: Option<SyncMetrics>,
    /// The last valid version of every Ingress, with the object it was validated from.
    accepted: HashMap<String, (Arc<Ingress>, ValidIngress)>,
    reported: HashMap<String, String>,
    first_seen: HashMap<String, i64>,
    reported_sources: Vec<ManifestError>,
    reported_warnings: HashSet<(String, String)>,
    reported_config: Vec<(String, String)>,
    reported_secrets: HashMap<String, String>,
    cert_cache: crate::tls::CertCache,
    fallback_cert: proxy_core::TlsCert,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Syncer {
    /// A syncer publishing into `handle`.
    pub fn new(opts: SyncOptions, handle: SnapshotHandle, metrics: Option<SyncMetrics>) -> Self {
        Syncer {
            opts,
            handle,
            pools: PoolCache::new(),
            backends: BackendCache::default(),
            metrics,
            accepted: HashMap::new(),
            reported: HashMap::new(),
            first_seen: HashMap::new(),
            reported_sources: Vec::new(),
            reported_warnings: HashSet::new(),
            reported_config: Vec::new(),
            reported_secrets: HashMap::new(),
            cert_cache: crate::tls::CertCache::default(),
            fallback_cert: proxy_core::TlsCert::fake(),
        }
    }

    /// The handle snapshots are published to.
    pub fn handle(&self) -> &SnapshotHandle {
        &self.handle
    }

    /// Build a snapshot from `objects` and publish it. `source_errors` are problems of the source
    /// (unparsable files) whose last good objects are already part of `objects`.
    pub fn apply(&mut self, objects: &ObjectSet, source_errors: &[ManifestError]) -> ApplyReport {
        let start = Instant::now();
        let mut scoped;
        let objects = match &self.opts.watch_namespace {
            Some(ns) => {
                scoped = objects.clone();
                scoped.restrict_to_namespace(ns);
                // The --configmap may live outside the watched namespace.
                if let Some(c) = &self.opts.configmap {
                    let key = format!("{}/{}", c.namespace, c.name);
                    if let Some(cm) = objects.config_maps.get(&key) {
                        scoped.config_maps.insert(key, cm.clone());
                    }
                }
                &scoped
            }
            None => objects,
        };
        let mut report = ApplyReport::default();
        let filter = ClassFilter::new(&self.opts, objects);
        let now = unix_now();
        let mut live: HashSet<&str> = HashSet::new();
        for (key, ing) in &objects.ingresses {
            if let ClassDecision::NotOurs(why) = filter.decide(ing) {
                tracing::debug!(ingress = %key, %why, "ignoring Ingress of another class");
                report.ignored.push((key.clone(), why));
                continue;
            }
            live.insert(key.as_str());
            // The same object as last time (sources share unchanged objects): still valid.
            if self
                .accepted
                .get(key)
                .is_some_and(|(source, _)| Arc::ptr_eq(source, ing))
            {
                if self.reported.remove(key).is_some() {
                    tracing::info!(ingress = %key, "Ingress is valid again");
                }
                continue;
            }
            let created = match &ing.metadata.creation_timestamp {
                Some(t) => t.0.as_second(),
                None => *self.first_seen.entry(key.clone()).or_insert(now),
            };
            match validate_ingress(ing, created) {
                Ok(valid) => {
                    if self.reported.remove(key).is_some() {
                        tracing::info!(ingress = %key, "Ingress is valid again");
                    }
                    self.accepted.insert(key.clone(), (ing.clone(), valid));
                }
                Err(e) => {
                    let message = e.to_string();
                    if self.reported.get(key) != Some(&message) {
                        let kept = self.accepted.contains_key(key);
                        tracing::warn!(
                            ingress = %key,
                            reason = %message,
                            kept_previous_version = kept,
                            "Ingress rejected"
                        );
                        if let Some(m) = &self.metrics {
                            m.rejected
                                .with_label_values(&["Ingress", e.metric_label()])
                                .inc();
                        }
                        report.news.push((key.clone(), message.clone(), true));
                        self.reported.insert(key.clone(), message);
                    }
                    report.rejected.push((key.clone(), e));
                }
            }
        }
        self.accepted.retain(|k, _| live.contains(&k.as_str()));
        self.reported.retain(|k, _| live.contains(&k.as_str()));
        self.first_seen
            .retain(|k, _| objects.ingresses.contains_key(k));

        let config_map = self.opts.configmap.as_ref().and_then(|c| {
            objects
                .config_maps
                .get(&format!("{}/{}", c.namespace, c.name))
                .map(|cm| &**cm)
        });
        let (global, problems) = GlobalConfig::from_config_map(config_map);
        let problems: Vec<(String, String)> =
            problems.into_iter().map(|p| (p.key, p.message)).collect();
        for (key, message) in &problems {
            if !self
                .reported_config
                .contains(&(key.clone(), message.clone()))
            {
                tracing::warn!(configmap_key = %key, problem = %message, "ConfigMap option not applied");
                if let Some(m) = &self.metrics {
                    m.rejected.with_label_values(&["ConfigMap", "option"]).inc();
                }
            }
        }
        self.reported_config = problems;

        let valid: Vec<&ValidIngress> = self.accepted.values().map(|(_, v)| v).collect();
        report.served_keys = self.accepted.keys().cloned().collect();
        report.served_keys.sort_unstable();
        let tls = crate::tls::build(
            objects,
            &valid,
            self.opts.default_ssl_certificate.as_ref(),
            &self.fallback_cert,
            &mut self.cert_cache,
        );
        for (secret, e) in &tls.rejected {
            let reason = e.to_string();
            if self.reported_secrets.get(secret) != Some(&reason) {
                tracing::warn!(%secret, reason = %reason, "TLS Secret rejected; its last good certificate (or the default) stays in use");
                if let Some(m) = &self.metrics {
                    m.rejected
                        .with_label_values(&["Secret", e.metric_label()])
                        .inc();
                }
            }
        }
        self.reported_secrets = tls
            .rejected
            .iter()
            .map(|(k, e)| (k.clone(), e.to_string()))
            .collect();
        let mut translation = translate(
            objects,
            &valid,
            &TranslateSettings {
                default_backend_service: self.opts.default_backend_service.as_ref(),
                base_policy: &global.policy,
                ssl_redirect: global.ssl_redirect,
                tls_hosts: &tls.tls_hosts,
            },
            &self.pools,
            &mut self.backends,
        );
        translation.warnings.extend(tls.warnings);
        translation.builder.tls(tls.index);
        translation.builder.server(proxy_core::ServerPolicy {
            https_port: self.opts.https_port,
            ..global.server
        });
        if let Some(m) = &self.metrics {
            m.ssl_expire.reset();
            for c in &tls.in_use {
                m.ssl_expire
                    .with_label_values(&[&c.host, &c.namespace, &c.secret])
                    .set(c.not_after as f64);
            }
        }
        let snapshot = translation.builder.build();
        report.served = valid.len();
        report.routes = snapshot.route_count();
        report.hash = snapshot.hash();
        report.warnings = translation.warnings;
        let keep: std::collections::HashSet<_> =
            snapshot.pools().map(|p| p.key().clone()).collect();
        self.pools.retain(|k| keep.contains(k));
        let previous = self.handle.replace(snapshot);
        retire(previous);

        // Each distinct warning is logged once, while it lasts.
        let current: HashSet<(String, String)> = report
            .warnings
            .iter()
            .map(|w| (w.ingress.clone(), w.message.clone()))
            .collect();
        for (ingress, message) in current.difference(&self.reported_warnings) {
            tracing::warn!(%ingress, warning = %message, "Ingress partially applied");
            report.news.push((ingress.clone(), message.clone(), false));
        }
        self.reported_warnings = current;
        if source_errors != self.reported_sources.as_slice() {
            for e in source_errors {
                if !self.reported_sources.contains(e) {
                    tracing::error!(error = %e, "manifest rejected, its last good objects stay in use");
                    if let Some(m) = &self.metrics {
                        m.rejected.with_label_values(&["File", "parse"]).inc();
                    }
                }
            }
            self.reported_sources = source_errors.to_vec();
        }
        if let Some(m) = &self.metrics {
            m.build_duration.observe(start.elapsed().as_secs_f64());
            m.ingresses_served.set(report.served as i64);
            m.routes.set(report.routes as i64);
            m.config_hash.set(report.hash as f64);
            if source_errors.is_empty() {
                m.success.inc();
                m.last_reload_successful.set(1);
                m.last_reload_timestamp.set(now as f64);
            } else {
                m.errors.inc();
                m.last_reload_successful.set(0);
            }
        }
        tracing::info!(
            ingresses = report.served,
            routes = report.routes,
            rejected = report.rejected.len(),
            warnings = report.warnings.len(),
            hash = format_args!("{:016x}", report.hash),
            took_ms = start.elapsed().as_secs_f64() * 1000.0,
            "configuration applied"
        );
        report
    }
}

/// Snapshots with at least this many routes are freed on a thread of their own.
const RETIRE_IN_BACKGROUND: usize = 1_000;

/// Free a replaced snapshot. Freeing a large one (tens of milliseconds at 10,000 Ingresses) is
/// left to a short-lived thread, so the next rebuild does not wait for it; the new snapshot is
/// already serving either way.
fn retire(previous: Arc<Snapshot>) {
    if previous.route_count() < RETIRE_IN_BACKGROUND {
        return;
    }
    // When the thread cannot be started, the closure (and the snapshot) is dropped right here.
    let _ = std::thread::Builder::new()
        .name("weir-retire".to_string())
        .spawn(move || drop(previous));
}

/// File mode: re-scan `dir` every `interval` and apply changes until `shutdown` turns true.
/// The folder disappearing keeps the running snapshot (and is logged once).
pub async fn watch_manifest_dir(
    mut dir: ManifestDir,
    mut syncer: Syncer,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut dir_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
        match dir.scan() {
            Ok(scan) => {
                if dir_error.take().is_some() {
                    tracing::info!(dir = %dir.dir().display(), "manifests folder readable again");
                }
                if scan.changed {
                    syncer.apply(&scan.objects, &scan.errors);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                if dir_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!(error = %msg, "keeping the running configuration");
                    dir_error = Some(msg);
                }
            }
        }
    }
}
