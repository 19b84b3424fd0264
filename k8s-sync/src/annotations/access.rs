//! `whitelist-source-range` (alias `allowlist-source-range`) and `denylist-source-range`: client
//! networks allowed or refused.

use proxy_core::AccessList;

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "allowlist-source-range",
    "denylist-source-range",
    "whitelist-source-range",
];

/// Take one annotation of [`KEYS`] into `lists`.
pub(super) fn parse(lists: &mut AccessList, name: &str, value: &str) -> Result<(), String> {
    let nets = proxy_core::parse_cidrs(value).map_err(|e| e.to_string())?;
    if name == "denylist-source-range" {
        lists.deny = nets;
    } else {
        lists.allow = nets;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_deny_lists() {
        let mut r = AccessList::default();
        assert!(r.is_empty());
        parse(&mut r, "allowlist-source-range", "10.0.0.0/8, 192.0.2.7").unwrap();
        parse(&mut r, "denylist-source-range", "10.9.0.0/16").unwrap();
        assert_eq!(r.allow.len(), 2);
        assert_eq!(r.deny, vec!["10.9.0.0/16".parse().unwrap()]);
        let err = parse(&mut r, "whitelist-source-range", "10.0.0.0/33").unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
