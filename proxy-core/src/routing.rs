//! The pure matcher: host and path lookup over an indexed route table ([`RouteTable`]). No I/O.

use std::borrow::Cow;
/// Route and host indexes: the keys come from configuration, lookups from requests; aHash with
/// a random seed is several times faster than SipHash on short keys and still seeded per process.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

use crate::model::{DefaultRoute, PathKind, Route};

/// Identifies the route a request resolved to inside one [`RouteTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    /// A host/path rule: index of the virtual host and of the route in it.
    Rule {
        /// Virtual host index.
        vhost: u32,
        /// Route index within the virtual host.
        route: u32,
    },
    /// A virtual host matched but none of its paths did: its own default if it has one,
    /// else the table-wide default.
    HostDefault {
        /// Virtual host index.
        vhost: u32,
    },
    /// The table-wide default route (nothing matched).
    Default,
}

/// All rules of one host (or of the "any host" server), indexed for lookup.
#[derive(Debug, Default)]
pub struct VirtualHost {
    pub(crate) name: String,
    pub(crate) routes: Vec<Route>,
    pub(crate) fallback: Option<DefaultRoute>,
    exact: HashMap<Box<str>, u32>,
    prefix: HashMap<Box<str>, u32>,
    implementation: HashMap<Box<str>, u32>,
    /// Distinct lengths of `ImplementationSpecific` paths, longest first.
    implementation_lengths: Vec<usize>,
    /// Regex mode (`use-regex` or `rewrite-target` on the host): every path is matched as
    /// nginx's `location ~* "^<path>"`, the first in route order (longest path first) wins.
    regex: Option<Box<RegexPaths>>,
}

/// The paths of a host in regex mode, compiled once per snapshot.
#[derive(Debug)]
pub(crate) struct RegexPaths {
    /// All paths, one pattern per route in route order: one scan per request.
    set: regex::RegexSet,
    /// Each route's own regex, for the captures of a rewrite.
    each: Vec<regex::Regex>,
}

impl RegexPaths {
    /// Compile the paths (one per route, in route order). A path that does not compile never
    /// matches (callers check paths with [`crate::policy::path_regex`] first).
    pub(crate) fn new(routes: &[Route]) -> Self {
        let never = || regex::Regex::new(r"[^\s\S]").expect("a valid pattern");
        let each: Vec<regex::Regex> = routes
            .iter()
            .map(|r| {
                crate::policy::path_regex(&r.path).unwrap_or_else(|e| {
                    tracing::warn!(path = %r.path, error = %e, "path regex does not compile; it never matches");
                    never()
                })
            })
            .collect();
        let set = regex::RegexSet::new(each.iter().map(|r| r.as_str()))
            .unwrap_or_else(|_| regex::RegexSet::empty());
        RegexPaths { set, each }
    }
}

impl VirtualHost {
    /// Build the indexes. `routes` must already be deduplicated (one route per kind and key).
    pub(crate) fn new(name: String, routes: Vec<Route>, fallback: Option<DefaultRoute>) -> Self {
        let mut vh = VirtualHost {
            name,
            routes,
            fallback,
            ..Default::default()
        };
        vh.build_indexes();
        vh
    }

    /// Build a host in regex mode: its paths are regexes, tried longest first.
    pub(crate) fn with_regex(
        name: String,
        routes: Vec<Route>,
        fallback: Option<DefaultRoute>,
    ) -> Self {
        let regex = Some(Box::new(RegexPaths::new(&routes)));
        VirtualHost {
            name,
            routes,
            fallback,
            regex,
            ..Default::default()
        }
    }

    /// The path regex of a route, when the host is in regex mode.
    pub(crate) fn regex(&self, route: u32) -> Option<&regex::Regex> {
        self.regex.as_ref().and_then(|r| r.each.get(route as usize))
    }

    /// Whether the host's paths are regexes.
    pub fn is_regex(&self) -> bool {
        self.regex.is_some()
    }

    fn build_indexes(&mut self) {
        let vh = self;
        for (i, r) in vh.routes.iter().enumerate() {
            let i = i as u32;
            match r.kind {
                PathKind::Exact => {
                    vh.exact.insert(r.path.as_str().into(), i);
                }
                PathKind::Prefix => {
                    vh.prefix.insert(prefix_key(&r.path).into(), i);
                }
                PathKind::ImplementationSpecific => {
                    vh.implementation.insert(r.path.as_str().into(), i);
                    vh.implementation_lengths.push(r.path.len());
                }
            }
        }
        vh.implementation_lengths.sort_unstable_by(|a, b| b.cmp(a));
        vh.implementation_lengths.dedup();
    }

