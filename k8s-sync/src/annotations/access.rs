//! `whitelist-source-range` (alias `allowlist-source-range`) and `denylist-source-range`: client
//! networks allowed or refused.

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "allowlist-source-range",
    "denylist-source-range",
    "whitelist-source-range",
];

/// An Ingress's client address lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRanges {
    /// Only these networks are allowed; empty: everyone.
    pub allow: Vec<ipnet::IpNet>,
    /// These networks are refused (checked first).
    pub deny: Vec<ipnet::IpNet>,
}

impl SourceRanges {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        let nets = proxy_core::client_ip::parse_cidrs(value).map_err(|e| e.to_string())?;
        if name == "denylist-source-range" {
            self.deny = nets;
        } else {
            self.allow = nets;
        }
        Ok(())
    }

    /// Whether any list is set.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_deny_lists() {
        let mut r = SourceRanges::default();
        assert!(r.is_empty());
        r.parse("allowlist-source-range", "10.0.0.0/8, 192.0.2.7")
            .unwrap();
        r.parse("denylist-source-range", "10.9.0.0/16").unwrap();
        assert_eq!(r.allow.len(), 2);
        assert_eq!(r.deny, vec!["10.9.0.0/16".parse().unwrap()]);
        let err = r
            .parse("whitelist-source-range", "10.0.0.0/33")
            .unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
