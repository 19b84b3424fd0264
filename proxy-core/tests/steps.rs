//! Embedder steps next to Weir's own policy pieces, through a real `WeirProxy` on a loopback
//! port in front of a real upstream.

mod support;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use http::{HeaderValue, StatusCode};
use proxy_core::pingora::http::{RequestHeader, ResponseHeader};
use proxy_core::{
    async_trait, AccessList, HttpsRedirect, LocalResponse, PathKind, Phase, PoolCache, PoolKey,
    Route, RouteMeta, RoutePolicy, RouteStep, SnapshotBuilder, SnapshotHandle, StepOutcome,
    StepRequest, Steps, Target, WeirProxy,
};
use support::{get, Served};
use weir_loadtest::echo::EchoServer;

/// Auth phase: 401 without `X-Api-Key: secret`.
struct ApiKey;

#[async_trait]
impl RouteStep for ApiKey {
    fn name(&self) -> &str {
        "api-key"
    }

    fn phase(&self) -> Phase {
        Phase::Auth
    }

    async fn on_request(&self, req: &StepRequest<'_>) -> StepOutcome {
        match req.header().headers.get("x-api-key") {
            Some(key) if key == "secret" => StepOutcome::Continue,
            _ => StepOutcome::Respond(LocalResponse::page(StatusCode::UNAUTHORIZED).with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("ApiKey"),
            )),
        }
    }
}

/// Response phase: marks responses.
struct Stamp;

impl RouteStep for Stamp {
    fn name(&self) -> &str {
        "stamp"
    }

    fn phase(&self) -> Phase {
        Phase::Response
    }

    fn on_response(&self, resp: &mut ResponseHeader) -> proxy_core::pingora::Result<()> {
        resp.insert_header("x-stamp", "weir-test")
    }
}

/// Proxy phase: marks upstream requests.
struct Tag;

impl RouteStep for Tag {
    fn name(&self) -> &str {
        "tag"
    }

    fn phase(&self) -> Phase {
        Phase::Proxy
    }

    fn on_upstream_request(&self, req: &mut RequestHeader) -> proxy_core::pingora::Result<()> {
        req.insert_header("x-tagged", "1")
    }
}

/// A request phase step that answers with a fixed status.
struct Answer(Phase, u16);

#[async_trait]
impl RouteStep for Answer {
    fn name(&self) -> &str {
        "answer"
    }

    fn phase(&self) -> Phase {
        self.0
    }

    async fn on_request(&self, _req: &StepRequest<'_>) -> StepOutcome {
        StepOutcome::Respond(LocalResponse::new(StatusCode::from_u16(self.1).unwrap()))
    }
}

