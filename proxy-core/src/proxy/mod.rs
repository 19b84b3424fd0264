//! The Pingora `ProxyHttp` implementation. Each hook is thin and delegates to a named module;
//! route policy is applied by the phases of [`crate::policy`].

mod errors;
mod headers;
mod local;
mod log;
mod upgrade;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::access_log::AccessLog;
use crate::client_ip;
use crate::metrics::ProxyMetrics;
use crate::model::Target;
use crate::policy::{self, StepRequest};
use crate::routing::{normalize_host, normalize_path, RouteId};
use crate::snapshot::{Snapshot, SnapshotHandle};

/// Upper bound on endpoints tried for one request, whatever the policy says.
const MAX_TRIES: usize = 8;

/// The proxy: routes each request with the current snapshot and forwards it.
pub struct WeirProxy {
    snapshot: SnapshotHandle,
    metrics: Option<ProxyMetrics>,
    /// Upstream connections for HTTP/1 upgrades, which [`upgrade`] proxies itself.
    upgrades: pingora::connectors::http::v1::Connector,
    /// Where access log lines go (none: no access log, whatever the snapshot says).
    access_log: Option<AccessLog>,
}

impl WeirProxy {
    /// A proxy serving whatever `snapshot` currently holds; `metrics` is optional.
    pub fn new(snapshot: SnapshotHandle, metrics: Option<ProxyMetrics>) -> Self {
        WeirProxy {
            snapshot,
            metrics,
            upgrades: pingora::connectors::http::v1::Connector::new(None),
            access_log: None,
        }
    }

    /// Write an access log line per request to `log`, in the format of the snapshot's
    /// [`ServerPolicy::access_log`](crate::ServerPolicy::access_log) (no line while it is
    /// `None`).
    pub fn with_access_log(mut self, log: AccessLog) -> Self {
        self.access_log = Some(log);
        self
    }
}

/// Per-request state.
pub struct RequestCtx {
    snapshot: Option<Arc<Snapshot>>,
    route: RouteId,
    request_id: Option<HeaderValue>,
    tried: [SocketAddr; MAX_TRIES],
    tries: usize,
    /// The status each endpoint tried answered (0: none), for `$upstream_status`.
    upstream_status: [u16; MAX_TRIES],
    /// Time to connect to the last endpoint (0 for a reused connection), measured only when
    /// the access log format shows it.
    connect_time: Option<Duration>,
    /// When the current attempt began (only when `connect_time` is measured).
    attempt_start: Option<Instant>,
    /// The request got as far as routing (not refused for its framing or path first).
    routed: bool,
    start: Instant,
    upstream_start: Option<Instant>,
    header_time: Option<Duration>,
    /// Status written by the proxy itself (default backend, 503, 400, redirects).
    local_status: Option<u16>,
    /// The client address (PROXY protocol or socket peer, then trusted forwarded headers).
    client_ip: Option<IpAddr>,
    /// The address of the connection's peer (or the PROXY protocol source).
    peer_ip: Option<IpAddr>,
    /// `https` when the client used TLS (to us, or to a trusted proxy in front).
    scheme: &'static str,
    /// The request goes to the route's canary backend.
    canary: bool,
    /// What a passed external authentication changes upstream and on the response.
    auth: Option<Box<policy::AuthGrant>>,
    /// The request's place among its client's requests in progress (`limit-connections`),
    /// released when the context is dropped at the end of the request.
    limit_hold: Option<policy::ConnGuard>,
    /// The route's `limit-rate`, copied here so response body pieces need no lookup.
    bandwidth: Option<policy::Bandwidth>,
    /// Response body bytes that went through the bandwidth limit so far.
    body_paced: usize,
}

