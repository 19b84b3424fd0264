//! `limit-rps`, `limit-rpm`, `limit-burst-multiplier`, `limit-connections`,
//! `limit-allowlist` (alias `limit-whitelist`), `limit-rate` and `limit-rate-after`: request,
//! connection and bandwidth limits per client address.

use proxy_core::{Bandwidth, LimitSettings, Rate, RequestLimits};

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "limit-allowlist",
    "limit-burst-multiplier",
    "limit-connections",
    "limit-rate",
    "limit-rate-after",
    "limit-rpm",
    "limit-rps",
    "limit-whitelist",
];

/// ingress-nginx's default `limit-burst-multiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;

/// The limits an Ingress asks for (`None`: not set, or not valid).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitAnnotations {
    /// `limit-rps` (0: none).
    pub rps: Option<u32>,
    /// `limit-rpm` (0: none).
    pub rpm: Option<u32>,
    /// `limit-burst-multiplier`.
    pub burst_multiplier: Option<u32>,
    /// `limit-connections` (0: none).
    pub connections: Option<u32>,
    /// `limit-allowlist` / `limit-whitelist`.
    pub allow: Vec<ipnet::IpNet>,
    /// `limit-rate`, kilobytes per second (0: none).
    pub rate_kb: Option<u64>,
    /// `limit-rate-after`, kilobytes.
    pub rate_after_kb: Option<u64>,
}

/// A whole number, as ingress-nginx's integer annotations (a sign or other text is refused).
pub(crate) fn count<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number, got {value:?}"));
    }
    v.parse()
        .map_err(|_| format!("number too large, got {value:?}"))
}

impl LimitAnnotations {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "limit-rps" => self.rps = Some(count(value)?),
            "limit-rpm" => self.rpm = Some(count(value)?),
            "limit-connections" => self.connections = Some(count(value)?),
            "limit-burst-multiplier" => self.burst_multiplier = Some(count(value)?),
            "limit-rate" => self.rate_kb = Some(count(value)?),
            "limit-rate-after" => self.rate_after_kb = Some(count(value)?),
            _ => {
                self.allow = proxy_core::parse_cidrs(value).map_err(|e| {
                    format!("{e}; the limits apply to every address until it is fixed")
                })?
            }
        }
        Ok(())
    }

    /// The request limits of the Ingress `zone` (`namespace/name`), `None` when it sets none.
    /// Their state is shared with earlier snapshots of the same Ingress and values.
    pub fn request_limits(&self, zone: &str) -> Option<RequestLimits> {
        let multiplier = self.burst_multiplier.unwrap_or(DEFAULT_BURST_MULTIPLIER);
        let rate = |limit: Option<u32>, per_minute| {
            limit.filter(|&l| l > 0).map(|limit| Rate {
                limit,
                burst: limit
                    .saturating_mul(multiplier)
                    .min(proxy_core::policy::MAX_BURST),
                per_minute,
            })
        };
        let settings = LimitSettings {
            zone: zone.into(),
            rps: rate(self.rps, false),
            rpm: rate(self.rpm, true),
            connections: self.connections.unwrap_or(0),
            allow: self.allow.clone(),
        };
        if settings.rps.is_none() && settings.rpm.is_none() && settings.connections == 0 {
            return None;
        }
        Some(RequestLimits::new(settings))
    }

    /// The bandwidth limit: this Ingress's values over `defaults` (the ConfigMap's
    /// `limit-rate` / `limit-rate-after`), `None` without a rate.
    pub fn bandwidth(&self, defaults: Option<&Bandwidth>) -> Option<Bandwidth> {
        let rate = self
            .rate_kb
            .map(|kb| kb.saturating_mul(1024))
            .unwrap_or_else(|| defaults.map_or(0, |d| d.rate));
        let after = self
            .rate_after_kb
            .map(|kb| kb.saturating_mul(1024))
            .unwrap_or_else(|| defaults.map_or(0, |d| d.after));
        (rate > 0).then_some(Bandwidth { rate, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_malformed_values() {
        let mut l = LimitAnnotations::default();
        l.parse("limit-rps", "10").unwrap();
        l.parse("limit-rpm", " 600 ").unwrap();
        l.parse("limit-connections", "3").unwrap();
        l.parse("limit-burst-multiplier", "2").unwrap();
        l.parse("limit-whitelist", "10.0.0.0/8, 192.0.2.1").unwrap();
        l.parse("limit-rate", "100").unwrap();
        l.parse("limit-rate-after", "50").unwrap();
        assert_eq!(l.allow.len(), 2);
        for (name, bad) in [
            ("limit-rps", "ten"),
            ("limit-rps", "-1"),
            ("limit-rps", "1.5"),
            ("limit-rps", ""),
            ("limit-rpm", "99999999999"),
            ("limit-connections", "+3"),
            ("limit-burst-multiplier", "x"),
            ("limit-rate", "100k"),
            ("limit-rate-after", "-5"),
            ("limit-allowlist", "10.0.0.0/33"),
        ] {
            let err = l.clone().parse(name, bad).unwrap_err();
            assert!(
                err.contains(&format!("{bad:?}")) || name == "limit-allowlist",
                "{err}"
            );
        }
        let r = l.request_limits("ns/a").unwrap();
        let s = r.settings();
        assert_eq!(
            s.rps,
            Some(Rate {
                limit: 10,
                burst: 20,
                per_minute: false
            })
        );
        assert_eq!(
            s.rpm.map(|r| (r.limit, r.burst, r.per_minute)),
            Some((600, 1200, true))
        );
        assert_eq!(s.connections, 3);
        assert_eq!(
            l.bandwidth(None),
            Some(Bandwidth {
                rate: 100 << 10,
                after: 50 << 10
            })
        );
    }

    #[test]
    fn defaults_and_zero_mean_no_limit() {
        let mut l = LimitAnnotations::default();
        assert!(l.request_limits("ns/a").is_none());
        l.parse("limit-rps", "0").unwrap();
        l.parse("limit-burst-multiplier", "3").unwrap();
        assert!(l.request_limits("ns/a").is_none(), "0 is no limit");
        l.parse("limit-rps", "4").unwrap();
        l.burst_multiplier = None;
        let r = l.request_limits("ns/a").unwrap();
        assert_eq!(r.settings().rps.unwrap().burst, 20, "multiplier 5");
        // Bandwidth: the ConfigMap's values when the Ingress sets none.
        let cm = Bandwidth {
            rate: 2048,
            after: 1024,
        };
        assert_eq!(l.bandwidth(Some(&cm)), Some(cm));
        l.parse("limit-rate-after", "0").unwrap();
        assert_eq!(
            l.bandwidth(Some(&cm)),
            Some(Bandwidth {
                rate: 2048,
                after: 0
            })
        );
        l.parse("limit-rate", "0").unwrap();
        assert_eq!(l.bandwidth(Some(&cm)), None, "0 turns it off");
    }
}
