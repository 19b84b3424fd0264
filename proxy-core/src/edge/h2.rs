//! HTTP/2 server connections (ALPN `h2` on TLS, `h2c` prior knowledge on the plain listener):
//! the h2 settings, as nginx's defaults in ingress-nginx, and the connection loop that gives
//! HTTP/2 the lifecycle limits of [`ConnLimits`](super::ConnLimits).
//!
//! Weir runs the loop itself (rather than Pingora's) so that it reads the limits live from the
//! snapshot: the client preface within `client-header-timeout`; a connection with no stream in
//! progress for `keep-alive` (or closed for room by the connection cap while so) gets a GOAWAY
//! (last processed stream) and is closed; after
//! `keep-alive-requests` streams a graceful GOAWAY asks the client to go elsewhere. Streams are
//! counted by a guard held by each stream's task: an atomic increment and decrement, as in
//! Pingora's own loop, and nothing else per request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::HttpServerApp;
use pingora::protocols::http::v2::server::{self, H2Accept, H2Options, HttpSession};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Digest, Stream};
use pingora::server::ShutdownWatch;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::ConnTable;
use crate::snapshot::SnapshotHandle;

/// Most concurrent streams per connection (nginx `http2_max_concurrent_streams`, ingress-nginx
/// `http2-max-concurrent-streams` default 128).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// Largest decoded header list of one request, in bytes (RFC 9113 accounting: name + value +
/// 32 per field, so every Cookie crumb counts): ingress-nginx's `large-client-header-buffers`
/// default `4 8k`.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 32 * 1024;
/// HPACK dynamic table the client may make Weir keep, in bytes (the protocol default).
pub const H2_HEADER_TABLE_SIZE: u32 = 4096;
/// Streams a client may open and reset before Weir accepts them (Rapid Reset, CVE-2023-44487):
/// beyond this the connection is closed with `ENHANCE_YOUR_CALM`.
pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams Weir may reset for protocol errors on one connection before closing it.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;
/// Reset streams remembered per connection.
pub const H2_MAX_CONCURRENT_RESETS: usize = 10;
/// Response bytes buffered per stream while the client's flow-control window is closed.
pub const H2_MAX_SEND_BUFFER: usize = 256 * 1024;
/// How long a GOAWAY sent for an idle connection may take to reach the client before the
/// connection is closed anyway (nginx's `lingering_timeout` default).
pub const H2_GOAWAY_LINGER: Duration = Duration::from_secs(5);
/// Malformed requests (refused by Pingora's request checks) per connection before it is closed,
/// as Pingora's own accept loop.
const H2_MAX_MALFORMED_STREAMS: usize = 32;

/// The HTTP/2 server settings Weir's listeners use.
pub fn h2_server_options() -> H2Options {
    let mut options = H2Options::default();
    options
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE)
        .header_table_size(H2_HEADER_TABLE_SIZE)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESETS))
        .max_concurrent_reset_streams(H2_MAX_CONCURRENT_RESETS)
        .max_send_buffer_size(H2_MAX_SEND_BUFFER);
    options
}

/// Streams of one connection in progress.
#[derive(Default)]
struct Active {
    count: AtomicUsize,
    idle: Notify,
}

/// Held by a stream's task: the connection is not idle while it lives.
struct StreamGuard(Arc<Active>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_one();
        }
    }
}

impl Active {
    fn enter(self: &Arc<Self>) -> StreamGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    /// Wait until no stream is in progress, then for the idle timeout: `keep-alive`; when
    /// keep-alive is off, none once a stream was served and `client-header-timeout` before.
    /// While idle, the connection may be closed for room by the connection cap (`table`).
    async fn idle_for(&self, snapshot: &SnapshotHandle, table: Option<&ConnTable>, served: bool) {
        while self.count.load(Ordering::Acquire) != 0 {
            // A guard dropped between the load and here leaves a permit: no wake-up is lost.
            self.idle.notified().await;
        }
        let limits = snapshot.load().server().conn;
        let wait = match limits.keep_alive {
            Some(t) => t,
            None if served => Duration::ZERO,
            None => limits.client_header_timeout,
        };
        let timeout = tokio::time::sleep(wait);
        match table {
            Some(table) => tokio::select! {
                () = timeout => {}
                () = table.idle_until_evicted() => {}
            },
            None => timeout.await,
        }
    }
}

/// Sleep until `deadline`; never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Serve one HTTP/2 connection with `app` until it closes.
pub(crate) async fn serve<A>(
    app: &Arc<A>,
    io: Stream,
    snapshot: &SnapshotHandle,
    table: Option<&ConnTable>,
    shutdown: &ShutdownWatch,
) where
    A: HttpServerApp + Send + Sync + 'static,
{
    let limits = snapshot.load().server().conn;
    let digest = Arc::new(Digest {
        ssl_digest: io.get_ssl_digest(),
        timing_digest: io.get_timing_digest(),
        proxy_digest: io.get_proxy_digest(),
        socket_digest: io.get_socket_digest(),
    });
    // The client preface and first SETTINGS, as a request header: `client-header-timeout`.
    let handshake = server::handshake(io, app.h2_options());
    let mut conn = match tokio::time::timeout(limits.client_header_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "h2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("h2 handshake timed out");
            return;
        }
    };
    let active = Arc::new(Active::default());
    let mut watch = shutdown.clone();
    let mut stopping = false;
    let mut served: u32 = 0;
    let mut malformed = 0usize;
    // Set once an idle connection got its GOAWAY: closed when it is written, or at this time.
    let mut closing: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            // Shutdown first, then streams already received, then the timers.
            biased;
            _ = watch.changed(), if !stopping => {
                stopping = true;
                conn.graceful_shutdown();
                continue;
            }
            accepted = HttpSession::from_h2_conn(&mut conn, digest.clone()) => accepted,
            () = active.idle_for(snapshot, table, served > 0), if closing.is_none() => {
                // As nginx at `keepalive_timeout`: GOAWAY naming the last stream processed
                // (nothing is in progress), then close.
                conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                closing = Some(Instant::now() + H2_GOAWAY_LINGER);
                continue;
            }
            () = until(closing) => {
                // The GOAWAY could not be written (the client does not read): close.
                return;
            }
        };
        match accepted {
            Err(e) => {
                // Clients often just close the TCP connection.
                tracing::debug!(error = %e, "h2 connection ended");
                return;
            }
            Ok(None) => return,
            Ok(Some(H2Accept::Rejected)) => {
                malformed += 1;
                if malformed >= H2_MAX_MALFORMED_STREAMS {
                    tracing::debug!("h2 connection closed: too many malformed requests");
                    return;
                }
            }
            Ok(Some(H2Accept::Session(session))) => {
                served = served.saturating_add(1);
                if served == limits.keep_alive_requests {
                    // As nginx at `keepalive_requests`: this stream is served, the client is
                    // told (GOAWAY) to open new ones on a new connection.
                    conn.graceful_shutdown();
                }
                let guard = active.enter();
                let app = app.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    app.process_new_http(ServerSession::new_http2(session), &shutdown)
                        .await;
                });
            }
        }
    }
}