/// What a step saw: client address, scheme, host, path.
type Seen = Arc<Mutex<Vec<(Option<IpAddr>, &'static str, String, String)>>>;

/// Access phase: records what it sees, lets everything through.
struct Record(Seen);

#[async_trait]
impl RouteStep for Record {
    fn name(&self) -> &str {
        "record"
    }

    fn phase(&self) -> Phase {
        Phase::Access
    }

    async fn on_request(&self, req: &StepRequest<'_>) -> StepOutcome {
        self.0.lock().unwrap().push((
            req.client_ip(),
            req.scheme(),
            req.host().to_string(),
            req.path().to_string(),
        ));
        StepOutcome::Continue
    }
}

fn steps(list: Vec<Arc<dyn RouteStep>>) -> Steps {
    Steps::new(list)
}

struct Setup {
    proxy: Served,
    upstream: EchoServer,
    seen: Seen,
}

fn setup() -> Setup {
    let upstream = EchoServer::start("upstream").unwrap();
    let pools = PoolCache::new();
    let pool = pools.get(&PoolKey::from("echo"), &[upstream.addr()]);
    let seen: Seen = Arc::default();
    let policies: Vec<(&str, RoutePolicy)> = vec![
        ("/public", RoutePolicy::default()),
        (
            "/private",
            RoutePolicy {
                steps: steps(vec![
                    Arc::new(Stamp),
                    Arc::new(ApiKey),
                    Arc::new(Tag),
                    Arc::new(Record(seen.clone())),
                ]),
                ..Default::default()
            },
        ),
        (
            // Weir's access lists come before the Auth phase: 403, not 401.
            "/denied",
            RoutePolicy {
                access: Some(AccessList {
                    allow: vec![],
                    deny: vec!["127.0.0.0/8".parse().unwrap()],
                }),
                steps: steps(vec![Arc::new(ApiKey)]),
                ..Default::default()
            },
        ),
        (
            // Phase order, not list order: the Limit step is listed first, Auth runs first.
            "/limited",
            RoutePolicy {
                steps: steps(vec![Arc::new(Answer(Phase::Limit, 429)), Arc::new(ApiKey)]),
                ..Default::default()
            },
        ),
        (
            // Weir's redirect runs before the Rewrite steps.
            "/redirected",
            RoutePolicy {
                https_redirect: Some(HttpsRedirect::default()),
                steps: steps(vec![Arc::new(Answer(Phase::Rewrite, 418))]),
                ..Default::default()
            },
        ),
        (
            "/rewrite",
            RoutePolicy {
                steps: steps(vec![Arc::new(Answer(Phase::Rewrite, 418))]),
                ..Default::default()
            },
        ),
    ];
    let mut b = SnapshotBuilder::new();
    for (path, policy) in policies {
        b.add_route(
            Some("steps.test"),
            Route {
                kind: PathKind::Prefix,
                path: path.into(),
                target: Target::Pool(pool.clone()),
                meta: RouteMeta::default(),
                policy: Arc::new(policy),
                order: Default::default(),
            },
        )
        .unwrap();
    }
    let handle = SnapshotHandle::new();
    handle.store(b.build());
    Setup {
        proxy: Served::start(WeirProxy::new(handle, None)),
        upstream,
        seen,
    }
}

#[test]
fn an_auth_step_answers_before_the_upstream_is_asked() {
    let s = setup();
    let addr = s.proxy.addr();

    let r = get(addr, "steps.test", "/private/x", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some("ApiKey"));
    assert!(r.body.contains("401 Authorization Required"), "{}", r.body);
    assert_eq!(
        r.header("x-stamp"),
        None,
        "local answers skip the response phase"
    );
    let r = get(addr, "steps.test", "/private/x", &["X-Api-Key: wrong"]);
    assert_eq!(r.status, 401);
    assert_eq!(s.upstream.received(), 0, "the upstream got nothing");

    let r = get(addr, "steps.test", "/private/x", &["X-Api-Key: secret"]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(r#""server":"upstream""#), "{}", r.body);
    assert_eq!(r.header("x-stamp"), Some("weir-test"), "response phase");
    assert!(
        r.body.contains(r#""x-tagged":"1""#),
        "proxy phase: {}",
        r.body
    );
    assert_eq!(s.upstream.received(), 1);

    let r = get(addr, "steps.test", "/public/x", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-stamp"), None, "steps are per route");
    assert!(!r.body.contains("x-tagged"), "{}", r.body);
}

#[test]
fn steps_see_the_normalized_request_and_the_client_address() {
    let s = setup();
    let r = get(
        s.proxy.addr(),
        "Steps.Test:80",
        "/private//a/../b?q=1",
        &["X-Api-Key: secret"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            Some(IpAddr::from([127, 0, 0, 1])),
            "http",
            "steps.test".to_string(),
            "/private/b".to_string()
        )]
    );
    assert!(
        r.body.contains(r#""path":"/private//a/../b?q=1""#),
        "{}",
        r.body
    );
}

#[test]
fn phases_run_in_order_whatever_the_list_order() {
    let s = setup();
    let addr = s.proxy.addr();
    assert_eq!(get(addr, "steps.test", "/denied", &[]).status, 403);
    let r = get(addr, "steps.test", "/limited", &[]);
    assert_eq!(r.status, 401, "auth before limit");
    let r = get(addr, "steps.test", "/limited", &["X-Api-Key: secret"]);
    assert_eq!((r.status, r.body.as_str()), (429, ""));
    let r = get(addr, "steps.test", "/redirected/x", &[]);
    assert_eq!(r.status, 308, "Weir's redirect first");
    assert_eq!(
        r.header("location"),
        Some("https://steps.test/redirected/x")
    );
    assert_eq!(get(addr, "steps.test", "/rewrite", &[]).status, 418);
    assert_eq!(s.upstream.received(), 0);
}

#[test]
fn upgrade_requests_go_through_the_same_phases() {
    let s = setup();
    let addr = s.proxy.addr();
    let upgrade = ["Upgrade: websocket", "Sec-WebSocket-Version: 13"];
    let r = get(addr, "steps.test", "/private/chat", &upgrade);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(s.upstream.received(), 0);
    let with_key = [upgrade[0], upgrade[1], "X-Api-Key: secret"];
    // The upstream refuses the upgrade with a plain 200, which is passed on.
    let r = get(addr, "steps.test", "/private/chat", &with_key);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-stamp"), Some("weir-test"));
    assert!(r.body.contains(r#""x-tagged":"1""#), "{}", r.body);
    assert_eq!(s.upstream.received(), 1);
}
