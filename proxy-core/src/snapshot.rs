//! One immutable [`Snapshot`] of the whole routing configuration, built by [`SnapshotBuilder`] and
//! published through a [`SnapshotHandle`] (one `ArcSwap`): requests load it once and keep it.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::SeriesCache;
use crate::model::{DefaultRoute, PathKind, Route, RouteMeta, RouteOrder, ServerPolicy, Target};
use crate::policy::RoutePolicy;
use crate::routing::{
    ascii_lowercase, prefix_key, valid_rule_host, RouteId, RouteTable, VirtualHost,
};
use crate::tls::CertIndex;
use crate::upstream::{Pool, PoolKey};

/// A rule that cannot be part of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The host is not a lowercase DNS name with at most one leading `*.` label.
    #[error(
        "invalid host {0:?}: must be a DNS name, optionally with a single leading \"*.\" label"
    )]
    InvalidHost(String),
    /// The host is in regex mode and the path is not a regular expression Weir can compile
    /// (the `regex` crate: no lookaround, no backreferences).
    #[error("path {path:?} is not a regular expression Weir supports: {reason}")]
    InvalidRegex {
        /// The path as given.
        path: String,
        /// Why it does not compile.
        reason: String,
    },
    /// The path does not start with `/` or contains characters not allowed in a path.
    #[error("invalid {kind} path {path:?}: must start with \"/\" and contain no spaces or control characters")]
    InvalidPath {
        /// The path type.
        kind: PathKind,
        /// The path as given.
        path: String,
    },
}

/// What happened to a rule given to [`SnapshotBuilder::add_route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// The rule is in the table.
    Added,
    /// The rule replaced an existing one for the same host, kind and path (which had a higher order).
    Replaced(RouteMeta),
    /// An existing rule for the same host, kind and path has a lower order and stays.
    Shadowed(RouteMeta),
}

/// Check a rule's host (`None` = any host) and path before adding it.
pub fn validate_rule(host: Option<&str>, kind: PathKind, path: &str) -> Result<(), BuildError> {
    if let Some(h) = host {
        if !valid_rule_host(h) {
            return Err(BuildError::InvalidHost(h.to_string()));
        }
    }
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(BuildError::InvalidPath {
            kind,
            path: path.to_string(),
        });
    }
    Ok(())
}

/// Builder maps: filled once per rebuild and never exposed, so a fast hasher is enough.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

#[derive(Default, Clone)]
struct HostEntry {
    routes: HashMap<(PathKind, String), Route>,
    /// Regex mode: paths are case-insensitive regexes anchored at the start.
    regex: bool,
    fallback: Option<(RouteOrder, DefaultRoute)>,
}

/// Collects routes and produces an indexed, immutable [`Snapshot`].
#[derive(Default)]
pub struct SnapshotBuilder {
    /// By lower-case host (`""`: any host); ordered by name only when built.
    hosts: HashMap<String, HostEntry>,
    default: Option<DefaultRoute>,
    tls: CertIndex,
    server: ServerPolicy,
    /// `(alias, host)`: extra names served by a host's rules (`server-alias`).
    aliases: Vec<(String, String)>,
}

impl SnapshotBuilder {
    /// An empty builder: every request would get the built-in 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a rule for `host` (`None` = any host). Same host, kind and path: the lower
    /// [`RouteOrder`] wins.
    pub fn add_route(
        &mut self,
        host: Option<&str>,
        route: Route,
    ) -> Result<AddOutcome, BuildError> {
        let host = host.map(ascii_lowercase);
        validate_rule(host.as_deref(), route.kind, &route.path)?;
        let entry = self.host_entry(host.as_deref().unwrap_or_default());
        if entry.regex {
            if let Err(e) = crate::policy::path_regex(&route.path) {
                return Err(BuildError::InvalidRegex {
                    path: route.path,
                    reason: e.to_string(),
                });
            }
        }
        let key = match route.kind {
            PathKind::Prefix => prefix_key(&route.path).to_string(),
            _ => route.path.clone(),
        };
        match entry.routes.entry((route.kind, key)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let existing = e.get_mut();
                if existing.order <= route.order {
                    Ok(AddOutcome::Shadowed(existing.meta.clone()))
                } else {
                    let old = std::mem::replace(existing, route);
                    Ok(AddOutcome::Replaced(old.meta))
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(route);
                Ok(AddOutcome::Added)
            }
        }
    }

