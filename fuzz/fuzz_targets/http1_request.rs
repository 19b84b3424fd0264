//! Request framing: arbitrary bytes as an HTTP/1 request through Pingora's HTTP/1 server session
//! (`pingora_core::protocols::http::v1::server::HttpSession`, the parser in front of Weir's
//! proxy), read from an in-memory stream (`std::io::Cursor`, which Pingora implements its `IO`
//! trait for). Whatever it accepts must have one unambiguous framing, and then the host and path
//! go through Weir's normalisation as `WeirProxy` does.
//!
//! Framing properties of an accepted request: never both `Content-Length` and
//! `Transfer-Encoding`; `Transfer-Encoding` only on HTTP/1.1 with `chunked` last; every
//! `Content-Length` value a plain non-negative decimal integer, all equal; the body read is never
//! longer than that length, and exactly that length when it completes.
#![no_main]

use std::io::Cursor;
use std::sync::LazyLock;

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use libfuzzer_sys::fuzz_target;
use pingora_core::protocols::http::v1::server::HttpSession;
use proxy_core::{normalize_host, normalize_path};

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
});

/// A `Content-Length` as RFC 9110 defines it: one or more digits, nothing else.
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The single length all `Content-Length` values (comma lists included) agree on.
fn content_length(session: &HttpSession) -> Option<u64> {
    let mut length = None;
    for value in session.req_header().headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let n = decimal(item.trim_ascii())
                .unwrap_or_else(|| panic!("accepted Content-Length {value:?}"));
            assert!(
                length.is_none_or(|l| l == n),
                "accepted differing Content-Length values"
            );
            length = Some(n);
        }
    }
    length
}

fn last_te_is_chunked(session: &HttpSession) -> bool {
    let Some(last) = session
        .req_header()
        .headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
    else {
        return false;
    };
    last.as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .rfind(|t| !t.is_empty())
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
}

async fn run(data: &[u8]) {
    let mut session = HttpSession::new(Box::new(Cursor::new(data.to_vec())));
    let Ok(Some(_)) = session.read_request().await else {
        return;
    };
    let req = session.req_header();
    let has_te = req.headers.contains_key(TRANSFER_ENCODING);
    let has_cl = req.headers.contains_key(CONTENT_LENGTH);
    assert!(
        !(has_te && has_cl),
        "accepted both Transfer-Encoding and Content-Length"
    );
    if has_te {
        assert_eq!(
            req.version,
            http::Version::HTTP_11,
            "Transfer-Encoding on {:?}",
            req.version
        );
        assert!(
            last_te_is_chunked(&session),
            "accepted a non-chunked final Transfer-Encoding"
        );
    }
    let length = content_length(&session);

    // What WeirProxy does with the request line and Host (`request_host` in proxy-core's
    // proxy module: the URI's authority, else the Host header).
    let req = session.req_header();
    let raw_host = req
        .uri
        .host()
        .or_else(|| req.headers.get(HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    let host = normalize_host(raw_host);
    assert_eq!(normalize_host(&host), host);
    if let Ok(path) = normalize_path(req.uri.path()) {
        assert!(path.starts_with('/'));
    }

    // Read the body as the proxy would; the framing decides where it ends.
    let mut body = 0u64;
    loop {
        match session.read_body_bytes().await {
            Ok(Some(bytes)) => {
                body += bytes.len() as u64;
                if let Some(l) = length {
                    assert!(body <= l, "read {body} body bytes, Content-Length {l}");
                }
                // An in-memory input cannot hold more than this.
                assert!(body <= data.len() as u64);
            }
            Ok(None) => {
                if !has_te {
                    assert_eq!(body, length.unwrap_or(0), "body ended early");
                }
                break;
            }
            Err(_) => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    RT.block_on(run(data));
});
