//! Per-route policy: typed pieces applied in a fixed order of phases.
//!
//! A [`RoutePolicy`] is made of one optional piece per family. [`WeirProxy`](crate::WeirProxy)
//! applies them in nginx's phase order, so a route configured as for ingress-nginx answers with
//! the same precedence:
//!
//! | [`Phase`] | Weir's piece | effect |
//! |---|---|---|
//! | `Rewrite` | [`body`](RoutePolicy::body) (`Content-Length`), [`cors`](RoutePolicy::cors) preflight, [`rewrite`](RoutePolicy::rewrite), then [`https_redirect`](RoutePolicy::https_redirect) | 413 for a body announced too large (nginx checks it before rewriting); `OPTIONS` from an allowed origin gets 204; `app-root` 302, `permanent-redirect`/`temporal-redirect`; plain HTTP gets a 308 to `https://` (not `/.well-known/acme-challenge/`) |
//! | `Access` | [`refusal`](RoutePolicy::refusal), then [`access`](RoutePolicy::access) | 503 (fail closed), then 403 |
//! | `Auth` | [`basic_auth`](RoutePolicy::basic_auth), with [`satisfy_any`](RoutePolicy::satisfy_any), then [`external_auth`](RoutePolicy::external_auth) | 401 with `WWW-Authenticate: Basic realm="..."`; with `satisfy: any` a client the allow list admits skips it, and one it keeps out may pass by authenticating; then a sub-request to the auth service: 2xx goes on (its listed headers sent upstream), 401 (or a 302 to the sign-in URL) and 403 go back, anything else 500 |
//! | `Limit` | [`limits`](RoutePolicy::limits) | `limit-connections`, then `limit-rps` and `limit-rpm` per client address: `limit-conn-status-code` / `limit-req-status-code` (503) |
//! | `Proxy` | [`canary`](RoutePolicy::canary), [`upstream`](RoutePolicy::upstream), [`rewrite`](RoutePolicy::rewrite), [`body`](RoutePolicy::body), [`headers`](RoutePolicy::headers) | the canary's backend instead of the route's (header, cookie, weight); timeouts and retries of the upstream request; the rewritten URI, `Host`, `X-Forwarded-Prefix`; small bodies read before connecting, body size while streaming (413); `proxy-set-headers` |
//! | `Response` | [`bandwidth`](RoutePolicy::bandwidth) (body), [`errors`](RoutePolicy::errors), [`headers`](RoutePolicy::headers), [`hsts`](RoutePolicy::hsts), [`cors`](RoutePolicy::cors) | a listed error status replaced by the default backend's page; `hide-headers`, `add-headers`, `custom-headers`; `Strict-Transport-Security` on HTTPS responses; CORS headers for an allowed origin |
//!
//! Within a phase Weir's own piece runs first, then the route's [`Steps`] of that phase in the
//! order given. The first request phase that answers ends the request; routing (the built-in
//! 404, 503 for an empty pool) comes after the request phases. The response phase applies to
//! responses from the upstream; of it, only the response headers of
//! [`headers`](RoutePolicy::headers) (`add-headers`, `custom-headers`) also go on the pages and
//! answers Weir writes itself, as nginx's `more_set_headers`.
//!
//! An embedder adds its own pieces as [`RouteStep`]s. A piece that is not set costs a branch per
//! request: no parsing, no allocation, no boxed future.

mod access;
mod basic_auth;
mod body;
mod canary;
mod compression;
mod cors;
mod errors;
mod external_auth;
mod headers;
mod limit;
mod redirect;
mod rewrite;
mod step;
mod upstream;

use std::net::{IpAddr, SocketAddr};

use http::StatusCode;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;

use crate::model::ServerPolicy;

