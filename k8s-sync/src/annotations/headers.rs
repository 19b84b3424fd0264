//! `custom-headers`: response headers from a ConfigMap (`namespace/name`) of the Ingress's own
//! namespace. The annotation is read here; the ConfigMap is read at every build
//! ([`crate::translate`]), so a change to it applies without touching the Ingress.

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &["custom-headers"];

/// An Ingress's header annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderAnnotations {
    /// `custom-headers`: the ConfigMap of response headers, as written (`namespace/name`).
    pub custom_headers: Option<String>,
}

impl HeaderAnnotations {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, _name: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        // ingress-nginx's check of the value: letters, digits, `-`, `.`, `_`, `/`.
        if v.is_empty()
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
        {
            return Err(format!(
                "expected a ConfigMap as namespace/name, got {value:?}"
            ));
        }
        self.custom_headers = Some(v.to_string());
        Ok(())
    }
}

/// Whether `name` may be set by `custom-headers` (ingress-nginx's header name check).
pub fn valid_custom_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `value` may be set by `custom-headers` (ingress-nginx's header value check:
/// printable ASCII without `\t`).
pub fn valid_custom_value(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_and_checks() {
        let mut h = HeaderAnnotations::default();
        h.parse("custom-headers", " ns/hdrs ").unwrap();
        assert_eq!(h.custom_headers.as_deref(), Some("ns/hdrs"));
        assert!(h.parse("custom-headers", "ns/a b").is_err());
        assert!(h.parse("custom-headers", "").is_err());
        assert!(valid_custom_name("My-Custom_Header1") && !valid_custom_name("a:b"));
        assert!(!valid_custom_name(""));
        assert!(valid_custom_value("$remote_addr; q=\"1\"") && !valid_custom_value("a\tb"));
        assert!(!valid_custom_value("caf\u{e9}") && !valid_custom_value(""));
    }
}
