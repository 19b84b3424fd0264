//! Auth phase: authentication by an external service (`auth-url`, the ConfigMap's
//! `global-auth-url`), as nginx's `auth_request`.
//!
//! Each request of a route with an [`ExternalAuth`] is first sent, without its body, to the auth
//! URL. A 2xx answer lets it through, with the `auth-response-headers` of the answer set on the
//! upstream request; 401 and 403 go back to the client (401 becomes a 302 to `auth-signin` when
//! set); any other answer, an unreachable auth service or a timeout answers 500. The request is
//! never proxied unless the auth service said 2xx.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Method, StatusCode};
use pingora::connectors::http::v1::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use tokio::sync::Semaphore;

use super::{LocalResponse, StepRequest, UpstreamPolicy};

/// Auth sub-requests in flight at once in the process; beyond, a request answers 500.
const MAX_IN_FLIGHT: usize = 4096;
/// Idle connections to auth services kept in the process-wide pool.
const POOL_SIZE: usize = 256;
/// Bytes of an auth answer's body read (and dropped) so the connection can be reused.
const MAX_DRAINED_BODY: usize = 64 << 10;
/// Cached auth answers kept at most; when full, expired ones go, then all.
const MAX_CACHED: usize = 10_000;

static IN_FLIGHT: Semaphore = Semaphore::const_new(MAX_IN_FLIGHT);

/// A bad external authentication setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// `$name` is not a variable Weir knows.
    #[error("unknown variable ${0}")]
    UnknownVariable(String),
    /// `${` without `}`.
    #[error("unterminated variable")]
    Unterminated,
    /// Not an `http://` or `https://` URL with a host.
    #[error("not an http:// or https:// URL with a host: {0:?}")]
    Url(String),
}

/// A string with nginx variables (`$host`, `$request_uri`, `$escaped_request_uri`, `$uri`,
/// `$args`, `$is_args`, `$scheme`, `$request_method`, `$remote_addr`, `$http_host`,
/// `$best_http_host`, `$http_<header>`, `$arg_<name>`, `$cookie_<name>`), parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    source: Box<str>,
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Text(Box<str>),
    Var(Var),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Var {
    Host,
    HttpHost,
    RequestUri,
    EscapedRequestUri,
    Uri,
    Args,
    IsArgs,
    Scheme,
    Method,
    RemoteAddr,
    Header(HeaderName),
    Arg(Box<str>),
    Cookie(Box<str>),
}

impl Var {
    fn parse(name: &str) -> Result<Var, AuthConfigError> {
        let unknown = || AuthConfigError::UnknownVariable(name.to_string());
        Ok(match name {
            "host" => Var::Host,
            "http_host" | "best_http_host" => Var::HttpHost,
            "request_uri" => Var::RequestUri,
            "escaped_request_uri" => Var::EscapedRequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "scheme" | "pass_access_scheme" => Var::Scheme,
            "request_method" => Var::Method,
            "remote_addr" => Var::RemoteAddr,
            _ => {
                if let Some(h) = name.strip_prefix("http_").filter(|h| !h.is_empty()) {
                    Var::Header(
                        HeaderName::from_bytes(h.replace('_', "-").as_bytes())
                            .map_err(|_| unknown())?,
                    )
                } else if let Some(a) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    Var::Arg(a.into())
                } else if let Some(c) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                    Var::Cookie(c.into())
                } else {
                    return Err(unknown());
                }
            }
        })
    }
}

