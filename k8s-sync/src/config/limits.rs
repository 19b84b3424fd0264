//! ConfigMap keys of the limits: `limit-req-status-code`, `limit-conn-status-code`,
//! `limit-rate` and `limit-rate-after` (the defaults of the annotations of the same name).

use proxy_core::{Bandwidth, LimitStatus};

/// The keys read here.
pub(super) const KEYS: &[&str] = &[
    "limit-conn-status-code",
    "limit-rate",
    "limit-rate-after",
    "limit-req-status-code",
];

/// The values read so far.
#[derive(Debug, Default)]
pub(super) struct LimitKeys {
    rate_kb: u64,
    after_kb: u64,
}

impl LimitKeys {
    /// Take one key of [`KEYS`]; statuses go straight into `status`.
    pub(super) fn parse(
        &mut self,
        key: &str,
        value: &str,
        status: &mut LimitStatus,
    ) -> Result<(), String> {
        match key {
            "limit-req-status-code" => status.req = status_code(value)?,
            "limit-conn-status-code" => status.conn = status_code(value)?,
            "limit-rate" => self.rate_kb = crate::annotations::limits::count(value)?,
            _ => self.after_kb = crate::annotations::limits::count(value)?,
        }
        Ok(())
    }

    /// The default bandwidth limit of every Ingress (`None`: no key set). As ingress-nginx,
    /// which writes them as the annotations' defaults, the values are kilobytes.
    pub(super) fn finish(self) -> Option<Bandwidth> {
        (self.rate_kb > 0 || self.after_kb > 0).then(|| Bandwidth {
            rate: self.rate_kb.saturating_mul(1024),
            after: self.after_kb.saturating_mul(1024),
        })
    }
}

/// A status nginx accepts for `limit_req_status` / `limit_conn_status`: 400 to 599.
fn status_code(value: &str) -> Result<http::StatusCode, String> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| http::StatusCode::from_u16(c).ok())
        .ok_or_else(|| {
            format!("expected a status code from 400 to 599, got {value:?}; 503 is used")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bandwidth() {
        let mut k = LimitKeys::default();
        let mut s = LimitStatus::default();
        assert_eq!((s.req.as_u16(), s.conn.as_u16()), (503, 503));
        k.parse("limit-req-status-code", "429", &mut s).unwrap();
        k.parse("limit-conn-status-code", " 503 ", &mut s).unwrap();
        assert_eq!(s.req.as_u16(), 429);
        for bad in ["200", "600", "x", "", "-429"] {
            let e = k.parse("limit-req-status-code", bad, &mut s).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert_eq!(s.req.as_u16(), 429, "a bad value changes nothing");
        assert!(k.parse("limit-rate", "1.5", &mut s).is_err());
        assert!(LimitKeys::default().finish().is_none());
        k.parse("limit-rate", "100", &mut s).unwrap();
        k.parse("limit-rate-after", "10", &mut s).unwrap();
        assert_eq!(
            k.finish(),
            Some(Bandwidth {
                rate: 102_400,
                after: 10_240
            })
        );
    }
}
