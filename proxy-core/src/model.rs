//! The route model: what a snapshot is built from. No Kubernetes types here.

use crate::policy::RoutePolicy;
use crate::upstream::Pool;
use std::fmt;
use std::sync::Arc;

/// How a rule's path is compared with the request path (Kubernetes `pathType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// The whole path, case-sensitive.
    Exact,
    /// Element-wise prefix split on `/`; a trailing slash in the rule is ignored.
    Prefix,
    /// ingress-nginx's interpretation of `ImplementationSpecific`: a plain string prefix.
    ImplementationSpecific,
}

impl PathKind {
    /// Precedence among rules of equal length: lower wins.
    pub(crate) fn rank(self) -> u8 {
        match self {
            PathKind::Exact => 0,
            PathKind::Prefix => 1,
            PathKind::ImplementationSpecific => 2,
        }
    }

    /// The Kubernetes spelling of this path type.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a route came from; used for metric labels, logs and conflict resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RouteMeta {
    /// Namespace of the source object (Ingress), empty when not from Kubernetes.
    pub namespace: Arc<str>,
    /// Name of the source object (Ingress).
    pub ingress: Arc<str>,
    /// Name of the Service the route sends to.
    pub service: Arc<str>,
    /// The rule's path as written, used as the `path` metric label.
    pub path: Arc<str>,
    /// For an embedder's own canary routes: the `canary` metric label is then the route's
    /// Service. (Canary Ingresses use [`RoutePolicy::canary`](crate::RoutePolicy::canary).)
    pub canary: bool,
}

/// Where a matched request goes.
#[derive(Clone)]
pub enum Target {
    /// Proxy to an endpoint of this pool (503 when it has no endpoints).
    Pool(Arc<Pool>),
    /// The built-in default backend: a small 404 page.
    NotFound,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pool(p) => write!(f, "Pool({})", p.key()),
            Target::NotFound => f.write_str("NotFound"),
        }
    }
}

/// A routing rule: one path of one host.
#[derive(Debug, Clone)]
pub struct Route {
    /// How the path is compared.
    pub kind: PathKind,
    /// The path as written in the rule (must start with `/`).
    pub path: String,
    /// Where matched requests go.
    pub target: Target,
    /// Labels and provenance.
    pub meta: RouteMeta,
    /// Traffic policy.
    pub policy: Arc<RoutePolicy>,
    /// Conflict order: when two rules have the same host, kind and path, the lower value wins
    /// (Kubernetes sync passes the Ingress creation time so the oldest Ingress wins).
    pub order: RouteOrder,
}

/// Order used to resolve conflicting rules; the lower wins: the earlier `created`, and at equal
/// `created` the lexically *greater* `name` (ingress-nginx sorts Ingresses that way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RouteOrder {
    /// Creation time of the source object, seconds since the Unix epoch (or any monotonic number).
    pub created: i64,
    /// Tie-breaker, e.g. `namespace/name`.
    pub name: String,
}

impl Ord for RouteOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.created
            .cmp(&other.created)
            .then_with(|| other.name.cmp(&self.name))
    }
}

impl PartialOrd for RouteOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The route used when no host and path rule matches.
#[derive(Debug, Clone)]
pub struct DefaultRoute {
    /// Where unmatched requests go.
    pub target: Target,
    /// Labels and provenance.
    pub meta: RouteMeta,
    /// Traffic policy.
    pub policy: Arc<RoutePolicy>,
}

impl Default for DefaultRoute {
    fn default() -> Self {
        DefaultRoute {
            target: Target::NotFound,
            meta: RouteMeta::default(),
            policy: Arc::new(RoutePolicy::default()),
        }
    }
}

/// Listener-wide options, part of the snapshot so they change without a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ServerPolicy {
    /// Expect a PROXY protocol (v1 or v2) header on every connection (`use-proxy-protocol`).
    pub proxy_protocol: bool,
    /// How the client address is found (`use-forwarded-headers`, `proxy-real-ip-cidr`, ...).
    pub client_ip: crate::client_ip::ClientIpConfig,
    /// The `Strict-Transport-Security` value for HTTPS responses of TLS hosts; `None` = off.
    pub hsts: Option<String>,
    /// The HTTPS port, shown in redirects when `port_in_redirects` and not 443.
    pub https_port: u16,
    /// `use-port-in-redirects`: show the HTTPS port in redirect URLs (default off, as behind a
    /// load balancer the client-facing port is 443).
    pub port_in_redirects: bool,
    /// Connection lifecycle limits (`keep-alive`, `client-header-timeout`, ...).
    pub conn: crate::edge::ConnLimits,
    /// `http-redirect-code`: the status of the HTTPS and `from-to-www-redirect` redirects
    /// (`None`: 308).
    pub http_redirect_code: Option<http::StatusCode>,
    /// Compression of upstream responses (`use-gzip`, `enable-brotli`).
    pub compression: crate::policy::Compression,
    /// The access log's format and filters; `None`: no access log (`disable-access-log`).
    pub access_log: Option<crate::access_log::AccessLogConfig>,
    /// Statuses of requests refused by the limits (`limit-req-status-code`,
    /// `limit-conn-status-code`).
    pub limit_status: crate::policy::LimitStatus,
}
