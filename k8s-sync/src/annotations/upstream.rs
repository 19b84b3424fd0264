//! `proxy-connect-timeout`, `proxy-read-timeout`, `proxy-send-timeout`, `proxy-next-upstream`,
//! `proxy-next-upstream-tries`, `proxy-next-upstream-timeout`: the upstream request.

use std::time::Duration;

use proxy_core::{NextUpstream, UpstreamPolicy};

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "proxy-connect-timeout",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "proxy-next-upstream-tries",
    "proxy-read-timeout",
    "proxy-send-timeout",
];

/// An Ingress's upstream settings; `None`: the ConfigMap's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    /// `proxy-connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `proxy-read-timeout`.
    pub read_timeout: Option<Duration>,
    /// `proxy-send-timeout`.
    pub send_timeout: Option<Duration>,
    /// `proxy-next-upstream`.
    pub next_upstream: Option<NextUpstream>,
    /// `proxy-next-upstream-tries`.
    pub next_upstream_tries: Option<u8>,
    /// `proxy-next-upstream-timeout` (`Some(None)`: `0`, no limit).
    pub next_upstream_timeout: Option<Option<Duration>>,
}

impl Upstream {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "proxy-connect-timeout" => self.connect_timeout = Some(timeout(value)?),
            "proxy-read-timeout" => self.read_timeout = Some(timeout(value)?),
            "proxy-send-timeout" => self.send_timeout = Some(timeout(value)?),
            "proxy-next-upstream" => self.next_upstream = Some(next_upstream(value)?),
            "proxy-next-upstream-tries" => self.next_upstream_tries = Some(tries(value)?),
            _ => self.next_upstream_timeout = Some(next_upstream_timeout(value)?),
        }
        Ok(())
    }

    /// `defaults` (the ConfigMap's) with this Ingress's settings applied.
    pub fn apply(&self, defaults: &UpstreamPolicy) -> UpstreamPolicy {
        UpstreamPolicy {
            connect_timeout: self.connect_timeout.unwrap_or(defaults.connect_timeout),
            read_timeout: self.read_timeout.unwrap_or(defaults.read_timeout),
            send_timeout: self.send_timeout.unwrap_or(defaults.send_timeout),
            next_upstream: self.next_upstream.unwrap_or(defaults.next_upstream),
            next_upstream_tries: self
                .next_upstream_tries
                .unwrap_or(defaults.next_upstream_tries),
            next_upstream_timeout: self
                .next_upstream_timeout
                .unwrap_or(defaults.next_upstream_timeout),
            retry_non_idempotent: defaults.retry_non_idempotent,
        }
    }
}

/// The longest timeout accepted: 30 days (ingress-nginx takes any number of seconds; websocket
/// users set e.g. `86400`).
const MAX_TIMEOUT_SECS: u64 = 30 * 24 * 3600;

fn whole_seconds(value: &str) -> Option<u64> {
    let v = value.trim();
    let n = v.strip_suffix('s').unwrap_or(v);
    n.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())
        .flatten()
}

/// A timeout in whole seconds (an `s` suffix is allowed), from 1 s to 30 days.
pub(crate) fn timeout(value: &str) -> Result<Duration, String> {
    match whole_seconds(value) {
        Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "expected a number of seconds from 1 to {MAX_TIMEOUT_SECS}, got {value:?}"
        )),
    }
}

/// `proxy-next-upstream-timeout`: seconds, `0` for no limit.
pub(crate) fn next_upstream_timeout(value: &str) -> Result<Option<Duration>, String> {
    match whole_seconds(value) {
        Some(0) => Ok(None),
        Some(s) if s <= MAX_TIMEOUT_SECS => Ok(Some(Duration::from_secs(s))),
        _ => Err(format!(
            "expected a number of seconds from 0 (no limit) to {MAX_TIMEOUT_SECS}, got {value:?}"
        )),
    }
}

/// `proxy-next-upstream-tries`: a count, `0` for no limit (Weir tries at most 8 endpoints).
pub(crate) fn tries(value: &str) -> Result<u8, String> {
    match value.trim().parse::<u32>() {
        Ok(0) => Ok(u8::MAX),
        Ok(n) => Ok(u8::try_from(n).unwrap_or(u8::MAX)),
        Err(_) => Err(format!(
            "expected a whole number (0: no limit), got {value:?}"
        )),
    }
}

/// `proxy-next-upstream`: space-separated conditions (`error timeout http_503 ...`, or `off`).
pub(crate) fn next_upstream(value: &str) -> Result<NextUpstream, String> {
    let mut set = NextUpstream::OFF;
    let mut words = 0;
    for word in value.split_whitespace() {
        let one = NextUpstream::word(word).ok_or_else(|| {
            format!("unknown condition {word:?} in {value:?} (expected error, timeout, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent or off)")
        })?;
        if word == "off" && value.split_whitespace().count() > 1 {
            return Err(format!(
                "\"off\" cannot be combined with other conditions, got {value:?}"
            ));
        }
        set = set.with(one);
        words += 1;
    }
    if words == 0 {
        return Err(format!(
            "expected conditions such as \"error timeout\", got {value:?}"
        ));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_take_websocket_values_and_reject_the_rest() {
        assert_eq!(timeout("86400"), Ok(Duration::from_secs(86400)));
        assert_eq!(timeout("5s"), Ok(Duration::from_secs(5)));
        for bad in ["0", "-1", "1.5", "soon", "", "9999999999"] {
            assert!(
                timeout(bad).unwrap_err().contains(&format!("{bad:?}")),
                "{bad}"
            );
        }
        assert_eq!(next_upstream_timeout("0"), Ok(None));
        assert_eq!(
            next_upstream_timeout("10"),
            Ok(Some(Duration::from_secs(10)))
        );
        assert!(next_upstream_timeout("x").is_err());
        assert_eq!(
            (tries("0"), tries("2"), tries("1000")),
            (Ok(255), Ok(2), Ok(255))
        );
        assert!(tries("two").unwrap_err().contains("\"two\""));
    }

    #[test]
    fn next_upstream_conditions() {
        let s = next_upstream("error timeout http_503").unwrap();
        assert!(s.contains(NextUpstream::ERROR) && s.status(503) && !s.status(502));
        assert_eq!(next_upstream("off"), Ok(NextUpstream::OFF));
        assert!(next_upstream("off error").is_err());
        assert!(next_upstream("").is_err());
        let e = next_upstream("error http_999").unwrap_err();
        assert!(e.contains("\"http_999\""), "{e}");
    }

    #[test]
    fn applies_over_the_defaults() {
        let mut u = Upstream::default();
        u.parse("proxy-read-timeout", "2").unwrap();
        u.parse("proxy-next-upstream", "http_503").unwrap();
        assert!(u.parse("proxy-send-timeout", "never").is_err());
        let defaults = UpstreamPolicy {
            retry_non_idempotent: true,
            ..Default::default()
        };
        let p = u.apply(&defaults);
        assert_eq!(p.read_timeout, Duration::from_secs(2));
        assert_eq!(p.send_timeout, defaults.send_timeout);
        assert!(p.next_upstream.status(503));
        assert!(p.retry_non_idempotent);
    }
}
