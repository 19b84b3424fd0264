//! The access log line of one request: the variables of [`crate::access_log`] read from the
//! session and the request context, in the `logging` hook.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use pingora::proxy::Session;
use pingora::Error;

use super::{headers, RequestCtx};
use crate::access_log::{self, write_seconds, write_time, write_u64, TimeFormat, Values, Var};
use crate::model::Target;
use crate::routing::RouteId;
use crate::snapshot::{Resolved, Snapshot};
use crate::AccessLog;

/// Render and queue the request's line, unless logging is off for it.
pub(super) fn write(
    log: &AccessLog,
    snapshot: &Snapshot,
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    status: u16,
) {
    let Some(cfg) = &snapshot.server().access_log else {
        return;
    };
    let resolved = snapshot.resolve(ctx.route);
    if resolved.policy.skip_access_log {
        return;
    }
    // ingress-nginx's default server (no Ingress routes the request) logs only with
    // `enable-access-log-for-default-backend`; a catch-all Ingress logs as any other, and a
    // request refused before routing (framing, path) is logged, as nginx logs its 400s.
    if ctx.route == RouteId::Default
        && ctx.routed
        && resolved.meta.ingress.is_empty()
        && !cfg.default_backend
    {
        return;
    }
    let req = session.req_header();
    if cfg.skips(req.raw_path()) {
        return;
    }
    // A client that went away before its response: nginx's 499.
    let status = match (status, e) {
        (0, Some(_)) => 499,
        (s, _) => s,
    };
    let values = Request {
        session,
        ctx,
        resolved,
        snapshot,
        status,
        now: SystemTime::now(),
    };
    let mut line = Vec::with_capacity(cfg.format.size_hint());
    access_log::render(&cfg.format, &values, &mut line);
    log.send(line);
}

struct Request<'a> {
    session: &'a Session,
    ctx: &'a RequestCtx,
    resolved: Resolved<'a>,
    snapshot: &'a Snapshot,
    status: u16,
    now: SystemTime,
}

fn push_display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = write!(out, "{v}");
}

/// An address as `Display` writes it; IPv4 without the formatting machinery (the common case).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_u64(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => push_display(out, v6),
    }
}

/// `ip:port`, or `[ip]:port` for IPv6.
fn push_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            push_ip(out, IpAddr::V4(*a.ip()));
            out.push(b':');
            write_u64(out, u64::from(a.port()));
        }
        SocketAddr::V6(a) => push_display(out, a),
    }
}

/// The protocol as nginx's `$server_protocol` names it.
fn protocol(v: http::Version) -> &'static [u8] {
    match v {
        http::Version::HTTP_09 => b"HTTP/0.9",
        http::Version::HTTP_10 => b"HTTP/1.0",
        http::Version::HTTP_2 => b"HTTP/2.0",
        http::Version::HTTP_3 => b"HTTP/3.0",
        _ => b"HTTP/1.1",
    }
}

/// The request's length as nginx counts it: request line, header and body (an estimate of
/// the header's bytes from its parsed form).
pub(super) fn request_length(session: &Session) -> usize {
    let req = session.req_header();
    let header_len: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + req.method.as_str().len()
        + 12;
    header_len + session.body_bytes_read()
}

/// The user name of a `Basic` Authorization header.
fn basic_user(value: &[u8]) -> Option<Vec<u8>> {
    let b64 = value
        .strip_prefix(b"Basic ")
        .or_else(|| value.strip_prefix(b"basic "))?;
    let mut decoded = Vec::with_capacity(b64.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in b64.iter().take_while(|&&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            decoded.push((acc >> bits) as u8);
        }
    }
    let end = decoded.iter().position(|&b| b == b':')?;
    decoded.truncate(end);
    Some(decoded)
}