impl WeirProxy {
    /// Client address and scheme, as ingress-nginx computes `$remote_addr` and
    /// `$pass_access_scheme`: the peer (or PROXY protocol source), replaced by the forwarded
    /// headers only when `use-forwarded-headers` is on and the peer is trusted.
    fn client_facts(&self, session: &Session, snapshot: &Snapshot, ctx: &mut RequestCtx) {
        let downstream = session.as_downstream();
        let tls = downstream.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.scheme = if tls { "https" } else { "http" };
        let Some(peer) = downstream
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        else {
            return;
        };
        ctx.peer_ip = Some(peer);
        let server = snapshot.server();
        if server.proxy_protocol {
            // As nginx with `real_ip_header proxy_protocol`: the PROXY source is the client, and
            // forwarded headers are not consulted. Destination port 443 means the client used
            // HTTPS (TLS terminated by the load balancer).
            ctx.client_ip = Some(peer);
            let port = downstream
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port());
            if port == Some(443) {
                ctx.scheme = "https";
            }
            return;
        }
        let cfg = &server.client_ip;
        let headers = &session.req_header().headers;
        let incoming = headers
            .get(cfg.forwarded_for_header.as_str())
            .map(|v| v.as_bytes());
        ctx.client_ip = Some(client_ip::client_ip(cfg, peer, incoming));
        if cfg.use_forwarded_headers && cfg.is_trusted(peer) {
            if let Some(proto) = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
            {
                if proto.eq_ignore_ascii_case("https") {
                    ctx.scheme = "https";
                } else if proto.eq_ignore_ascii_case("http") {
                    ctx.scheme = "http";
                }
            }
        }
    }

    /// The next endpoint to try for the request's route, remembered in `ctx` so a retry picks
    /// another one.
    fn pick_peer(&self, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let snapshot = ctx.snapshot.as_ref().ok_or_else(|| {
            Error::explain(ErrorType::InternalError, "no snapshot in request context")
        })?;
        let resolved = snapshot.resolve(ctx.route);
        let Target::Pool(pool) = policy::backend(resolved.policy, resolved.target, ctx.canary)
        else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(404),
                "no upstream for route",
            ));
        };
        let addr = pool
            .select(&ctx.tried[..ctx.tries])
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no endpoint left to try"))?;
        if ctx.tries < MAX_TRIES {
            ctx.tried[ctx.tries] = addr;
            ctx.tries += 1;
        }
        let now = Instant::now();
        ctx.upstream_start.get_or_insert(now);
        if self.access_log.is_some()
            && snapshot
                .server()
                .access_log
                .as_ref()
                .is_some_and(|l| l.format.needs_connect_time())
        {
            ctx.attempt_start = Some(now);
        }
        Ok(policy::upstream_peer(resolved.policy, addr))
    }
}

/// Whether another endpoint may be tried after `failure`: the route's policy allows it, an
/// endpoint is left, and the body can be sent again (it was not sent, or it is all in memory).
fn retry_allowed(
    session: &Session,
    ctx: &RequestCtx,
    failure: policy::Failure,
    sent: bool,
) -> bool {
    let Some(snapshot) = &ctx.snapshot else {
        return false;
    };
    let resolved = snapshot.resolve(ctx.route);
    let left = match policy::backend(resolved.policy, resolved.target, ctx.canary) {
        Target::Pool(p) => p.endpoints().len() > ctx.tries,
        Target::NotFound => false,
    };
    if !left || ctx.tries >= MAX_TRIES || (sent && session.as_downstream().retry_buffer_truncated())
    {
        return false;
    }
    let attempt = policy::Attempt {
        tried: ctx.tries,
        elapsed: ctx.upstream_start.map_or(Duration::ZERO, |s| s.elapsed()),
        sent_non_idempotent: sent && !session.req_header().method.is_idempotent(),
    };
    policy::may_retry(resolved.policy, failure, attempt)
}

