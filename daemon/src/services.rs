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
