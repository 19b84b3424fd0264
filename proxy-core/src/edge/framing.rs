//! Strict request framing and authority, checked on the request header before routing, as nginx
//! checks them while reading the header (`ngx_http_process_request_header`,
//! `ngx_http_validate_host`):
//!
//! | Request | Answer |
//! |---|---|
//! | more than one `Content-Length`, or a value that is not a decimal number (`3, 3`, `-1`, `+3`, overflow) | 400 |
//! | more than one `Transfer-Encoding`, `Transfer-Encoding` on HTTP/1.0, or with `Content-Length` | 400 |
//! | `Transfer-Encoding` other than exactly `chunked` (`gzip, chunked`, `identity`, ...) | 501 |
//! | HTTP/1.1 without `Host`, more than one `Host` | 400 |
//! | a host (`Host` or the request target's authority) that is empty, has whitespace, control characters, `/`, or `..` | 400 |
//!
//! A refused request ends its connection: its body framing cannot be trusted.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::Version;
use pingora::http::RequestHeader;

/// Why a request header was refused, and with which status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    /// 400 or 501.
    pub status: u16,
    /// What was wrong, in words (for the debug log).
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Refused {
    Refused {
        status: 400,
        reason,
    }
}

/// Checks the request header; `Err` says how to answer. Costs a few header lookups per request
/// and allocates nothing.
pub(crate) fn check(req: &RequestHeader) -> Result<(), Refused> {
    let headers = &req.headers;
    let mut content_length = headers.get_all(CONTENT_LENGTH).iter();
    let has_length = match (content_length.next(), content_length.next()) {
        (None, _) => false,
        (Some(_), Some(_)) => return Err(bad("duplicate Content-Length header")),
        (Some(v), None) => {
            if !valid_length(v.as_bytes()) {
                return Err(bad("invalid Content-Length header"));
            }
            true
        }
    };
    let mut transfer_encoding = headers.get_all(TRANSFER_ENCODING).iter();
    match (transfer_encoding.next(), transfer_encoding.next()) {
        (None, _) => {}
        (Some(_), Some(_)) => return Err(bad("duplicate Transfer-Encoding header")),
        (Some(v), None) => {
            if req.version < Version::HTTP_11 {
                return Err(bad("Transfer-Encoding on an HTTP/1.0 request"));
            }
            if !v.as_bytes().eq_ignore_ascii_case(b"chunked") {
                return Err(Refused {
                    status: 501,
                    reason: "unknown Transfer-Encoding",
                });
            }
            if has_length {
                return Err(bad("both Content-Length and Transfer-Encoding"));
            }
        }
    }
    let mut host = headers.get_all(HOST).iter();
    match (host.next(), host.next()) {
        (None, _) if req.version == Version::HTTP_11 => {
            return Err(bad("HTTP/1.1 request without Host header"))
        }
        (None, _) => {}
        (Some(_), Some(_)) => return Err(bad("duplicate Host header")),
        (Some(v), None) => {
            if !valid_host(v.as_bytes()) {
                return Err(bad("invalid Host header"));
            }
        }
    }
    if let Some(authority) = req.uri.authority() {
        if !valid_host(authority.as_str().as_bytes()) {
            return Err(bad("invalid host in request target"));
        }
    }
    Ok(())
}

/// A decimal number without sign or separators that fits an `i64` (nginx's `ngx_atoof`).
fn valid_length(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(v).is_ok_and(|s| s.parse::<i64>().is_ok())
}

