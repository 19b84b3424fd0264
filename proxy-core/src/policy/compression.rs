//! Response phase: gzip and brotli compression of upstream responses (ConfigMap `use-gzip`,
//! `gzip-level`, `gzip-min-length`, `gzip-types`, `enable-brotli`, `brotli-level`,
//! `brotli-min-length`, `brotli-types`), streamed by Pingora's response compression module.
//!
//! When a response's type and length suit an enabled algorithm and the client accepts it,
//! Pingora's module compresses it on the fly, adds `Vary: Accept-Encoding` and never compresses
//! a response that already has a `Content-Encoding`. Nothing is parsed for a request when both
//! algorithms are off.

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::compression::{Algorithm, ResponseCompressionCtx};

/// One algorithm's settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encoding {
    /// Compression level.
    pub level: u32,
    /// Smallest `Content-Length` compressed (a response without one is compressed).
    pub min_length: u64,
    /// Media types compressed (`*`: all), without parameters, lowercase.
    pub types: Vec<String>,
}

impl Encoding {
    fn applies(&self, response: &ResponseHeader) -> bool {
        let length = response
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if length.is_some_and(|n| n < self.min_length) {
            return false;
        }
        let Some(media) = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim())
        else {
            return false;
        };
        self.types
            .iter()
            .any(|t| t == "*" || t.eq_ignore_ascii_case(media))
    }
}

/// Which algorithms compress upstream responses; both off by default (`use-gzip: false`,
/// `enable-brotli: false`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Compression {
    /// gzip (`use-gzip`).
    pub gzip: Option<Encoding>,
    /// brotli (`enable-brotli`).
    pub brotli: Option<Encoding>,
}

impl Compression {
    /// ingress-nginx's default `gzip-types` (nginx always adds `text/html`).
    pub const DEFAULT_TYPES: &'static str = "application/atom+xml application/javascript application/x-javascript application/json application/rss+xml application/vnd.ms-fontobject application/x-font-ttf application/x-web-app-manifest+json application/xhtml+xml application/xml font/opentype image/svg+xml image/x-icon text/css text/javascript text/plain text/x-component";

    /// Whether any algorithm is on.
    pub fn is_enabled(&self) -> bool {
        self.gzip.is_some() || self.brotli.is_some()
    }

    /// Sets up Pingora's compression for this response: the algorithms whose type and length
    /// fit, and the client's `Accept-Encoding`.
    pub(crate) fn on_response(
        &self,
        ctx: &mut ResponseCompressionCtx,
        request: &RequestHeader,
        response: &ResponseHeader,
    ) {
        if !ctx.is_header_phase() || response.status.is_informational() {
            return;
        }
        let level = |e: &Option<Encoding>| {
            e.as_ref()
                .filter(|e| e.applies(response))
                .map_or(0, |e| e.level)
        };
        let (gzip, brotli) = (level(&self.gzip), level(&self.brotli));
        if gzip == 0 && brotli == 0 {
            return;
        }
        ctx.adjust_level(0);
        ctx.adjust_algorithm_level(Algorithm::Gzip, gzip);
        ctx.adjust_algorithm_level(Algorithm::Brotli, brotli);
        ctx.request_filter(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(min_length: u64, types: &[&str]) -> Compression {
        Compression {
            gzip: Some(Encoding {
                level: 1,
                min_length,
                types: types.iter().map(|t| t.to_string()).collect(),
            }),
            brotli: None,
        }
    }

    fn response(ct: Option<&str>, len: Option<usize>) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        if let Some(ct) = ct {
            r.insert_header("content-type", ct).unwrap();
        }
        if let Some(len) = len {
            r.insert_header("content-length", len).unwrap();
        }
        r
    }

    fn compressed(c: &Compression, accept: &str, mut resp: ResponseHeader) -> Option<String> {
        let mut ctx = ResponseCompressionCtx::new(0, false, false);
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("accept-encoding", accept).unwrap();
        c.on_response(&mut ctx, &req, &resp);
        ctx.response_header_filter(&mut resp, false);
        resp.headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn types_lengths_and_accept_encoding() {
        let c = gzip(256, &["application/json", "text/plain"]);
        let json = |len| response(Some("application/json; charset=utf-8"), len);
        assert_eq!(
            compressed(&c, "gzip", json(Some(300))).as_deref(),
            Some("gzip")
        );
        assert_eq!(compressed(&c, "gzip", json(None)).as_deref(), Some("gzip"));
        assert_eq!(compressed(&c, "gzip", json(Some(100))), None, "too short");
        assert_eq!(compressed(&c, "br", json(Some(300))), None, "not accepted");
        assert_eq!(compressed(&c, "identity", json(Some(300))), None);
        let html = response(Some("text/html"), Some(300));
        assert_eq!(compressed(&c, "gzip", html), None, "type not listed");
        assert_eq!(compressed(&c, "gzip", response(None, Some(300))), None);
        let all = gzip(0, &["*"]);
        let csv = response(Some("text/csv"), Some(300));
        assert_eq!(compressed(&all, "gzip", csv).as_deref(), Some("gzip"));
        assert_eq!(
            compressed(&Compression::default(), "gzip", json(Some(300))),
            None
        );
        let mut already = json(Some(300));
        already.insert_header("content-encoding", "br").unwrap();
        assert_eq!(
            compressed(&c, "gzip", already).as_deref(),
            Some("br"),
            "never compressed twice"
        );
    }
}
