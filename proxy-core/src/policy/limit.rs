//! Limit phase: requests per second or minute and concurrent requests per client address
//! (`limit-rps`, `limit-rpm`, `limit-connections`, `limit-allowlist`); response phase: the
//! bandwidth of a response (`limit-rate`, `limit-rate-after`).
//!
//! Per-address state lives in fixed-size tables of atomics, so its memory does not grow with
//! the number of addresses seen and no lock is taken per request. Each table has [`ROWS`] rows
//! of [`WIDTH`] slots; an address uses one slot per row (chosen by a hash keyed at random per
//! zone) and its count is the smallest of its slots (a count-min sketch). Addresses sharing a
//! slot add up, so the error is one-sided: an address is never limited less than its own
//! traffic warrants, and is limited more only when other active addresses share its slot in
//! every row (for `n` addresses active at once, about `(n / WIDTH)^ROWS`).
//!
//! The state of an Ingress's limits (its "zone") is kept in a process-wide registry keyed by the
//! Ingress and the limit values, so a new snapshot of an unchanged Ingress keeps counting where
//! the old one was.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use http::StatusCode;

/// Slots per row of a per-address table.
pub const WIDTH: usize = 1 << 14;
/// Rows of a per-address table (hash functions of the sketch).
pub const ROWS: usize = 2;
/// Largest burst accepted, in requests (the state counts thousandths of a request in 32 bits).
pub const MAX_BURST: u32 = 4_000_000;

/// A request rate: nginx's `limit_req` with `burst` and `nodelay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Requests allowed per `per`.
    pub limit: u32,
    /// Requests accepted at once above the rate (`limit × limit-burst-multiplier`).
    pub burst: u32,
    /// `true`: per minute (`limit-rpm`); `false`: per second (`limit-rps`).
    pub per_minute: bool,
}

impl Rate {
    /// Thousandths of a request drained per second, as nginx counts (`r/m` rounds down).
    fn milli_per_second(&self) -> u64 {
        if self.per_minute {
            u64::from(self.limit) * 1000 / 60
        } else {
            u64::from(self.limit) * 1000
        }
    }
}

/// The request limits of one Ingress (nginx's `limit_req` and `limit_conn` zones): compared and
/// hashed by their settings, sharing their state with every route and snapshot of the Ingress.
#[derive(Clone)]
pub struct RequestLimits {
    settings: LimitSettings,
    state: Arc<ZoneState>,
}

/// What a [`RequestLimits`] is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LimitSettings {
    /// Whose limits these are (`namespace/name/uid` of the Ingress): each has its own counts.
    pub zone: Arc<str>,
    /// `limit-rps`.
    pub rps: Option<Rate>,
    /// `limit-rpm`.
    pub rpm: Option<Rate>,
    /// `limit-connections`: requests in progress per address (0: no limit).
    pub connections: u32,
    /// `limit-allowlist`: addresses not limited at all.
    pub allow: Vec<ipnet::IpNet>,
}

impl RequestLimits {
    /// The limits with their state: the state already kept for the same settings, else new.
    pub fn new(settings: LimitSettings) -> Self {
        static ZONES: OnceLock<Mutex<Zones>> = OnceLock::new();
        let mut zones = ZONES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let state = match zones.map.get(&settings).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                // Forget dropped zones now and then (amortized: when the map has doubled).
                if zones.map.len() >= zones.prune_at {
                    zones.map.retain(|_, w| w.strong_count() > 0);
                    zones.prune_at = (zones.map.len() * 2).max(64);
                }
                let s = Arc::new(ZoneState::new(&settings));
                zones.map.insert(settings.clone(), Arc::downgrade(&s));
                s
            }
        };
        RequestLimits { settings, state }
    }

    /// The settings.
    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// Whether `ip` is in the allow list (IPv4-mapped IPv6 addresses are matched as IPv4).
    fn exempt(&self, ip: IpAddr) -> bool {
        !self.settings.allow.is_empty() && self.settings.allow.iter().any(|n| n.contains(&ip))
    }

    /// The limit phase for one request from `client`: `Err(status)` when a limit refuses it,
    /// else the guard that holds its place among the address's requests in progress (release it
    /// when the request ends). An unknown address is not limited.
    pub fn admit(
        &self,
        client: Option<IpAddr>,
        req_status: StatusCode,
        conn_status: StatusCode,
    ) -> Result<Option<ConnGuard>, StatusCode> {
        let Some(ip) = client.map(canonical) else {
            return Ok(None);
        };
        if self.exempt(ip) {
            return Ok(None);
        }
        let state = &self.state;
        let slots = state.slots(ip);
        // As nginx: the connection limit is checked first (preaccess phase), and a request
        // refused by the rate does not keep its connection count.
        let guard = match &state.conns {
            Some(table) if !table.acquire(slots, self.settings.connections) => {
                return Err(conn_status)
            }
            Some(_) => Some(ConnGuard {
                state: state.clone(),
                slots,
            }),
            None => None,
        };
        let now = state.now_ms();
        for (buckets, rate) in [
            (&state.rps, self.settings.rps),
            (&state.rpm, self.settings.rpm),
        ] {
            if let (Some(b), Some(rate)) = (buckets, rate) {
                if !b.take(slots, now, rate) {
                    return Err(req_status);
                }
            }
        }
        Ok(guard)
    }
}