impl Template {
    /// Parses `$name` and `${name}` variables; a `$` not followed by a name is kept as is.
    pub fn parse(source: &str) -> Result<Template, AuthConfigError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, next) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced.find('}').ok_or(AuthConfigError::Unterminated)?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            if name.is_empty() {
                text.push('$');
                rest = after;
                continue;
            }
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text).into()));
            }
            parts.push(Part::Var(Var::parse(name)?));
            rest = next;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text.into()));
        }
        Ok(Template {
            source: source.into(),
            parts: parts.into(),
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the text has no variable.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The text with the variables of `req`.
    fn render(&self, req: &StepRequest<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        let uri = &req.header().uri;
        let request_uri = uri.path_and_query().map_or("/", |p| p.as_str());
        let query = uri.query();
        for part in self.parts.iter() {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => match v {
                    Var::Host => out.push_str(req.host()),
                    Var::HttpHost => out.push_str(http_host(req)),
                    Var::RequestUri => out.push_str(request_uri),
                    Var::EscapedRequestUri => escape_into(request_uri, &mut out),
                    Var::Uri => out.push_str(req.path()),
                    Var::Args => out.push_str(query.unwrap_or("")),
                    Var::IsArgs => out.push_str(if query.is_some() { "?" } else { "" }),
                    Var::Scheme => out.push_str(req.scheme()),
                    Var::Method => out.push_str(req.header().method.as_str()),
                    Var::RemoteAddr => {
                        if let Some(ip) = req.client_ip() {
                            use std::fmt::Write as _;
                            let _ = write!(out, "{ip}");
                        }
                    }
                    Var::Header(h) => {
                        let values = req.header().headers.get_all(h);
                        for (i, v) in values.iter().enumerate() {
                            if i > 0 {
                                out.push_str(", ");
                            }
                            out.push_str(&String::from_utf8_lossy(v.as_bytes()));
                        }
                    }
                    Var::Arg(name) => {
                        let v = query.and_then(|q| {
                            q.split('&')
                                .find_map(|kv| kv.strip_prefix(&**name)?.strip_prefix('='))
                        });
                        out.push_str(v.unwrap_or(""));
                    }
                    Var::Cookie(name) => {
                        let v = req
                            .header()
                            .headers
                            .get_all(http::header::COOKIE)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .flat_map(|v| v.split(';'))
                            .find_map(|c| c.trim().strip_prefix(&**name)?.strip_prefix('='));
                        out.push_str(v.unwrap_or(""));
                    }
                },
            }
        }
        out
    }
}

/// The `Host` the client sent (`$http_host`), or the authority of an HTTP/2 request.
fn http_host<'a>(req: &StepRequest<'a>) -> &'a str {
    let header = req.header();
    header
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| header.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// Percent-encodes everything but unreserved characters, as nginx's `set_escape_uri`.
fn escape_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Where the auth request goes, from an expanded `auth-url`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AuthTarget {
    tls: bool,
    host: Box<str>,
    port: u16,
    /// `Host` sent: the URL's host name without port, as ingress-nginx.
    host_header: HeaderValue,
    path_and_query: Box<str>,
    /// The address when the host is an IP address (no lookup).
    ip: Option<IpAddr>,
}

impl AuthTarget {
    fn parse(url: &str) -> Result<AuthTarget, AuthConfigError> {
        let bad = || AuthConfigError::Url(url.to_string());
        let uri: http::Uri = url.trim().parse().map_err(|_| bad())?;
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Ok(AuthTarget {
            tls,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            host_header: HeaderValue::from_str(host).map_err(|_| bad())?,
            ip: bare.parse().ok(),
            host: bare.into(),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).into(),
        })
    }
}

/// Where `auth-signin` sends clients the auth service answered 401.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signin {
    url: Template,
    /// How the original URL is added: `None`: not (the URL names the parameter already);
    /// `Some('?' | '&')`: after this separator.
    separator: Option<char>,
    param: Box<str>,
}

impl Signin {
    /// The sign-in URL (nginx variables allowed) and the query parameter that carries the
    /// original URL (`auth-signin-redirect-param`, default `rd`).
    pub fn new(url: &str, param: &str) -> Result<Signin, AuthConfigError> {
        let template = Template::parse(url)?;
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let separator = if query.is_empty() {
            Some('?')
        } else if query.split('&').any(|kv| {
            kv.strip_prefix(param)
                .is_some_and(|v| v.starts_with('=') && v.len() > 1)
        }) {
            None
        } else {
            Some('&')
        };
        Ok(Signin {
            url: template,
            separator,
            param: param.into(),
        })
    }

    /// The `Location` for `req`: the URL with `rd=<scheme>://<host><escaped request URI>`.
    fn location(&self, req: &StepRequest<'_>) -> String {
        let mut out = self.url.render(req);
        if let Some(sep) = self.separator {
            out.push(sep);
            out.push_str(&self.param);
            out.push('=');
            out.push_str(req.scheme());
            out.push_str("://");
            out.push_str(http_host(req));
            let uri = req
                .header()
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str());
            escape_into(uri, &mut out);
        }
        out
    }
}