pub use access::{AccessList, Refusal};
pub use basic_auth::{BasicAuth, InvalidRealm, PasswordHash, VERIFIED_CACHE_SIZE};
pub use body::{BodyPolicy, MAX_BUFFERED_BODY};
pub use canary::{upstream_name, Canary, CanaryHeader, HeaderMatch};
pub use compression::{Compression, Encoding};
pub use cors::{Cors, OriginPattern};
pub use errors::CustomErrors;
pub use external_auth::{
    AuthCache, AuthConfigError, AuthGrant, AuthKeepalive, CacheRule, ExternalAuth, Signin, Template,
};
pub use headers::{HeaderEntry, HeaderPolicy, InvalidHeader};
pub use limit::{Bandwidth, ConnGuard, LimitSettings, LimitStatus, Rate, RequestLimits, MAX_BURST};
pub use redirect::HttpsRedirect;
pub use rewrite::{path_regex, Rewrite, UrlRedirect};
pub use step::{LocalResponse, RouteStep, StepOutcome, StepRequest, Steps};
pub(crate) use upstream::{Attempt, Failure};
pub use upstream::{NextUpstream, UpstreamPolicy};

/// The phases of a request, in the order they run (nginx's rewrite, access, auth, limit,
/// content and header-filter phases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Redirects and rewrites, before anything else.
    Rewrite,
    /// Who may use the route at all (refusal, client address lists).
    Access,
    /// Authentication.
    Auth,
    /// Rate and connection limits.
    Limit,
    /// The upstream request: peer options, headers sent upstream.
    Proxy,
    /// The response header sent to the client.
    Response,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 6] = [
        Phase::Rewrite,
        Phase::Access,
        Phase::Auth,
        Phase::Limit,
        Phase::Proxy,
        Phase::Response,
    ];

    /// The phase's name in logs (`rewrite`, `access`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Rewrite => "rewrite",
            Phase::Access => "access",
            Phase::Auth => "auth",
            Phase::Limit => "limit",
            Phase::Proxy => "proxy",
            Phase::Response => "response",
        }
    }

    /// One bit per phase, for [`Steps`]'s phase set.
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-route traffic policy, one piece per family; the default (nothing set, ingress-nginx's
/// timeouts) proxies every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RoutePolicy {
    /// Rewrite phase, first: `app-root` and fixed redirects; proxy phase: the URI, `Host` and
    /// `X-Forwarded-Prefix` sent upstream.
    pub rewrite: Option<Box<Rewrite>>,
    /// Rewrite phase: plain-HTTP requests get a 308 to `https://` (`ssl-redirect` on a host with
    /// TLS, or `force-ssl-redirect`).
    pub https_redirect: Option<HttpsRedirect>,
    /// Access phase, first: the route must not be served (fail closed): 503.
    pub refusal: Option<Refusal>,
    /// Access phase: client address allow and deny lists: 403.
    pub access: Option<AccessList>,
    /// Auth phase: basic authentication (`auth-type: basic`): 401.
    pub basic_auth: Option<std::sync::Arc<BasicAuth>>,
    /// `satisfy: any`: a client the allow list admits skips authentication, and one the lists
    /// keep out gets in by authenticating (default: both must pass).
    pub satisfy_any: bool,
    /// Auth phase: authentication by an external service (`auth-url`, `global-auth-url`).
    pub external_auth: Option<std::sync::Arc<ExternalAuth>>,
    /// Proxy phase: timeouts and retries.
    pub upstream: UpstreamPolicy,
    /// Rewrite phase (`Content-Length`) and proxy phase (buffering, streamed size): request
    /// bodies.
    pub body: BodyPolicy,
    /// Response phase: the host has TLS, so HTTPS responses carry HSTS (the value is
    /// [`ServerPolicy::hsts`]).
    pub hsts: bool,
    /// Rewrite phase (preflight) and response phase: cross-origin resource sharing
    /// (`enable-cors`).
    pub cors: Option<Cors>,
    /// Proxy phase (`proxy-set-headers`) and response phase (`hide-headers`, `add-headers`,
    /// `custom-headers`): header changes.
    pub headers: Option<std::sync::Arc<HeaderPolicy>>,
    /// Error responses replaced by a default backend's page (`custom-http-errors`,
    /// `default-backend`).
    pub errors: Option<std::sync::Arc<CustomErrors>>,
    /// Steps added by an embedder, run after Weir's own piece of their phase.
    pub steps: Steps,
    /// No access log line for the route's requests (`enable-access-log: "false"`).
    pub skip_access_log: bool,
    /// Proxy phase, first: the route's canary backend and the rules that pick it.
    pub canary: Option<std::sync::Arc<Canary>>,
    /// Limit phase: requests per second or minute and requests in progress per client address
    /// (`limit-rps`, `limit-rpm`, `limit-connections`).
    pub limits: Option<RequestLimits>,
    /// Response phase: response body bytes per second (`limit-rate`, `limit-rate-after`).
    pub bandwidth: Option<Bandwidth>,
}

