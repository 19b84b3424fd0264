//! Responses the proxy writes itself: the built-in default backend and error pages.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Body of the built-in default backend's 404.
pub const NOT_FOUND_PAGE: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

/// Body of the 503 sent when the matched Service has no ready endpoint.
pub const UNAVAILABLE_PAGE: &str = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

/// Body of the 400 sent for requests the proxy cannot route (bad path).
pub const BAD_REQUEST_PAGE: &str = "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

/// Body of the 403 sent when the client address is not allowed.
pub const FORBIDDEN_PAGE: &str = "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

/// Body of the 502 sent when the upstream failed.
pub const BAD_GATEWAY_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

/// Body of the 504 sent when the upstream timed out.
pub const GATEWAY_TIMEOUT_PAGE: &str = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

/// The page for an error status the proxy generates, if it has one.
pub fn error_page(status: u16) -> Option<&'static str> {
    match status {
        400 => Some(BAD_REQUEST_PAGE),
        403 => Some(FORBIDDEN_PAGE),
        404 => Some(NOT_FOUND_PAGE),
        502 => Some(BAD_GATEWAY_PAGE),
        503 => Some(UNAVAILABLE_PAGE),
        504 => Some(GATEWAY_TIMEOUT_PAGE),
        _ => None,
    }
}

/// Write a complete small HTML response and keep the connection reusable.
pub async fn respond(session: &mut Session, status: u16, body: &'static str) -> Result<()> {
    respond_with(session, status, body, None).await
}

/// Like [`respond`], with a `Location` header (redirects).
pub async fn respond_with(
    session: &mut Session,
    status: u16,
    body: &'static str,
    location: Option<&str>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    if let Some(l) = location {
        resp.insert_header(http::header::LOCATION, l)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "text/html")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
            .await?;
    }
    Ok(())
}
