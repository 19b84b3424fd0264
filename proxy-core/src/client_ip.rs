//! The real client address, computed as ingress-nginx does.
//!
//! ingress-nginx turns on nginx's realip module with
//! `real_ip_header <forwarded-for-header>; real_ip_recursive on; set_real_ip_from <proxy-real-ip-cidr>;`
//! when `use-forwarded-headers` is true. [`client_ip`] reproduces that module's walk
//! (`ngx_http_get_forwarded_addr`), [`forwarded_for_value`] the `X-Forwarded-For` sent upstream
//! (`$remote_addr`, or `$full_x_forwarded_for` with `compute-full-forwarded-for`), and
//! [`parse_cidrs`] reads the `proxy-real-ip-cidr` option.
//!
//! What stays with the caller:
//! - which header to read: [`ClientIpConfig::forwarded_for_header`] for [`client_ip`], but always
//!   `X-Forwarded-For` for [`forwarded_for_value`] (ingress-nginx's map reads
//!   `$http_x_forwarded_for` whatever `forwarded-for-header` says);
//! - several header lines of the same name: join them with `", "` in order (nginx ≥ 1.23 walks
//!   them as one list);
//! - PROXY protocol: with `use-proxy-protocol` ingress-nginx uses `real_ip_header proxy_protocol`
//!   instead, so the client is the PROXY source when the load balancer's address is trusted, and
//!   `$full_x_forwarded_for` ends with `$proxy_protocol_addr` (pass that as `peer`).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

/// The ingress-nginx options that decide the client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIpConfig {
    /// `use-forwarded-headers`: trust the forwarded-for header from [`trusted`](Self::trusted)
    /// peers (default false).
    pub use_forwarded_headers: bool,
    /// `forwarded-for-header`: the header the client address is read from (default
    /// `X-Forwarded-For`). Looked up by the caller, case-insensitively.
    pub forwarded_for_header: String,
    /// `compute-full-forwarded-for`: append the peer to the incoming `X-Forwarded-For` instead of
    /// replacing it (default false; only effective with `use_forwarded_headers`).
    pub compute_full_forwarded_for: bool,
    /// `proxy-real-ip-cidr`: the peers (and header entries) trusted to report a client address
    /// (default `0.0.0.0/0`, which trusts every IPv4 address and no IPv6 one, as in nginx).
    pub trusted: Vec<IpNet>,
}

impl Default for ClientIpConfig {
    /// ingress-nginx's defaults: forwarded headers ignored, `X-Forwarded-For`, no full
    /// forwarded-for, `proxy-real-ip-cidr: 0.0.0.0/0`.
    fn default() -> Self {
        ClientIpConfig {
            use_forwarded_headers: false,
            forwarded_for_header: "X-Forwarded-For".to_string(),
            compute_full_forwarded_for: false,
            trusted: vec![IpNet::V4(
                Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is a valid prefix"),
            )],
        }
    }
}