    /// The rule added for `host` (`None` = any host) with this kind and exactly this path, to
    /// change it before the build (a canary Ingress adds a backend to an existing rule).
    pub fn route_mut(
        &mut self,
        host: Option<&str>,
        kind: PathKind,
        path: &str,
    ) -> Option<&mut Route> {
        let host = host.map(ascii_lowercase);
        let key = match kind {
            PathKind::Prefix => prefix_key(path),
            _ => path,
        };
        self.hosts
            .get_mut(host.as_deref().unwrap_or_default())?
            .routes
            .get_mut(&(kind, key.to_string()))
            .filter(|r| r.path == path)
    }

    /// The rules added so far for `host` (`None` = any host), to change them before the build.
    pub fn routes_mut(&mut self, host: Option<&str>) -> impl Iterator<Item = &mut Route> {
        let host = host.map(ascii_lowercase);
        self.hosts
            .get_mut(host.as_deref().unwrap_or_default())
            .into_iter()
            .flat_map(|e| e.routes.values_mut())
    }

    /// Put `host` (`None` = any host) in regex mode, as ingress-nginx does for a server where an
    /// Ingress sets `use-regex` or `rewrite-target`: every path of the host is matched as a
    /// case-insensitive regex anchored at the start, longest path first. Call it before adding
    /// the host's routes so that [`SnapshotBuilder::add_route`] refuses paths that do not compile.
    pub fn regex_host(&mut self, host: Option<&str>) -> Result<(), BuildError> {
        let host = host.map(ascii_lowercase);
        validate_rule(host.as_deref(), PathKind::Prefix, "/")?;
        self.host_entry(host.as_deref().unwrap_or_default()).regex = true;
        Ok(())
    }

    /// Serve `alias` with the rules, fallback and regex mode of `host` (ingress-nginx's
    /// `server-alias`). Ignored when `alias` has rules or a fallback of its own, or is already an
    /// alias; applied when the snapshot is built, so the order of calls does not matter.
    pub fn alias_host(&mut self, alias: &str, host: &str) -> Result<(), BuildError> {
        let alias = ascii_lowercase(alias);
        validate_rule(Some(&alias), PathKind::Prefix, "/")?;
        let host = ascii_lowercase(host);
        if !self.aliases.iter().any(|(a, _)| *a == alias) {
            self.aliases.push((alias.into_owned(), host.into_owned()));
        }
        Ok(())
    }

    /// Where requests for `host` go when none of its paths match (an Ingress's
    /// `spec.defaultBackend`). Lower order wins.
    pub fn host_default(
        &mut self,
        host: Option<&str>,
        route: DefaultRoute,
        order: RouteOrder,
    ) -> Result<(), BuildError> {
        let host = host.map(ascii_lowercase);
        validate_rule(host.as_deref(), PathKind::Prefix, "/")?;
        let entry = self.host_entry(host.as_deref().unwrap_or_default());
        match &entry.fallback {
            Some((existing, _)) if *existing <= order => {}
            _ => entry.fallback = Some((order, route)),
        }
        Ok(())
    }

    /// Make sure `host` has a virtual host even without rules (its requests then get its
    /// fallback or the default route instead of falling to the any-host rules).
    pub fn declare_host(&mut self, host: &str) -> Result<(), BuildError> {
        let host = ascii_lowercase(host);
        validate_rule(Some(&host), PathKind::Prefix, "/")?;
        self.host_entry(&host);
        Ok(())
    }

    /// The entry of a (lower-case) host, created when missing; `""` is the any-host server.
    /// The name is only copied when the host is new.
    fn host_entry(&mut self, host: &str) -> &mut HostEntry {
        if !self.hosts.contains_key(host) {
            self.hosts.insert(host.to_string(), HostEntry::default());
        }
        self.hosts
            .get_mut(host)
            .expect("the host entry exists (inserted above)")
    }

    /// Where requests go that match no host or path (default: the built-in 404 page).
    pub fn default_route(&mut self, route: DefaultRoute) {
        self.default = Some(route);
    }

    /// Listener-wide options.
    pub fn server(&mut self, server: ServerPolicy) {
        self.server = server;
    }

    /// The certificates served on the TLS listener.
    pub fn tls(&mut self, certs: CertIndex) {
        self.tls = certs;
    }