/// `name=value` pairs separated by `sep`: the value of `name`.
fn find_pair<'a>(list: &'a [u8], sep: u8, name: &[u8]) -> Option<&'a [u8]> {
    list.split(|&b| b == sep).find_map(|pair| {
        let pair = pair.trim_ascii_start();
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

impl Request<'_> {
    fn tls(&self) -> Option<&pingora::protocols::tls::SslDigest> {
        self.session
            .as_downstream()
            .digest()
            .and_then(|d| d.ssl_digest.as_deref())
    }

    fn pool_key(&self) -> Option<&str> {
        match self.resolved.target {
            Target::Pool(p) => Some(&p.key().0),
            Target::NotFound => None,
        }
    }

    /// nginx's per-attempt list (`a, b`) over the endpoints tried.
    fn attempts(&self, out: &mut Vec<u8>, mut each: impl FnMut(usize, &mut Vec<u8>)) -> bool {
        let n = self.ctx.tries.min(self.ctx.tried.len());
        if n == 0 {
            return false;
        }
        for i in 0..n {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            each(i, out);
        }
        true
    }
}

impl Values for Request<'_> {
    fn write(&self, var: &Var, out: &mut Vec<u8>) -> bool {
        let session = self.session;
        let ctx = self.ctx;
        let req = session.req_header();
        let meta = self.resolved.meta;
        let text = |out: &mut Vec<u8>, s: &str| {
            if s.is_empty() {
                false
            } else {
                out.extend_from_slice(s.as_bytes());
                true
            }
        };
        match var {
            Var::RemoteAddr => match ctx.client_ip {
                Some(ip) => push_ip(out, ip),
                None => return false,
            },
            Var::RemotePort => match session.client_addr().and_then(|a| a.as_inet()) {
                Some(a) => write_u64(out, u64::from(a.port())),
                None => return false,
            },
            Var::RemoteUser => {
                match req
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| basic_user(v.as_bytes()))
                {
                    Some(user) if !user.is_empty() => out.extend_from_slice(&user),
                    _ => return false,
                }
            }
            Var::TimeLocal => write_time(out, self.now, TimeFormat::Local),
            Var::TimeIso8601 => write_time(out, self.now, TimeFormat::Iso8601),
            Var::Msec => write_time(out, self.now, TimeFormat::Msec),
            Var::Request => {
                out.extend_from_slice(req.method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(req.raw_path());
                out.push(b' ');
                out.extend_from_slice(protocol(req.version));
            }
            Var::RequestMethod => out.extend_from_slice(req.method.as_str().as_bytes()),
            Var::RequestUri => out.extend_from_slice(req.raw_path()),
            Var::Uri => out.extend_from_slice(req.uri.path().as_bytes()),
            Var::Args => return text(out, req.uri.query().unwrap_or("")),
            Var::ServerProtocol => out.extend_from_slice(protocol(req.version)),
            Var::Scheme => {
                out.extend_from_slice(if self.tls().is_some() {
                    b"https"
                } else {
                    b"http"
                });
            }
            Var::Host => {
                let host = crate::routing::normalize_host(super::request_host(req));
                out.extend_from_slice(if host.is_empty() { "_" } else { &host }.as_bytes());
            }
            Var::ServerPort => match session.server_addr().and_then(|a| a.as_inet()) {
                Some(a) => write_u64(out, u64::from(a.port())),
                None => return false,
            },
            Var::Status => write_u64(out, u64::from(self.status)),
            Var::BodyBytesSent => write_u64(out, session.body_bytes_sent() as u64),
            Var::BytesSent => {
                let header = session.response_written().map_or(0, |r| {
                    r.headers
                        .iter()
                        .map(|(k, v)| k.as_str().len() + v.len() + 4)
                        .sum::<usize>()
                        + 19
                });
                write_u64(out, (header + session.body_bytes_sent()) as u64);
            }
            Var::RequestLength => write_u64(out, request_length(session) as u64),
            Var::RequestTime => write_seconds(out, ctx.start.elapsed()),
            Var::ProxyUpstreamName => match self.pool_key() {
                // `namespace/service:port` → ingress-nginx's `namespace-service-port`.
                Some(key) => out.extend(key.bytes().map(|b| match b {
                    b'/' | b':' => b'-',
                    b => b,
                })),
                None => out.extend_from_slice(b"upstream-default-backend"),
            },
            // The canary backend's name when the request went to it, else empty.
            Var::ProxyAlternativeUpstreamName => match &self.resolved.policy.canary {
                Some(c) if ctx.canary => out.extend_from_slice(c.name.as_bytes()),
                _ => {}
            },
            Var::UpstreamAddr => {
                return self.attempts(out, |i, out| push_socket_addr(out, ctx.tried[i]));
            }
            Var::UpstreamStatus => {
                return self.attempts(out, |i, out| match ctx.upstream_status[i] {
                    0 => out.push(b'-'),
                    s => write_u64(out, u64::from(s)),
                });
            }
            Var::UpstreamResponseLength => {
                if ctx.tries == 0 {
                    return false;
                }
                let len = if ctx.header_time.is_some() {
                    session.body_bytes_sent()
                } else {
                    0
                };
                write_u64(out, len as u64);
            }
            Var::UpstreamResponseTime => match ctx.upstream_start {
                Some(start) if ctx.tries > 0 => write_seconds(out, start.elapsed()),
                _ => return false,
            },
            Var::UpstreamConnectTime => match ctx.connect_time {
                Some(d) => write_seconds(out, d),
                None => return false,
            },
            Var::UpstreamHeaderTime => match ctx.header_time {
                Some(d) => write_seconds(out, d),
                None => return false,
            },
            Var::ReqId => match &ctx.request_id {
                Some(id) => out.extend_from_slice(id.as_bytes()),
                None => match req.headers.get("x-request-id").filter(|v| !v.is_empty()) {
                    Some(id) => out.extend_from_slice(id.as_bytes()),
                    None => out.extend_from_slice(headers::new_request_id().as_bytes()),
                },
            },
            Var::Namespace => return text(out, &meta.namespace),
            Var::IngressName => return text(out, &meta.ingress),
            Var::ServiceName => return text(out, &meta.service),
            Var::ServicePort => {
                return text(
                    out,
                    self.pool_key()
                        .and_then(|k| k.rsplit_once(':'))
                        .map_or("", |(_, port)| port),
                )
            }
            Var::LocationPath => return text(out, &meta.path),
            Var::SslProtocol => match self.tls() {
                // rustls names `TLSv1_3`; nginx (OpenSSL) `TLSv1.3`.
                Some(d) => out.extend(d.version.bytes().map(|b| if b == b'_' { b'.' } else { b })),
                None => return false,
            },
            Var::SslCipher => match self.tls() {
                // rustls names TLS 1.3 suites `TLS13_AES_128_GCM_SHA256`; OpenSSL drops the 13.
                Some(d) => match d.cipher.strip_prefix("TLS13_") {
                    Some(rest) => {
                        out.extend_from_slice(b"TLS_");
                        out.extend_from_slice(rest.as_bytes());
                    }
                    None => return text(out, &d.cipher),
                },
                None => return false,
            },
            Var::ProxyProtocolAddr => match ctx.peer_ip {
                Some(ip) if self.snapshot.server().proxy_protocol => push_ip(out, ip),
                _ => return false,
            },
            Var::ProxyAddXForwardedFor => {
                let Some(ip) = ctx.client_ip else {
                    return false;
                };
                if let Some(xff) = req.headers.get("x-forwarded-for") {
                    out.extend_from_slice(xff.as_bytes());
                    out.extend_from_slice(b", ");
                }
                push_ip(out, ip);
            }
            Var::Pid => write_u64(out, u64::from(std::process::id())),
            Var::Header(name) => match req.headers.get(name) {
                Some(v) => out.extend_from_slice(v.as_bytes()),
                None => return false,
            },
            Var::SentHeader(name) => {
                match session.response_written().and_then(|r| r.headers.get(name)) {
                    Some(v) => out.extend_from_slice(v.as_bytes()),
                    None => return false,
                }
            }
            Var::Arg(name) => {
                match req
                    .uri
                    .query()
                    .and_then(|q| find_pair(q.as_bytes(), b'&', name.as_bytes()))
                {
                    Some(v) => out.extend_from_slice(v),
                    None => return false,
                }
            }
            Var::Cookie(name) => match req
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .find_map(|c| find_pair(c.as_bytes(), b';', name.as_bytes()))
            {
                Some(v) => out.extend_from_slice(v),
                None => return false,
            },
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_user_names() {
        // "aladdin:open sesame"
        assert_eq!(
            basic_user(b"Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ==").as_deref(),
            Some(&b"aladdin"[..])
        );
        assert_eq!(basic_user(b"Bearer abc"), None);
        assert_eq!(basic_user(b"Basic !!!"), None);
        // No colon: not a Basic credential.
        assert_eq!(basic_user(b"Basic YWxhZGRpbg=="), None);
    }

    #[test]
    fn addresses_are_written_as_display_does() {
        for a in [
            "10.0.0.1:80",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "[2001:db8::1]:8080",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut out = Vec::new();
            push_socket_addr(&mut out, addr);
            assert_eq!(out, addr.to_string().as_bytes());
            out.clear();
            push_ip(&mut out, addr.ip());
            assert_eq!(out, addr.ip().to_string().as_bytes());
        }
        assert_eq!(protocol(http::Version::HTTP_2), b"HTTP/2.0");
        assert_eq!(protocol(http::Version::HTTP_11), b"HTTP/1.1");
    }

    #[test]
    fn query_args_and_cookies() {
        assert_eq!(find_pair(b"a=1&q=two&x", b'&', b"q"), Some(&b"two"[..]));
        assert_eq!(find_pair(b"a=1&x", b'&', b"x"), Some(&b""[..]));
        assert_eq!(find_pair(b"a=1", b'&', b"b"), None);
        assert_eq!(find_pair(b"s=abc; t=d", b';', b"t"), Some(&b"d"[..]));
    }
}
