//! `enable-access-log`: whether the Ingress's requests get an access log line (default true).

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &["enable-access-log"];

/// The logging annotations of one Ingress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logging {
    /// `enable-access-log`; `None`: not set (logged).
    pub access_log: Option<bool>,
}

impl Logging {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, _name: &str, value: &str) -> Result<(), String> {
        self.access_log = Some(super::boolean(value)?);
        Ok(())
    }

    /// Whether the Ingress's routes skip the access log.
    pub fn skip_access_log(&self) -> bool {
        self.access_log == Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_access_log() {
        let mut l = Logging::default();
        assert!(!l.skip_access_log());
        l.parse("enable-access-log", "false").unwrap();
        assert!(l.skip_access_log());
        l.parse("enable-access-log", "True").unwrap();
        assert!(!l.skip_access_log());
        let err = l.parse("enable-access-log", "off").unwrap_err();
        assert!(err.contains("\"off\""), "{err}");
    }
}
