//! The connection edge: what happens between `accept()` and HTTP. Pingora has no PROXY protocol,
//! so listeners are plain TCP and this app does, per connection: the PROXY protocol header when
//! the snapshot says so (the client address then comes from it), the TLS handshake with the
//! snapshot's per-SNI certificates on TLS listeners ([`SniResolver`]), then hands the stream to
//! the HTTP proxy.

pub(crate) mod framing;
mod h2;
mod limits;
mod proxy_protocol;
mod sni;

pub use h2::{
    h2_server_options, H2_GOAWAY_LINGER, H2_HEADER_TABLE_SIZE, H2_MAX_CONCURRENT_RESETS,
    H2_MAX_CONCURRENT_STREAMS, H2_MAX_HEADER_LIST_SIZE, H2_MAX_LOCAL_ERROR_RESETS,
    H2_MAX_PENDING_ACCEPT_RESETS, H2_MAX_SEND_BUFFER,
};
pub(crate) use limits::{on_request, request_done};
pub use limits::{ConnLimits, ConnPlace, ConnTable, GuardedStream};
pub use proxy_protocol::{read_proxy_header, ProxyHeader, ProxyProtocolError, PROXY_V1_MAX_LEN};
pub use sni::SniResolver;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::snapshot::SnapshotHandle;

/// How long a client has to send its PROXY protocol header.
pub const PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection-level failures, by kind.
#[derive(Clone)]
pub struct EdgeMetrics {
    /// `weir_connection_errors_total{listener,reason}`: connections closed before HTTP
    /// (bad PROXY protocol header, TLS handshake failure).
    pub errors: IntCounterVec,
}

impl EdgeMetrics {
    /// Create and register.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let errors = IntCounterVec::new(
            Opts::new(
                "weir_connection_errors_total",
                "Connections closed before any HTTP request: PROXY protocol or TLS handshake failures",
            ),
            &["listener", "reason"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        Ok(EdgeMetrics { errors })
    }
}

/// Wraps an HTTP app (Pingora's `HttpProxy`) with PROXY protocol and TLS handling.
pub struct EdgeApp<A> {
    inner: Arc<A>,
    snapshot: SnapshotHandle,
    tls: Option<Acceptor>,
    listener: &'static str,
    metrics: Option<EdgeMetrics>,
    table: Option<Arc<ConnTable>>,
}

impl<A> EdgeApp<A> {
    /// A plain listener (`tls: None`) or a TLS one; `listener` names it in metrics.
    pub fn new(
        inner: A,
        snapshot: SnapshotHandle,
        tls: Option<Acceptor>,
        listener: &'static str,
        metrics: Option<EdgeMetrics>,
    ) -> Self {
        EdgeApp {
            inner: Arc::new(inner),
            snapshot,
            tls,
            listener,
            metrics,
            table: None,
        }
    }

    /// Count this listener's connections in `table` (shared by every proxy listener), for the
    /// connection cap (`max-worker-connections`).
    pub fn with_conn_table(mut self, table: Arc<ConnTable>) -> Self {
        self.table = Some(table);
        self
    }

    /// The listening endpoint for this app on `addr`, with read buffers sized for it. Pingora
    /// gives every accepted connection a 64 KiB read buffer by default; plain HTTP/1 parses from
    /// its own buffer and needs none, and a TLS listener needs one TLS record (16 KiB).
    pub fn listener(&self, addr: &str) -> ListenerConfig {
        let read = if self.tls.is_some() { 16 * 1024 } else { 0 };
        ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(read))
    }

    fn count(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.errors.with_label_values(&[self.listener, reason]).inc();
        }
    }
}

/// Make the connection report `client` as its peer address (and the PROXY destination, when
/// given, as its local address: X-Forwarded-Port and the scheme follow it).
fn set_addresses(
    io: &mut Stream,
    client: std::net::SocketAddr,
    destination: Option<std::net::SocketAddr>,
) {
    let Some(fd) = io
        .as_any()
        .downcast_ref::<L4Stream>()
        .map(std::os::fd::AsRawFd::as_raw_fd)
    else {
        return;
    };
    let digest = SocketDigest::from_raw_fd(fd);
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(client)));
    if let Some(d) = destination {
        let _ = digest.local_addr.set(Some(PingoraAddr::Inet(d)));
    }
    io.set_socket_digest(digest);
}

