//! `canary`, `canary-by-header` (`-value`, `-pattern`), `canary-by-cookie`, `canary-weight`,
//! `canary-weight-total`: the Ingress is the canary of the main Ingress with the same host and
//! path, and these rules decide which requests go to it.

use std::sync::Arc;

use proxy_core::{Canary, CanaryHeader, HeaderMatch, Target};

use super::{boolean, AnnotationProblem};

/// The annotations of this family.
pub(super) const KEYS: &[&str] = &[
    "canary",
    "canary-by-cookie",
    "canary-by-header",
    "canary-by-header-pattern",
    "canary-by-header-value",
    "canary-weight",
    "canary-weight-total",
];

/// An Ingress's canary settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanarySettings {
    /// `canary: "true"`: the Ingress only adds a backend to the main Ingress's paths.
    pub enabled: bool,
    /// `canary-by-header`.
    pub header: Option<http::HeaderName>,
    /// `canary-by-header-value`.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`, as written (checked to compile when parsed).
    pub header_pattern: Option<String>,
    /// The pattern does not compile: requests carrying the header go to the main backend.
    pub pattern_unusable: bool,
    /// `canary-by-cookie`.
    pub cookie: Option<String>,
    /// `canary-weight` (negative values count as 0).
    pub weight: u32,
    /// `canary-weight-total` (default 100; values below 100 count as 100).
    pub weight_total: u32,
}

impl Default for CanarySettings {
    fn default() -> Self {
        CanarySettings {
            enabled: false,
            header: None,
            header_value: None,
            header_pattern: None,
            pattern_unusable: false,
            cookie: None,
            weight: 0,
            weight_total: 100,
        }
    }
}

/// ingress-nginx's check of names and values (`BasicCharsRegex`, spaces removed first).
fn basic_chars(name: &str, v: &str) -> Result<String, String> {
    let ok = v
        .chars()
        .filter(|&c| c != ' ')
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/' | ':'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?} is not a valid {name} (letters, digits and - . _ ~ / : only)"
        ))
    }
}

/// Go's `strconv.Atoi`, as ingress-nginx reads integers.
fn integer(v: &str) -> Result<i64, String> {
    v.parse::<i64>()
        .map_err(|_| format!("expected an integer, got {v:?}"))
}

