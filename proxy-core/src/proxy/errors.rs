//! Custom error pages: a response with a status listed in the route's
//! [`CustomErrors`](crate::policy::CustomErrors) is replaced by the answer of its default
//! backend, asked as ingress-nginx's internal `@custom_<backend>_<code>` location asks it: the
//! client's method and headers, the path `/` with the original query, and the `X-Code`,
//! `X-Format`, `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`,
//! `X-Service-Port` and `X-Request-ID` headers. The client gets the backend's status, headers
//! and body (nginx's `error_page <code> = @location`). The request body is not sent again.

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::{headers, local, RequestCtx, WeirProxy};
use crate::model::Target;
use crate::policy;

/// Hop-by-hop and framing headers of the client's request, not passed to the error backend.
const NOT_PASSED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
];

/// Serves the route's custom page for `code` when its policy lists the code (or, with
/// `empty_service`, when the route's Service has no endpoints and the `default-backend`
/// annotation names a backend). `Some(status)`: the page went to the client (`0`: the client
/// got a partial answer); `None`: the caller sends its usual answer.
pub(super) async fn serve(
    proxy: &WeirProxy,
    session: &mut Session,
    ctx: &mut RequestCtx,
    code: u16,
    empty_service: bool,
) -> Option<u16> {
    let snapshot = ctx.snapshot.clone()?;
    let resolved = snapshot.resolve(ctx.route);
    let errors = resolved.policy.errors.as_deref()?;
    let keep_uri = empty_service && errors.serves_empty_service;
    if !keep_uri && !errors.covers(code) {
        return None;
    }
    let pool = match &errors.backend {
        Target::Pool(pool) => pool,
        Target::NotFound => {
            // The built-in default backend answers every error page with its 404.
            return match local::respond_page(session, 404, resolved.policy.headers.as_deref()).await
            {
                Ok(()) => Some(404),
                Err(e) => {
                    tracing::debug!(error = %e, "could not send the error page");
                    Some(0)
                }
            };
        }
    };
    let addr = pool.select(&[])?;
    let peer = policy::upstream_peer(resolved.policy, addr);
    let request_id = ctx
        .request_id
        .get_or_insert_with(headers::new_request_id)
        .clone();
    let request = match error_request(session, ctx, &resolved, code, keep_uri, request_id) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "could not build the error page request");
            return None;
        }
    };
    let (mut upstream, _) = match proxy.upgrades.get_http_session(&*peer).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, backend = %pool.key(), "default backend unreachable for a custom error page");
            return None;
        }
    };
    upstream.read_timeout = peer.options.read_timeout;
    upstream.write_timeout = peer.options.write_timeout;
    let answer = async {
        upstream
            .write_request_header(Box::new(request))
            .await
            .map_err(|e| e.into_up())?;
        loop {
            match upstream
                .read_response_task()
                .await
                .map_err(|e| e.into_up())?
            {
                HttpTask::Header(h, _) if h.status.is_informational() => {}
                HttpTask::Header(h, end) => return Ok((h, end)),
                _ => {
                    return Err(Error::explain(
                        ErrorType::InvalidHTTPHeader,
                        "default backend sent body before its response header",
                    )
                    .into_up())
                }
            }
        }
    };
    let (mut response, end) = match answer.await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, backend = %pool.key(), "default backend failed to answer a custom error page");
            return None;
        }
    };
    if let Some(h) = &resolved.policy.headers {
        if let Err(e) = h.on_response(&mut response) {
            tracing::debug!(error = %e, "error page headers");
        }
    }
    let status = response.status.as_u16();
    if let Err(e) = session.write_response_header(response, end).await {
        tracing::debug!(error = %e, "could not send the error page");
        return Some(0);
    }
    if !end {
        if let Err(e) = super::upgrade::relay_body(session, &mut upstream).await {
            tracing::debug!(error = %e, "error page body ended with an error");
            session.set_keepalive(None);
        }
    }
    Some(status)
}

/// The request to the default backend.
fn error_request(
    session: &Session,
    ctx: &RequestCtx,
    resolved: &crate::snapshot::Resolved<'_>,
    code: u16,
    keep_uri: bool,
    request_id: HeaderValue,
) -> Result<RequestHeader> {
    let orig = session.req_header();
    let original_uri = orig.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if keep_uri {
        original_uri.to_string()
    } else {
        match orig.uri.query() {
            Some(q) => format!("/?{q}"),
            None => "/".to_string(),
        }
    };
    let mut req = RequestHeader::build(
        orig.method.clone(),
        path.as_bytes(),
        Some(orig.headers.len() + 10),
    )?;
    for (name, value) in orig.headers.iter() {
        if !NOT_PASSED.contains(&name.as_str()) {
            req.append_header(name.clone(), value.clone())?;
        }
    }
    if !req.headers.contains_key(http::header::HOST) {
        if let Some(a) = orig.uri.authority() {
            req.insert_header(http::header::HOST, a.as_str())?;
        }
    }
    let meta = resolved.meta;
    let port = match resolved.target {
        Target::Pool(p) => p.key().0.rsplit_once(':').map_or("", |(_, port)| port),
        Target::NotFound => "",
    };
    let mut set = |name: &'static str, value: &str| -> Result<()> {
        // As nginx's proxy_set_header: an empty value sends no header at all.
        if value.is_empty() {
            req.remove_header(name);
            Ok(())
        } else {
            req.insert_header(name, value)
        }
    };
    set("X-Code", &code.to_string())?;
    set(
        "X-Format",
        orig.headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )?;
    set("X-Original-URI", original_uri)?;
    set("X-Namespace", &meta.namespace)?;
    set("X-Ingress-Name", &meta.ingress)?;
    set("X-Service-Name", &meta.service)?;
    set("X-Service-Port", port)?;
    match ctx.client_ip {
        Some(ip) => set("X-Forwarded-For", &ip.to_string())?,
        None => set("X-Forwarded-For", "")?,
    }
    req.insert_header("X-Request-ID", request_id)?;
    Ok(req)
}
