//! The extension point: per-route steps an embedder adds next to Weir's own pieces.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};

use super::Phase;

/// A piece of route policy written by an embedder, run in its [`Phase`] after Weir's own piece
/// of that phase. Weir calls the method of the step's phase only:
///
/// - `Rewrite`, `Access`, `Auth`, `Limit`: [`on_request`](Self::on_request), which may answer
///   the request itself;
/// - `Proxy`: [`on_upstream_request`](Self::on_upstream_request), on the header sent upstream;
/// - `Response`: [`on_response`](Self::on_response), on the upstream's response header.
///
/// One step instance can be shared by many routes (`Arc`); keep per-request state out of it.
#[async_trait]
pub trait RouteStep: Send + Sync + 'static {
    /// The step's name, in logs, and what [`Steps`] compare and hash (with the phase).
    fn name(&self) -> &str;

    /// The phase the step runs in.
    fn phase(&self) -> Phase;

    /// Request phases: look at the request and let it go on, or answer it.
    async fn on_request(&self, _req: &StepRequest<'_>) -> StepOutcome {
        StepOutcome::Continue
    }

    /// Proxy phase: change the request header sent upstream (Weir's forwarded headers are set).
    fn on_upstream_request(&self, _req: &mut RequestHeader) -> pingora::Result<()> {
        Ok(())
    }

    /// Response phase: change the upstream's response header before it goes to the client.
    fn on_response(&self, _resp: &mut ResponseHeader) -> pingora::Result<()> {
        Ok(())
    }
}

/// What a request-phase step sees of the request.
#[derive(Debug, Clone, Copy)]
pub struct StepRequest<'a> {
    header: &'a RequestHeader,
    client_ip: Option<IpAddr>,
    https: bool,
    host: &'a str,
    path: &'a str,
}

impl<'a> StepRequest<'a> {
    /// A request as Weir hands it to steps; for testing steps without a server.
    pub fn new(
        header: &'a RequestHeader,
        client_ip: Option<IpAddr>,
        https: bool,
        host: &'a str,
        path: &'a str,
    ) -> Self {
        StepRequest {
            header,
            client_ip,
            https,
            host,
            path,
        }
    }

    /// The request header as the client sent it.
    pub fn header(&self) -> &'a RequestHeader {
        self.header
    }

    /// The client address as the edge resolved it: the PROXY protocol source or the socket peer,
    /// then trusted forwarded headers (`use-forwarded-headers`). `None` when unknown.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// `https` when the client used TLS (to Weir, or to a trusted proxy in front), else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The request host, normalized: lower case, without port or trailing dot.
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The request path, normalized as for routing (decoded, `.` and `..` resolved, no query).
    pub fn path(&self) -> &'a str {
        self.path
    }
}

/// What a request-phase step decided.
#[derive(Debug, Clone)]
pub enum StepOutcome {
    /// Go on with the next step or phase.
    Continue,
    /// Answer the request with this response; it is not proxied.
    Respond(LocalResponse),
}

/// A response Weir writes itself instead of proxying. `Content-Length` is added; the body is
/// left out for `HEAD` requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// The status.
    pub status: StatusCode,
    /// Headers to send (`Content-Length` is set by Weir).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl LocalResponse {
    /// A response with no header and an empty body.
    pub fn new(status: StatusCode) -> Self {
        LocalResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// The status with Weir's small HTML page, as for its own errors and redirects (an empty
    /// body for a status it has no page for).
    pub fn page(status: StatusCode) -> Self {
        match crate::pages::page(status.as_u16()) {
            Some(page) => LocalResponse::new(status)
                .with_header(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html"),
                )
                .with_body(Bytes::from_static(page.as_bytes())),
            None => LocalResponse::new(status),
        }
    }

    /// Adds a header (after those of the same name).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

/// A step with the phase it declared when added.
type Entry = (Phase, Arc<dyn RouteStep>);

/// The steps of a route, in the order given. Cheap to clone; empty by default with no
/// allocation. Compared and hashed by step names and phases.
#[derive(Clone, Default)]
pub struct Steps {
    /// `None` when empty.
    list: Option<Arc<[Entry]>>,
    /// One bit per phase that has a step.
    phases: u8,
}

impl Steps {
    /// Steps in this order; within a phase they run in this order too.
    pub fn new(steps: impl IntoIterator<Item = Arc<dyn RouteStep>>) -> Self {
        let list: Vec<Entry> = steps.into_iter().map(|s| (s.phase(), s)).collect();
        if list.is_empty() {
            return Steps::default();
        }
        let phases = list.iter().fold(0, |bits, (p, _)| bits | p.bit());
        Steps {
            list: Some(list.into()),
            phases,
        }
    }

    /// Whether there is no step.
    pub fn is_empty(&self) -> bool {
        self.list.is_none()
    }

    /// How many steps there are.
    pub fn len(&self) -> usize {
        self.list.as_deref().map_or(0, <[_]>::len)
    }

    /// Whether some step runs in `phase`.
    pub fn has(&self, phase: Phase) -> bool {
        self.phases & phase.bit() != 0
    }

    /// The steps, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn RouteStep>> {
        self.entries().iter().map(|(_, s)| s)
    }

    /// Whether some step runs in a request phase (rewrite, access, auth, limit).
    pub(crate) fn any_request_step(&self) -> bool {
        const REQUEST: u8 =
            Phase::Rewrite.bit() | Phase::Access.bit() | Phase::Auth.bit() | Phase::Limit.bit();
        self.phases & REQUEST != 0
    }

    /// The steps of one phase, in order.
    pub(crate) fn of(&self, phase: Phase) -> impl Iterator<Item = &dyn RouteStep> {
        let entries = if self.has(phase) { self.entries() } else { &[] };
        entries
            .iter()
            .filter(move |(p, _)| *p == phase)
            .map(|(_, s)| &**s)
    }

    fn entries(&self) -> &[Entry] {
        self.list.as_deref().unwrap_or_default()
    }

    fn keys(&self) -> impl Iterator<Item = (Phase, &str)> {
        self.entries().iter().map(|(p, s)| (*p, s.name()))
    }
}

