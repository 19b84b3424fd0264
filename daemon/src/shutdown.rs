//! Shutdown as ingress-nginx does it, driven through Pingora's [`ShutdownSignalWatch`].
//!
//! Pingora's own SIGTERM handling stops the listeners at once and then shuts its runtimes down
//! with `Runtime::shutdown_timeout`, which drops every task still running: requests in flight
//! were cut ~0.1 s after SIGTERM whatever the flags said. So Weir waits for its signals itself,
//! and only tells Pingora to shut down once the drain is over:
//!
//! 1. SIGTERM or SIGINT: `/healthz` answers 503 (the [`Drain::draining`] flag), while the proxy
//!    listeners keep accepting and serving for `--shutdown-grace-period` seconds;
//! 2. the proxy listeners stop (their own shutdown watch, see [`crate::services::Prebound`]):
//!    no new connections, idle keep-alive connections are closed, requests in flight end their
//!    connection after their response, HTTP/2 connections get a GOAWAY;
//! 3. up to `--worker-shutdown-timeout` seconds for the open connections to close: each
//!    connection task of a Pingora listening service holds a clone of the service's shutdown
//!    watch (taken before the task is spawned) until the connection is done, so the proxy
//!    listeners' watch closes exactly when their accept loops and every connection have ended;
//! 4. the configuration source stops; in API mode the leader releases its Lease (at most
//!    [`SYNC_STOP_TIMEOUT`]);
//! 5. Pingora shuts down (what is still open is dropped) and the process exits 0.
//!
//! SIGQUIT, or a second SIGTERM/SIGINT during the drain, skips what is left of steps 1 and 3
//! (requests in flight are cut) and gives step 4 at most [`FAST_SYNC_STOP_TIMEOUT`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// How long step 4 may take: the Lease release is one GET and one PUT.
pub const SYNC_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long step 4 may take when told to hurry (SIGQUIT, a second signal).
pub const FAST_SYNC_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The drain: what it needs to reach and how long each step lasts.
pub struct Drain {
    draining: Arc<AtomicBool>,
    listeners: watch::Sender<bool>,
    sync: watch::Sender<bool>,
    sync_done: watch::Receiver<bool>,
    sync_done_tx: watch::Sender<bool>,
    grace: Duration,
    timeout: Duration,
}

impl Drain {
    /// A drain with `grace` (`--shutdown-grace-period`) and `timeout`
    /// (`--worker-shutdown-timeout`).
    pub fn new(grace: Duration, timeout: Duration) -> Self {
        let (sync_done_tx, sync_done) = watch::channel(false);
        Drain {
            draining: Arc::default(),
            listeners: watch::channel(false).0,
            sync: watch::channel(false).0,
            sync_done,
            sync_done_tx,
            grace,
            timeout,
        }
    }

    /// True from the first signal on (`/healthz` then answers 503).
    pub fn draining(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// The shutdown watch of the proxy listeners: true when they must stop accepting. The drain
    /// waits until every copy of it is dropped (accept loops and connections ended).
    pub fn listeners_watch(&self) -> ShutdownWatch {
        self.listeners.subscribe()
    }

    /// `service`, stopped at step 4 instead of by Pingora, so the drain knows when it is done.
    pub fn sync_service<S: BackgroundService + Send + Sync>(
        &self,
        service: S,
    ) -> StoppedByDrain<S> {
        StoppedByDrain {
            inner: service,
            stop: self.sync.subscribe(),
            done: self.sync_done_tx.clone(),
        }
    }

    async fn run(&self, signals: &mut Signals) -> ShutdownSignal {
        let first = signals.next().await;
        if first == "SIGQUIT" {
            tracing::warn!("SIGQUIT: shutting down at once");
            self.draining.store(true, Ordering::Release);
            self.stop_listeners();
            self.stop_sync(FAST_SYNC_STOP_TIMEOUT).await;
            return ShutdownSignal::FastShutdown;
        }
        self.draining.store(true, Ordering::Release);
        tracing::info!(
            signal = first,
            grace_period_s = self.grace.as_secs(),
            "shutting down: /healthz answers 503; still serving during the grace period"
        );
        let drain = async {
            tokio::time::sleep(self.grace).await;
            tracing::info!(
                worker_shutdown_timeout_s = self.timeout.as_secs(),
                "grace period over: listeners stop accepting; waiting for requests in flight"
            );
            self.stop_listeners();
            if tokio::time::timeout(self.timeout, self.listeners.closed())
                .await
                .is_ok()
            {
                tracing::info!("all connections closed");
            } else {
                tracing::warn!("worker shutdown timeout: closing the connections still open");
            }
        };
        let graceful = tokio::select! {
            _ = drain => true,
            s = signals.next() => {
                tracing::warn!(signal = s, "second signal: stopping without waiting");
                false
            }
        };
        self.stop_listeners();
        self.stop_sync(if graceful {
            SYNC_STOP_TIMEOUT
        } else {
            FAST_SYNC_STOP_TIMEOUT
        })
        .await;
        tracing::info!("exiting");
        if graceful {
            ShutdownSignal::GracefulTerminate
        } else {
            ShutdownSignal::FastShutdown
        }
    }

    /// Tell the proxy listeners to stop. Also before a fast exit: Pingora's accept loops log an
    /// error when their watch closes (the drain is dropped) without having said so.
    fn stop_listeners(&self) {
        self.listeners.send_replace(true);
    }

    /// Stop the configuration source and wait (at most `limit`) until it has, Lease released.
    async fn stop_sync(&self, limit: Duration) {
        let _ = self.sync.send(true);
        let mut done = self.sync_done.clone();
        if tokio::time::timeout(limit, done.wait_for(|d| *d))
            .await
            .is_err()
        {
            tracing::warn!(
                "the configuration source did not stop in {limit:?}; the Lease may stay held until it expires"
            );
        }
    }
}

/// SIGTERM, SIGINT and SIGQUIT, listened to from the start of the server.
struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// The next of the three signals.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.quit.recv() => "SIGQUIT",
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        match Signals::new() {
            Ok(mut signals) => self.run(&mut signals).await,
            Err(e) => {
                // Never expected; Pingora's own handling is better than none.
                tracing::error!(error = %e, "cannot listen for signals; using Pingora's shutdown");
                pingora::server::UnixShutdownSignalWatch.recv().await
            }
        }
    }
}

/// A background service that stops when the drain says so rather than when Pingora does (which
/// is too late to release the Lease: Pingora drops its tasks right after), and tells the drain
/// when it has stopped.
pub struct StoppedByDrain<S> {
    inner: S,
    stop: ShutdownWatch,
    done: watch::Sender<bool>,
}

#[async_trait]
impl<S: BackgroundService + Send + Sync> BackgroundService for StoppedByDrain<S> {
    async fn start(&self, _pingora_shutdown: ShutdownWatch) {
        self.inner.start(self.stop.clone()).await;
        let _ = self.done.send(true);
    }
}
