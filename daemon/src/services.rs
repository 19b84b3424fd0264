//! Background services run by the Pingora server.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_sync::sync::watch_manifest_dir;
use k8s_sync::{ManifestDir, Syncer};
use pingora::server::{ListenFds, RuntimeOpts, ShutdownWatch};
use pingora::services::background::BackgroundService;
use pingora::services::Service;

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

/// A listening TCP socket the daemon bound itself: a taken port fails before anything starts,
/// and port 0 gets a free port whose number is known (and logged) before the server runs.
pub struct BoundListener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
}

impl BoundListener {
    /// Take a bound, listening socket.
    pub fn new(socket: std::net::TcpListener) -> std::io::Result<Self> {
        // Pingora accepts on it from its async runtime: it must not block.
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        Ok(BoundListener { socket, addr })
    }

    /// The address it is bound to (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A Pingora service listening on sockets bound beforehand: when the service starts, each socket
/// is put into the server's table of listening sockets under its address (the table Pingora
/// fills with inherited sockets in a graceful upgrade), so Pingora listens on it instead of
/// binding the address again. The service's endpoint must be added with the same address.
pub struct Prebound<S> {
    inner: S,
    sockets: Vec<BoundListener>,
    shutdown: Option<ShutdownWatch>,
}

impl<S> Prebound<S> {
    /// `inner` whose endpoint for `socket.addr()` uses `socket`.
    pub fn new(inner: S, socket: BoundListener) -> Self {
        Prebound {
            inner,
            sockets: vec![socket],
            shutdown: None,
        }
    }

    /// Stop when `shutdown` turns true rather than when Pingora shuts down: the proxy listeners
    /// stop when the drain says so (see [`crate::shutdown`]), the admin listener with Pingora.
    /// The watch also reaches every connection: keep-alive ends, HTTP/2 gets a GOAWAY.
    pub fn stopped_by(mut self, shutdown: ShutdownWatch) -> Self {
        self.shutdown = Some(shutdown);
        self
    }
}

#[async_trait]
impl<S: Service> Service for Prebound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        match &fds {
            Some(table) => {
                let mut table = table.lock();
                for b in self.sockets.drain(..) {
                    table.add(
                        b.addr.to_string(),
                        std::os::fd::IntoRawFd::into_raw_fd(b.socket),
                    );
                }
            }
            None => {
                // Never the case on Unix; Pingora then binds the same addresses itself.
                tracing::warn!(
                    service = self.inner.name(),
                    "no listening socket table; binding again"
                );
                self.sockets.clear();
            }
        }
        // Taken, not cloned: the drain waits for every copy of its watch to be dropped.
        let shutdown = self.shutdown.take().unwrap_or(shutdown);
        self.inner
            .start_service(fds, shutdown, listeners_per_fd)
            .await;
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn runtime_opts_override(&self, global: &RuntimeOpts) -> Option<RuntimeOpts> {
        self.inner.runtime_opts_override(global)
    }

    fn on_startup_delay(&self, time_waited: Duration) {
        self.inner.on_startup_delay(time_waited);
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}
