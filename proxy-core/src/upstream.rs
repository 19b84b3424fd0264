//! Upstream pools: endpoint sets pushed from outside (Kubernetes, files, code), selected round robin
//! with `pingora-load-balancing`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::{Backend, Backends, LoadBalancer};

/// Identity of a pool, e.g. `namespace/service:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey(pub Arc<str>);

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PoolKey {
    fn from(s: &str) -> Self {
        PoolKey(s.into())
    }
}

/// A fixed endpoint set, handed to `pingora-load-balancing` as its service discovery.
/// (Pingora's own `Static::set` is crate-private, so pushed endpoints need their own type.)
struct PushedEndpoints(BTreeSet<Backend>);

#[async_trait]
impl ServiceDiscovery for PushedEndpoints {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok((self.0.clone(), HashMap::new()))
    }
}

/// A set of interchangeable endpoints behind one Service port.
///
/// A pool is immutable: a new endpoint set makes a new pool (see [`PoolCache`]), so a snapshot
/// never changes under a request.
pub struct Pool {
    key: PoolKey,
    endpoints: Vec<SocketAddr>,
    lb: LoadBalancer<RoundRobin>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("key", &self.key)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl Pool {
    /// A pool over `endpoints` (duplicates are removed; order does not matter).
    pub fn new(key: PoolKey, endpoints: impl IntoIterator<Item = SocketAddr>) -> Self {
        let set: BTreeSet<SocketAddr> = endpoints.into_iter().collect();
        let backends: BTreeSet<Backend> = set
            .iter()
            .map(|a| Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(*a),
                weight: 1,
                ext: Default::default(),
            })
            .collect();
        let lb = LoadBalancer::from_backends(Backends::new(Box::new(PushedEndpoints(backends))));
        // The discovery above answers immediately, so the update never waits.
        if let Some(Err(e)) = lb.update().now_or_never() {
            tracing::error!(pool = %key, error = %e, "pool update failed");
        }
        Pool {
            key,
            endpoints: set.into_iter().collect(),
            lb,
        }
    }

    /// The pool's identity.
    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    /// The endpoints, sorted.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// Whether the pool has no endpoint to send to.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Next endpoint in round-robin order, skipping those in `exclude` (already tried).
    pub fn select(&self, exclude: &[SocketAddr]) -> Option<SocketAddr> {
        let backend = self
            .lb
            .select_with(b"", self.endpoints.len().max(1) * 2, |b, healthy| {
                healthy && b.as_inet().is_some_and(|a| !exclude.contains(a))
            })?;
        backend.as_inet().copied()
    }
}

/// Keeps pools alive across snapshots: asking for the same key and endpoint set returns the same
/// pool (so its round-robin position and connections survive), a changed set builds a new one.
#[derive(Default)]
pub struct PoolCache {
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
}

impl PoolCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pool for `key` with exactly `endpoints`, reused when unchanged.
    pub fn get(&self, key: &PoolKey, endpoints: &[SocketAddr]) -> Arc<Pool> {
        let mut wanted: Vec<SocketAddr> = endpoints.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(key) {
            if p.endpoints == wanted {
                return p.clone();
            }
        }
        let pool = Arc::new(Pool::new(key.clone(), wanted));
        pools.insert(key.clone(), pool.clone());
        pool
    }

    /// Forget pools whose keys are not in `keep` (call after a snapshot is built).
    pub fn retain(&self, keep: impl Fn(&PoolKey) -> bool) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn round_robin_visits_every_endpoint() {
        let pool = Pool::new("ns/svc:80".into(), [addr(1), addr(2), addr(3)]);
        let mut seen: Vec<SocketAddr> = (0..6).filter_map(|_| pool.select(&[])).collect();
        assert_eq!(seen.len(), 6);
        seen.sort();
        seen.dedup();
        assert_eq!(seen, vec![addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn select_skips_excluded_and_empty_pool_gives_none() {
        let pool = Pool::new("a".into(), [addr(1), addr(2)]);
        for _ in 0..4 {
            assert_eq!(pool.select(&[addr(1)]), Some(addr(2)));
        }
        assert_eq!(pool.select(&[addr(1), addr(2)]), None);
        let empty = Pool::new("b".into(), []);
        assert!(empty.is_empty());
        assert_eq!(empty.select(&[]), None);
    }

    #[test]
    fn cache_reuses_unchanged_pools() {
        let cache = PoolCache::new();
        let k = PoolKey::from("ns/svc:80");
        let a = cache.get(&k, &[addr(2), addr(1)]);
        let b = cache.get(&k, &[addr(1), addr(2), addr(1)]);
        assert!(Arc::ptr_eq(&a, &b));
        let c = cache.get(&k, &[addr(1)]);
        assert!(!Arc::ptr_eq(&a, &c));
        cache.retain(|_| false);
        let d = cache.get(&k, &[addr(1)]);
        assert!(!Arc::ptr_eq(&c, &d));
    }
}
