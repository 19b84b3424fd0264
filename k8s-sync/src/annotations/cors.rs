//! `enable-cors`, `cors-allow-origin`, `cors-allow-methods`, `cors-allow-headers`,
//! `cors-allow-credentials`, `cors-expose-headers`, `cors-max-age`: cross-origin resource
//! sharing. As ingress-nginx, a bad value keeps that annotation's default (reported); a bad
//! origin in the list is skipped (reported) and the others are kept.

use http::HeaderValue;
use proxy_core::{Cors, OriginPattern};

use super::boolean;

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "cors-allow-credentials",
    "cors-allow-headers",
    "cors-allow-methods",
    "cors-allow-origin",
    "cors-expose-headers",
    "cors-max-age",
    "enable-cors",
];

/// An Ingress's CORS settings: ingress-nginx's defaults until an annotation says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsSettings {
    /// `enable-cors`.
    pub enabled: bool,
    /// The answer, when enabled.
    pub cors: Cors,
}

/// Whether `v` is a comma-separated list of words made of `chars` (spaces allowed around).
fn word_list(v: &str, word: impl Fn(&str) -> bool) -> bool {
    !v.trim().is_empty()
        && v.split(',').all(|w| {
            let w = w.trim();
            !w.is_empty() && word(w)
        })
}

fn header_name(w: &str) -> bool {
    w.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl CorsSettings {
    /// Take one annotation of [`KEYS`]. `Err`: the value was (at least partly) not used.
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        let header = |v: &str| HeaderValue::from_str(v.trim()).map_err(|e| e.to_string());
        match name {
            "enable-cors" => self.enabled = boolean(value)?,
            "cors-allow-credentials" => self.cors.allow_credentials = boolean(value)?,
            "cors-allow-origin" => return self.origins(value),
            "cors-allow-methods" => {
                if !word_list(value, |w| w.bytes().all(|b| b.is_ascii_alphabetic())) {
                    return Err(format!(
                        "expected a comma-separated list of methods, got {value:?}; the default is used"
                    ));
                }
                self.cors.allow_methods = header(value)?;
            }
            "cors-allow-headers" => {
                if !word_list(value, header_name) {
                    return Err(format!(
                        "expected a comma-separated list of header names, got {value:?}; the default is used"
                    ));
                }
                self.cors.allow_headers = header(value)?;
            }
            "cors-expose-headers" => {
                if !word_list(value, |w| w == "*" || header_name(w)) {
                    return Err(format!(
                        "expected a comma-separated list of header names or \"*\", got {value:?}"
                    ));
                }
                self.cors.expose_headers = Some(header(value)?);
            }
            _ => match value.trim().parse::<u32>() {
                Ok(n) => self.cors.max_age = HeaderValue::from(n),
                Err(_) => {
                    return Err(format!(
                        "expected a number of seconds, got {value:?}; the default 1728000 is used"
                    ))
                }
            },
        }
        Ok(())
    }

    /// `cors-allow-origin`: `*`, or a comma-separated list of origins (`https://*.example.com`
    /// matches one label). Bad entries are skipped; a `*` anywhere allows every origin.
    fn origins(&mut self, value: &str) -> Result<(), String> {
        let mut origins = Vec::new();
        let mut bad = Vec::new();
        for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if origin == "*" {
                origins.clear();
                bad.clear();
                break;
            }
            match OriginPattern::parse(origin) {
                Some(p) => origins.push(p),
                None => bad.push(origin),
            }
        }
        self.cors.origins = origins;
        if bad.is_empty() {
            Ok(())
        } else if self.cors.origins.is_empty() {
            // Nothing usable: as ingress-nginx, no origin matches, rather than all.
            self.cors.origins = vec![OriginPattern::parse("null").expect("valid")];
            Err(format!(
                "no valid origin in {value:?} (expected scheme://host[:port] or \"*\"); only the \"null\" origin is allowed"
            ))
        } else {
            Err(format!(
                "origins {bad:?} are not scheme://host[:port]; skipped"
            ))
        }
    }

    /// The route piece, when CORS is enabled.
    pub fn policy(&self) -> Option<Cors> {
        self.enabled.then(|| self.cors.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> (CorsSettings, Vec<String>) {
        let mut s = CorsSettings::default();
        let errors = pairs
            .iter()
            .filter_map(|(k, v)| s.parse(k, v).err())
            .collect();
        (s, errors)
    }

    #[test]
    fn defaults_are_ingress_nginx_ones_and_need_enable_cors() {
        let (s, e) = settings(&[("cors-max-age", "60")]);
        assert!(e.is_empty());
        assert_eq!(s.policy(), None, "not enabled");
        let (s, e) = settings(&[("enable-cors", "true")]);
        assert!(e.is_empty());
        let c = s.policy().unwrap();
        assert!(c.origins.is_empty() && c.allow_credentials);
        assert_eq!(c.allow_methods, Cors::DEFAULT_METHODS);
        assert_eq!(c.max_age, "1728000");
    }

    #[test]
    fn values_and_malformed_values() {
        let (s, e) = settings(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://a.test, https://*.b.test:8443 ,",
            ),
            ("cors-allow-methods", "GET, POST"),
            ("cors-allow-headers", "X-A,X_B"),
            ("cors-expose-headers", "*, X-C"),
            ("cors-allow-credentials", "false"),
            ("cors-max-age", "600"),
        ]);
        assert!(e.is_empty(), "{e:?}");
        let c = s.policy().unwrap();
        assert_eq!(c.origins.len(), 2);
        assert!(c.origins[1].matches(b"https://x.b.test:8443"));
        assert_eq!(c.allow_methods, "GET, POST");
        assert_eq!(c.allow_headers, "X-A,X_B");
        assert_eq!(c.expose_headers.unwrap(), "*, X-C");
        assert!(!c.allow_credentials);
        assert_eq!(c.max_age, "600");

        let (s, e) = settings(&[
            ("enable-cors", "yes"),
            ("cors-allow-methods", "GET; rm"),
            ("cors-allow-headers", "X-A, $http_x"),
            ("cors-expose-headers", ""),
            ("cors-max-age", "-1"),
            ("cors-allow-credentials", "maybe"),
        ]);
        assert_eq!(e.len(), 6, "{e:?}");
        assert!(e[1].contains("GET; rm"), "{}", e[1]);
        assert!(!s.enabled);
        assert_eq!(s.cors, Cors::default(), "every bad value keeps its default");

        let (s, e) = settings(&[("cors-allow-origin", "https://a.test, example.com")]);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("example.com"), "{}", e[0]);
        assert_eq!(s.cors.origins.len(), 1, "the good origin is kept");
        let (s, e) = settings(&[("cors-allow-origin", "example.com")]);
        assert_eq!(e.len(), 1);
        assert!(
            !s.cors.origins.is_empty(),
            "nothing usable allows no origin"
        );
        assert!(!s.cors.origins[0].matches(b"https://example.com"));
        let (s, e) = settings(&[("cors-allow-origin", "https://a.test, *")]);
        assert!(e.is_empty() && s.cors.origins.is_empty(), "* allows all");
    }
}
