//! Access phase: refused routes (fail closed) and client address allow and deny lists
//! (`whitelist-source-range`, `denylist-source-range`).

use std::net::IpAddr;
use std::sync::Arc;

/// The route must not be served: its configuration is broken in a way that must not fail open
/// (an unparsable access annotation, an authentication Weir cannot do). Requests get a 503.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// Why, for logs; never sent to clients.
    pub reason: Arc<str>,
}

/// Client networks allowed and denied. An empty `allow` lets everyone in; `deny` wins over
/// `allow`. IPv4-mapped IPv6 clients (`::ffff:a.b.c.d`) are matched as IPv4.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AccessList {
    /// Only these networks are allowed (`whitelist-source-range`); empty: everyone.
    pub allow: Vec<ipnet::IpNet>,
    /// These networks get 403 (`denylist-source-range`).
    pub deny: Vec<ipnet::IpNet>,
}

impl AccessList {
    /// Whether both lists are empty (everyone is allowed, even without a known address).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether a client with this address may use the route.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Whether an allow list names the client and no deny entry does: enough on its own under
    /// `satisfy: any` (an empty allow list admits no one by itself, as nginx's `allow` rules).
    pub fn admits(&self, client: Option<IpAddr>) -> bool {
        !self.allow.is_empty() && client.is_some_and(|ip| self.allows(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::super::RoutePolicy;
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> RoutePolicy {
        RoutePolicy {
            access: Some(AccessList {
                allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
                deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn allow_and_deny() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let check = |p: &RoutePolicy, client| p.access_status(client).map(|s| s.as_u16());
        assert_eq!(check(&RoutePolicy::default(), ip("1.2.3.4")), None);
        assert_eq!(check(&policy(&[], &[]), None), None, "empty lists");
        let p = policy(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert_eq!(check(&p, ip("10.1.2.3")), None);
        assert_eq!(check(&p, ip("10.9.2.3")), Some(403), "deny wins");
        assert_eq!(check(&p, ip("192.0.2.1")), Some(403));
        assert_eq!(check(&p, ip("::ffff:10.1.2.3")), None, "IPv4-mapped");
        assert_eq!(check(&p, ip("::ffff:10.9.2.3")), Some(403), "IPv4-mapped");
        assert_eq!(check(&p, None), Some(403));
        let d = policy(&[], &["203.0.113.0/24"]);
        assert_eq!(check(&d, ip("203.0.113.9")), Some(403));
        assert_eq!(check(&d, ip("198.51.100.1")), None);
        let broken = RoutePolicy {
            refusal: Some(Refusal {
                reason: "test".into(),
            }),
            ..policy(&["1.2.3.4/32"], &[])
        };
        assert_eq!(check(&broken, ip("1.2.3.4")), Some(503), "refusal first");
    }
}
