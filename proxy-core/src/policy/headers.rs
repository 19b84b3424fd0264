//! Headers set on upstream requests (`proxy-set-headers`), removed from upstream responses
//! (`hide-headers`) and set on responses (`add-headers`, then the `custom-headers` annotation).
//! Names and values are checked once when the snapshot is built; a request only copies them.

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

/// The header changes of a route, applied in the proxy and response phases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HeaderPolicy {
    /// Set on the upstream request, replacing what the client sent (nginx's `proxy_set_header`);
    /// an empty value removes the header, as nginx does not send a header with an empty value.
    pub upstream: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the upstream's response (nginx's `proxy_hide_header`).
    pub hide: Vec<HeaderName>,
    /// Set on the response, replacing a header of the same name (headers-more's
    /// `more_set_headers`), after `hide`.
    pub response: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderPolicy {
    /// Whether the policy changes nothing.
    pub fn is_empty(&self) -> bool {
        self.upstream.is_empty() && self.hide.is_empty() && self.response.is_empty()
    }

    /// Adds a response header, replacing an earlier one of the same name (a later source wins:
    /// `custom-headers` over `add-headers`).
    pub fn set_response(&mut self, name: HeaderName, value: HeaderValue) {
        match self.response.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.response.push((name, value)),
        }
    }

    /// The proxy phase: the upstream request's headers.
    pub(crate) fn on_upstream_request(&self, req: &mut RequestHeader) -> Result<()> {
        for (name, value) in &self.upstream {
            if value.is_empty() {
                req.remove_header(name);
            } else {
                req.insert_header(name.clone(), value.clone())?;
            }
        }
        Ok(())
    }

    /// The response phase: hidden headers removed, then the response headers set.
    pub(crate) fn on_response(&self, resp: &mut ResponseHeader) -> Result<()> {
        for name in &self.hide {
            resp.remove_header(name);
        }
        for (name, value) in &self.response {
            resp.insert_header(name.clone(), value.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HeaderName {
        HeaderName::from_bytes(s.as_bytes()).unwrap()
    }

    #[test]
    fn upstream_headers_replace_and_empty_removes() {
        let p = HeaderPolicy {
            upstream: vec![
                (h("x-a"), HeaderValue::from_static("1")),
                (h("x-gone"), HeaderValue::from_static("")),
            ],
            ..Default::default()
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-a", "client").unwrap();
        req.insert_header("x-gone", "client").unwrap();
        p.on_upstream_request(&mut req).unwrap();
        assert_eq!(req.headers.get_all("x-a").iter().count(), 1);
        assert_eq!(req.headers["x-a"], "1");
        assert!(req.headers.get("x-gone").is_none());
    }

    #[test]
    fn hide_then_set_and_later_source_wins() {
        let mut p = HeaderPolicy {
            hide: vec![h("x-powered-by")],
            ..Default::default()
        };
        p.set_response(h("x-frame-options"), HeaderValue::from_static("DENY"));
        p.set_response(h("x-frame-options"), HeaderValue::from_static("SAMEORIGIN"));
        assert_eq!(p.response.len(), 1);
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("x-powered-by", "php").unwrap();
        resp.insert_header("x-frame-options", "upstream").unwrap();
        p.on_response(&mut resp).unwrap();
        assert!(resp.headers.get("x-powered-by").is_none());
        assert_eq!(resp.headers["x-frame-options"], "SAMEORIGIN");
        assert!(HeaderPolicy::default().is_empty() && !p.is_empty());
    }
}
