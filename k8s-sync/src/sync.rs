//! Objects → one validated snapshot → `SnapshotHandle::replace`, once per change.
//!
//! [`Syncer::apply`] is the pipeline: [`crate::admission`] (class, validation, last-good
//! versions, annotations) → [`crate::config`] (the ConfigMap) and [`crate::tls`] (certificates)
//! → [`crate::translate`] (routes, with [`crate::endpoints`] for pools) → one snapshot published
//! in one swap → [`crate::report`] (logs, metrics, Events).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proxy_core::{PoolCache, Snapshot, SnapshotHandle};
use tokio::sync::watch;

use crate::admission::{Admission, InvalidIngress, ValidIngress};
use crate::class::ClassFilter;
use crate::config::GlobalConfig;
use crate::endpoints::BackendCache;
use crate::manifests::{ManifestDir, ManifestError};
use crate::metrics::SyncMetrics;
use crate::objects::ObjectSet;
use crate::report::{Finding, FindingKind, Reporter};
use crate::translate::{translate, TranslateSettings, Warning};
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
    /// Findings not reported by an earlier apply: what deserves an Event.
    pub news: Vec<Finding>,
}

/// Turns object sets into snapshots and publishes them, remembering the last valid version of
/// every Ingress so a broken edit never removes routes.
pub struct Syncer {
    opts: SyncOptions,
    handle: SnapshotHandle,
    pools: PoolCache,
    backends: BackendCache,
    metrics: Option<SyncMetrics>,
    admission: Admission,
    reporter: Reporter,
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
            admission: Admission::new(&opts.annotations_prefix),
            reporter: Reporter::new(metrics.clone()),
            opts,
            handle,
            pools: PoolCache::new(),
            backends: BackendCache::default(),
            metrics,
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
        let scoped;
        let objects = match &self.opts.watch_namespace {
            Some(ns) => {
                scoped = self.scope(objects, ns);
                &scoped
            }
            None => objects,
        };
        let now = unix_now();
        let admitted = self
            .admission
            .admit(objects, &ClassFilter::new(&self.opts, objects), now);
        let config_map = self
            .opts
            .configmap
            .as_ref()
            .and_then(|c| objects.config_maps.get(&c.key()).map(|cm| &**cm));
        let (mut global, mut config_problems) = GlobalConfig::from_config_map(config_map);
        let headers = global.headers.resolve(objects, &mut config_problems);
        global.policy.headers = (!headers.is_empty()).then(|| Arc::new(headers));
        let valid: Vec<&ValidIngress> = self.admission.served().collect();
        let tls = crate::tls::build(
            objects,
            &valid,
            self.opts.default_ssl_certificate.as_ref(),
            &self.fallback_cert,
            &mut self.cert_cache,
        );
        let mut translation = translate(
            objects,
            &valid,
            &TranslateSettings {
                default_backend_service: self.opts.default_backend_service.as_ref(),
                base_policy: &global.policy,
                ssl_redirect: global.ssl_redirect,
                tls_hosts: &tls.tls_hosts,
                allowed_response_headers: &global.headers.allowed_response_headers,
                custom_http_errors: &global.headers.custom_http_errors,
                global_auth: &global.global_auth,
            },
            &self.pools,
            &mut self.backends,
        );
        translation.builder.tls(tls.index);
        translation.builder.server(proxy_core::ServerPolicy {
            https_port: self.opts.https_port,
            ..global.server
        });
        let snapshot = translation.builder.build();

        let mut warnings = translation.warnings;
        warnings.extend(tls.warnings);
        let findings = findings(
            &self.admission,
            &admitted.rejected,
            &valid,
            &warnings,
            &tls.rejected,
            config_problems,
            source_errors,
        );
        let report = ApplyReport {
            served: valid.len(),
            routes: snapshot.route_count(),
            hash: snapshot.hash(),
            served_keys: self.admission.served_keys(),
            rejected: admitted.rejected,
            ignored: admitted.ignored,
            warnings,
            news: self.reporter.round(findings),
        };
        let keep: std::collections::HashSet<_> =
            snapshot.pools().map(|p| p.key().clone()).collect();
        self.pools.retain(|k| keep.contains(k));
        retire(self.handle.replace(snapshot));