impl RoutePolicy {
    /// The access phase's answer from Weir's own pieces for a client address (`None`: unknown):
    /// 503 when the route is refused, 403 when the address lists keep the client out, `None`
    /// when it may go on. Steps are not consulted.
    pub fn access_status(&self, client: Option<IpAddr>) -> Option<StatusCode> {
        if self.refusal.is_some() {
            return Some(StatusCode::SERVICE_UNAVAILABLE);
        }
        match &self.access {
            Some(list) if !list.is_empty() && !client.is_some_and(|ip| list.allows(ip)) => {
                Some(StatusCode::FORBIDDEN)
            }
            _ => None,
        }
    }

    /// Whether the auth phase has Weir's own work: basic or external authentication.
    pub fn authenticates(&self) -> bool {
        self.basic_auth.is_some() || self.external_auth.is_some()
    }
}

/// Weir's own piece of a request phase.
fn builtin(
    phase: Phase,
    policy: &RoutePolicy,
    req: &StepRequest<'_>,
    server: &ServerPolicy,
) -> Option<LocalResponse> {
    match phase {
        Phase::Rewrite => {
            if body::announced_too_large(&policy.body, req.header()) {
                return Some(LocalResponse::page(StatusCode::PAYLOAD_TOO_LARGE));
            }
            policy
                .cors
                .as_ref()
                .and_then(|c| c.preflight(req.header()))
                .or_else(|| policy.rewrite.as_ref().and_then(|r| r.answer(req, server)))
                .or_else(|| {
                    policy
                        .https_redirect
                        .as_ref()
                        .and_then(|r| r.apply(req, server))
                })
        }
        Phase::Access => {
            if let Some(refusal) = &policy.refusal {
                tracing::debug!(reason = %refusal.reason, host = req.host(), "route refused");
            }
            match policy.access_status(req.client_ip()) {
                // `satisfy: any`: the auth phase decides for a client the lists keep out.
                Some(StatusCode::FORBIDDEN) if policy.satisfy_any && policy.authenticates() => None,
                status => status.map(LocalResponse::page),
            }
        }
        Phase::Auth | Phase::Limit | Phase::Proxy | Phase::Response => None,
    }
}

/// The request phases that can answer a request themselves.
const REQUEST_PHASES: [Phase; 4] = [Phase::Rewrite, Phase::Access, Phase::Auth, Phase::Limit];

/// Runs the request phases (rewrite, access, auth, limit) for a routed request. `Some`: the
/// response to send instead of proxying.
#[cfg(test)]
pub(crate) async fn on_request(
    policy: &RoutePolicy,
    req: &StepRequest<'_>,
    server: &ServerPolicy,
    grant: &mut Option<Box<AuthGrant>>,
) -> Option<LocalResponse> {
    on_request_holding(policy, req, server, &mut None, grant).await
}

