//! Responses the proxy writes itself: pages (built-in default backend, errors) and the answers
//! of the policy phases.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::pages::page;
use crate::policy::{HeaderPolicy, LocalResponse};

/// Writes `status` with Weir's page for it and keeps the connection reusable; `headers`: the
/// route's `add-headers`/`custom-headers`, which nginx also sets on its own pages.
pub(super) async fn respond_page(
    session: &mut Session,
    status: u16,
    headers: Option<&HeaderPolicy>,
) -> Result<()> {
    let body = page(status).unwrap_or_default();
    let mut resp = ResponseHeader::build(status, Some(2))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/html")?;
    if let Some(h) = headers {
        h.on_local_response(&mut resp)?;
    }
    write(session, resp, Bytes::from_static(body.as_bytes())).await
}

/// Writes a policy phase's answer and keeps the connection reusable.
pub(super) async fn send(
    session: &mut Session,
    answer: LocalResponse,
    headers: Option<&HeaderPolicy>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 1))?;
    for (name, value) in &answer.headers {
        resp.append_header(name, value)?;
    }
    if let Some(h) = headers {
        h.on_local_response(&mut resp)?;
    }
    write(session, resp, answer.body).await
}

/// After an answer written before the request body was read: read and drop what the client
/// still sends, for at most 5 s, then close the connection, as nginx's lingering close. Closing
/// with unread data would reset the connection, and the client could lose the answer.
pub(super) async fn linger(session: &mut Session) {
    if session.is_body_done() {
        return;
    }
    session.set_keepalive(None);
    let drained = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        session.drain_request_body(),
    )
    .await;
    if !matches!(drained, Ok(Ok(()))) {
        tracing::debug!("request body not fully read before closing");
    }
}

/// Adds `Content-Length` and writes the header, then the body unless the request is `HEAD`.
async fn write(session: &mut Session, mut resp: ResponseHeader, body: Bytes) -> Result<()> {
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    let end = head_only || body.is_empty();
    session.write_response_header(Box::new(resp), end).await?;
    if !end {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