    /// Index everything into a snapshot.
    pub fn build(mut self) -> Snapshot {
        for (alias, host) in std::mem::take(&mut self.aliases) {
            if self.hosts.contains_key(&alias) {
                continue;
            }
            if let Some(entry) = self.hosts.get(&host).cloned() {
                self.hosts.insert(alias, entry);
            }
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut pools = Pools::new();
        let mut hosts: Vec<(String, HostEntry)> = self.hosts.into_iter().collect();
        hosts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let vhosts: Vec<VirtualHost> = hosts
            .into_iter()
            .map(|(name, entry)| {
                let mut routes: Vec<Route> = entry.routes.into_values().collect();
                routes.sort_by(|a, b| {
                    b.path
                        .len()
                        .cmp(&a.path.len())
                        .then(a.kind.rank().cmp(&b.kind.rank()))
                        .then(a.path.cmp(&b.path))
                });
                let name = if name.is_empty() {
                    "_".to_string()
                } else {
                    name
                };
                name.hash(&mut hasher);
                entry.regex.hash(&mut hasher);
                for r in &routes {
                    (r.kind, &r.path, &r.meta, &r.policy).hash(&mut hasher);
                    hash_target(&r.target, &mut hasher, &mut pools);
                    hash_error_backend(&r.policy, &mut hasher, &mut pools);
                }
                let fallback = entry.fallback.map(|(_, r)| r);
                if let Some(f) = &fallback {
                    hash_default(f, &mut hasher, &mut pools);
                }
                if entry.regex {
                    VirtualHost::with_regex(name, routes, fallback)
                } else {
                    VirtualHost::new(name, routes, fallback)
                }
            })
            .collect();
        let default = self.default.unwrap_or_default();
        hash_default(&default, &mut hasher, &mut pools);
        for (key, pool) in &pools {
            (key, pool.endpoints()).hash(&mut hasher);
        }
        let mut certs: Vec<(String, i64, Vec<String>)> = self
            .tls
            .hosts()
            .map(|(h, c)| (h, c.not_after(), c.names().to_vec()))
            .collect();
        certs.sort();
        certs.hash(&mut hasher);
        self.server.hash(&mut hasher);
        // One metrics cache per rule, then one for the virtual host's fallback, per virtual
        // host; the last one is the default route's.
        let mut series_start = Vec::with_capacity(vhosts.len() + 1);
        let mut count = 0;
        for vh in &vhosts {
            series_start.push(count);
            count += vh.routes.len() as u32 + 1;
        }
        series_start.push(count);
        Snapshot {
            table: RouteTable::new(vhosts, default),
            hash: hasher.finish(),
            tls: self.tls,
            server: self.server,
            series: (0..=count).map(|_| SeriesCache::default()).collect(),
            series_start: series_start.into(),
        }
    }
}

/// Routes name their pool by key; each pool's endpoints are hashed once, in `build`.
fn hash_target(t: &Target, h: &mut impl Hasher, pools: &mut Pools) {
    match t {
        Target::Pool(p) => {
            p.key().hash(h);
            pools.entry(p.key().clone()).or_insert_with(|| p.clone());
        }
        Target::NotFound => 0u8.hash(h),
    }
}

/// The distinct pools of a snapshot being built, by key.
type Pools = BTreeMap<PoolKey, Arc<Pool>>;

fn hash_default(d: &DefaultRoute, h: &mut impl Hasher, pools: &mut Pools) {
    (&d.meta, &d.policy).hash(h);
    hash_target(&d.target, h, pools);
    hash_error_backend(&d.policy, h, pools);
}

/// A custom-error backend (and a canary's) is a pool of the snapshot like a route's.
fn hash_error_backend(p: &RoutePolicy, h: &mut impl Hasher, pools: &mut Pools) {
    if let Some(e) = &p.errors {
        hash_target(&e.backend, h, pools);
    }
    if let Some(c) = &p.canary {
        hash_target(&c.target, h, pools);
    }
}

/// Everything a request needs to know about where it goes, resolved from a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The virtual host's name (`_` for the any-host server and the default route).
    pub host: &'a str,
    /// Where to send the request.
    pub target: &'a Target,
    /// Labels and provenance.
    pub meta: &'a RouteMeta,
    /// Traffic policy.
    pub policy: &'a Arc<RoutePolicy>,
    /// The route's path regex, when its host is in regex mode (for rewrite captures).
    pub regex: Option<&'a regex::Regex>,
}

/// An immutable routing configuration.
#[derive(Debug)]
pub struct Snapshot {
    table: RouteTable,
    hash: u64,
    tls: CertIndex,
    server: ServerPolicy,
    /// Request metric series by route (see [`Snapshot::series`]): runtime state that lives as
    /// long as the snapshot, kept out of the route model.
    series: Box<[SeriesCache]>,
    /// Where each virtual host's caches start in `series`, plus the end of the last one.
    series_start: Box<[u32]>,
}

impl Default for Snapshot {
    /// An empty snapshot: every request gets the built-in 404.
    fn default() -> Self {
        SnapshotBuilder::new().build()
    }
}