/// [`on_request`], keeping in `held` the request's place among its client's requests in
/// progress (`limit-connections`) until the caller drops it at the end of the request, and in
/// `grant` what a passed external authentication changes on the upstream request and the
/// response.
pub(crate) async fn on_request_holding(
    policy: &RoutePolicy,
    req: &StepRequest<'_>,
    server: &ServerPolicy,
    held: &mut Option<ConnGuard>,
    grant: &mut Option<Box<AuthGrant>>,
) -> Option<LocalResponse> {
    if !policy.steps.any_request_step() && !policy.authenticates() {
        return REQUEST_PHASES.into_iter().find_map(|phase| {
            builtin(phase, policy, req, server)
                .or_else(|| limit_phase(phase, policy, req, server, held))
        });
    }
    // Boxed apart: the steps' and authentication's state stays out of the request future of
    // routes without them.
    Box::pin(with_steps(policy, req, server, held, grant)).await
}

/// Weir's limits, in the limit phase (a branch when the route has none).
fn limit_phase(
    phase: Phase,
    policy: &RoutePolicy,
    req: &StepRequest<'_>,
    server: &ServerPolicy,
    held: &mut Option<ConnGuard>,
) -> Option<LocalResponse> {
    let limits = policy.limits.as_ref().filter(|_| phase == Phase::Limit)?;
    match limit::admit(limits, req.client_ip(), server) {
        Ok(guard) => {
            *held = guard;
            None
        }
        Err(status) => {
            tracing::debug!(host = req.host(), client = ?req.client_ip(), status = status.as_u16(), "request limited");
            Some(LocalResponse::page(status))
        }
    }
}

async fn with_steps(
    policy: &RoutePolicy,
    req: &StepRequest<'_>,
    server: &ServerPolicy,
    held: &mut Option<ConnGuard>,
    grant: &mut Option<Box<AuthGrant>>,
) -> Option<LocalResponse> {
    for phase in REQUEST_PHASES {
        if let Some(answer) = builtin(phase, policy, req, server) {
            return Some(answer);
        }
        if phase == Phase::Auth {
            if let Some(answer) = authenticate(policy, req, grant).await {
                return Some(answer);
            }
        }
        if let Some(answer) = limit_phase(phase, policy, req, server, held) {
            return Some(answer);
        }
        for step in policy.steps.of(phase) {
            if let StepOutcome::Respond(answer) = step.on_request(req).await {
                tracing::debug!(step = step.name(), %phase, status = answer.status.as_u16(), "step answered");
                return Some(answer);
            }
        }
    }
    None
}

/// The proxy phase, first: whether the request goes to the route's canary (`false` when the
/// route has none).
pub(crate) fn to_canary(policy: &RoutePolicy, req: &RequestHeader) -> bool {
    policy.canary.as_ref().is_some_and(|c| c.takes(req))
}

/// The proxy phase: where the request goes, the canary's backend when [`to_canary`] said so.
pub(crate) fn backend<'a>(
    policy: &'a RoutePolicy,
    target: &'a crate::model::Target,
    canary: bool,
) -> &'a crate::model::Target {
    match &policy.canary {
        Some(c) if canary => &c.target,
        _ => target,
    }
}

/// The response phase, on each piece of response body: how long to wait before sending it
/// (`limit-rate` of the route); `sent`: body bytes sent before it, `elapsed`: since the request
/// began.
pub(crate) fn response_body_delay(
    bandwidth: &Bandwidth,
    sent: usize,
    len: usize,
    elapsed: std::time::Duration,
) -> Option<std::time::Duration> {
    bandwidth.delay(sent as u64, len as u64, elapsed)
}

