//! Rewrite phase: the HTTP → HTTPS redirect (`ssl-redirect`, `force-ssl-redirect`,
//! `preserve-trailing-slash`).

use http::{HeaderValue, StatusCode};

use super::{LocalResponse, StepRequest};
use crate::model::ServerPolicy;

/// Plain-HTTP requests get a 308 to the same URL on `https://`, except ACME HTTP-01 challenges
/// (`/.well-known/acme-challenge/`), which must stay reachable over plain HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HttpsRedirect {
    /// Keep a trailing slash in the redirect URL (`preserve-trailing-slash`; ingress-nginx drops
    /// it by default).
    pub preserve_trailing_slash: bool,
}

impl HttpsRedirect {
    /// The redirect for this request, if it needs one.
    pub(super) fn apply(
        &self,
        req: &StepRequest<'_>,
        server: &ServerPolicy,
    ) -> Option<LocalResponse> {
        if req.scheme() == "https" || req.path().starts_with("/.well-known/acme-challenge/") {
            return None;
        }
        let port = if server.port_in_redirects {
            server.https_port
        } else {
            443
        };
        let uri = req
            .header()
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str());
        let location = https_location(req.host(), port, uri, self.preserve_trailing_slash);
        // The host and URI were parsed from the request, so this only fails on bytes a client
        // should not have sent; answer 400 rather than redirect to a broken URL.
        Some(match HeaderValue::try_from(location) {
            Ok(location) => LocalResponse::page(
                server
                    .http_redirect_code
                    .unwrap_or(StatusCode::PERMANENT_REDIRECT),
            )
            .with_header(http::header::LOCATION, location),
            Err(_) => LocalResponse::page(StatusCode::BAD_REQUEST),
        })
    }
}

/// `https://host[:port]/path?query` for a request URI. As ingress-nginx, a trailing slash is
/// dropped unless `preserve_trailing_slash` (the root `/` stays), and the port is shown only when
/// it is not 443.
fn https_location(
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

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::RequestHeader;

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

    #[test]
    fn plain_http_only_and_not_acme_challenges() {
        let redirect = HttpsRedirect::default();
        let server = ServerPolicy {
            https_port: 8443,
            port_in_redirects: true,
            ..Default::default()
        };
        let header = RequestHeader::build("GET", b"/a/?b=1", None).unwrap();
        let location = |https, path| {
            let req = StepRequest::new(&header, None, https, "a.test", path);
            redirect.apply(&req, &server).map(|r| {
                assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
                r.headers["location"].to_str().unwrap().to_string()
            })
        };
        assert_eq!(
            location(false, "/a/").as_deref(),
            Some("https://a.test:8443/a/?b=1")
        );
        assert_eq!(location(true, "/a/"), None);
        assert_eq!(location(false, "/.well-known/acme-challenge/t"), None);
    }
}
