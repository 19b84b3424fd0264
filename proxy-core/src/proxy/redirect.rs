//! The HTTP → HTTPS redirect (`ssl-redirect`, `force-ssl-redirect`, `preserve-trailing-slash`).

use pingora::proxy::Session;
use pingora::Result;

/// `https://host[:port]/path?query` for a request URI. As ingress-nginx, a trailing slash is
/// dropped unless `preserve_trailing_slash` (the root `/` stays), and the port is shown only when
/// it is not 443.
pub fn https_location(
    host: &str,
    https_port: u16,
    request_uri: &str,
    preserve_trailing_slash: bool,
) -> String {
    let mut uri = request_uri;
    if !preserve_trailing_slash && uri.len() > 1 && uri.ends_with('/') {
        uri = &uri[..uri.len() - 1];
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match https_port {
        443 | 0 => format!("https://{host}{uri}"),
        p => format!("https://{host}:{p}{uri}"),
    }
}

/// Send a redirect with a small HTML body, keeping the connection.
pub async fn respond(session: &mut Session, status: u16, location: &str) -> Result<()> {
    let body: &'static str = match status {
        301 => "<html>\r\n<head><title>301 Moved Permanently</title></head>\r\n<body>\r\n<center><h1>301 Moved Permanently</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        302 => "<html>\r\n<head><title>302 Found</title></head>\r\n<body>\r\n<center><h1>302 Found</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
        _ => "<html>\r\n<head><title>308 Permanent Redirect</title></head>\r\n<body>\r\n<center><h1>308 Permanent Redirect</h1></center>\r\n<hr><center>weir</center>\r\n</body>\r\n</html>\r\n",
    };
    super::pages::respond_with(session, status, body, Some(location)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            https_location("a.test", 443, "/x/?q=1", false),
            "https://a.test/x/?q=1"
        );
        assert_eq!(
            https_location("a.test", 443, "/x/", false),
            "https://a.test/x"
        );
        assert_eq!(
            https_location("a.test", 443, "/x/", true),
            "https://a.test/x/"
        );
        assert_eq!(https_location("a.test", 443, "/", false), "https://a.test/");
        assert_eq!(
            https_location("a.test", 8443, "/p?a=b", false),
            "https://a.test:8443/p?a=b"
        );
        assert_eq!(https_location("::1", 443, "/", false), "https://[::1]/");
    }
}
