//! The headers ingress-nginx sets on proxied requests (X-Forwarded-*, X-Real-IP, X-Request-ID).

use std::fmt::Write as _;
use std::net::IpAddr;

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::Result;

/// What the forwarded headers are computed from.
pub struct ForwardInfo<'a> {
    /// The client address (the one limits and allow-lists use).
    pub client_ip: Option<IpAddr>,
    /// The X-Forwarded-For value to send (defaults to the client address).
    pub forwarded_for: Option<&'a HeaderValue>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The port the request arrived on.
    pub server_port: Option<u16>,
    /// The Host the client asked for, as sent.
    pub host: Option<&'a HeaderValue>,
    /// The request id (incoming `X-Request-ID` or generated).
    pub request_id: &'a HeaderValue,
}

/// Set the headers on the upstream request, replacing client-sent values as ingress-nginx does
/// with its default `use-forwarded-headers: false`.
pub fn apply(req: &mut RequestHeader, info: &ForwardInfo<'_>) -> Result<()> {
    if let Some(xff) = req.headers.get("x-forwarded-for").cloned() {
        req.insert_header("X-Original-Forwarded-For", xff)?;
    }
    if let Some(ip) = info.client_ip {
        let mut buf = IpText::default();
        let _ = write!(buf, "{ip}");
        let v = HeaderValue::from_str(buf.as_str()).expect("an IP address is a valid header value");
        req.insert_header(
            "X-Forwarded-For",
            info.forwarded_for.cloned().unwrap_or_else(|| v.clone()),
        )?;
        req.insert_header("X-Real-IP", v)?;
    } else {
        req.remove_header("X-Forwarded-For");
        req.remove_header("X-Real-IP");
    }
    req.insert_header("X-Request-ID", info.request_id.clone())?;
    if let Some(host) = info.host {
        req.insert_header("X-Forwarded-Host", host.clone())?;
    }
    match info.server_port {
        Some(p) => req.insert_header("X-Forwarded-Port", p)?,
        None => {
            req.remove_header("X-Forwarded-Port");
        }
    }
    let scheme = HeaderValue::from_static(info.scheme);
    req.insert_header("X-Forwarded-Proto", scheme.clone())?;
    req.insert_header("X-Forwarded-Scheme", scheme.clone())?;
    req.insert_header("X-Scheme", scheme)?;
    // httpoxy: never pass a client's Proxy header on.
    req.remove_header("Proxy");
    Ok(())
}

/// A 32-hex-digit random request id, like nginx's `$request_id`.
pub fn new_request_id() -> HeaderValue {
    let bytes: [u8; 16] = rand::random();
    let mut out = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
    HeaderValue::from_bytes(&out).expect("hex digits are a valid header value")
}

/// Formats an IP address without a heap allocation.
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl IpText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_hex_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn client_values_are_replaced() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Forwarded-For", "6.6.6.6").unwrap();
        req.insert_header("X-Real-IP", "6.6.6.6").unwrap();
        req.insert_header("Proxy", "http://evil").unwrap();
        let id = HeaderValue::from_static("abc");
        let host = HeaderValue::from_static("example.com:8080");
        apply(
            &mut req,
            &ForwardInfo {
                client_ip: Some("2001:db8:1234:5678:9abc:def0:1234:5678".parse().unwrap()),
                forwarded_for: None,
                scheme: "http",
                server_port: Some(8080),
                host: Some(&host),
                request_id: &id,
            },
        )
        .unwrap();
        let h = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        let ip = "2001:db8:1234:5678:9abc:def0:1234:5678";
        assert_eq!(h("x-forwarded-for").as_deref(), Some(ip));
        assert_eq!(h("x-real-ip").as_deref(), Some(ip));
        assert_eq!(h("x-original-forwarded-for").as_deref(), Some("6.6.6.6"));
        assert_eq!(h("x-forwarded-host").as_deref(), Some("example.com:8080"));
        assert_eq!(h("x-forwarded-port").as_deref(), Some("8080"));
        assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(h("x-request-id").as_deref(), Some("abc"));
        assert_eq!(h("proxy"), None);
    }
}
