//! `custom-http-errors`, `default-backend`, `disable-proxy-intercept-errors`: custom error
//! pages served by a default backend. The Service is resolved at every build
//! ([`crate::translate`]).

use super::boolean;

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "custom-http-errors",
    "default-backend",
    "disable-proxy-intercept-errors",
];

/// An Ingress's error page annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPages {
    /// `custom-http-errors`: replaces the ConfigMap's list for the Ingress.
    pub codes: Option<Vec<u16>>,
    /// `default-backend`: a Service of the Ingress's namespace.
    pub default_backend: Option<String>,
    /// `disable-proxy-intercept-errors`.
    pub disable_intercept: bool,
}

impl ErrorPages {
    /// Take one annotation of [`KEYS`].
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "custom-http-errors" => self.codes = Some(annotation_codes(value)?),
            "default-backend" => {
                let v = value.trim();
                if !service_name(v) {
                    return Err(format!("expected the name of a Service, got {value:?}"));
                }
                self.default_backend = Some(v.to_string());
            }
            _ => self.disable_intercept = boolean(value)?,
        }
        Ok(())
    }
}

/// A DNS-1035 label, as a Service name.
fn service_name(v: &str) -> bool {
    (1..=63).contains(&v.len())
        && v.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && !v.ends_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The annotation's list: comma-separated codes from 400 to 599 (spaces around allowed).
pub fn annotation_codes(value: &str) -> Result<Vec<u16>, String> {
    let mut codes = Vec::new();
    for w in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match w.parse::<u16>() {
            Ok(c @ 400..=599) if w.len() == 3 => codes.push(c),
            _ => {
                return Err(format!(
                    "expected comma-separated status codes from 400 to 599, got {value:?}"
                ))
            }
        }
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_backend_and_switch() {
        let mut e = ErrorPages::default();
        e.parse("custom-http-errors", "404, 503,").unwrap();
        assert_eq!(e.codes.as_deref(), Some(&[404, 503][..]));
        for bad in ["200", "404,abc", "4040", "+404", "600"] {
            assert!(e.parse("custom-http-errors", bad).is_err(), "{bad}");
        }
        e.parse("default-backend", "error-pages").unwrap();
        assert_eq!(e.default_backend.as_deref(), Some("error-pages"));
        assert!(e.parse("default-backend", "ns/svc").is_err());
        assert!(e.parse("default-backend", "Bad").is_err());
        e.parse("disable-proxy-intercept-errors", "true").unwrap();
        assert!(e.disable_intercept);
        assert!(e.parse("disable-proxy-intercept-errors", "yes").is_err());
    }
}