    /// The host name as configured (`*.foo.com` for wildcards, `_` for rules without a host).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules of this host.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Best matching route for a normalized request path.
    pub fn find(&self, path: &str) -> Option<u32> {
        if let Some(regex) = &self.regex {
            return regex.set.matches(path).iter().next().map(|i| i as u32);
        }
        if let Some(&i) = self.exact.get(path) {
            // Nothing can be longer than the whole request path, and Exact wins ties.
            return Some(i);
        }
        let trimmed = path.trim_end_matches('/');
        let mut prefixes = PrefixCandidates::new(trimmed, !self.prefix.is_empty());
        let mut lengths = self
            .implementation_lengths
            .iter()
            .copied()
            .filter(|&l| l <= path.len())
            .peekable();
        let mut next_prefix = prefixes.next();
        loop {
            let take_prefix = match (next_prefix, lengths.peek()) {
                (None, None) => return None,
                (Some((plen, _)), Some(&ilen)) => plen >= ilen,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if let (true, Some((_, key))) = (take_prefix, next_prefix) {
                if let Some(&i) = self.prefix.get(key) {
                    return Some(i);
                }
                next_prefix = prefixes.next();
            } else if let Some(len) = lengths.next() {
                if let Some(&i) = path.get(..len).and_then(|k| self.implementation.get(k)) {
                    return Some(i);
                }
            }
        }
    }
}

/// The key a `Prefix` rule is indexed under: trailing slashes removed, `/` for the root.
pub(crate) fn prefix_key(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        "/"
    } else {
        t
    }
}

/// Yields the element-wise prefixes of a path (trailing slashes already removed), longest first,
/// as `(specificity, key)`; the root `/` comes last.
struct PrefixCandidates<'a> {
    path: &'a str,
    end: Option<usize>,
    root_done: bool,
}

impl<'a> PrefixCandidates<'a> {
    fn new(trimmed: &'a str, enabled: bool) -> Self {
        PrefixCandidates {
            path: trimmed,
            end: if enabled && !trimmed.is_empty() {
                Some(trimmed.len())
            } else {
                None
            },
            root_done: !enabled,
        }
    }
}

impl<'a> Iterator for PrefixCandidates<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(end) = self.end {
            let key = &self.path[..end];
            self.end = key.rfind('/').filter(|&p| p > 0);
            if end > 0 {
                return Some((end, key));
            }
        }
        if self.root_done {
            None
        } else {
            self.root_done = true;
            Some((1, "/"))
        }
    }
}

/// Host-indexed table of virtual hosts plus the default route.
///
/// Semantics follow Kubernetes `networking.k8s.io/v1` and ingress-nginx:
/// - hosts: exact names beat a single-label leading wildcard (`*.foo.com` matches `a.foo.com`, not
///   `a.b.foo.com` nor `foo.com`), which beats rules without a host;
/// - paths: the longest matching rule wins; at equal length `Exact` beats `Prefix` beats
///   `ImplementationSpecific` (a plain string prefix, as in ingress-nginx);
/// - a host whose paths do not match falls back to its own default (if any), then to the table's
///   default route. Hosts never fall through to rules of other hosts.
///
/// Lookup cost is independent of the number of hosts (hash indexes) and of the number of paths per
/// host (one hash probe per path segment, plus one per distinct `ImplementationSpecific` length).
#[derive(Debug, Default)]
pub struct RouteTable {
    pub(crate) vhosts: Vec<VirtualHost>,
    exact_hosts: HashMap<Box<str>, u32>,
    /// Keyed by the parent domain: `*.foo.com` is stored as `foo.com`.
    wildcard_hosts: HashMap<Box<str>, u32>,
    any_host: Option<u32>,
    pub(crate) default: DefaultRoute,
}

impl RouteTable {
    /// Index the virtual hosts. Names are lowercase; `*.x` are wildcards, `_` or empty is any host.
    pub(crate) fn new(vhosts: Vec<VirtualHost>, default: DefaultRoute) -> Self {
        let mut t = RouteTable {
            default,
            ..Default::default()
        };
        for (i, vh) in vhosts.iter().enumerate() {
            let i = i as u32;
            if vh.name.is_empty() || vh.name == "_" {
                t.any_host = Some(i);
            } else if let Some(parent) = vh.name.strip_prefix("*.") {
                t.wildcard_hosts.insert(parent.into(), i);
            } else {
                t.exact_hosts.insert(vh.name.as_str().into(), i);
            }
        }
        t.vhosts = vhosts;
        t
    }