impl ClientIpConfig {
    /// Whether `ip` is in [`trusted`](Self::trusted). An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is matched as its IPv4 address, like nginx's `ngx_cidr_match`.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// The client address: `peer` (the connection's peer, or the PROXY protocol source) unless
/// `use_forwarded_headers` is on and `peer` is trusted, in which case `header` (the value of
/// [`ClientIpConfig::forwarded_for_header`], `None` when absent) is walked as nginx's realip
/// module does with `real_ip_recursive on`:
///
/// - entries are separated by `,` and/or spaces; empty ones are skipped;
/// - from the rightmost entry leftwards, each entry replaces the current address as long as the
///   current one is trusted; the first untrusted address is the result, or the leftmost entry
///   when all are trusted;
/// - an entry may carry a port (`192.0.2.1:1234`, `[2001:db8::1]:443`, port 1–65535), which is
///   dropped;
/// - an unparsable entry stops the walk and the current address is kept: the peer when it is the
///   rightmost entry, otherwise the last (trusted) address accepted — exactly nginx's behaviour,
///   which never lets an untrusted entry further left through.
pub fn client_ip(cfg: &ClientIpConfig, peer: IpAddr, header: Option<&[u8]>) -> IpAddr {
    if !cfg.use_forwarded_headers {
        return peer;
    }
    let Some(header) = header else {
        return peer;
    };
    let mut addr = peer;
    for entry in header
        .rsplit(|&b| b == b',' || b == b' ')
        .filter(|e| !e.is_empty())
    {
        if !cfg.is_trusted(addr) {
            return addr;
        }
        match parse_addr_port(entry) {
            Some(ip) => addr = ip,
            None => return addr,
        }
    }
    addr
}

/// The `X-Forwarded-For` value to send upstream.
///
/// - `client`: the address from [`client_ip`] (nginx's `$remote_addr` after realip);
/// - `peer`: the address before realip — the connection's peer (`$realip_remote_addr`), or the
///   PROXY protocol source when PROXY protocol is in use (`$proxy_protocol_addr`);
/// - `incoming`: the request's `X-Forwarded-For` (not the custom forwarded-for header), `None`
///   when absent.
///
/// With `use_forwarded_headers` and `compute_full_forwarded_for` this is ingress-nginx's
/// `$full_x_forwarded_for`: `"<incoming>, <peer>"`, or `"<peer>"` when the header is absent or
/// empty (non-UTF-8 bytes in `incoming` are replaced with U+FFFD). Otherwise it is `client`.
pub fn forwarded_for_value(
    cfg: &ClientIpConfig,
    client: IpAddr,
    peer: IpAddr,
    incoming: Option<&[u8]>,
) -> String {
    if !(cfg.use_forwarded_headers && cfg.compute_full_forwarded_for) {
        return client.to_string();
    }
    match incoming {
        Some(v) if !v.is_empty() => format!("{}, {peer}", String::from_utf8_lossy(v)),
        _ => peer.to_string(),
    }
}

/// Parse a comma-separated list of CIDRs or bare addresses (host routes: /32, /128), such as the
/// `proxy-real-ip-cidr` option. Whitespace around entries and empty entries are ignored, so `""`
/// gives an empty list (trust nobody). Host bits are cleared (`10.1.2.3/8` → `10.0.0.0/8`), as
/// nginx accepts them with a warning.
///
/// The error names the first bad entry, e.g. `invalid CIDR or IP address "10.0.0.0/33"`.
pub fn parse_cidrs(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let parsed = if entry.contains('/') {
                entry
                    .parse::<IpNet>()
                    .map(|n| n.trunc())
                    .map_err(|e| e.to_string())
            } else {
                entry
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|e| e.to_string())
            };
            parsed.map_err(|e| format!("invalid CIDR or IP address {entry:?}: {e}"))
        })
        .collect()
}

