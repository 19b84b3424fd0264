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
    state: Mutex<Option<(Syncer, StepDown)>>,
    opts: k8s_sync::api::ApiOptions,
    leader: k8s_sync::leader::LeaderConfig,
    leader_metric: Option<prometheus::IntGaugeVec>,
}

/// The election's side of [`ReleaseBeforeStop`]: asked to step down, it leaves the election
/// (releasing the Lease if it holds it) and says when that is done.
pub struct StepDown {
    asked: tokio::sync::watch::Receiver<bool>,
    done: tokio::sync::watch::Sender<bool>,
}

/// On SIGTERM, has the leader release its Lease before Pingora is told to stop: Pingora stops
/// the services' runtimes right after its shutdown broadcast (at once with the default
/// `--shutdown-grace-period 0`), cancelling a release started then. Other signals, and SIGTERM
/// outside API mode, go straight to Pingora.
pub struct ReleaseBeforeStop {
    ask: tokio::sync::watch::Sender<bool>,
    done: tokio::sync::watch::Receiver<bool>,
}

/// How long SIGTERM waits for the Lease to be released before stopping anyway.
pub const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// A connected pair: the signal watcher for the server, the step-down for [`ApiSync`].
pub fn release_before_stop() -> (ReleaseBeforeStop, StepDown) {
    let (ask, asked) = tokio::sync::watch::channel(false);
    let (done_tx, done) = tokio::sync::watch::channel(false);
    (
        ReleaseBeforeStop { ask, done },
        StepDown {
            asked,
            done: done_tx,
        },
    )
}

#[async_trait]
impl pingora::server::ShutdownSignalWatch for ReleaseBeforeStop {
    async fn recv(&self) -> pingora::server::ShutdownSignal {
        let signal = pingora::server::UnixShutdownSignalWatch.recv().await;
        if matches!(signal, pingora::server::ShutdownSignal::GracefulTerminate) {
            let _ = self.ask.send(true);
            let mut done = self.done.clone();
            if tokio::time::timeout(RELEASE_WAIT, done.wait_for(|d| *d))
                .await
                .is_err()
            {
                tracing::warn!(
                    "leader election did not stop within {RELEASE_WAIT:?}; stopping anyway"
                );
            }
        }
        signal
    }
}

impl ApiSync {
    /// Everything API mode needs; nothing runs until the server starts the service.
    pub fn new(
        config: kube::Config,
        syncer: Syncer,
        opts: k8s_sync::api::ApiOptions,
        leader: k8s_sync::leader::LeaderConfig,
        leader_metric: Option<prometheus::IntGaugeVec>,
        step_down: StepDown,
    ) -> Self {
        ApiSync {
            config,
            state: Mutex::new(Some((syncer, step_down))),
            opts,
            leader,
            leader_metric,
        }
    }
}

#[async_trait]
impl BackgroundService for ApiSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some((syncer, step_down)) = self.state.lock().unwrap_or_else(|p| p.into_inner()).take()
        else {
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
        // The election stops on SIGTERM before the rest (see ReleaseBeforeStop), or with the rest.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (mut all, mut asked) = (shutdown.clone(), step_down.asked);
        tokio::spawn(async move {
            tokio::select! {
                _ = all.changed() => {}
                Ok(_) = asked.wait_for(|a| *a) => {}
            }
            let _ = stop_tx.send(true);
        });
        let election = tokio::spawn({
            let (client, leader, metric) = (
                client.clone(),
                self.leader.clone(),
                self.leader_metric.clone(),
            );
            async move {
                k8s_sync::leader::run(client, leader, tx, metric, stop_rx).await;
                let _ = step_down.done.send(true);
            }
        });
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
}

impl<S> Prebound<S> {
    /// `inner` whose endpoint for `socket.addr()` uses `socket`.
    pub fn new(inner: S, socket: BoundListener) -> Self {
        Prebound {
            inner,
            sockets: vec![socket],
        }
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
