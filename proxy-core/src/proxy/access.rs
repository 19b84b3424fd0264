//! Client address allow and deny lists (`whitelist-source-range`, `denylist-source-range`).

use std::net::IpAddr;

use crate::model::RoutePolicy;

/// The status to answer instead of proxying, if any: 503 for a route whose access configuration
/// is broken (never fail open), 403 for a denied or not-allowed client.
pub fn check(policy: &RoutePolicy, client: Option<IpAddr>) -> Option<u16> {
    if policy.denied {
        return Some(503);
    }
    if policy.allow_source.is_empty() && policy.deny_source.is_empty() {
        return None;
    }
    let Some(ip) = client else { return Some(403) };
    // IPv4-mapped IPv6 clients are matched as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if policy.deny_source.iter().any(|n| n.contains(&ip)) {
        return Some(403);
    }
    if !policy.allow_source.is_empty() && !policy.allow_source.iter().any(|n| n.contains(&ip)) {
        return Some(403);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> RoutePolicy {
        RoutePolicy {
            allow_source: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny_source: deny.iter().map(|s| s.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn allow_and_deny() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(check(&RoutePolicy::default(), ip("1.2.3.4")), None);
        let p = policy(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert_eq!(check(&p, ip("10.1.2.3")), None);
        assert_eq!(check(&p, ip("10.9.2.3")), Some(403), "deny wins");
        assert_eq!(check(&p, ip("192.0.2.1")), Some(403));
        assert_eq!(check(&p, ip("::ffff:10.1.2.3")), None, "IPv4-mapped");
        assert_eq!(check(&p, None), Some(403));
        let d = policy(&[], &["203.0.113.0/24"]);
        assert_eq!(check(&d, ip("203.0.113.9")), Some(403));
        assert_eq!(check(&d, ip("198.51.100.1")), None);
        let broken = RoutePolicy {
            denied: true,
            ..Default::default()
        };
        assert_eq!(check(&broken, ip("1.2.3.4")), Some(503));
    }
}