    /// The virtual host serving a normalized request host, if any.
    pub fn find_host(&self, host: &str) -> Option<u32> {
        if let Some(&i) = self.exact_hosts.get(host) {
            return Some(i);
        }
        if let Some((label, parent)) = host.split_once('.') {
            if !label.is_empty() && !parent.is_empty() {
                if let Some(&i) = self.wildcard_hosts.get(parent) {
                    return Some(i);
                }
            }
        }
        self.any_host
    }

    /// Resolve a normalized host and path.
    pub fn find(&self, host: &str, path: &str) -> RouteId {
        match self.find_host(host) {
            Some(v) => {
                let vh = &self.vhosts[v as usize];
                match vh.find(path) {
                    Some(r) => RouteId::Rule { vhost: v, route: r },
                    None => RouteId::HostDefault { vhost: v },
                }
            }
            None => RouteId::Default,
        }
    }

    /// The virtual hosts, in build order.
    pub fn vhosts(&self) -> &[VirtualHost] {
        &self.vhosts
    }
}

/// Normalize a request host: lowercase, without port and trailing dot. Borrows when already normal.
///
/// Normalizing twice changes nothing: every trailing `:PORT` and `.` is removed, so
/// `foo.com..:80` and `foo.com:80.` are `foo.com` (not `foo.com.` nor `foo.com:80`, which a second
/// pass would change again). An IPv6 literal keeps its brackets and loses what follows `]` (one
/// without `]` only loses trailing dots).
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = match raw.strip_prefix('[') {
        Some(rest) => match rest.find(']') {
            Some(end) => &raw[..end + 2],
            None => raw.trim_end_matches('.'),
        },
        None => strip_ports_and_dots(raw),
    };
    ascii_lowercase(host)
}

/// `raw` without its trailing `:PORT` (digits, possibly none) and `.` suffixes, in any order and
/// number. Linear: each round removes what it looked at, except the last round.
fn strip_ports_and_dots(raw: &str) -> &str {
    let mut host = raw;
    loop {
        let without_dots = host.trim_end_matches('.');
        if without_dots.len() < host.len() {
            host = without_dots;
            continue;
        }
        match host
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .strip_suffix(':')
        {
            Some(without_port) => host = without_port,
            None => return host,
        }
    }
}

/// `s` in ASCII lower case, borrowed when it already is (host names usually are).
pub(crate) fn ascii_lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// A request path that cannot be normalized (it climbs above the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request path escapes the root")]
pub struct BadPath;

/// Normalize a request path as nginx does for location matching: decode `%XX`, merge repeated
/// slashes and resolve `.` and `..` segments. Borrows when the path is already normal.
/// The upstream still receives the original request URI.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    if raw.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    let needs_work = !raw.starts_with('/') || !already_normal(raw.as_bytes());
    if !needs_work {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_decode(raw);
    let mut out: Vec<&str> = Vec::new();
    let trailing_slash = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || decoded == "."
        || decoded == "..";
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(BadPath);
                }
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len() + 1);
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing_slash {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

/// One pass: no `%`, no empty segment (`//`), no `.` or `..` segment.
fn already_normal(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => return false,
            b'/' => {
                let rest = &b[i + 1..];
                let seg_end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
                let seg = &rest[..seg_end];
                // An empty segment is only fine at the very end (a trailing slash).
                if (seg.is_empty() && seg_end < rest.len()) || seg == b"." || seg == b".." {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

fn percent_decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether `host` is a valid rule host: a lowercase DNS name, optionally with one leading `*.` label.
pub fn valid_rule_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.len() > 253 || name.contains('*') {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `routing` fuzz target: one pass left a port or a dot that a second pass
    /// removed (`example.com..:80` gave `example.com.`).
    #[test]
    fn normalize_host_is_idempotent() {
        for (raw, want) in [
            ("example.com..:80", "example.com"),
            ("Example.COM:80.", "example.com"),
            ("a:1:2", "a"),
            ("a::", "a"),
            ("a.:1.:2.", "a"),
            ("...", ""),
            ("[::1", "[::1"),
            ("[::1.:8", "[::1.:8"),
            ("[::1..", "[::1"),
            ("[::1]:80.", "[::1]"),
            ("foo.com:8080", "foo.com"),
            ("foo:bar", "foo:bar"),
        ] {
            let once = normalize_host(raw);
            assert_eq!(once, want, "normalize_host({raw:?})");
            assert_eq!(normalize_host(&once), once, "normalize_host({once:?})");
        }
        assert!(matches!(
            normalize_host("foo.com:80"),
            Cow::Borrowed("foo.com")
        ));
    }

    #[test]
    fn normalize_host_is_linear_on_long_suffixes() {
        let raw = ":1.".repeat(100_000);
        let start = std::time::Instant::now();
        assert_eq!(normalize_host(&raw), "");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
