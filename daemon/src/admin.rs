//! The health and metrics listener: `/healthz` for the load balancer, `/metrics` for Prometheus.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, Registry, TextEncoder};
use proxy_core::SnapshotHandle;

/// Serves `/healthz` and `/metrics`.
pub struct AdminApp {
    /// Readiness comes from whether a snapshot has been published.
    pub snapshot: SnapshotHandle,
    /// The registry every metric is registered in.
    pub registry: Registry,
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
                if self.snapshot.is_ready() {
                    text(StatusCode::OK, "text/plain", b"ok".to_vec())
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"configuration not loaded yet".to_vec(),
                    )
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
