//! Proxy phase: upstream timeouts and retries (`proxy-connect-timeout`, `proxy-read-timeout`,
//! `proxy-send-timeout`, `proxy-next-upstream`, `proxy-next-upstream-tries`,
//! `proxy-next-upstream-timeout`, `retry-non-idempotent`).

use std::net::SocketAddr;
use std::time::Duration;

use pingora::prelude::HttpPeer;

/// How the upstream request is made. The defaults are ingress-nginx's: 5 s to connect, 60 s
/// between two reads and between two writes, 3 endpoints tried.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamPolicy {
    /// Upstream connect timeout (`proxy-connect-timeout`).
    pub connect_timeout: Duration,
    /// Upstream read timeout (`proxy-read-timeout`).
    pub read_timeout: Duration,
    /// Upstream write timeout (`proxy-send-timeout`).
    pub send_timeout: Duration,
    /// How many endpoints to try when connecting fails (`proxy-next-upstream-tries`).
    pub next_upstream_tries: u8,
    /// The failures after which another endpoint is tried (`proxy-next-upstream`).
    pub next_upstream: NextUpstream,
    /// No further endpoint is tried this long after the first was picked
    /// (`proxy-next-upstream-timeout`; `None`: no limit).
    pub next_upstream_timeout: Option<Duration>,
    /// Requests that are not idempotent (POST, PATCH, LOCK) may be tried again after they were
    /// sent (ConfigMap `retry-non-idempotent`).
    pub retry_non_idempotent: bool,
}

/// The conditions of `proxy-next-upstream`, as a set. The default is ingress-nginx's
/// `error timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NextUpstream(u16);

impl NextUpstream {
    /// Connection or protocol error with the endpoint.
    pub const ERROR: NextUpstream = NextUpstream(1);
    /// Timeout connecting to, writing to or reading from the endpoint.
    pub const TIMEOUT: NextUpstream = NextUpstream(1 << 1);
    /// A request that is not idempotent may be retried after it was sent.
    pub const NON_IDEMPOTENT: NextUpstream = NextUpstream(1 << 2);
    /// Nothing is retried (`off`).
    pub const OFF: NextUpstream = NextUpstream(0);
    /// The statuses `http_<code>` may name, in bit order after the three flags above.
    const STATUSES: [u16; 7] = [500, 502, 503, 504, 403, 404, 429];

    /// The set for one word of `proxy-next-upstream` (`error`, `http_503`, `off`, ...).
    pub fn word(word: &str) -> Option<NextUpstream> {
        Some(match word {
            "error" => Self::ERROR,
            "timeout" => Self::TIMEOUT,
            "non_idempotent" => Self::NON_IDEMPOTENT,
            "off" => Self::OFF,
            _ => {
                let code: u16 = word.strip_prefix("http_")?.parse().ok()?;
                let i = Self::STATUSES.iter().position(|&c| c == code)?;
                NextUpstream(1 << (3 + i))
            }
        })
    }

    /// Both sets.
    pub const fn with(self, other: NextUpstream) -> NextUpstream {
        NextUpstream(self.0 | other.0)
    }

    /// Whether every condition of `other` is in the set.
    pub const fn contains(self, other: NextUpstream) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Whether an upstream response with `status` is retried.
    pub fn status(self, status: u16) -> bool {
        self.0 >> 3 != 0
            && Self::STATUSES
                .iter()
                .position(|&c| c == status)
                .is_some_and(|i| self.0 & (1 << (3 + i)) != 0)
    }
}

impl Default for NextUpstream {
    fn default() -> Self {
        NextUpstream::ERROR.with(NextUpstream::TIMEOUT)
    }
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            next_upstream_tries: 3,
            next_upstream: NextUpstream::default(),
            next_upstream_timeout: None,
            retry_non_idempotent: false,
        }
    }
}

/// Why an attempt on an endpoint failed, as `proxy-next-upstream` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Connecting, writing or reading failed (`error`).
    Error,
    /// Connecting, writing or reading timed out (`timeout`).
    Timeout,
    /// The endpoint answered with this status (`http_<status>`).
    Status(u16),
}

/// Where a request stands when an attempt failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    /// Endpoints tried so far, this one included.
    pub tried: usize,
    /// Time since the first endpoint was picked.
    pub elapsed: Duration,
    /// The request was (maybe partly) sent and its method is not idempotent.
    pub sent_non_idempotent: bool,
}

impl UpstreamPolicy {
    /// Whether another endpoint is tried after `failure`, as nginx's `proxy_next_upstream`.
    pub(crate) fn retries(&self, failure: Failure, attempt: Attempt) -> bool {
        let listed = match failure {
            Failure::Error => self.next_upstream.contains(NextUpstream::ERROR),
            Failure::Timeout => self.next_upstream.contains(NextUpstream::TIMEOUT),
            Failure::Status(code) => self.next_upstream.status(code),
        };
        listed
            && attempt.tried < usize::from(self.next_upstream_tries)
            && self
                .next_upstream_timeout
                .is_none_or(|limit| attempt.elapsed < limit)
            && (!attempt.sent_non_idempotent
                || self.retry_non_idempotent
                || self.next_upstream.contains(NextUpstream::NON_IDEMPOTENT))
    }

    /// A plain HTTP/1.1 peer for `addr` with these timeouts.
    pub(super) fn peer(&self, addr: SocketAddr) -> Box<HttpPeer> {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.send_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Box::new(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_upstream_words() {
        let d = NextUpstream::default();
        assert!(d.contains(NextUpstream::ERROR) && d.contains(NextUpstream::TIMEOUT));
        assert!(!d.contains(NextUpstream::NON_IDEMPOTENT) && !d.status(503));
        let s = NextUpstream::word("http_503")
            .unwrap()
            .with(NextUpstream::word("http_429").unwrap());
        assert!(s.status(503) && s.status(429) && !s.status(500) && !s.status(200));
        assert!(!s.contains(NextUpstream::ERROR));
        assert_eq!(NextUpstream::word("off"), Some(NextUpstream::OFF));
        assert!(!NextUpstream::OFF.contains(NextUpstream::OFF));
        assert_eq!(NextUpstream::word("http_501"), None);
        assert_eq!(NextUpstream::word("invalid_header"), None);
    }

    #[test]
    fn retries_follow_the_policy() {
        let attempt = Attempt {
            tried: 1,
            elapsed: Duration::from_millis(10),
            sent_non_idempotent: false,
        };
        let mut p = UpstreamPolicy::default();
        assert!(p.retries(Failure::Error, attempt));
        assert!(p.retries(Failure::Timeout, attempt));
        assert!(!p.retries(Failure::Status(503), attempt));
        assert!(!p.retries(
            Failure::Error,
            Attempt {
                tried: 3,
                ..attempt
            }
        ));
        let post = Attempt {
            sent_non_idempotent: true,
            ..attempt
        };
        assert!(!p.retries(Failure::Error, post));
        p.retry_non_idempotent = true;
        assert!(p.retries(Failure::Error, post));
        p.next_upstream_timeout = Some(Duration::from_millis(5));
        assert!(!p.retries(Failure::Error, attempt));
        p.next_upstream = NextUpstream::OFF;
        p.next_upstream_timeout = None;
        assert!(!p.retries(Failure::Error, attempt));
        p.next_upstream = NextUpstream::word("http_503").unwrap();
        assert!(p.retries(Failure::Status(503), attempt));
        assert!(!p.retries(Failure::Error, attempt));
    }
}
