//! Request bodies (`proxy-body-size`, `proxy-request-buffering`, `client-body-buffer-size`).
//!
//! The size limit is checked twice, as nginx's `client_max_body_size`: on `Content-Length`
//! before anything is sent upstream (413 at once), and on the bytes read while a body without a
//! length (chunked, HTTP/2) streams: the request is then aborted, the upstream connection closed
//! before the body's end, so the upstream never sees a truncated body as complete.
//!
//! Buffering: with `proxy-request-buffering: on` a body whose `Content-Length` fits
//! [`BodyPolicy::buffer_size`] (and Pingora's 64 KiB replay buffer) is read in full before an
//! endpoint is picked and connected; it is then sent from memory (and can be sent again on a
//! retry). Larger bodies and bodies without a length stream with bounded memory.

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

/// The most Weir reads before connecting: Pingora keeps at most 64 KiB of a request body to
/// send (and resend) from memory.
pub const MAX_BUFFERED_BODY: u64 = 64 * 1024;

/// How request bodies are limited and buffered. The default is ingress-nginx's: at most 1 MiB,
/// buffered, 8 KiB read before connecting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BodyPolicy {
    /// Largest body accepted, in bytes (`proxy-body-size`); `None`: unlimited (`0`).
    pub max_size: Option<u64>,
    /// Read a small body in full before connecting (`proxy-request-buffering: on`).
    pub request_buffering: bool,
    /// Largest body read before connecting, in bytes (`client-body-buffer-size`; capped at
    /// [`MAX_BUFFERED_BODY`]).
    pub buffer_size: u64,
}

impl Default for BodyPolicy {
    fn default() -> Self {
        BodyPolicy {
            max_size: Some(1024 * 1024),
            request_buffering: true,
            buffer_size: 8 * 1024,
        }
    }
}

impl BodyPolicy {
    /// Whether a request announcing `content_length` bytes is too large.
    pub fn rejects_length(&self, content_length: u64) -> bool {
        self.max_size.is_some_and(|max| content_length > max)
    }

    /// The body bytes to read before connecting for a request announcing `content_length`:
    /// `Some` when buffering is on and the whole body fits the buffer.
    pub fn prebuffer(&self, content_length: Option<u64>) -> Option<u64> {
        let len = content_length.filter(|&n| n > 0)?;
        (self.request_buffering && len <= self.buffer_size.min(MAX_BUFFERED_BODY)).then_some(len)
    }
}

/// Whether the request announces a body larger than the limit.
pub(crate) fn announced_too_large(policy: &BodyPolicy, req: &RequestHeader) -> bool {
    policy.max_size.is_some() && header_length(req).is_some_and(|len| policy.rejects_length(len))
}

/// The request's `Content-Length`, if it has a valid one.
pub(crate) fn content_length(session: &Session) -> Option<u64> {
    header_length(session.req_header())
}

fn header_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The error that ends a request whose body is too large: 413.
pub(crate) fn too_large() -> Box<Error> {
    Error::explain(
        ErrorType::HTTPStatus(413),
        "request body larger than proxy-body-size",
    )
}

/// Reads a body of `len` bytes in full into Pingora's replay buffer, which the proxy sends
/// upstream once connected.
pub(crate) async fn prebuffer(session: &mut Session, len: u64) -> pingora::Result<()> {
    session.as_downstream_mut().enable_retry_buffering();
    let mut read = 0u64;
    // A read error or timeout here is the client's (408 for `client-body-timeout`).
    while let Some(chunk) = session
        .as_downstream_mut()
        .read_request_body()
        .await
        .map_err(|e| e.into_down())?
    {
        read += chunk.len() as u64;
        if read > len {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_buffers() {
        let d = BodyPolicy::default();
        assert!(!d.rejects_length(1024 * 1024));
        assert!(d.rejects_length(1024 * 1024 + 1));
        let unlimited = BodyPolicy {
            max_size: None,
            ..d.clone()
        };
        assert!(!unlimited.rejects_length(u64::MAX));
        assert_eq!(d.prebuffer(Some(8192)), Some(8192));
        assert_eq!(d.prebuffer(Some(8193)), None);
        assert_eq!(d.prebuffer(Some(0)), None);
        assert_eq!(d.prebuffer(None), None);
        let big = BodyPolicy {
            buffer_size: 1 << 30,
            ..d.clone()
        };
        assert_eq!(big.prebuffer(Some(MAX_BUFFERED_BODY + 1)), None);
        let off = BodyPolicy {
            request_buffering: false,
            ..d
        };
        assert_eq!(off.prebuffer(Some(10)), None);
    }
}