impl<A> EdgeApp<A> {
    /// The PROXY protocol header and the TLS handshake; `None` when the connection failed them.
    async fn prepare(&self, mut io: Stream, proxy_protocol: bool) -> Option<Stream> {
        if proxy_protocol {
            match read_proxy_header(&mut io, PROXY_PROTOCOL_TIMEOUT).await {
                Ok(header) => {
                    // As nginx: the header's source is the client address only when the sender
                    // (the load balancer) is trusted by `proxy-real-ip-cidr`.
                    let peer = io
                        .get_socket_digest()
                        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
                    let snapshot = self.snapshot.load();
                    let trusted = peer.is_some_and(|p| snapshot.server().client_ip.is_trusted(p));
                    if let (Some(source), true) = (header.source, trusted) {
                        set_addresses(&mut io, source, header.destination);
                    }
                }
                Err(e) => {
                    tracing::debug!(listener = self.listener, error = %e, "PROXY protocol header rejected");
                    self.count(e.metric_label());
                    return None;
                }
            }
        }
        let Some(acceptor) = &self.tls else {
            return Some(io);
        };
        let Ok(tcp) = io.into_any().downcast::<L4Stream>() else {
            self.count("not_tcp");
            return None;
        };
        match acceptor.tls_handshake(*tcp).await {
            Ok(tls) => Some(Box::new(tls)),
            Err(e) => {
                tracing::debug!(listener = self.listener, error = %e, "TLS handshake failed");
                self.count("tls_handshake");
                None
            }
        }
    }
}

/// Whether a plain connection starts with the HTTP/2 client preface (h2c prior knowledge);
/// `None` when nothing arrives within `wait` (closed, as an HTTP/1 connection would be).
async fn h2c_preface(io: &mut Stream, wait: Duration) -> Option<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; PREFACE.len()];
    match tokio::time::timeout(wait, io.try_peek(&mut buf)).await {
        Ok(Ok(true)) => Some(buf == PREFACE),
        // Streams that cannot peek: HTTP/1.
        Ok(Ok(false)) => Some(false),
        Ok(Err(_)) | Err(_) => None,
    }
}

#[async_trait]
impl<A> ServerApp for EdgeApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, io: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let (proxy_protocol, limits) = {
            let snapshot = self.snapshot.load();
            (snapshot.server().proxy_protocol, snapshot.server().conn)
        };
        let _place = match &self.table {
            Some(table) => match table.enter(&limits) {
                Some(place) => Some(place),
                None => {
                    self.count("connection_limit");
                    return None;
                }
            },
            None => None,
        };
        let mut io = if proxy_protocol || self.tls.is_some() {
            // Boxed apart: the handshake state is large and would otherwise stay allocated for
            // the whole life of every keep-alive connection.
            let prepare = Box::pin(self.prepare(io, proxy_protocol));
            // A connection still in its handshake when the listener stops has no request yet:
            // it is closed like an idle keep-alive connection, not waited for.
            let mut shutdown = shutdown.clone();
            let stopping = async move {
                if shutdown.wait_for(|stopping| *stopping).await.is_err() {
                    // No one left to say so: never.
                    std::future::pending::<()>().await;
                }
            };
            // As nginx, the handshake has the header timeout (`client-header-timeout`).
            let prepare = tokio::time::timeout(limits.client_header_timeout, prepare);
            tokio::select! {
                io = prepare => match io {
                    Ok(io) => io?,
                    Err(_) => {
                        self.count("handshake_timeout");
                        return None;
                    }
                },
                () = stopping => return None,
            }
        } else {
            io
        };
        // HTTP/2 (ALPN, or the h2c preface on the plain listener when enabled) runs in Weir's
        // own connection loop with the HTTP/2 limits; HTTP/1 gets the keep-alive, header and
        // size limits on its reads.
        if matches!(io.selected_alpn_proto(), Some(pingora::protocols::ALPN::H2))
            || (self.tls.is_none()
                && self.inner.server_options().is_some_and(|o| o.h2c)
                && h2c_preface(&mut io, limits.client_header_timeout).await?)
        {
            h2::serve(
                &self.inner,
                io,
                &self.snapshot,
                self.table.as_deref(),
                shutdown,
            )
            .await;
            return None;
        }
        let mut io: Stream = Box::new(GuardedStream::new(
            io,
            self.snapshot.clone(),
            self.table.clone(),
        ));
        // Keep-alive: later requests on this connection go straight to HTTP.
        loop {
            io = self.inner.process_new(io, shutdown).await?;
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