/// Which auth answers are cached and how long (`auth-cache-duration`: `200 202 10m`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheRule {
    /// The statuses (empty: nginx's 200, 301 and 302).
    pub statuses: Vec<u16>,
    /// Any status (`any`).
    pub any: bool,
    /// How long.
    pub ttl: Duration,
}

impl CacheRule {
    fn ttl_for(rules: &[CacheRule], status: u16) -> Option<Duration> {
        rules
            .iter()
            .find(|r| {
                r.any
                    || r.statuses.contains(&status)
                    || (r.statuses.is_empty() && matches!(status, 200 | 301 | 302))
            })
            .map(|r| r.ttl)
    }
}

/// Caching of auth answers (`auth-cache-key`, `auth-cache-duration`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthCache {
    /// The key, with nginx variables.
    pub key: Template,
    /// Per status, how long.
    pub rules: Vec<CacheRule>,
}

/// Connection reuse to the auth service (`auth-keepalive*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthKeepalive {
    /// Idle connections kept (`auth-keepalive`; 0, the default: none, a connection per request).
    pub connections: u32,
    /// How long an idle connection is kept (`auth-keepalive-timeout`, default 60 s).
    pub timeout: Duration,
}

impl Default for AuthKeepalive {
    fn default() -> Self {
        AuthKeepalive {
            connections: 0,
            timeout: Duration::from_secs(60),
        }
    }
}

/// External authentication of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalAuth {
    url: Template,
    /// The target when the URL has no variable.
    fixed: Option<AuthTarget>,
    /// Method of the auth request (`auth-method`; default GET).
    pub method: Option<Method>,
    /// Where clients go on a 401 (`auth-signin`).
    pub signin: Option<Signin>,
    /// Headers of a 2xx answer set on the upstream request (`auth-response-headers`); one the
    /// answer lacks is removed from the upstream request.
    pub response_headers: Vec<HeaderName>,
    /// `X-Auth-Request-Redirect` sent (`auth-request-redirect`; default the request URI).
    pub request_redirect: Option<Template>,
    /// More headers sent to the auth service (`auth-proxy-set-headers`).
    pub proxy_set_headers: Vec<(HeaderName, Template)>,
    /// Caching of answers (`auth-cache-key`).
    pub cache: Option<AuthCache>,
    /// The auth answer's `Set-Cookie` also goes on error responses (`auth-always-set-cookie`).
    pub always_set_cookie: bool,
    /// Connection reuse.
    pub keepalive: AuthKeepalive,
    /// Cached answers are shared by routes of the same scope only (e.g. `namespace/ingress`).
    pub cache_scope: Box<str>,
}

impl ExternalAuth {
    /// Authentication against `url` (`http://` or `https://`, nginx variables allowed).
    pub fn new(url: &str) -> Result<ExternalAuth, AuthConfigError> {
        let template = Template::parse(url.trim())?;
        let fixed = if template.is_static() {
            Some(AuthTarget::parse(url)?)
        } else {
            // Checked with the variables blanked out: the scheme and a host must be written.
            let probe = url.trim().replace('$', "x");
            AuthTarget::parse(&probe)?;
            None
        };
        Ok(ExternalAuth {
            url: template,
            fixed,
            method: None,
            signin: None,
            response_headers: Vec::new(),
            request_redirect: None,
            proxy_set_headers: Vec::new(),
            cache: None,
            always_set_cookie: false,
            keepalive: AuthKeepalive::default(),
            cache_scope: "".into(),
        })
    }

    /// The auth URL as written.
    pub fn url(&self) -> &str {
        self.url.source()
    }
}

/// What a passed auth check changes on the upstream request and the response.
#[derive(Debug, Clone, Default)]
pub struct AuthGrant {
    /// Set (`Some`) or removed (`None`) on the upstream request.
    upstream: Vec<(HeaderName, Option<HeaderValue>)>,
    /// `Set-Cookie` of the auth answer, for the client response.
    cookies: Vec<HeaderValue>,
    always_set_cookie: bool,
}

