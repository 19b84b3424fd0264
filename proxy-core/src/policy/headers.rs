//! Headers set on upstream requests (`proxy-set-headers`), removed from upstream responses
//! (`hide-headers`) and set on responses (`add-headers`, then the `custom-headers` annotation).
//! Names and values are checked once when the snapshot is built; a request only copies them.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

/// A header to set, its name kept as written (HTTP/1 sends it in that case, as nginx).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderEntry {
    name: HeaderName,
    written: Bytes,
    value: HeaderValue,
}

/// Why a header cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHeader {
    /// The name is not an HTTP token.
    #[error("{0:?} is not a header name")]
    Name(String),
    /// The value has characters a header value cannot hold.
    #[error("{0:?} is not a header value")]
    Value(String),
}

impl HeaderEntry {
    /// A header `name: value`, both checked.
    pub fn new(name: &str, value: &str) -> std::result::Result<Self, InvalidHeader> {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InvalidHeader::Name(name.to_string()))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| InvalidHeader::Value(value.to_string()))?;
        Ok(HeaderEntry {
            name: parsed,
            written: Bytes::copy_from_slice(name.as_bytes()),
            value,
        })
    }

    /// The name (lowercase).
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value.
    pub fn value(&self) -> &HeaderValue {
        &self.value
    }
}

/// The header changes of a route, applied in the proxy and response phases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HeaderPolicy {
    /// Set on the upstream request, replacing what the client sent (nginx's `proxy_set_header`);
    /// an empty value removes the header, as nginx does not send a header with an empty value.
    pub upstream: Vec<HeaderEntry>,
    /// Removed from the upstream's response (nginx's `proxy_hide_header`).
    pub hide: Vec<HeaderName>,
    /// Set on the response, replacing a header of the same name (headers-more's
    /// `more_set_headers`), after `hide`.
    pub response: Vec<HeaderEntry>,
}

impl HeaderPolicy {
    /// Whether the policy changes nothing.
    pub fn is_empty(&self) -> bool {
        self.upstream.is_empty() && self.hide.is_empty() && self.response.is_empty()
    }

    /// Adds a response header, replacing an earlier one of the same name (a later source wins:
    /// `custom-headers` over `add-headers`).
    pub fn set_response(&mut self, header: HeaderEntry) {
        match self.response.iter_mut().find(|e| e.name == header.name) {
            Some(entry) => *entry = header,
            None => self.response.push(header),
        }
    }

    /// The proxy phase: the upstream request's headers.
    pub(crate) fn on_upstream_request(&self, req: &mut RequestHeader) -> Result<()> {
        for h in &self.upstream {
            if h.value.is_empty() {
                req.remove_header(&h.name);
            } else {
                req.insert_header(h.written.clone(), h.value.clone())?;
            }
        }
        Ok(())
    }

    /// A response Weir writes itself (its pages, redirects, preflight answers): the response
    /// headers set, as nginx's `more_set_headers` does on every response.
    pub(crate) fn on_local_response(&self, resp: &mut ResponseHeader) -> Result<()> {
        for h in &self.response {
            resp.insert_header(h.written.clone(), h.value.clone())?;
        }
        Ok(())
    }

    /// The response phase: hidden headers removed, then the response headers set.
    pub(crate) fn on_response(&self, resp: &mut ResponseHeader) -> Result<()> {
        for name in &self.hide {
            resp.remove_header(name);
        }
        for h in &self.response {
            resp.insert_header(h.written.clone(), h.value.clone())?;
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

    fn e(name: &str, value: &str) -> HeaderEntry {
        HeaderEntry::new(name, value).unwrap()
    }

    #[test]
    fn entries_are_checked_and_keep_their_case() {
        assert_eq!(
            HeaderEntry::new("bad name", "x"),
            Err(InvalidHeader::Name("bad name".into()))
        );
        assert!(matches!(
            HeaderEntry::new("X-A", "a\nb"),
            Err(InvalidHeader::Value(_))
        ));
        let mut resp = ResponseHeader::build(200, None).unwrap();
        HeaderPolicy {
            response: vec![e("X-AspNet-Version", "1")],
            ..Default::default()
        }
        .on_response(&mut resp)
        .unwrap();
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("X-AspNet-Version: 1"), "{wire}");
    }

    #[test]
    fn upstream_headers_replace_and_empty_removes() {
        let p = HeaderPolicy {
            upstream: vec![e("X-A", "1"), e("x-gone", "")],
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
        p.set_response(e("X-Frame-Options", "DENY"));
        p.set_response(e("x-frame-options", "SAMEORIGIN"));
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