        if let Some(m) = &self.metrics {
            m.ssl_expire.reset();
            for c in &tls.in_use {
                m.ssl_expire
                    .with_label_values(&[&c.host, &c.namespace, &c.secret])
                    .set(c.not_after as f64);
            }
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

    /// `--watch-namespace`: only that namespace's objects, plus the `--configmap`, which may
    /// live outside it.
    fn scope(&self, objects: &ObjectSet, namespace: &str) -> ObjectSet {
        let mut scoped = objects.clone();
        scoped.restrict_to_namespace(namespace);
        if let Some(c) = &self.opts.configmap {
            let key = c.key();
            if let Some(cm) = objects.config_maps.get(&key) {
                scoped.config_maps.insert(key, Arc::clone(cm));
                // The ConfigMaps of headers it names may live outside the namespace too.
                for k in ["add-headers", "proxy-set-headers"] {
                    let named = cm.data.as_ref().and_then(|d| d.get(k));
                    if let Some(r) = named.and_then(|v| crate::config::object_ref(v).ok()) {
                        if let Some(m) = objects.config_maps.get(&r.key()) {
                            scoped.config_maps.insert(r.key(), Arc::clone(m));
                        }
                    }
                }
            }
        }
        scoped
    }
}

/// Everything worth reporting after one round, in a stable order.
fn findings(
    admission: &Admission,
    rejected: &[(String, InvalidIngress)],
    served: &[&ValidIngress],
    warnings: &[Warning],
    secrets: &[(String, proxy_core::CertError)],
    config_problems: Vec<crate::config::ConfigProblem>,
    source_errors: &[ManifestError],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (key, e) in rejected {
        out.push(Finding {
            kind: FindingKind::IngressRejected {
                reason: e.metric_label(),
                kept_previous: admission.is_served(key),
            },
            subject: key.clone(),
            message: e.to_string(),
        });
    }
    for ing in served {
        for p in &ing.annotations.problems {
            out.push(Finding {
                kind: FindingKind::Annotation {
                    reason: p.metric_label(),
                },
                subject: ing.key().to_string(),
                message: p.to_string(),
            });
        }
    }
    for w in warnings {
        out.push(Finding {
            kind: FindingKind::IngressWarning,
            subject: w.ingress.clone(),
            message: w.message.clone(),
        });
    }
    for (secret, e) in secrets {
        out.push(Finding {
            kind: FindingKind::SecretRejected {
                reason: e.metric_label(),
            },
            subject: secret.clone(),
            message: e.to_string(),
        });
    }
    for p in config_problems {
        out.push(Finding {
            kind: FindingKind::ConfigOption,
            subject: p.key,
            message: p.message,
        });
    }
    for e in source_errors {
        out.push(Finding {
            kind: FindingKind::Manifest { reason: e.reason() },
            subject: String::new(),
            message: e.to_string(),
        });
    }
    out
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
///
/// Scans run on a blocking thread, off the runtime: reading and parsing files is bounded per file
/// ([`crate::manifests::ParseLimits`]), and large files are parsed apart, so a slow file never holds
/// up the other files' changes.
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
        let mut scanning = tokio::task::spawn_blocking(move || {
            let scan = dir.scan();
            (dir, scan)
        });
        let (back, scan) = loop {
            tokio::select! {
                r = &mut scanning => match r {
                    Ok(r) => break r,
                    Err(e) => {
                        tracing::error!(error = %e, "manifests scan failed; no longer watching the folder");
                        return;
                    }
                },
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        };
        dir = back;
        match scan {
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