impl CanarySettings {
    /// Take one annotation of [`KEYS`]; a bad value leaves the setting at its default.
    pub(super) fn parse(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "canary" => self.enabled = boolean(value)?,
            "canary-weight" => self.weight = integer(value)?.clamp(0, u32::MAX.into()) as u32,
            "canary-weight-total" => {
                self.weight_total = integer(value)?.clamp(0, u32::MAX.into()) as u32
            }
            "canary-by-header" => {
                // As nginx's `$http_x_canary`: `_` stands for `-` (headers with `_` are dropped
                // by default, `enable-underscores-in-headers`).
                let v = basic_chars("header name", value.trim())?.replace('_', "-");
                self.header = if v.is_empty() {
                    None
                } else {
                    Some(
                        http::HeaderName::from_bytes(v.as_bytes())
                            .map_err(|_| format!("{v:?} is not a valid HTTP header name"))?,
                    )
                };
            }
            "canary-by-header-value" => {
                let v = basic_chars("header value", value)?;
                self.header_value = (!v.is_empty()).then_some(v);
            }
            "canary-by-header-pattern" => {
                let allowed =
                    |c: char| c.is_ascii_alphanumeric() || "-._~/:^$[](){}*+?|&=\\".contains(c);
                if !value.chars().all(allowed) {
                    return Err(format!(
                        "{value:?} contains characters ingress-nginx does not allow in a pattern"
                    ));
                }
                self.header_pattern = (!value.is_empty()).then(|| value.to_string());
                if let Err(e) = HeaderMatch::pattern(value) {
                    self.pattern_unusable = true;
                    return Err(format!(
                        "{value:?} is not a regular expression Weir supports ({}); requests carrying the header go to the main backend",
                        e.lines().last().unwrap_or_default().trim()
                    ));
                }
            }
            _ => {
                let v = basic_chars("cookie name", value.trim())?;
                self.cookie = (!v.is_empty()).then_some(v);
            }
        }
        Ok(())
    }

    /// Checks across the family's annotations, once they are all read: as ingress-nginx,
    /// canary rules without `canary: "true"` are an error and the Ingress is a plain one.
    pub(super) fn finish(&mut self, prefix: &str, problems: &mut Vec<AnnotationProblem>) {
        // The first rule set names the problem: `canary` itself may be absent.
        let configured = [
            (self.weight > 0, "canary-weight"),
            (self.header.is_some(), "canary-by-header"),
            (self.header_value.is_some(), "canary-by-header-value"),
            (self.header_pattern.is_some(), "canary-by-header-pattern"),
            (self.cookie.is_some(), "canary-by-cookie"),
        ]
        .into_iter()
        .find_map(|(set, key)| set.then_some(key));
        if let (false, Some(key)) = (self.enabled, configured) {
            problems.push(AnnotationProblem::Invalid {
                annotation: format!("{prefix}/{key}"),
                reason: "canary rules are set but canary is not \"true\" (the Ingress is served as a plain one)".into(),
            });
            *self = CanarySettings::default();
        }
        if self.enabled && self.header.is_none() {
            for (set, key) in [
                (self.header_value.is_some(), "canary-by-header-value"),
                (self.header_pattern.is_some(), "canary-by-header-pattern"),
            ] {
                if set {
                    problems.push(AnnotationProblem::Invalid {
                        annotation: format!("{prefix}/{key}"),
                        reason: "has no effect without canary-by-header".into(),
                    });
                }
            }
        }
    }

    /// The canary of a main route, sending to `target` by these rules (built once per
    /// snapshot; the pattern is compiled here).
    pub fn canary(&self, target: Target) -> Arc<Canary> {
        let header = self.header.clone().map(|name| CanaryHeader {
            name,
            matches: if let Some(v) = &self.header_value {
                HeaderMatch::Value(v.as_str().into())
            } else if self.pattern_unusable {
                HeaderMatch::Unusable
            } else if let Some(p) = &self.header_pattern {
                HeaderMatch::pattern(p).unwrap_or(HeaderMatch::Unusable)
            } else {
                HeaderMatch::AlwaysNever
            },
        });
        Arc::new(Canary {
            header,
            cookie: self.cookie.as_deref().map(Into::into),
            weight: self.weight,
            weight_total: self.weight_total,
            ..Canary::new(target)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> (CanarySettings, Vec<String>) {
        let mut c = CanarySettings::default();
        let mut problems = Vec::new();
        for (k, v) in pairs {
            if let Err(reason) = c.parse(k, v) {
                problems.push(format!("{k}: {reason}"));
            }
        }
        let mut typed = Vec::new();
        c.finish("p", &mut typed);
        problems.extend(typed.iter().map(|p| p.to_string()));
        (c, problems)
    }

    #[test]
    fn parses_every_rule() {
        let (c, problems) = parsed(&[
            ("canary", "true"),
            ("canary-by-header", "X_Canary"),
            ("canary-by-header-value", "yes"),
            ("canary-by-header-pattern", "^v[0-9]+$"),
            ("canary-by-cookie", "canary_cookie"),
            ("canary-weight", "30"),
            ("canary-weight-total", "1000"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(c.enabled);
        assert_eq!(c.header.as_ref().map(|h| h.as_str()), Some("x-canary"));
        assert_eq!(c.header_value.as_deref(), Some("yes"));
        assert_eq!(c.header_pattern.as_deref(), Some("^v[0-9]+$"));
        assert_eq!(c.cookie.as_deref(), Some("canary_cookie"));
        assert_eq!((c.weight, c.weight_total), (30, 1000));
        let canary = c.canary(Target::NotFound);
        assert!(matches!(
            canary.header.as_ref().unwrap().matches,
            HeaderMatch::Value(_)
        ));
    }

    #[test]
    fn malformed_values_are_reported_and_left_at_their_defaults() {
        for (key, value, needle) in [
            ("canary", "yes", "\"yes\""),
            ("canary-weight", "ten", "\"ten\""),
            ("canary-weight", "5.5", "\"5.5\""),
            ("canary-weight-total", "", "\"\""),
            ("canary-by-header", "X-Can@ry", "X-Can@ry"),
            ("canary-by-header", "a/b", "not a valid HTTP header name"),
            ("canary-by-header-value", "a;b", "a;b"),
            ("canary-by-cookie", "c=d", "c=d"),
            ("canary-by-header-pattern", "a b", "does not allow"),
            (
                "canary-by-header-pattern",
                "[][**da?$&*",
                "requests carrying the header",
            ),
        ] {
            let mut c = CanarySettings::default();
            let err = c.parse(key, value).unwrap_err();
            assert!(err.contains(needle), "{key}={value:?}: {err}");
            let default = CanarySettings::default();
            assert_eq!(
                (
                    c.enabled,
                    c.weight,
                    c.weight_total,
                    c.header,
                    c.header_value,
                    c.cookie
                ),
                (
                    default.enabled,
                    default.weight,
                    default.weight_total,
                    default.header,
                    default.header_value,
                    default.cookie
                ),
                "{key}={value:?}"
            );
        }
        let (c, _) = parsed(&[
            ("canary", "true"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-header-pattern", "(a)\\1"),
        ]);
        assert!(c.pattern_unusable);
        assert!(matches!(
            c.canary(Target::NotFound).header.as_ref().unwrap().matches,
            HeaderMatch::Unusable
        ));
    }

    #[test]
    fn negative_and_huge_weights_are_clamped() {
        let (c, problems) = parsed(&[
            ("canary", "true"),
            ("canary-weight", "-5"),
            ("canary-weight-total", "99999999999"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((c.weight, c.weight_total), (0, u32::MAX));
    }

    /// Found by fuzzing: the problem named `canary`, an annotation the Ingress did not have.
    #[test]
    fn a_rule_without_canary_names_itself() {
        let (c, problems) = parsed(&[("canary-by-header-value", "e.")]);
        assert_eq!(c, CanarySettings::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("p/canary-by-header-value"),
            "{problems:?}"
        );
    }

    #[test]
    fn rules_without_canary_true_are_an_error_and_ignored() {
        let (c, problems) = parsed(&[("canary-weight", "50"), ("canary-by-cookie", "c")]);
        assert_eq!(c, CanarySettings::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("p/canary") && problems[0].contains("is not \"true\""));
        // weight-total alone is no rule (as ingress-nginx).
        let (_, problems) = parsed(&[("canary-weight-total", "200")]);
        assert!(problems.is_empty());
        // A value or pattern without the header does nothing, and says so.
        let (c, problems) = parsed(&[("canary", "true"), ("canary-by-header-value", "v")]);
        assert!(c.enabled && c.canary(Target::NotFound).header.is_none());
        assert!(
            problems[0].contains("without canary-by-header"),
            "{problems:?}"
        );
    }
}