/// Weir's own pieces of the auth phase: basic authentication, then external authentication
/// (which leaves in `grant` what it changes upstream), unless `satisfy: any` and the allow list
/// admits the client.
async fn authenticate(
    policy: &RoutePolicy,
    req: &StepRequest<'_>,
    grant: &mut Option<Box<AuthGrant>>,
) -> Option<LocalResponse> {
    if !policy.authenticates() {
        return None;
    }
    if policy.satisfy_any
        && policy
            .access
            .as_ref()
            .is_some_and(|list| list.admits(req.client_ip()))
    {
        return None;
    }
    if let Some(auth) = policy.basic_auth.as_deref() {
        if let Some(answer) = auth.check(req.header()).await {
            return Some(answer);
        }
    }
    if let Some(auth) = &policy.external_auth {
        match external_auth::check(auth, req, &policy.upstream).await {
            external_auth::AuthOutcome::Pass(g) => *grant = g,
            external_auth::AuthOutcome::Answer(answer) => return Some(answer),
        }
    }
    None
}

/// The proxy phase, before connecting: the peer for `addr` with the route's timeouts.
pub(crate) fn upstream_peer(policy: &RoutePolicy, addr: SocketAddr) -> Box<HttpPeer> {
    policy.upstream.peer(addr)
}

/// The proxy phase, after a failed attempt: whether another endpoint may be tried.
pub(crate) fn may_retry(policy: &RoutePolicy, failure: Failure, attempt: Attempt) -> bool {
    policy.upstream.retries(failure, attempt)
}

/// The proxy phase, before an endpoint is picked: a small body is read in full first
/// (`proxy-request-buffering`).
pub(crate) async fn before_connect(
    policy: &RoutePolicy,
    session: &mut pingora::proxy::Session,
) -> pingora::Result<()> {
    if !policy.body.request_buffering {
        return Ok(());
    }
    match policy.body.prebuffer(body::content_length(session)) {
        Some(len) => body::prebuffer(session, len).await,
        None => Ok(()),
    }
}

/// The proxy phase, on each piece of request body read: 413 once more than `proxy-body-size`
/// was read (the upstream request is aborted).
pub(crate) fn on_request_body(policy: &RoutePolicy, body_bytes_read: usize) -> pingora::Result<()> {
    if policy.body.rejects_length(body_bytes_read as u64) {
        return Err(body::too_large());
    }
    Ok(())
}

/// The proxy phase, on the request header sent upstream (after Weir's forwarded headers).
pub(crate) fn on_upstream_request(
    resolved: &crate::snapshot::Resolved<'_>,
    upstream_request: &mut RequestHeader,
) -> pingora::Result<()> {
    let policy = &**resolved.policy;
    if policy.basic_auth.is_some() {
        // As ingress-nginx: the credentials checked here are not passed on.
        upstream_request.remove_header(&http::header::AUTHORIZATION);
    }
    if let Some(rewrite) = &policy.rewrite {
        let path = crate::routing::normalize_path(upstream_request.uri.path())
            .map(|p| p.into_owned())
            .unwrap_or_default();
        rewrite.apply_upstream(&resolved.meta.path, resolved.regex, &path, upstream_request)?;
    }
    if let Some(headers) = &policy.headers {
        headers.on_upstream_request(upstream_request)?;
    }
    for step in policy.steps.of(Phase::Proxy) {
        step.on_upstream_request(upstream_request)?;
    }
    Ok(())
}