impl AuthGrant {
    /// Proxy phase: the auth answer's headers on the upstream request.
    pub(crate) fn on_upstream_request(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        for (name, value) in &self.upstream {
            match value {
                Some(v) => {
                    req.insert_header(name.clone(), v.clone())?;
                }
                None => {
                    req.remove_header(name);
                }
            }
        }
        Ok(())
    }

    /// Response phase: the auth answer's cookies, on the statuses nginx's `add_header` covers
    /// (every status with `auth-always-set-cookie`).
    pub(crate) fn on_response(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        let status = resp.status.as_u16();
        if self.always_set_cookie
            || matches!(
                status,
                200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
            )
        {
            for c in &self.cookies {
                resp.append_header(http::header::SET_COOKIE, c.clone())?;
            }
        }
        Ok(())
    }
}

/// The auth phase's decision.
pub(crate) enum AuthOutcome {
    /// Go on; what to change upstream and on the response, if anything.
    Pass(Option<Box<AuthGrant>>),
    /// Answer the client with this.
    Answer(LocalResponse),
}

/// The parts of an auth answer Weir uses.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    /// The `auth-response-headers`, `Set-Cookie` and `WWW-Authenticate` of the answer.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The auth service asked not to cache it.
    no_store: bool,
}

struct Cached {
    answer: Answer,
    expires: Instant,
}

fn cache() -> &'static Mutex<HashMap<Box<str>, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<Box<str>, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(Some(ConnectorOptions::new(POOL_SIZE))))
}

/// The auth phase for a route with external authentication.
pub(crate) async fn check(
    auth: &ExternalAuth,
    req: &StepRequest<'_>,
    upstream: &UpstreamPolicy,
) -> AuthOutcome {
    let cache_key = auth.cache.as_ref().map(|c| {
        let mut k = String::with_capacity(64);
        k.push_str(&auth.cache_scope);
        k.push('\0');
        k.push_str(req.host());
        k.push('\0');
        k.push_str(&c.key.render(req));
        k.into_boxed_str()
    });
    let cached = cache_key.as_ref().and_then(|k| {
        let map = cache().lock().unwrap_or_else(|e| e.into_inner());
        map.get(k)
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.answer.clone())
    });
    let answer = match cached {
        Some(a) => a,
        // Boxed apart: the sub-request's state (kilobytes) stays out of the request phases'
        // future, which every request of the route creates, cache hit or not.
        None => match Box::pin(ask(auth, req, upstream)).await {
            Ok(a) => {
                if let (Some(key), Some(c)) = (cache_key, &auth.cache) {
                    store(key, &a, &c.rules);
                }
                a
            }
            Err(reason) => {
                tracing::warn!(auth_url = auth.url(), host = req.host(), %reason, "external authentication failed");
                return AuthOutcome::Answer(LocalResponse::page(StatusCode::INTERNAL_SERVER_ERROR));
            }
        },
    };
    decide(auth, req, answer)
}

fn store(key: Box<str>, answer: &Answer, rules: &[CacheRule]) {
    if answer.no_store
        || answer
            .headers
            .iter()
            .any(|(n, _)| n == http::header::SET_COOKIE)
    {
        return;
    }
    let Some(ttl) = CacheRule::ttl_for(rules, answer.status) else {
        return;
    };
    let now = Instant::now();
    let mut map = cache().lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_CACHED {
        map.retain(|_, c| c.expires > now);
        if map.len() >= MAX_CACHED {
            map.clear();
        }
    }
    map.insert(
        key,
        Cached {
            answer: answer.clone(),
            expires: now + ttl,
        },
    );
}