impl FromIterator<Arc<dyn RouteStep>> for Steps {
    fn from_iter<I: IntoIterator<Item = Arc<dyn RouteStep>>>(iter: I) -> Self {
        Steps::new(iter)
    }
}

impl std::fmt::Debug for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys().map(|(p, n)| format!("{p}:{n}")))
            .finish()
    }
}

impl PartialEq for Steps {
    fn eq(&self, other: &Self) -> bool {
        self.keys().eq(other.keys())
    }
}

impl Eq for Steps {}

impl std::hash::Hash for Steps {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for key in self.keys() {
            key.hash(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str, Phase);

    impl RouteStep for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn phase(&self) -> Phase {
            self.1
        }
    }

    fn steps(list: &[(&'static str, Phase)]) -> Steps {
        list.iter()
            .map(|&(n, p)| Arc::new(Named(n, p)) as Arc<dyn RouteStep>)
            .collect()
    }

    #[test]
    fn empty_steps_are_free_and_equal() {
        let s = Steps::default();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert!(!s.any_request_step());
        assert_eq!(s, steps(&[]));
        assert_eq!(format!("{s:?}"), "[]");
    }

    #[test]
    fn steps_by_phase_in_order() {
        let s = steps(&[
            ("a", Phase::Auth),
            ("h", Phase::Response),
            ("b", Phase::Auth),
        ]);
        assert_eq!(s.len(), 3);
        assert!(s.has(Phase::Auth) && s.has(Phase::Response) && !s.has(Phase::Proxy));
        assert!(s.any_request_step());
        let names: Vec<&str> = s.of(Phase::Auth).map(|s| s.name()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.of(Phase::Limit).count(), 0);
        assert!(!steps(&[("h", Phase::Response)]).any_request_step());
    }

    #[test]
    fn equality_and_hash_follow_names_and_phases() {
        use std::hash::{BuildHasher, RandomState};
        let hasher = RandomState::new();
        let a = steps(&[("x", Phase::Auth), ("y", Phase::Limit)]);
        let b = steps(&[("x", Phase::Auth), ("y", Phase::Limit)]);
        assert_eq!(a, b);
        assert_eq!(hasher.hash_one(&a), hasher.hash_one(&b));
        assert_ne!(a, steps(&[("y", Phase::Limit), ("x", Phase::Auth)]));
        assert_ne!(a, steps(&[("x", Phase::Access), ("y", Phase::Limit)]));
        assert_eq!(format!("{a:?}"), r#"["auth:x", "limit:y"]"#);
    }

    #[test]
    fn pages_and_headers() {
        let r = LocalResponse::page(StatusCode::UNAUTHORIZED).with_header(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("ApiKey"),
        );
        assert_eq!(r.status, 401);
        assert_eq!(r.headers["content-type"], "text/html");
        assert_eq!(r.headers["www-authenticate"], "ApiKey");
        assert!(r.body.starts_with(b"<html>"));
        let bare = LocalResponse::page(StatusCode::IM_A_TEAPOT);
        assert!(bare.headers.is_empty() && bare.body.is_empty());
    }
}