/// The response phase, on the upstream's response header before it goes to the client.
pub(crate) fn on_response(
    policy: &RoutePolicy,
    server: &ServerPolicy,
    https: bool,
    request: &RequestHeader,
    response: &mut ResponseHeader,
) -> pingora::Result<()> {
    if let Some(headers) = &policy.headers {
        headers.on_response(response)?;
    }
    if let Some(cors) = &policy.cors {
        cors.on_response(request, response)?;
    }
    if policy.hsts && https {
        if let Some(value) = &server.hsts {
            response.insert_header(http::header::STRICT_TRANSPORT_SECURITY, value.as_str())?;
        }
    }
    for step in policy.steps.of(Phase::Response) {
        step.on_response(response)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_ordered_as_nginx_runs_them() {
        let mut sorted = Phase::ALL;
        sorted.sort();
        assert_eq!(sorted, Phase::ALL);
        assert!(Phase::Rewrite < Phase::Access && Phase::Limit < Phase::Proxy);
        assert_eq!(Phase::Auth.to_string(), "auth");
    }

    #[test]
    fn default_policy_sets_nothing() {
        let p = RoutePolicy::default();
        assert_eq!(p.https_redirect, None);
        assert_eq!(p.refusal, None);
        assert_eq!(p.access, None);
        assert!(!p.hsts);
        assert!(p.steps.is_empty());
        assert_eq!(p.upstream, UpstreamPolicy::default());
        assert_eq!(p.access_status(None), None);
    }

    fn request(header: &RequestHeader, https: bool) -> StepRequest<'_> {
        StepRequest::new(
            header,
            Some("192.0.2.7".parse().unwrap()),
            https,
            "a.test",
            "/x/",
        )
    }

    #[tokio::test]
    async fn redirect_comes_before_refusal_and_refusal_before_the_lists() {
        let header = RequestHeader::build("GET", b"/x/?q=1", None).unwrap();
        let server = ServerPolicy::default();
        let mut p = RoutePolicy {
            https_redirect: Some(HttpsRedirect::default()),
            refusal: Some(Refusal {
                reason: "broken annotation".into(),
            }),
            access: Some(AccessList {
                allow: vec!["10.0.0.0/8".parse().unwrap()],
                deny: vec![],
            }),
            ..Default::default()
        };
        let status = |r: Option<LocalResponse>| r.map(|r| r.status.as_u16());
        assert_eq!(
            status(on_request(&p, &request(&header, false), &server, &mut None).await),
            Some(308)
        );
        assert_eq!(
            status(on_request(&p, &request(&header, true), &server, &mut None).await),
            Some(503)
        );
        p.refusal = None;
        assert_eq!(
            status(on_request(&p, &request(&header, true), &server, &mut None).await),
            Some(403)
        );
        p.access = None;
        assert_eq!(
            status(on_request(&p, &request(&header, true), &server, &mut None).await),
            None
        );
    }

    #[test]
    fn hsts_only_on_https_with_a_server_value() {
        let mut server = ServerPolicy::default();
        let p = RoutePolicy {
            hsts: true,
            ..Default::default()
        };
        let hsts = |p: &RoutePolicy, server: &ServerPolicy, https| {
            let mut resp = ResponseHeader::build(200, None).unwrap();
            let req = RequestHeader::build("GET", b"/", None).unwrap();
            on_response(p, server, https, &req, &mut resp).unwrap();
            resp.headers
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(hsts(&p, &server, true), None, "no server value");
        server.hsts = Some("max-age=60".into());
        assert_eq!(hsts(&p, &server, true).as_deref(), Some("max-age=60"));
        assert_eq!(hsts(&p, &server, false), None, "plain HTTP");
        assert_eq!(hsts(&RoutePolicy::default(), &server, true), None);
    }
}

#[cfg(test)]
mod future_sizes {
    use super::*;

    /// Every request of a route with authentication or steps boxes the request phases' future:
    /// it must stay small (a sub-request's state inside it made it 10 KB, copied per request).
    #[test]
    fn request_phase_futures_stay_small() {
        let p = RoutePolicy::default();
        let server = ServerPolicy::default();
        let header = RequestHeader::build("GET", b"/", None).unwrap();
        let req = StepRequest::new(&header, None, false, "a", "/");
        let (mut held, mut grant) = (None, None);
        let f = with_steps(&p, &req, &server, &mut held, &mut grant);
        assert!(
            std::mem::size_of_val(&f) <= 1024,
            "{}",
            std::mem::size_of_val(&f)
        );
        drop(f);
        let f = authenticate(&p, &req, &mut grant);
        assert!(
            std::mem::size_of_val(&f) <= 1024,
            "{}",
            std::mem::size_of_val(&f)
        );
    }
}
