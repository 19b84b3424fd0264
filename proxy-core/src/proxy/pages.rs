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

/// Write a complete small HTML response and keep the connection reusable.
pub async fn respond(session: &mut Session, status: u16, body: &'static str) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
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