fn decide(auth: &ExternalAuth, req: &StepRequest<'_>, answer: Answer) -> AuthOutcome {
    let cookies = || {
        answer
            .headers
            .iter()
            .filter(|(n, _)| n == http::header::SET_COOKIE)
            .map(|(_, v)| v.clone())
    };
    match answer.status {
        200..=299 => {
            let mut grant = AuthGrant {
                upstream: auth
                    .response_headers
                    .iter()
                    .map(|name| {
                        let v = answer
                            .headers
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.clone());
                        (name.clone(), v)
                    })
                    .collect(),
                cookies: cookies().collect(),
                always_set_cookie: auth.always_set_cookie,
            };
            if grant.upstream.is_empty() && grant.cookies.is_empty() {
                return AuthOutcome::Pass(None);
            }
            grant.upstream.shrink_to_fit();
            AuthOutcome::Pass(Some(Box::new(grant)))
        }
        401 if auth.signin.is_some() => {
            let location = auth.signin.as_ref().map(|s| s.location(req));
            let mut resp = LocalResponse::page(StatusCode::FOUND);
            if let Some(v) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                resp = resp.with_header(http::header::LOCATION, v);
            }
            for c in cookies() {
                resp = resp.with_header(http::header::SET_COOKIE, c);
            }
            AuthOutcome::Answer(resp)
        }
        status @ (401 | 403) => {
            let mut resp =
                LocalResponse::page(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN));
            if status == 401 {
                for (n, v) in &answer.headers {
                    if n == http::header::WWW_AUTHENTICATE {
                        resp = resp.with_header(n.clone(), v.clone());
                    }
                }
            }
            if auth.always_set_cookie {
                for c in cookies() {
                    resp = resp.with_header(http::header::SET_COOKIE, c);
                }
            }
            AuthOutcome::Answer(resp)
        }
        other => {
            tracing::warn!(
                auth_url = auth.url(),
                host = req.host(),
                status = other,
                "external authentication answered an unexpected status"
            );
            AuthOutcome::Answer(LocalResponse::page(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// Hop-by-hop and body headers of the client request that are not sent to the auth service.
fn not_forwarded(name: &HeaderName) -> bool {
    use http::header::*;
    name == CONNECTION
        || name == CONTENT_LENGTH
        || name == TRANSFER_ENCODING
        || name == TE
        || name == UPGRADE
        || name == EXPECT
        || name == HOST
        || name == PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || name.as_str() == "x-forwarded-proto"
}

/// The auth sub-request's header, as ingress-nginx's `/_external-auth-*` location builds it.
fn sub_request(
    auth: &ExternalAuth,
    target: &AuthTarget,
    req: &StepRequest<'_>,
) -> pingora::Result<RequestHeader> {
    let method = auth.method.clone().unwrap_or(Method::GET);
    let mut sub = RequestHeader::build(method, target.path_and_query.as_bytes(), None)?;
    let original = req.header();
    for (name, value) in original.headers.iter() {
        if !not_forwarded(name) {
            sub.append_header(name.clone(), value.clone())?;
        }
    }
    let request_uri = original.uri.path_and_query().map_or("/", |p| p.as_str());
    let set = |sub: &mut RequestHeader, name: &'static str, value: &str| -> pingora::Result<()> {
        match HeaderValue::from_str(value) {
            Ok(v) => sub.insert_header(name, v).map(|_| ()),
            Err(_) => {
                sub.remove_header(name);
                Ok(())
            }
        }
    };
    sub.insert_header(http::header::HOST, target.host_header.clone())?;
    if auth.method.is_some() {
        set(&mut sub, "x-original-uri", request_uri)?;
        set(&mut sub, "x-scheme", req.scheme())?;
    }
    let url = format!("{}://{}{}", req.scheme(), http_host(req), request_uri);
    set(&mut sub, "x-original-url", &url)?;
    set(&mut sub, "x-original-method", original.method.as_str())?;
    set(&mut sub, "x-sent-from", "nginx-ingress-controller")?;
    let client = req.client_ip().map(|ip| ip.to_string()).unwrap_or_default();
    set(&mut sub, "x-real-ip", &client)?;
    set(&mut sub, "x-forwarded-for", &client)?;
    match &auth.request_redirect {
        Some(t) => set(&mut sub, "x-auth-request-redirect", &t.render(req))?,
        None => set(&mut sub, "x-auth-request-redirect", request_uri)?,
    }
    for (name, value) in &auth.proxy_set_headers {
        match HeaderValue::from_str(&value.render(req)) {
            Ok(v) if !v.is_empty() => {
                sub.insert_header(name.clone(), v)?;
            }
            _ => {
                sub.remove_header(name);
            }
        }
    }
    if auth.keepalive.connections == 0 {
        sub.insert_header(http::header::CONNECTION, "close")?;
    }
    Ok(sub)
}

/// Sends the auth request and reads the answer's header (the body is dropped).
async fn ask(
    auth: &ExternalAuth,
    req: &StepRequest<'_>,
    upstream: &UpstreamPolicy,
) -> Result<Answer, String> {
    let Ok(_permit) = IN_FLIGHT.try_acquire() else {
        return Err(format!("more than {MAX_IN_FLIGHT} auth requests in flight"));
    };
    let rendered;
    let target = match &auth.fixed {
        Some(t) => t,
        None => {
            rendered = AuthTarget::parse(&auth.url.render(req)).map_err(|e| e.to_string())?;
            &rendered
        }
    };
    let bound = upstream.connect_timeout + upstream.read_timeout + upstream.send_timeout;
    tokio::time::timeout(bound, exchange(auth, target, req, upstream))
        .await
        .map_err(|_| format!("no answer within {bound:?}"))?
}

async fn exchange(
    auth: &ExternalAuth,
    target: &AuthTarget,
    req: &StepRequest<'_>,
    upstream: &UpstreamPolicy,
) -> Result<Answer, String> {
    let addr = match target.ip {
        Some(ip) => SocketAddr::new(ip, target.port),
        None => tokio::time::timeout(
            upstream.connect_timeout,
            tokio::net::lookup_host((&*target.host, target.port)),
        )
        .await
        .map_err(|_| format!("resolving {} timed out", target.host))?
        .map_err(|e| format!("resolving {}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.host))?,
    };
    let mut peer = HttpPeer::new(addr, target.tls, target.host.to_string());
    peer.options.connection_timeout = Some(upstream.connect_timeout);
    peer.options.read_timeout = Some(upstream.read_timeout);
    peer.options.write_timeout = Some(upstream.send_timeout);
    peer.options.idle_timeout = Some(auth.keepalive.timeout);
    // As nginx's default `proxy_ssl_verify off`.
    peer.options.verify_cert = false;
    peer.options.verify_hostname = false;
    let sub = sub_request(auth, target, req).map_err(|e| e.to_string())?;
    let (mut session, _reused) = connector()
        .get_http_session(&peer)
        .await
        .map_err(|e| e.to_string())?;
    session.read_timeout = Some(upstream.read_timeout);
    session.write_timeout = Some(upstream.send_timeout);
    session
        .write_request_header(Box::new(sub))
        .await
        .map_err(|e| e.to_string())?;
    let resp = loop {
        session.read_response().await.map_err(|e| e.to_string())?;
        let Some(h) = session.resp_header() else {
            return Err("no response header".into());
        };
        if !h.status.is_informational() {
            break h;
        }
    };
    let keep = |n: &HeaderName| {
        n == http::header::SET_COOKIE
            || n == http::header::WWW_AUTHENTICATE
            || auth.response_headers.contains(n)
    };
    let answer = Answer {
        status: resp.status.as_u16(),
        headers: resp
            .headers
            .iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        no_store: resp
            .headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                let v = v.to_ascii_lowercase();
                v.contains("no-store") || v.contains("no-cache") || v.contains("private")
            }),
    };
    // Drop the body; a connection is kept only when it was read to its end.
    let mut drained = 0;
    let mut reusable = auth.keepalive.connections > 0;
    while reusable {
        match session.read_body_bytes().await {
            Ok(Some(b)) => {
                drained += b.len();
                reusable = drained <= MAX_DRAINED_BODY;
            }
            Ok(None) => break,
            Err(_) => reusable = false,
        }
    }
    if reusable && session.is_body_done() {
        connector()
            .release_http_session(session, &peer, Some(auth.keepalive.timeout))
            .await;
    } else {
        session.shutdown().await;
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(header: &RequestHeader) -> StepRequest<'_> {
        StepRequest::new(
            header,
            Some("192.0.2.7".parse().unwrap()),
            true,
            "a.test",
            "/p/q",
        )
    }

    #[test]
    fn templates_expand_nginx_variables() {
        let mut h = RequestHeader::build("GET", b"/p/q?a=b&c=d", None).unwrap();
        h.insert_header("host", "A.test:8443").unwrap();
        h.insert_header("x-user", "me").unwrap();
        h.insert_header("cookie", "s=1; id=42").unwrap();
        let t = Template::parse(
            "http://auth/$host$request_uri|$escaped_request_uri|${uri}|$args|$scheme|$http_x_user|$arg_c|$cookie_id|$remote_addr|$http_host|$ 5",
        )
        .unwrap();
        assert!(!t.is_static());
        assert_eq!(
            t.render(&req(&h)),
            "http://auth/a.test/p/q?a=b&c=d|%2Fp%2Fq%3Fa%3Db%26c%3Dd|/p/q|a=b&c=d|https|me|d|42|192.0.2.7|A.test:8443|$ 5"
        );
        assert!(Template::parse("http://auth/").unwrap().is_static());
    }

    #[test]
    fn bad_templates_and_urls() {
        assert_eq!(
            Template::parse("http://a/$nope"),
            Err(AuthConfigError::UnknownVariable("nope".into()))
        );
        assert_eq!(
            Template::parse("http://a/${host"),
            Err(AuthConfigError::Unterminated)
        );
        for bad in ["auth", "ftp://a/", "http:///x", "/relative", "http://a b/"] {
            assert!(ExternalAuth::new(bad).is_err(), "{bad}");
        }
        let a = ExternalAuth::new("https://[::1]:9443/check?x=1").unwrap();
        let t = a.fixed.unwrap();
        assert_eq!(
            (t.tls, t.port, &*t.path_and_query),
            (true, 9443, "/check?x=1")
        );
        assert_eq!(t.ip, Some("::1".parse().unwrap()));
        assert!(ExternalAuth::new("http://$host/auth")
            .unwrap()
            .fixed
            .is_none());
    }

    #[test]
    fn signin_location_carries_the_original_url() {
        let h = RequestHeader::build("GET", b"/?a=b&c=d", None).unwrap();
        let r = StepRequest::new(&h, None, false, "a.test", "/");
        let loc = |url, param| Signin::new(url, param).unwrap().location(&r);
        assert_eq!(
            loc("http://a.test/auth/start", "rd"),
            "http://a.test/auth/start?rd=http://%2F%3Fa%3Db%26c%3Dd"
        );
        assert_eq!(
            loc("http://s/start?x=1", "orig"),
            "http://s/start?x=1&orig=http://%2F%3Fa%3Db%26c%3Dd"
        );
        assert_eq!(
            loc("http://s/start?rd=/home", "rd"),
            "http://s/start?rd=/home"
        );
    }

    #[test]
    fn cache_rules_by_status() {
        let rules = [
            CacheRule {
                statuses: vec![200, 202],
                any: false,
                ttl: Duration::from_secs(600),
            },
            CacheRule {
                statuses: vec![],
                any: false,
                ttl: Duration::from_secs(5),
            },
        ];
        assert_eq!(
            CacheRule::ttl_for(&rules, 202),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            CacheRule::ttl_for(&rules, 302),
            Some(Duration::from_secs(5))
        );
        assert_eq!(CacheRule::ttl_for(&rules, 401), None);
    }

    #[test]
    fn grant_sets_or_removes_headers_and_cookies_follow_nginx() {
        let grant = AuthGrant {
            upstream: vec![
                (
                    "x-user".parse().unwrap(),
                    Some(HeaderValue::from_static("me")),
                ),
                ("x-groups".parse().unwrap(), None),
            ],
            cookies: vec![HeaderValue::from_static("s=1")],
            always_set_cookie: false,
        };
        let mut up = RequestHeader::build("GET", b"/", None).unwrap();
        up.insert_header("x-groups", "forged").unwrap();
        grant.on_upstream_request(&mut up).unwrap();
        assert_eq!(up.headers.get("x-user").unwrap(), "me");
        assert!(up.headers.get("x-groups").is_none());
        let mut ok = ResponseHeader::build(200, None).unwrap();
        grant.on_response(&mut ok).unwrap();
        assert_eq!(ok.headers.get("set-cookie").unwrap(), "s=1");
        let mut err = ResponseHeader::build(500, None).unwrap();
        grant.on_response(&mut err).unwrap();
        assert!(err.headers.get("set-cookie").is_none());
    }
}
