//! HTTP/1 upgrades (WebSocket and the like): the handshake, then a byte tunnel.
//!
//! Pingora 0.9's proxy loop can close an upgraded connection right after forwarding the 101
//! when the upstream's answer is read before the end of the (empty) request body has been
//! passed on: the end of the request body is then taken for the end of the tunnel. That
//! happens whenever the upstream answers fast, so upgrade requests without a body are proxied
//! here instead. The request, peer choice, retries, timeouts, headers and logging are the same
//! as for every other request; after a 101 bytes are copied both ways until either side
//! closes, which is what nginx does.

use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::HttpTask;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use super::{RequestCtx, WeirProxy};

/// Proxies an upgrade request. `Ok(true)` once a response went to the client; an error before
/// that is answered by `fail_to_proxy` like any other proxy failure.
pub(super) async fn proxy(
    proxy: &WeirProxy,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool> {
    let mut upstream = connect(proxy, session, ctx).await?;
    let mut request = session.req_header().clone();
    proxy
        .upstream_request_filter(session, &mut request, ctx)
        .await?;
    upstream
        .write_request_header(Box::new(request))
        .await
        .map_err(|e| e.into_up())?;
    let (mut response, end) = loop {
        match upstream
            .read_response_task()
            .await
            .map_err(|e| e.into_up())?
        {
            // 100 Continue and other interim answers are not passed on (as nginx).
            HttpTask::Header(h, _) if h.status.is_informational() && h.status != 101 => {}
            HttpTask::Header(h, end) => break (h, end),
            _ => {
                return Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "upstream sent body before its response header",
                )
                .into_up())
            }
        }
    };
    proxy
        .upstream_response_filter(session, &mut response, ctx)
        .await?;
    proxy.response_filter(session, &mut response, ctx).await?;
    let upgraded = upstream.was_upgraded();
    session.write_response_header(response, end).await?;

    // The response has started: from here a failure can only end the connection.
    let relayed = if upgraded {
        tunnel(session, &mut upstream).await
    } else if end {
        session.write_response_body(None, true).await
    } else {
        relay_body(session, &mut upstream).await
    };
    if let Err(e) = relayed {
        tracing::debug!(error = %e, upgraded, "upgrade connection ended with an error");
        session.set_keepalive(None);
    }
    Ok(true)
}

/// Connects to the route's endpoints in turn, retrying as `fail_to_connect` allows; the
/// session gets the route's read and send timeouts.
async fn connect(
    proxy: &WeirProxy,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<UpstreamSession> {
    loop {
        let peer = proxy.pick_peer(ctx)?;
        match proxy.upgrades.get_http_session(&*peer).await {
            Ok((mut upstream, _reused)) => {
                upstream.read_timeout = peer.options.read_timeout;
                upstream.write_timeout = peer.options.write_timeout;
                return Ok(upstream);
            }
            Err(e) => {
                let e = proxy.fail_to_connect(session, &peer, ctx, e.into_up());
                if !e.retry() {
                    return Err(e);
                }
            }
        }
    }
}

/// Copies bytes both ways after a 101 until either side closes or fails.
async fn tunnel(session: &mut Session, upstream: &mut UpstreamSession) -> Result<()> {
    upstream.maybe_upgrade_body_writer();
    loop {
        tokio::select! {
            data = session.as_downstream_mut().read_request_body() => match data? {
                Some(data) => {
                    if upstream.write_body(&data).await.map_err(|e| e.into_up())?.is_none() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            },
            task = upstream.read_response_task() => match task.map_err(|e| e.into_up())? {
                HttpTask::UpgradedBody(data, end) | HttpTask::Body(data, end) => {
                    if data.is_some() {
                        session.write_response_body(data, false).await?;
                    }
                    if end {
                        return Ok(());
                    }
                }
                _ => return Ok(()),
            },
        }
    }
}

/// Passes on the body of a refused upgrade (an ordinary response) or of a custom error page.
pub(super) async fn relay_body(
    session: &mut Session,
    upstream: &mut UpstreamSession,
) -> Result<()> {
    loop {
        match upstream
            .read_response_task()
            .await
            .map_err(|e| e.into_up())?
        {
            HttpTask::Body(data, end) => {
                session.write_response_body(data, end).await?;
                if end {
                    return Ok(());
                }
            }
            _ => return session.write_response_body(None, true).await,
        }
    }
}
