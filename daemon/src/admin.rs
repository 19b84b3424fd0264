//! The health and metrics listener: `/healthz` for the load balancer, `/metrics` for Prometheus.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, Registry, TextEncoder};
use proxy_core::SnapshotHandle;

/// Serves `/healthz` and `/metrics`.
pub struct AdminApp {
    /// Readiness comes from whether a snapshot has been published...
    pub snapshot: SnapshotHandle,
    /// ...and whether the proxy listener accepts connections (checked with a connect).
    pub proxy_addr: SocketAddr,
    /// The registry every metric is registered in.
    pub registry: Registry,
    /// Set on SIGTERM: from then on `/healthz` answers 503, so the load balancer and the
    /// kubelet take the pod out while it still serves (see [`crate::shutdown`]).
    pub draining: Arc<AtomicBool>,
}

/// A PROXY protocol v2 header with the LOCAL command and no addresses (sent by health checks).
const PROXY_V2_LOCAL: [u8; 16] = *b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

/// Where to connect to reach a listener bound to `bind` (the unspecified address → loopback).
pub fn local_target(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, bind.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, bind.port()))
        }
        _ => bind,
    }
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => {
                if self.draining.load(Ordering::Acquire) {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"shutting down".to_vec(),
                    );
                }
                if !self.snapshot.is_ready() {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"configuration not loaded yet".to_vec(),
                    );
                }
                let connect = tokio::net::TcpStream::connect(self.proxy_addr);
                match tokio::time::timeout(Duration::from_secs(1), connect).await {
                    Ok(Ok(mut probe)) => {
                        // With use-proxy-protocol the listener expects a header first; a PROXY
                        // v2 LOCAL header (a health check's) keeps this probe from counting as
                        // a connection error.
                        if self.snapshot.load().server().proxy_protocol {
                            use tokio::io::AsyncWriteExt;
                            let _ = probe.write_all(&PROXY_V2_LOCAL).await;
                        }
                        text(StatusCode::OK, "text/plain", b"ok".to_vec())
                    }
                    _ => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"proxy listener not accepting connections".to_vec(),
                    ),
                }
            }
            "/metrics" => {
                let encoder = TextEncoder::new();
                let mut buf = Vec::new();
                match encoder.encode(&self.registry.gather(), &mut buf) {
                    Ok(()) => text(StatusCode::OK, encoder.format_type(), buf),
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        e.to_string().into_bytes(),
                    ),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "text/plain", b"not found".to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_bind_addresses_are_reached_on_loopback() {
        let t = |s: &str| local_target(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:80"), "127.0.0.1:80");
        assert_eq!(t("[::]:443"), "[::1]:443");
        assert_eq!(t("10.1.2.3:8080"), "10.1.2.3:8080");
    }
}
