//! Proxy phase: upstream timeouts and retries (`proxy-connect-timeout`, `proxy-read-timeout`,
//! `proxy-send-timeout`, `proxy-next-upstream-tries`).

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
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            next_upstream_tries: 3,
        }
    }
}

impl UpstreamPolicy {
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