impl std::fmt::Debug for RequestLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.settings.fmt(f)
    }
}

impl PartialEq for RequestLimits {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for RequestLimits {}

impl Hash for RequestLimits {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.settings.hash(state);
    }
}

/// The zones in use, by settings (looked up when a snapshot is built, never per request).
#[derive(Default)]
struct Zones {
    map: HashMap<LimitSettings, Weak<ZoneState>>,
    /// Dropped zones are forgotten when the map reaches this size.
    prune_at: usize,
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A request's place among its address's requests in progress; released when dropped (the
/// request ended, failed or was cancelled).
pub struct ConnGuard {
    state: Arc<ZoneState>,
    slots: [usize; ROWS],
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.state.conns {
            t.release(self.slots);
        }
    }
}

impl std::fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnGuard")
    }
}

/// The counts of one zone.
struct ZoneState {
    hasher: ahash::RandomState,
    epoch: Instant,
    rps: Option<Buckets>,
    rpm: Option<Buckets>,
    conns: Option<Counters>,
}

impl ZoneState {
    fn new(s: &LimitSettings) -> Self {
        ZoneState {
            hasher: ahash::RandomState::new(),
            epoch: Instant::now(),
            rps: s.rps.map(|_| Buckets::new()),
            rpm: s.rpm.map(|_| Buckets::new()),
            conns: (s.connections > 0).then(Counters::new),
        }
    }

    /// The address's slot in each row.
    fn slots(&self, ip: IpAddr) -> [usize; ROWS] {
        let h = self.hasher.hash_one(ip);
        [
            (h as usize) & (WIDTH - 1),
            WIDTH + ((h >> 32) as usize & (WIDTH - 1)),
        ]
    }

    /// Milliseconds since the zone was made (wraps after 49 days; differences stay right).
    fn now_ms(&self) -> u32 {
        (self.epoch.elapsed().as_millis() as u32).wrapping_add(1)
    }

    /// Bytes of memory held by the zone's tables, whatever the number of addresses seen.
    #[cfg(test)]
    fn table_bytes(&self) -> usize {
        let b = |x: &Option<Buckets>| x.as_ref().map_or(0, |t| std::mem::size_of_val(&*t.0));
        b(&self.rps)
            + b(&self.rpm)
            + self
                .conns
                .as_ref()
                .map_or(0, |t| std::mem::size_of_val(&*t.0))
    }
}

/// Leaky buckets: per slot, the time of the last accepted request (high 32 bits, ms) and the
/// excess in thousandths of a request (low 32 bits), as nginx's `limit_req` node. 0: unused.
struct Buckets(Box<[AtomicU64]>);

impl Buckets {
    fn new() -> Self {
        Buckets((0..ROWS * WIDTH).map(|_| AtomicU64::new(0)).collect())
    }

    /// The excess after one more request at `now` in a slot (nginx: the first request of an
    /// address has no excess; then one request is added and `rate × elapsed` drained).
    fn next_excess(slot: u64, now: u32, rate: u64) -> u64 {
        if slot == 0 {
            return 0;
        }
        let (last, excess) = ((slot >> 32) as u32, slot & 0xffff_ffff);
        let elapsed = u64::from(now.wrapping_sub(last));
        (excess + 1000).saturating_sub(rate.saturating_mul(elapsed) / 1000)
    }

    /// Accept one request for `slots` at `now` (`nodelay`: within the burst it passes at once).
    fn take(&self, slots: [usize; ROWS], now: u32, rate: Rate) -> bool {
        let per_second = rate.milli_per_second();
        let burst = u64::from(rate.burst.min(MAX_BURST)) * 1000;
        let estimate = slots
            .iter()
            .map(|&i| Self::next_excess(self.0[i].load(Ordering::Relaxed), now, per_second))
            .min()
            .unwrap_or(0);
        if estimate > burst {
            return false;
        }
        for &i in &slots {
            let _ = self.0[i].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                let excess = Self::next_excess(cur, now, per_second).min(u64::from(u32::MAX));
                Some((u64::from(now) << 32) | excess)
            });
        }
        true
    }
}

/// Requests in progress per slot.
struct Counters(Box<[AtomicU32]>);

impl Counters {
    fn new() -> Self {
        Counters((0..ROWS * WIDTH).map(|_| AtomicU32::new(0)).collect())
    }