fn request_host(req: &RequestHeader) -> &str {
    if let Some(h) = req.uri.host() {
        return h;
    }
    req.headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[async_trait]
impl ProxyHttp for WeirProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            snapshot: None,
            route: RouteId::Default,
            request_id: None,
            tried: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_TRIES],
            tries: 0,
            upstream_status: [0; MAX_TRIES],
            connect_time: None,
            attempt_start: None,
            routed: false,
            start: Instant::now(),
            upstream_start: None,
            header_time: None,
            local_status: None,
            client_ip: None,
            peer_ip: None,
            scheme: "http",
            canary: false,
            auth: None,
            limit_hold: None,
            bandwidth: None,
            body_paced: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let snapshot = self.snapshot.load();
        crate::edge::on_request(session, &snapshot.server().conn);
        self.client_facts(session, &snapshot, ctx);
        let snapshot = &**ctx.snapshot.insert(snapshot);
        // Answer pipelined HTTP/1.1 requests in order instead of closing after the first.
        session.as_downstream_mut().set_pipelining_enabled(true);
        if let Err(refused) = crate::edge::framing::check(session.req_header()) {
            tracing::debug!(
                status = refused.status,
                reason = refused.reason,
                "request refused"
            );
            ctx.local_status = Some(refused.status);
            session.set_keepalive(None);
            local::respond_page(session, refused.status, None).await?;
            return Ok(true);
        }
        let req = session.req_header();
        let host = normalize_host(request_host(req));
        let Ok(path) = normalize_path(req.uri.path()) else {
            ctx.local_status = Some(400);
            local::respond_page(session, 400, None).await?;
            return Ok(true);
        };
        ctx.route = snapshot.find(&host, &path);
        ctx.routed = true;
        let resolved = snapshot.resolve(ctx.route);
        let step_request =
            StepRequest::new(req, ctx.client_ip, ctx.scheme == "https", &host, &path);
        if let Some(answer) = policy::on_request_holding(
            resolved.policy,
            &step_request,
            snapshot.server(),
            &mut ctx.limit_hold,
            &mut ctx.auth,
        )
        .await
        {
            ctx.local_status = Some(answer.status.as_u16());
            local::send(session, answer, resolved.policy.headers.as_deref()).await?;
            local::linger(session).await;
            return Ok(true);
        }
        ctx.canary = policy::to_canary(resolved.policy, req);
        let status = match policy::backend(resolved.policy, resolved.target, ctx.canary) {
            Target::NotFound => 404,
            Target::Pool(p) if p.is_empty() => 503,
            Target::Pool(_) => {
                ctx.bandwidth = resolved.policy.bandwidth;
                ctx.request_id = Some(
                    req.headers
                        .get("x-request-id")
                        .filter(|v| !v.is_empty())
                        .cloned()
                        .unwrap_or_else(headers::new_request_id),
                );
                if session.is_upgrade_req() && session.is_body_empty() {
                    return upgrade::proxy(self, session, ctx).await;
                }
                policy::before_connect(resolved.policy, session).await?;
                return Ok(false);
            }
        };
        let page_headers = resolved.policy.headers.clone();
        if status == 503 && resolved.policy.errors.is_some() {
            if let Some(sent) = errors::serve(self, session, ctx, status, true).await {
                ctx.local_status = Some(sent);
                return Ok(true);
            }
        }
        ctx.local_status = Some(status);
        local::respond_page(session, status, page_headers.as_deref()).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        self.pick_peer(ctx)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let downstream = session.as_downstream();
        let server_port = downstream
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        let req = session.req_header();
        let forwarded_for = match (&ctx.snapshot, ctx.client_ip, ctx.peer_ip) {
            (Some(snapshot), Some(client), Some(peer))
                if snapshot.server().client_ip.use_forwarded_headers
                    && snapshot.server().client_ip.compute_full_forwarded_for =>
            {
                let cfg = &snapshot.server().client_ip;
                // ingress-nginx's $full_x_forwarded_for always extends X-Forwarded-For.
                let incoming = req.headers.get("x-forwarded-for").map(|v| v.as_bytes());
                HeaderValue::from_str(&client_ip::forwarded_for_value(cfg, client, peer, incoming))
                    .ok()
            }
            _ => None,
        };
        let authority;
        let host = match req.headers.get(http::header::HOST) {
            Some(h) => Some(h),
            None => {
                // HTTP/2 carries the host in :authority; HTTP/1.1 upstreams need a Host header.
                authority = req
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
                if let Some(a) = &authority {
                    upstream_request.insert_header(http::header::HOST, a.clone())?;
                }
                authority.as_ref()
            }
        };
        let request_id = ctx.request_id.get_or_insert_with(headers::new_request_id);
        headers::apply(
            upstream_request,
            &headers::ForwardInfo {
                client_ip: ctx.client_ip,
                forwarded_for: forwarded_for.as_ref(),
                scheme: ctx.scheme,
                server_port,
                host,
                request_id,
            },
        )?;
        if let Some(grant) = &ctx.auth {
            grant.on_upstream_request(upstream_request)?;
        }
        match &ctx.snapshot {
            Some(snapshot) => {
                policy::on_upstream_request(&snapshot.resolve(ctx.route), upstream_request)
            }
            None => Ok(()),
        }
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if session.is_process_shutting_down() {
            // Listeners have stopped: a request that was in flight ends its connection
            // (`Connection: close`), as nginx does in a graceful quit.
            session.set_keepalive(None);
        }
        if let Some(snapshot) = &ctx.snapshot {
            let compression = &snapshot.server().compression;
            if compression.is_enabled() {
                if let Some(module) = session
                    .downstream_modules_ctx
                    .get_mut::<pingora::modules::http::compression::ResponseCompression>(
                ) {
                    compression.on_response(
                        module,
                        session.downstream_session.req_header(),
                        upstream_response,
                    );
                }
            }
        }
        if let Some(grant) = &ctx.auth {
            grant.on_response(upstream_response)?;
        }
        match &ctx.snapshot {
            Some(snapshot) => policy::on_response(
                snapshot.resolve(ctx.route).policy,
                snapshot.server(),
                ctx.scheme == "https",
                session.req_header(),
                upstream_response,
            ),
            None => Ok(()),
        }
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        match &ctx.snapshot {
            Some(snapshot) => policy::on_request_body(
                snapshot.resolve(ctx.route).policy,
                session.body_bytes_read(),
            ),
            None => Ok(()),
        }
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        let (Some(bandwidth), Some(body)) = (&ctx.bandwidth, body) else {
            return Ok(None);
        };
        // Counted here rather than by the session: pieces may pass this filter before the
        // earlier ones are written.
        let sent = ctx.body_paced;
        ctx.body_paced += body.len();
        Ok(policy::response_body_delay(
            bandwidth,
            sent,
            body.len(),
            ctx.start.elapsed(),
        ))
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(start) = ctx.upstream_start {
            ctx.header_time.get_or_insert_with(|| start.elapsed());
        }
        // proxy-next-upstream http_<status>: the response is dropped and another endpoint tried.
        let status = upstream_response.status.as_u16();
        ctx.note_upstream_status(status);
        if status >= 400 && retry_allowed(session, ctx, policy::Failure::Status(status), true) {
            let mut e = Error::explain(
                ErrorType::HTTPStatus(status),
                "retried (proxy-next-upstream)",
            );
            e.set_retry(true);
            return Err(e.into_up());
        }
        // custom-http-errors: the response is dropped and the default backend's page sent
        // instead (in fail_to_proxy).
        if status >= 300 {
            if let Some(snapshot) = &ctx.snapshot {
                let policy = snapshot.resolve(ctx.route).policy;
                if policy.errors.as_ref().is_some_and(|e| e.intercepts(status)) {
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(status),
                        "replaced by a custom error page",
                    )
                    .into_up());
                }
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // proxy-next-upstream "error timeout": nothing was sent, so any method may be retried.
        let failure = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => {
                policy::Failure::Timeout
            }
            _ => policy::Failure::Error,
        };
        ctx.note_failure(failure);
        e.set_retry(retry_allowed(session, ctx, failure, false));
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let failure = match (e.etype(), e.esource()) {
            // Decided in upstream_response_filter.
            (ErrorType::HTTPStatus(_), ErrorSource::Upstream) => return e,
            (_, ErrorSource::Upstream) if session.response_written().is_some() => None,
            (ErrorType::ReadTimedout | ErrorType::WriteTimedout, ErrorSource::Upstream) => {
                Some(policy::Failure::Timeout)
            }
            (_, ErrorSource::Upstream) => Some(policy::Failure::Error),
            _ => None,
        };
        if let Some(f) = failure {
            ctx.note_failure(f);
        }
        let retry = failure.is_some_and(|f| retry_allowed(session, ctx, f, true));
        e.set_retry(retry);
        e
    }

    fn suppress_error_log(&self, session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        // A request refused with a 4xx (413) is not a proxy error worth an ERROR line.
        if matches!(error.etype(), ErrorType::HTTPStatus(400..=499)) {
            return true;
        }
        // Nor is a client that goes away: debug, and counted.
        let gone = error.esource() == &ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::ConnectionClosed
                    | ErrorType::ReadError
                    | ErrorType::WriteError
                    | ErrorType::ReadTimedout
            );
        if gone {
            let phase = match session.response_written() {
                None => "request",
                Some(_) => "response",
            };
            tracing::debug!(error = %error, phase, "client went away");
            if let Some(m) = &self.metrics {
                m.client_disconnects.with_label_values(&[phase]).inc();
            }
        }
        gone
    }

    fn request_header_read_failed(&self, error: &Error) {
        tracing::debug!(error = %error, "client went away before its request header was complete");
        if let Some(m) = &self.metrics {
            m.client_disconnects.with_label_values(&["header"]).inc();
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let code = error_status(e);
        if code > 0 && session.response_written().is_none() {
            if let Some(sent) = errors::serve(self, session, ctx, code, false).await {
                if (400..500).contains(&code) {
                    local::linger(session).await;
                }
                return FailToProxy {
                    error_code: sent,
                    can_reuse_downstream: false,
                };
            }
        }
        if code > 0 {
            let sent = match crate::pages::page(code) {
                Some(page) => {
                    let mut resp = error_response(code);
                    let headers = resp
                        .insert_header(http::header::CONTENT_TYPE, "text/html")
                        .and_then(|_| resp.set_content_length(page.len()))
                        .and_then(|_| match &ctx.snapshot {
                            Some(s) => match &s.resolve(ctx.route).policy.headers {
                                Some(h) => h.on_local_response(&mut resp),
                                None => Ok(()),
                            },
                            None => Ok(()),
                        });
                    match headers {
                        Ok(()) => {
                            session
                                .as_downstream_mut()
                                .write_error_response(
                                    resp,
                                    bytes::Bytes::from_static(page.as_bytes()),
                                )
                                .await
                        }
                        Err(e) => Err(e),
                    }
                }
                None => {
                    session
                        .as_downstream_mut()
                        .write_error_response(error_response(code), bytes::Bytes::new())
                        .await
                }
            };
            if let Err(err) = sent {
                tracing::debug!(error = %err, "could not send the error response");
            }
            if (400..500).contains(&code) {
                // The client may still be sending (413 while a body streams).
                local::linger(session).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(start) = ctx.attempt_start {
            ctx.connect_time = Some(if reused {
                Duration::ZERO
            } else {
                start.elapsed()
            });
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        crate::edge::request_done(session);
        let Some(snapshot) = &ctx.snapshot else {
            return;
        };
        if self.metrics.is_none() && self.access_log.is_none() {
            return;
        }
        let status = match (session.response_written(), ctx.local_status, e) {
            (Some(r), _, _) => r.status.as_u16(),
            (None, Some(s), _) => s,
            (None, None, Some(e)) => error_status(e),
            (None, None, None) => 0,
        };
        if let Some(log) = &self.access_log {
            log::write(log, snapshot, session, e, ctx, status);
        }
        let Some(metrics) = &self.metrics else { return };
        let resolved = snapshot.resolve(ctx.route);
        let req = session.req_header();
        let series =
            snapshot
                .series(ctx.route)
                .get(metrics, status, &req.method, ctx.canary, || {
                    let status_text = http::StatusCode::from_u16(status)
                        .map(|c| c.as_str().to_string())
                        .unwrap_or_else(|_| status.to_string());
                    let meta = resolved.meta;
                    [
                        status_text,
                        req.method.as_str().to_string(),
                        meta.path.to_string(),
                        meta.namespace.to_string(),
                        meta.ingress.to_string(),
                        meta.service.to_string(),
                        resolved.host.to_string(),
                        match &resolved.policy.canary {
                            // As ingress-nginx: the canary backend's name, the route's other labels.
                            Some(c) if ctx.canary => c.name.to_string(),
                            _ if meta.canary => meta.service.to_string(),
                            _ => String::new(),
                        },
                    ]
                });
        series.requests.inc();
        series
            .request_duration
            .observe(ctx.start.elapsed().as_secs_f64());
        if let Some(start) = ctx.upstream_start {
            series
                .response_duration
                .observe(start.elapsed().as_secs_f64());
        }
        if let Some(h) = ctx.header_time {
            series.header_duration.observe(h.as_secs_f64());
        }
        series
            .request_size
            .observe(log::request_length(session) as f64);
        series
            .response_size
            .observe(session.body_bytes_sent() as f64);
    }
}

impl RequestCtx {
    /// Remember an attempt that got no answer: 504 for a timeout, else 502, as nginx logs it.
    fn note_failure(&mut self, failure: policy::Failure) {
        self.note_upstream_status(if failure == policy::Failure::Timeout {
            504
        } else {
            502
        });
    }

    /// Remember what the endpoint being tried answered (the first answer counts).
    fn note_upstream_status(&mut self, status: u16) {
        if let Some(slot) = self
            .tries
            .checked_sub(1)
            .and_then(|i| self.upstream_status.get_mut(i))
        {
            if *slot == 0 {
                *slot = status;
            }
        }
    }
}

/// Pingora's error response header for `code` without its `Server: Pingora` (as nginx with
/// `server-tokens: false`, Weir names no server).
fn error_response(code: u16) -> ResponseHeader {
    let mut resp = pingora::protocols::http::error_resp::gen_error_response(code);
    resp.remove_header(&http::header::SERVER);
    resp
}

/// The status sent for a request that failed: as nginx, 504 when the upstream timed out, 502 for
/// other upstream failures, nothing when the client went away.
pub(crate) fn error_status(e: &Error) -> u16 {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(code), _) => *code,
        (
            ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout,
            ErrorSource::Upstream,
        ) => 504,
        (_, ErrorSource::Upstream) => 502,
        // `client-body-timeout`: nginx's 408.
        (ErrorType::ReadTimedout, ErrorSource::Downstream) => 408,
        (
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => 0,
        (_, ErrorSource::Downstream) => 400,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_name_no_server() {
        for code in [400, 502, 504, 599] {
            let resp = error_response(code);
            assert_eq!(resp.status.as_u16(), code);
            assert_eq!(resp.headers.get(http::header::SERVER), None, "{code}");
        }
    }

    #[test]
    fn upstream_timeouts_are_504_other_failures_502() {
        let up = |t| *Error::new(t).into_up();
        assert_eq!(error_status(&up(ErrorType::ReadTimedout)), 504);
        assert_eq!(error_status(&up(ErrorType::ConnectTimedout)), 504);
        assert_eq!(error_status(&up(ErrorType::ConnectRefused)), 502);
        assert_eq!(error_status(&Error::new(ErrorType::HTTPStatus(503))), 503);
        assert_eq!(
            error_status(&Error::new(ErrorType::ReadError).into_down()),
            0
        );
        assert_eq!(
            error_status(&Error::new(ErrorType::InvalidHTTPHeader).into_down()),
            400
        );
    }
}