impl Snapshot {
    /// The route table.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// Listener-wide options.
    pub fn server(&self) -> &ServerPolicy {
        &self.server
    }

    /// The certificates of the TLS listener.
    pub fn tls(&self) -> &CertIndex {
        &self.tls
    }

    /// A fingerprint of the routes and endpoints (exported as `nginx_ingress_controller_config_hash`).
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Resolve a normalized host and path to a route id (cheap to keep in a request context).
    pub fn find(&self, host: &str, path: &str) -> RouteId {
        self.table.find(host, path)
    }

    /// The route behind an id produced by [`Snapshot::find`] on this snapshot.
    pub fn resolve(&self, id: RouteId) -> Resolved<'_> {
        match id {
            RouteId::Rule { vhost, route } => {
                let vh = &self.table.vhosts[vhost as usize];
                let r = &vh.routes[route as usize];
                Resolved {
                    host: &vh.name,
                    target: &r.target,
                    meta: &r.meta,
                    policy: &r.policy,
                    regex: vh.regex(route),
                }
            }
            RouteId::HostDefault { vhost } => {
                let vh = &self.table.vhosts[vhost as usize];
                let d = vh.fallback.as_ref().unwrap_or(&self.table.default);
                Resolved {
                    host: &vh.name,
                    target: &d.target,
                    meta: &d.meta,
                    policy: &d.policy,
                    regex: None,
                }
            }
            RouteId::Default => {
                let d = &self.table.default;
                Resolved {
                    host: "_",
                    target: &d.target,
                    meta: &d.meta,
                    policy: &d.policy,
                    regex: None,
                }
            }
        }
    }

    /// The metric series cache of a route: one per rule, per virtual host fallback (a
    /// `DefaultRoute` shared by several hosts gets one per host, so each has its `host` label),
    /// and one for the default route.
    pub(crate) fn series(&self, id: RouteId) -> &SeriesCache {
        let index = match id {
            RouteId::Rule { vhost, route } => self.series_start[vhost as usize] + route,
            RouteId::HostDefault { vhost } => self.series_start[vhost as usize + 1] - 1,
            RouteId::Default => self.series_start[self.series_start.len() - 1],
        };
        &self.series[index as usize]
    }

    /// Every pool referenced by this snapshot.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        fn with_errors<'a>(
            target: &'a Target,
            policy: &'a RoutePolicy,
        ) -> impl Iterator<Item = &'a Target> {
            std::iter::once(target)
                .chain(policy.errors.as_ref().map(|e| &e.backend))
                .chain(policy.canary.as_ref().map(|c| &c.target))
        }
        let rules = self.table.vhosts.iter().flat_map(|vh| {
            vh.routes
                .iter()
                .flat_map(|r| with_errors(&r.target, &r.policy))
                .chain(
                    vh.fallback
                        .iter()
                        .flat_map(|f| with_errors(&f.target, &f.policy)),
                )
        });
        let default = &self.table.default;
        rules
            .chain(with_errors(&default.target, &default.policy))
            .filter_map(|t| match t {
                Target::Pool(p) => Some(p),
                Target::NotFound => None,
            })
    }

    /// Number of host/path rules.
    pub fn route_count(&self) -> usize {
        self.table.vhosts.iter().map(|vh| vh.routes.len()).sum()
    }
}

/// Shared handle to the current snapshot. Cloning is cheap; all clones see the same snapshot.
#[derive(Clone)]
pub struct SnapshotHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    current: ArcSwap<Snapshot>,
    ready: AtomicBool,
}

impl Default for SnapshotHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotHandle {
    /// A handle holding an empty snapshot; [`SnapshotHandle::is_ready`] is false until the first
    /// [`SnapshotHandle::store`].
    pub fn new() -> Self {
        SnapshotHandle {
            inner: Arc::new(HandleInner {
                current: ArcSwap::from_pointee(Snapshot::default()),
                ready: AtomicBool::new(false),
            }),
        }
    }

    /// The current snapshot. Load it once per request and keep the `Arc`.
    pub fn load(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// Publish a new snapshot; requests already running keep the one they loaded.
    pub fn store(&self, snapshot: Snapshot) {
        drop(self.replace(snapshot));
    }

    /// Publish a new snapshot and return the previous one, so that the caller chooses where the
    /// (possibly large) old snapshot is freed.
    pub fn replace(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let old = self.inner.current.swap(Arc::new(snapshot));
        self.inner.ready.store(true, Ordering::Release);
        old
    }

    /// Whether a snapshot has been stored since the handle was created.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for SnapshotHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotHandle")
    }
}