/// nginx's host check: no whitespace or control characters, no `/`, no `..`, not empty once a
/// port and one trailing dot are taken off. Bytes above 0x7f are allowed, as in nginx.
fn valid_host(h: &[u8]) -> bool {
    let mut len = h.len();
    let mut literal = false;
    let mut in_port = false;
    let mut last_dot = None;
    for (i, &c) in h.iter().enumerate() {
        match c {
            b'.' if !in_port => {
                if last_dot.is_some_and(|d| d + 1 == i) {
                    return false;
                }
                last_dot = Some(i);
            }
            b':' if !literal && !in_port => {
                len = i;
                in_port = true;
            }
            b'[' if i == 0 => literal = true,
            b']' if literal && !in_port => {
                len = i + 1;
                literal = false;
                in_port = true;
            }
            b'/' | b'\\' => return false,
            c if c <= 0x20 || c == 0x7f => return false,
            _ => {}
        }
    }
    if last_dot.is_some_and(|d| d + 1 == len) {
        len -= 1;
    }
    len > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, headers: &[(&str, &[u8])]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), Some(headers.len())).unwrap();
        r.set_version(version);
        for (k, v) in headers {
            r.append_header(k.to_string(), http::HeaderValue::from_bytes(v).unwrap())
                .unwrap();
        }
        r
    }

    fn status(version: Version, uri: &str, headers: &[(&str, &[u8])]) -> Option<u16> {
        check(&req(version, uri, headers)).err().map(|r| r.status)
    }

    const V11: Version = Version::HTTP_11;

    #[test]
    fn plain_requests_pass() {
        assert_eq!(status(V11, "/", &[("host", b"echo.test")]), None);
        assert_eq!(status(V11, "/", &[("host", b"Echo.Test.:8080")]), None);
        assert_eq!(status(V11, "/", &[("host", b"[::1]:80")]), None);
        assert_eq!(status(Version::HTTP_10, "/", &[]), None);
        assert_eq!(status(Version::HTTP_2, "https://echo.test/", &[]), None);
        assert_eq!(
            status(V11, "/", &[("host", b"a"), ("content-length", b"3")]),
            None
        );
        assert_eq!(
            status(
                V11,
                "/",
                &[("host", b"a"), ("transfer-encoding", b"Chunked")]
            ),
            None
        );
    }

    #[test]
    fn content_length_must_be_one_decimal_number() {
        for v in [
            &b"3, 3"[..],
            b"-1",
            b"+3",
            b"3 ",
            b"",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(
                status(V11, "/", &[("host", b"a"), ("content-length", v)]),
                Some(400),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        assert_eq!(
            status(
                V11,
                "/",
                &[
                    ("host", b"a"),
                    ("content-length", b"3"),
                    ("content-length", b"3")
                ]
            ),
            Some(400)
        );
    }

    #[test]
    fn transfer_encoding_is_chunked_alone_or_refused() {
        let te = |v: &'static [u8]| status(V11, "/", &[("host", b"a"), ("transfer-encoding", v)]);
        assert_eq!(te(b"gzip, chunked"), Some(501));
        assert_eq!(te(b"chunked, chunked"), Some(501));
        assert_eq!(te(b"identity"), Some(501));
        assert_eq!(te(b"xchunked"), Some(501));
        assert_eq!(
            status(
                V11,
                "/",
                &[
                    ("host", b"a"),
                    ("transfer-encoding", b"chunked"),
                    ("transfer-encoding", b"chunked")
                ]
            ),
            Some(400)
        );
        assert_eq!(
            status(
                V11,
                "/",
                &[
                    ("host", b"a"),
                    ("transfer-encoding", b"chunked"),
                    ("content-length", b"3")
                ]
            ),
            Some(400)
        );
        assert_eq!(
            status(Version::HTTP_10, "/", &[("transfer-encoding", b"chunked")]),
            Some(400)
        );
    }

    #[test]
    fn host_is_required_on_http11_and_must_be_valid() {
        assert_eq!(status(V11, "/", &[]), Some(400));
        assert_eq!(status(V11, "http://echo.test/", &[]), Some(400));
        for h in [
            &b"echo.test evil"[..],
            b"",
            b".",
            b"a..b",
            b"a/b",
            b"a\\b",
            b"a\tb",
            b":80",
        ] {
            assert_eq!(
                status(V11, "/", &[("host", h)]),
                Some(400),
                "{:?}",
                String::from_utf8_lossy(h)
            );
        }
        assert_eq!(
            status(V11, "/", &[("host", b"a"), ("host", b"a")]),
            Some(400)
        );
    }
}