    /// Count one more request unless the address already has `limit` in progress.
    fn acquire(&self, slots: [usize; ROWS], limit: u32) -> bool {
        let count = slots
            .iter()
            .map(|&i| self.0[i].fetch_add(1, Ordering::AcqRel))
            .min()
            .unwrap_or(0);
        if count >= limit {
            self.release(slots);
            return false;
        }
        true
    }

    fn release(&self, slots: [usize; ROWS]) {
        for &i in &slots {
            let _ =
                self.0[i].fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| c.checked_sub(1));
        }
    }
}

/// `limit-rate` / `limit-rate-after`: response body bytes per second, after the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bandwidth {
    /// Bytes per second (0: no limit).
    pub rate: u64,
    /// Bytes sent at full speed first.
    pub after: u64,
}

impl Bandwidth {
    /// How long to wait before sending the next `len` bytes of a response whose first `sent`
    /// bytes went out, `elapsed` after the request started: the bytes past `after` go at `rate`
    /// counted from the start of the request, as nginx's `limit_rate`.
    pub fn delay(&self, sent: u64, len: u64, elapsed: Duration) -> Option<Duration> {
        if self.rate == 0 {
            return None;
        }
        let limited = (sent + len).checked_sub(self.after).filter(|&n| n > 0)?;
        let due = Duration::from_secs_f64(limited as f64 / self.rate as f64);
        due.checked_sub(elapsed).filter(|d| !d.is_zero())
    }
}

/// The limit phase of a route, with the ConfigMap's status codes.
pub(crate) fn admit(
    limits: &RequestLimits,
    client: Option<IpAddr>,
    server: &crate::model::ServerPolicy,
) -> Result<Option<ConnGuard>, StatusCode> {
    limits.admit(client, server.limit_status.req, server.limit_status.conn)
}

/// The statuses of refused requests (`limit-req-status-code`, `limit-conn-status-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitStatus {
    /// For a request over `limit-rps` / `limit-rpm` (default 503).
    pub req: StatusCode,
    /// For a request over `limit-connections` (default 503).
    pub conn: StatusCode,
}

