//! Rewrite and response phases: cross-origin resource sharing (`enable-cors`, `cors-allow-*`,
//! `cors-expose-headers`, `cors-max-age`).
//!
//! As ingress-nginx: when the request's `Origin` is allowed (or every origin is, `*`), a request
//! with method `OPTIONS` is answered 204 by Weir with the CORS headers and never reaches the
//! upstream; other requests get the CORS headers on the upstream's response, replacing the
//! upstream's own. A request whose origin is not allowed gets no CORS header at all.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    CONTENT_TYPE, ORIGIN,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};

use super::LocalResponse;

/// One allowed origin: `scheme://host[:port]`, where the host may start with `*.` (one DNS
/// label, as ingress-nginx's `[A-Za-z0-9-]+`). Compared without regard to ASCII case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginPattern {
    /// Everything before the wildcard label (`https://`), or the whole origin without one.
    prefix: String,
    /// Everything after the wildcard label (`.example.com:8443`); `None`: no wildcard.
    suffix: Option<String>,
}

impl OriginPattern {
    /// An origin or a wildcard origin (`https://*.example.com`). `None` when it is neither
    /// `scheme://host[:port]` nor `null`.
    pub fn parse(origin: &str) -> Option<OriginPattern> {
        let origin = origin.trim();
        if origin == "null" {
            return Some(OriginPattern {
                prefix: origin.into(),
                suffix: None,
            });
        }
        let (scheme, rest) = origin.split_once("://")?;
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        let (wildcard, host_port) = match rest.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        };
        let host_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok || host.is_empty() {
            return None;
        }
        let lower = |s: &str| s.to_ascii_lowercase();
        Some(if wildcard {
            OriginPattern {
                prefix: lower(&format!("{scheme}://")),
                suffix: Some(lower(&format!(".{host_port}"))),
            }
        } else {
            OriginPattern {
                prefix: lower(origin),
                suffix: None,
            }
        })
    }

    /// Whether a request's `Origin` is this one.
    pub fn matches(&self, origin: &[u8]) -> bool {
        let Some(suffix) = &self.suffix else {
            return origin.eq_ignore_ascii_case(self.prefix.as_bytes());
        };
        let (p, s) = (self.prefix.as_bytes(), suffix.as_bytes());
        if origin.len() <= p.len() + s.len() {
            return false;
        }
        let (head, rest) = origin.split_at(p.len());
        let (label, tail) = rest.split_at(rest.len() - s.len());
        head.eq_ignore_ascii_case(p)
            && tail.eq_ignore_ascii_case(s)
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    }
}

