//! Background services run by the Pingora server.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_sync::sync::watch_manifest_dir;
use k8s_sync::{ManifestDir, Syncer};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// How often the manifests folder is checked for changes.
pub const MANIFEST_POLL: Duration = Duration::from_millis(500);

/// How long the first scan of the manifests folder waits for large files' parses before the
/// listeners open; parses still running then are applied when they finish.
pub const STARTUP_PARSE_WAIT: Duration = Duration::from_secs(2);

/// Re-reads the manifests folder and applies changes.
pub struct ManifestWatcher {
    state: Mutex<Option<(ManifestDir, Syncer)>>,
}

impl ManifestWatcher {
    /// A watcher that continues from an initial scan already applied by `syncer`.
    pub fn new(dir: ManifestDir, syncer: Syncer) -> Self {
        ManifestWatcher {
            state: Mutex::new(Some((dir, syncer))),
        }
    }
}

#[async_trait]
impl BackgroundService for ManifestWatcher {
    async fn start(&self, shutdown: ShutdownWatch) {
        let taken = self.state.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((dir, syncer)) = taken {
            watch_manifest_dir(dir, syncer, MANIFEST_POLL, shutdown).await;
        }
    }
}

/// API mode: connects to the API server, takes part in leader election, watches and syncs.
pub struct ApiSync {
    config: kube::Config,
    state: Mutex<Option<Syncer>>,
    opts: k8s_sync::api::ApiOptions,
    leader: k8s_sync::leader::LeaderConfig,
    leader_metric: Option<prometheus::IntGaugeVec>,
}

impl ApiSync {
    /// Everything API mode needs; nothing runs until the server starts the service.
    pub fn new(
        config: kube::Config,
        syncer: Syncer,
        opts: k8s_sync::api::ApiOptions,
        leader: k8s_sync::leader::LeaderConfig,
        leader_metric: Option<prometheus::IntGaugeVec>,
    ) -> Self {
        ApiSync {
            config,
            state: Mutex::new(Some(syncer)),
            opts,
            leader,
            leader_metric,
        }
    }
}

#[async_trait]
impl BackgroundService for ApiSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(syncer) = self.state.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let client = match kube::Client::try_from(self.config.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the Kubernetes client");
                return;
            }
        };
        let (tx, rx) = tokio::sync::watch::channel(k8s_sync::leader::LeaderState::default());
        let election = tokio::spawn(k8s_sync::leader::run(
            client.clone(),
            self.leader.clone(),
            tx,
            self.leader_metric.clone(),
            shutdown.clone(),
        ));
        k8s_sync::api::run(client, syncer, self.opts.clone(), rx, shutdown).await;
        let _ = election.await;
    }
}