impl Default for LimitStatus {
    fn default() -> Self {
        LimitStatus {
            req: StatusCode::SERVICE_UNAVAILABLE,
            conn: StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S503: StatusCode = StatusCode::SERVICE_UNAVAILABLE;
    const S429: StatusCode = StatusCode::TOO_MANY_REQUESTS;

    fn limits(zone: &str, rps: u32, rpm: u32, conns: u32, allow: &[&str]) -> RequestLimits {
        let rate = |limit, per_minute| {
            (limit > 0).then_some(Rate {
                limit,
                burst: limit * 5,
                per_minute,
            })
        };
        RequestLimits::new(LimitSettings {
            zone: zone.into(),
            rps: rate(rps, false),
            rpm: rate(rpm, true),
            connections: conns,
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
        })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn passed(l: &RequestLimits, client: Option<IpAddr>, n: usize) -> usize {
        (0..n)
            .filter(|_| l.admit(client, S429, S503).is_ok())
            .count()
    }

    #[test]
    fn burst_passes_at_once_then_the_excess_is_refused() {
        let l = limits("ns/rps/1", 1, 0, 0, &[]);
        // nginx: the first request and a burst of 5 pass (the clock may tick once meanwhile).
        let n = passed(&l, ip("192.0.2.1"), 20);
        assert!((6..=7).contains(&n), "{n}");
        assert_eq!(l.admit(ip("192.0.2.1"), S429, S503).unwrap_err(), S429);
        // Another address has its own bucket.
        assert!(passed(&l, ip("192.0.2.2"), 20) >= 6);
        // The same address as IPv4-mapped IPv6 shares it.
        assert_eq!(passed(&l, ip("::ffff:192.0.2.1"), 3), 0);
        // Unknown addresses are not limited.
        assert_eq!(passed(&l, None, 20), 20);
    }

    #[test]
    fn buckets_drain_at_the_rate() {
        let b = Buckets::new();
        let rate = Rate {
            limit: 10,
            burst: 2,
            per_minute: false,
        };
        let s = [1, WIDTH + 1];
        assert!(b.take(s, 1000, rate)); // excess 0
        assert!(b.take(s, 1000, rate)); // 1000
        assert!(b.take(s, 1000, rate)); // 2000
        assert!(!b.take(s, 1000, rate));
        assert!(!b.take(s, 1050, rate), "half a request drained");
        assert!(b.take(s, 1100, rate), "one request drained");
        let per_minute = Rate {
            limit: 60,
            burst: 0,
            per_minute: true,
        };
        assert_eq!(per_minute.milli_per_second(), 1000);
        let s = [2, WIDTH + 2];
        assert!(b.take(s, 5000, per_minute));
        assert!(!b.take(s, 5500, per_minute));
        assert!(b.take(s, 6000, per_minute));
    }

    #[test]
    fn rps_and_rpm_both_apply() {
        let l = limits("ns/both/1", 100, 1, 0, &[]);
        // rpm 1 → burst 5: the rpm zone refuses first.
        assert!((6..=7).contains(&passed(&l, ip("198.51.100.1"), 50)));
    }

    #[test]
    fn allowlisted_addresses_are_not_limited() {
        let l = limits("ns/allow/1", 1, 0, 1, &["10.0.0.0/8"]);
        assert_eq!(passed(&l, ip("10.1.2.3"), 50), 50);
        assert_eq!(passed(&l, ip("::ffff:10.1.2.3"), 50), 50);
        assert!(passed(&l, ip("11.1.2.3"), 50) < 50);
    }

    #[test]
    fn connections_are_released_by_the_guard() {
        let l = limits("ns/conn/1", 0, 0, 2, &[]);
        let a = ip("203.0.113.5");
        let g1 = l.admit(a, S429, S503).unwrap().unwrap();
        let g2 = l.admit(a, S429, S503).unwrap().unwrap();
        assert_eq!(l.admit(a, S429, S503).unwrap_err(), S503);
        assert!(l.admit(ip("203.0.113.6"), S429, S503).is_ok());
        drop(g1);
        let g3 = l.admit(a, S429, S503).unwrap();
        assert!(g3.is_some());
        assert!(l.admit(a, S429, S503).is_err());
        drop((g2, g3));
        assert!(l.admit(a, S429, S503).is_ok());
    }

    #[test]
    fn a_refused_rate_does_not_keep_a_connection() {
        let l = limits("ns/connrate/1", 1, 0, 1, &[]);
        let a = ip("203.0.113.7");
        for _ in 0..20 {
            let _ = l.admit(a, S429, S503);
        }
        assert_eq!(l.admit(a, S429, S503).unwrap_err(), S429, "rate, not conns");
    }

    #[test]
    fn state_is_kept_for_unchanged_settings_only() {
        let a = limits("ns/keep/1", 1, 0, 0, &[]);
        let n = passed(&a, ip("192.0.2.9"), 20);
        assert!(n >= 6);
        let same = limits("ns/keep/1", 1, 0, 0, &[]);
        assert_eq!(same, a);
        assert_eq!(passed(&same, ip("192.0.2.9"), 20), 0, "state survives");
        let other_ingress = limits("ns/keep/2", 1, 0, 0, &[]);
        assert!(passed(&other_ingress, ip("192.0.2.9"), 20) >= 6);
        let changed = limits("ns/keep/1", 2, 0, 0, &[]);
        assert!(passed(&changed, ip("192.0.2.9"), 20) >= 11);
        drop((a, same));
        let fresh = limits("ns/keep/1", 1, 0, 0, &[]);
        assert!(
            passed(&fresh, ip("192.0.2.9"), 20) >= 6,
            "dropped state is gone"
        );
    }

    #[test]
    fn memory_stays_bounded_for_a_million_addresses() {
        let l = limits("ns/million/1", 1, 1, 1, &[]);
        let before = l.state.table_bytes();
        assert_eq!(before, ROWS * WIDTH * (8 + 8 + 4));
        let mut guards = Vec::new();
        for i in 0..1_000_000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            if let Ok(Some(g)) = l.admit(Some(addr), S429, S503) {
                if i % 100_000 == 0 {
                    guards.push(g);
                }
            }
        }
        assert_eq!(l.state.table_bytes(), before, "no growth with addresses");
        drop(guards);
        // The error bound: 1000 addresses active at once, each sending its full burst (6
        // requests pass in nginx) are wrongly refused only when they share a slot with another
        // in both rows (about (1000/WIDTH)^2, 0.4%).
        let fresh = limits("ns/million/2", 1, 0, 0, &[]);
        let wronged = (0..1000u32)
            .filter(|i| {
                let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i * 7919));
                passed(&fresh, Some(addr), 6) < 6
            })
            .count();
        assert!(wronged <= 20, "{wronged} of 1000");
    }

    #[test]
    fn bandwidth_delay() {
        let b = Bandwidth {
            rate: 1000,
            after: 500,
        };
        let ms = Duration::from_millis;
        assert_eq!(b.delay(0, 500, ms(0)), None, "within limit-rate-after");
        assert_eq!(b.delay(500, 1000, ms(0)), Some(ms(1000)));
        assert_eq!(b.delay(500, 1000, ms(400)), Some(ms(600)));
        assert_eq!(b.delay(500, 1000, ms(1500)), None, "behind schedule");
        let no_after = Bandwidth {
            rate: 2048,
            after: 0,
        };
        assert_eq!(no_after.delay(0, 1024, ms(0)), Some(ms(500)));
    }
}