/// The CORS answer of a route. Values are built once, when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cors {
    /// Allowed origins; empty: every origin (`*`), and `Access-Control-Allow-Origin: *`.
    pub origins: Vec<OriginPattern>,
    /// `Access-Control-Allow-Methods`.
    pub allow_methods: HeaderValue,
    /// `Access-Control-Allow-Headers`.
    pub allow_headers: HeaderValue,
    /// `Access-Control-Expose-Headers`, if any.
    pub expose_headers: Option<HeaderValue>,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age`.
    pub max_age: HeaderValue,
}

impl Default for Cors {
    /// ingress-nginx's defaults: every origin, its methods and headers, credentials allowed,
    /// 20 days of preflight caching.
    fn default() -> Self {
        Cors {
            origins: Vec::new(),
            allow_methods: HeaderValue::from_static(Cors::DEFAULT_METHODS),
            allow_headers: HeaderValue::from_static(Cors::DEFAULT_HEADERS),
            expose_headers: None,
            allow_credentials: true,
            max_age: HeaderValue::from_static("1728000"),
        }
    }
}

impl Cors {
    /// ingress-nginx's default `cors-allow-methods`.
    pub const DEFAULT_METHODS: &'static str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
    /// ingress-nginx's default `cors-allow-headers`.
    pub const DEFAULT_HEADERS: &'static str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

    /// The `Access-Control-Allow-Origin` value for a request, `None` when its origin is not
    /// allowed (or it has none and only some origins are).
    fn allowed_origin(&self, req: &RequestHeader) -> Option<HeaderValue> {
        if self.origins.is_empty() {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = req.headers.get(ORIGIN)?;
        self.origins
            .iter()
            .any(|o| o.matches(origin.as_bytes()))
            .then(|| origin.clone())
    }

    fn headers(&self, origin: HeaderValue) -> [(HeaderName, Option<HeaderValue>); 6] {
        [
            (ACCESS_CONTROL_ALLOW_ORIGIN, Some(origin)),
            (
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                self.allow_credentials
                    .then(|| HeaderValue::from_static("true")),
            ),
            (
                ACCESS_CONTROL_ALLOW_METHODS,
                Some(self.allow_methods.clone()),
            ),
            (
                ACCESS_CONTROL_ALLOW_HEADERS,
                Some(self.allow_headers.clone()),
            ),
            (ACCESS_CONTROL_EXPOSE_HEADERS, self.expose_headers.clone()),
            (ACCESS_CONTROL_MAX_AGE, Some(self.max_age.clone())),
        ]
    }

    /// Rewrite phase: an `OPTIONS` request from an allowed origin is answered 204 here.
    pub(super) fn preflight(&self, req: &RequestHeader) -> Option<LocalResponse> {
        if req.method != Method::OPTIONS {
            return None;
        }
        let origin = self.allowed_origin(req)?;
        let mut headers = HeaderMap::with_capacity(8);
        for (name, value) in self.headers(origin) {
            if let Some(value) = value {
                headers.insert(name, value);
            }
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain charset=UTF-8"),
        );
        Some(LocalResponse {
            status: StatusCode::NO_CONTENT,
            headers,
            body: Default::default(),
        })
    }

    /// Response phase: the CORS headers of an allowed origin replace the upstream's.
    pub(super) fn on_response(
        &self,
        req: &RequestHeader,
        response: &mut ResponseHeader,
    ) -> pingora::Result<()> {
        let Some(origin) = self.allowed_origin(req) else {
            return Ok(());
        };
        for (name, value) in self.headers(origin) {
            if let Some(value) = value {
                response.insert_header(name, value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Vec<OriginPattern> {
        list.iter()
            .map(|o| OriginPattern::parse(o).unwrap())
            .collect()
    }

    #[test]
    fn origin_patterns() {
        let exact = OriginPattern::parse("https://a.example.com:8443").unwrap();
        assert!(exact.matches(b"https://a.example.com:8443"));
        assert!(exact.matches(b"HTTPS://A.example.COM:8443"));
        assert!(!exact.matches(b"https://a.example.com"));
        assert!(!exact.matches(b"http://a.example.com:8443"));
        let wild = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(wild.matches(b"https://foo.example.com"));
        assert!(wild.matches(b"https://foo-1.Example.com"));
        assert!(!wild.matches(b"https://example.com"));
        assert!(!wild.matches(b"https://.example.com"));
        assert!(!wild.matches(b"https://a.b.example.com"), "one label only");
        assert!(!wild.matches(b"http://foo.example.com"));
        assert!(!wild.matches(b"https://foo.example.com.evil.test"));
        assert!(!wild.matches(b"https://fooexample.com"));
        assert!(OriginPattern::parse("null").unwrap().matches(b"null"));
        for bad in [
            "example.com",
            "https://",
            "HTTPS://a.test",
            "https://a.test:x",
            "https://*.",
            "https://a b",
            "https://a.test/path",
            "$http_host",
        ] {
            assert_eq!(OriginPattern::parse(bad), None, "{bad}");
        }
    }

    fn request(method: &str, origin: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/", None).unwrap();
        if let Some(o) = origin {
            r.insert_header("origin", o).unwrap();
        }
        r
    }

    #[test]
    fn preflight_from_an_allowed_origin_is_answered() {
        let cors = Cors {
            origins: origins(&["https://*.example.com", "https://b.test"]),
            allow_credentials: false,
            ..Default::default()
        };
        let answer = cors
            .preflight(&request("OPTIONS", Some("https://x.example.com")))
            .unwrap();
        assert_eq!(answer.status, StatusCode::NO_CONTENT);
        assert_eq!(
            answer.headers["access-control-allow-origin"],
            "https://x.example.com"
        );
        assert_eq!(
            answer.headers["access-control-allow-methods"],
            Cors::DEFAULT_METHODS
        );
        assert_eq!(answer.headers["access-control-max-age"], "1728000");
        assert!(!answer
            .headers
            .contains_key("access-control-allow-credentials"));
        assert!(!answer.headers.contains_key("access-control-expose-headers"));
        assert!(cors
            .preflight(&request("OPTIONS", Some("https://evil.test")))
            .is_none());
        assert!(cors.preflight(&request("OPTIONS", None)).is_none());
        assert!(cors
            .preflight(&request("GET", Some("https://b.test")))
            .is_none());
    }

    #[test]
    fn every_origin_and_response_headers() {
        let cors = Cors {
            expose_headers: Some(HeaderValue::from_static("X-A")),
            ..Default::default()
        };
        let answer = cors.preflight(&request("OPTIONS", None)).unwrap();
        assert_eq!(answer.headers["access-control-allow-origin"], "*");
        assert_eq!(answer.headers["access-control-allow-credentials"], "true");
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("access-control-allow-origin", "https://upstream.test")
            .unwrap();
        cors.on_response(&request("GET", Some("https://c.test")), &mut resp)
            .unwrap();
        assert_eq!(resp.headers["access-control-allow-origin"], "*");
        assert_eq!(resp.headers["access-control-expose-headers"], "X-A");
        let listed = Cors {
            origins: origins(&["https://c.test"]),
            ..Default::default()
        };
        let mut resp = ResponseHeader::build(200, None).unwrap();
        listed
            .on_response(&request("GET", Some("https://d.test")), &mut resp)
            .unwrap();
        assert_eq!(resp.headers.len(), 0, "no CORS header for another origin");
    }
}