/// nginx's `ngx_parse_addr_port`: an address, `a.b.c.d:port` or `[v6]:port`.
fn parse_addr_port(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once("]:")?
    } else {
        s.split_once(':')?
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match port.parse::<u16>() {
        Ok(p) if p >= 1 => addr.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fwd(trusted: &str) -> ClientIpConfig {
        ClientIpConfig {
            use_forwarded_headers: true,
            trusted: parse_cidrs(trusted).unwrap(),
            ..ClientIpConfig::default()
        }
    }

    fn walk(cfg: &ClientIpConfig, peer: &str, header: &str) -> IpAddr {
        client_ip(cfg, ip(peer), Some(header.as_bytes()))
    }

    #[test]
    fn defaults_match_ingress_nginx() {
        let d = ClientIpConfig::default();
        assert!(!d.use_forwarded_headers);
        assert!(!d.compute_full_forwarded_for);
        assert_eq!(d.forwarded_for_header, "X-Forwarded-For");
        assert_eq!(d.trusted, parse_cidrs("0.0.0.0/0").unwrap());
        assert!(d.is_trusted(ip("203.0.113.9")));
        assert!(!d.is_trusted(ip("2001:db8::1")));
    }

    #[test]
    fn header_ignored_without_use_forwarded_headers() {
        let d = ClientIpConfig::default();
        assert_eq!(walk(&d, "10.0.0.1", "203.0.113.9"), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_peer_single_entry() {
        let cfg = fwd("0.0.0.0/0");
        assert_eq!(walk(&cfg, "10.0.0.1", "203.0.113.9"), ip("203.0.113.9"));
    }

    #[test]
    fn untrusted_peer_keeps_its_address() {
        let cfg = fwd("10.0.0.0/8");
        assert_eq!(
            walk(&cfg, "198.51.100.7", "203.0.113.9"),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn recursive_walk_stops_at_first_untrusted_from_the_right() {
        let cfg = fwd("10.0.0.0/8, 192.168.0.1");
        // The client forged 6.6.6.6; the first proxy appended the real 203.0.113.9.
        assert_eq!(
            walk(
                &cfg,
                "10.0.0.1",
                "6.6.6.6, 203.0.113.9, 192.168.0.1, 10.0.0.2"
            ),
            ip("203.0.113.9")
        );
        // All trusted: the leftmost.
        assert_eq!(walk(&cfg, "10.0.0.1", "10.9.9.9, 10.0.0.2"), ip("10.9.9.9"));
        // Default 0.0.0.0/0 trusts all IPv4 addresses: the leftmost, forgeable.
        assert_eq!(
            walk(&fwd("0.0.0.0/0"), "10.0.0.1", "6.6.6.6, 203.0.113.9"),
            ip("6.6.6.6")
        );
    }

    #[test]
    fn separators_and_ports() {
        let cfg = fwd("10.0.0.0/8");
        assert_eq!(
            walk(&cfg, "10.0.0.1", "203.0.113.9,10.0.0.2"),
            ip("203.0.113.9")
        );
        assert_eq!(
            walk(&cfg, "10.0.0.1", "203.0.113.9 10.0.0.2 ,, "),
            ip("203.0.113.9")
        );
        assert_eq!(
            walk(&cfg, "10.0.0.1", "203.0.113.9:5555"),
            ip("203.0.113.9")
        );
        assert_eq!(
            walk(&cfg, "10.0.0.1", "[2001:db8::7]:443, 10.0.0.2:80"),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn ipv6() {
        let cfg = fwd("fd00::/8");
        assert_eq!(
            walk(&cfg, "fd00::1", "2001:db8::1, fd00::2"),
            ip("2001:db8::1")
        );
        // An IPv6 peer is not covered by the default 0.0.0.0/0.
        assert_eq!(
            walk(&fwd("0.0.0.0/0"), "2001:db8::5", "203.0.113.9"),
            ip("2001:db8::5")
        );
        // IPv4-mapped peers and entries match IPv4 CIDRs.
        let cfg = fwd("10.0.0.0/8");
        assert_eq!(
            walk(&cfg, "::ffff:10.0.0.1", "203.0.113.9, ::ffff:10.0.0.2"),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn bad_entries_stop_the_walk() {
        let cfg = fwd("10.0.0.0/8");
        for bad in [
            "unknown",
            "203.0.113.9:0",
            "203.0.113.9:99999",
            "203.0.113.9:+80",
            "[2001:db8::1]",
            "2001:db8::1]:80",
            "fe80::1%eth0",
            "999.0.0.1",
        ] {
            // Rightmost entry bad: the peer.
            assert_eq!(walk(&cfg, "10.0.0.1", bad), ip("10.0.0.1"), "{bad}");
            // Bad entry further left: the last trusted address accepted, never what lies beyond.
            let h = format!("6.6.6.6, {bad}, 10.0.0.2");
            assert_eq!(walk(&cfg, "10.0.0.1", &h), ip("10.0.0.2"), "{bad}");
        }
        let not_utf8: &[u8] = b"203.0.113.9, \xff\xfe";
        assert_eq!(
            client_ip(&cfg, ip("10.0.0.1"), Some(not_utf8)),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn empty_or_missing_header() {
        let cfg = fwd("0.0.0.0/0");
        assert_eq!(client_ip(&cfg, ip("10.0.0.1"), None), ip("10.0.0.1"));
        assert_eq!(walk(&cfg, "10.0.0.1", ""), ip("10.0.0.1"));
        assert_eq!(walk(&cfg, "10.0.0.1", " , ,"), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_for_default_is_the_client() {
        let d = ClientIpConfig::default();
        let v = forwarded_for_value(&d, ip("10.0.0.1"), ip("10.0.0.1"), Some(b"6.6.6.6"));
        assert_eq!(v, "10.0.0.1");
        // compute-full-forwarded-for alone has no effect.
        let cfg = ClientIpConfig {
            compute_full_forwarded_for: true,
            ..ClientIpConfig::default()
        };
        let v = forwarded_for_value(&cfg, ip("10.0.0.1"), ip("10.0.0.1"), Some(b"6.6.6.6"));
        assert_eq!(v, "10.0.0.1");
        // use-forwarded-headers alone: the computed client.
        let cfg = fwd("10.0.0.0/8");
        let v = forwarded_for_value(
            &cfg,
            ip("2001:db8::1"),
            ip("10.0.0.1"),
            Some(b"2001:db8::1"),
        );
        assert_eq!(v, "2001:db8::1");
    }

    #[test]
    fn full_forwarded_for_appends_the_peer() {
        let cfg = ClientIpConfig {
            compute_full_forwarded_for: true,
            ..fwd("10.0.0.0/8")
        };
        let client = ip("203.0.113.9");
        let peer = ip("10.0.0.1");
        assert_eq!(
            forwarded_for_value(&cfg, client, peer, Some(b"203.0.113.9, 10.0.0.2")),
            "203.0.113.9, 10.0.0.2, 10.0.0.1"
        );
        assert_eq!(forwarded_for_value(&cfg, client, peer, None), "10.0.0.1");
        assert_eq!(
            forwarded_for_value(&cfg, client, peer, Some(b"")),
            "10.0.0.1"
        );
        assert_eq!(
            forwarded_for_value(&cfg, client, ip("fd00::1"), Some(b"garbage")),
            "garbage, fd00::1"
        );
    }

    #[test]
    fn parse_cidrs_accepts_cidrs_and_hosts() {
        let nets =
            parse_cidrs(" 10.0.0.0/8, 192.168.1.1,2001:db8::/32 , fd00::1,, 10.1.2.3/16").unwrap();
        let want: Vec<IpNet> = [
            "10.0.0.0/8",
            "192.168.1.1/32",
            "2001:db8::/32",
            "fd00::1/128",
            "10.1.0.0/16",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(nets, want);
        assert_eq!(parse_cidrs("").unwrap(), Vec::<IpNet>::new());
        assert_eq!(parse_cidrs(" , ").unwrap(), Vec::<IpNet>::new());
    }

    #[test]
    fn parse_cidrs_names_the_bad_entry() {
        for (input, bad) in [
            ("10.0.0.0/8, 10.0.0.0/33", "\"10.0.0.0/33\""),
            ("10.0.0.0/8,foo", "\"foo\""),
            ("2001:db8::/129", "\"2001:db8::/129\""),
            ("10.0.0.0/", "\"10.0.0.0/\""),
            ("10.0.0.0 /8", "\"10.0.0.0 /8\""),
        ] {
            let err = parse_cidrs(input).unwrap_err();
            assert!(err.contains(bad), "{input}: {err}");
        }
    }
}
