//! Stage 2: an Ingress's `nginx.ingress.kubernetes.io/*` annotations → typed policy pieces.
//!
//! Each family Weir implements is a module here that parses its annotations into one typed piece
//! of [`IngressAnnotations`]; the [`registry`] lists every annotation ingress-nginx documents
//! and decides what happens to the others: refused (reported, the rest of the Ingress served),
//! not yet (reported and ignored), or — for one that guards access — a refusal of service (the
//! Ingress answers 503 on every route rather than serve without it). Parsing happens once per
//! Ingress version, never per request.

mod access;
pub(crate) mod auth;
pub(crate) mod body;
mod canary;
mod cors;
mod errors;
pub mod external_auth;
pub mod headers;
pub mod limits;
mod log;
mod redirect;
pub mod registry;
mod rewrite;
pub(crate) mod upstream;

pub use auth::BasicAuthSettings;
pub use body::Bodies;
pub use canary::CanarySettings;
pub use cors::CorsSettings;
pub use errors::ErrorPages;
pub use external_auth::{AuthSettings, ExternalAuthAnnotations};
pub use headers::HeaderAnnotations;
pub use limits::LimitAnnotations;
pub use log::Logging;
pub use redirect::Redirects;
use registry::Status;
pub use rewrite::Rewrites;
pub use upstream::Upstream;

/// The annotation prefix of ingress-nginx, the default of `--annotations-prefix`.
pub const DEFAULT_PREFIX: &str = "nginx.ingress.kubernetes.io";

/// Everything Weir takes from one Ingress's annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressAnnotations {
    /// HTTPS redirects.
    pub redirect: Redirects,
    /// Client address allow and deny lists.
    pub access: proxy_core::AccessList,
    /// Regex paths, rewrites, `app-root`, fixed redirects, `upstream-vhost`.
    pub rewrite: Rewrites,
    /// Request body limit and buffering.
    pub body: Bodies,
    /// Upstream timeouts and retries.
    pub upstream: Upstream,
    /// Cross-origin resource sharing.
    pub cors: CorsSettings,
    /// `custom-headers`.
    pub headers: HeaderAnnotations,
    /// Custom error pages and the `default-backend` Service.
    pub errors: ErrorPages,
    /// Access log on or off.
    pub log: Logging,
    /// Canary: the Ingress is the canary of the main Ingress's paths.
    pub canary: CanarySettings,
    /// Authentication by an external service (`auth-url`, `enable-global-auth`).
    pub external_auth: ExternalAuthAnnotations,
    /// Request, connection and bandwidth limits.
    pub limits: LimitAnnotations,
    /// Basic authentication and `satisfy`.
    pub auth: BasicAuthSettings,
    /// Why the Ingress must not be served, when an annotation that guards access cannot be
    /// honoured: every route of the Ingress answers 503 (fail closed).
    pub refusal: Option<String>,
    /// What was not applied, and why.
    pub problems: Vec<AnnotationProblem>,
}

/// An annotation Weir did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationProblem {
    /// The value does not parse; the annotation is ignored.
    #[error("annotation {annotation}: {reason}; ignored")]
    Invalid {
        /// Full annotation name.
        annotation: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The value of an annotation that guards access does not parse: the Ingress is refused.
    #[error("annotation {annotation}: {reason}; the Ingress answers 503 until it is fixed")]
    InvalidGuard {
        /// Full annotation name.
        annotation: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// Never applied by Weir (nginx snippets).
    #[error("annotation {annotation} is refused: {reason}")]
    Refused {
        /// Full annotation name.
        annotation: String,
        /// Why.
        reason: &'static str,
    },
    /// Guards access and is not supported yet: the Ingress is refused.
    #[error("annotation {annotation} ({family}) is not supported by Weir yet; the Ingress answers 503 instead of serving without it")]
    NotYetGuard {
        /// Full annotation name.
        annotation: String,
        /// Its family, in words.
        family: &'static str,
    },
    /// Not supported yet; ignored.
    #[error("annotation {annotation} is not supported by Weir yet; ignored")]
    NotYet {
        /// Full annotation name.
        annotation: String,
    },
    /// Carries the prefix but is no ingress-nginx annotation (a typo?); ignored.
    #[error("annotation {annotation} is not an ingress-nginx annotation; ignored")]
    Unknown {
        /// Full annotation name.
        annotation: String,
    },
}

impl AnnotationProblem {
    /// Short kind, used as a metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            AnnotationProblem::Invalid { .. } => "invalid",
            AnnotationProblem::InvalidGuard { .. } => "invalid_guard",
            AnnotationProblem::Refused { .. } => "refused",
            AnnotationProblem::NotYetGuard { .. } => "not_yet_guard",
            AnnotationProblem::NotYet { .. } => "not_yet",
            AnnotationProblem::Unknown { .. } => "unknown",
        }
    }
}

/// Why snippets are refused.
const SNIPPET_REASON: &str = "nginx snippets do not exist in Weir (and are disabled by default in ingress-nginx, CVE-2021-25742)";

impl IngressAnnotations {
    /// Parse the annotations under `prefix` (without the trailing `/`); others are ignored.
    pub fn parse<'a>(
        annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
        prefix: &str,
    ) -> Self {
        let mut out = IngressAnnotations::default();
        for (key, value) in annotations {
            let Some(name) = key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
            else {
                continue;
            };
            let Some(entry) = registry::lookup(name) else {
                out.problems.push(AnnotationProblem::Unknown {
                    annotation: key.clone(),
                });
                continue;
            };
            match entry.status {
                Status::Implemented => {
                    let parsed = if redirect::KEYS.contains(&name) {
                        out.redirect.parse(name, value)
                    } else if access::KEYS.contains(&name) {
                        access::parse(&mut out.access, name, value)
                    } else if rewrite::KEYS.contains(&name) {
                        out.rewrite.parse(name, value)
                    } else if body::KEYS.contains(&name) {
                        out.body.parse(name, value)
                    } else if upstream::KEYS.contains(&name) {
                        out.upstream.parse(name, value)
                    } else if cors::KEYS.contains(&name) {
                        out.cors.parse(name, value)
                    } else if headers::KEYS.contains(&name) {
                        out.headers.parse(name, value)
                    } else if errors::KEYS.contains(&name) {
                        out.errors.parse(name, value)
                    } else if log::KEYS.contains(&name) {
                        out.log.parse(name, value)
                    } else if canary::KEYS.contains(&name) {
                        out.canary.parse(name, value)
                    } else if external_auth::KEYS.contains(&name) {
                        out.external_auth.parse(name, value)
                    } else if limits::KEYS.contains(&name) {
                        out.limits.parse(name, value)
                    } else if auth::KEYS.contains(&name) {
                        out.auth.parse(name, value)
                    } else {
                        // The registry and the families disagree (a unit test prevents it).
                        Err("not parsed by Weir".to_string())
                    };
                    if let Err(reason) = parsed {
                        let annotation = key.clone();
                        out.problems.push(if entry.guards_access {
                            out.refusal
                                .get_or_insert_with(|| format!("annotation {key} is invalid"));
                            AnnotationProblem::InvalidGuard { annotation, reason }
                        } else {
                            AnnotationProblem::Invalid { annotation, reason }
                        });
                    }
                }
                Status::Refused => out.problems.push(AnnotationProblem::Refused {
                    annotation: key.clone(),
                    reason: SNIPPET_REASON,
                }),
                Status::NotYet if entry.fails_closed() => {
                    out.refusal
                        .get_or_insert_with(|| format!("annotation {key} is not supported yet"));
                    out.problems.push(AnnotationProblem::NotYetGuard {
                        annotation: key.clone(),
                        family: "authentication",
                    });
                }
                Status::NotYet => out.problems.push(AnnotationProblem::NotYet {
                    annotation: key.clone(),
                }),
            }
        }
        out.canary.finish(prefix, &mut out.problems);
        out
    }
}

/// A boolean as ingress-nginx reads one (Go's `strconv.ParseBool`).
fn boolean(v: &str) -> Result<bool, String> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("expected \"true\" or \"false\", got {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse(pairs: &[(&str, &str)]) -> IngressAnnotations {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        IngressAnnotations::parse(&map, DEFAULT_PREFIX)
    }

    #[test]
    fn every_implemented_annotation_has_a_family_and_no_family_parses_others() {
        for a in registry::ANNOTATIONS {
            let parsed = redirect::KEYS.contains(&a.name)
                || access::KEYS.contains(&a.name)
                || rewrite::KEYS.contains(&a.name)
                || body::KEYS.contains(&a.name)
                || upstream::KEYS.contains(&a.name)
                || cors::KEYS.contains(&a.name)
                || headers::KEYS.contains(&a.name)
                || errors::KEYS.contains(&a.name)
                || log::KEYS.contains(&a.name)
                || canary::KEYS.contains(&a.name)
                || external_auth::KEYS.contains(&a.name)
                || limits::KEYS.contains(&a.name)
                || auth::KEYS.contains(&a.name);
            assert_eq!(parsed, a.status == Status::Implemented, "{}", a.name);
        }
    }

    #[test]
    fn families_parse_and_problems_are_typed() {
        let a = parse(&[
            ("ssl-redirect", "False"),
            ("force-ssl-redirect", "1"),
            ("whitelist-source-range", "10.0.0.0/8"),
            ("rewrite-target", "/$1"),
            ("proxy-buffering", "on"),
            ("server-snippet", "x"),
            ("no-such-thing", "x"),
        ]);
        assert_eq!(a.redirect.ssl_redirect, Some(false));
        assert!(a.redirect.force_ssl_redirect);
        assert_eq!(a.access.allow.len(), 1);
        assert_eq!(a.refusal, None);
        let labels: Vec<_> = a.problems.iter().map(|p| p.metric_label()).collect();
        assert_eq!(labels, ["unknown", "not_yet", "refused"]);
    }

    #[test]
    fn body_and_upstream_annotations_parse_and_bad_values_are_ignored() {
        let a = parse(&[
            ("proxy-body-size", "8m"),
            ("proxy-read-timeout", "86400"),
            ("proxy-next-upstream", "error http_503"),
            ("proxy-request-buffering", "maybe"),
            ("proxy-connect-timeout", "5.5"),
        ]);
        assert_eq!(a.body.max_size, Some(Some(8 << 20)));
        assert_eq!(
            a.upstream.read_timeout,
            Some(std::time::Duration::from_secs(86400))
        );
        assert!(a.upstream.next_upstream.unwrap().status(503));
        assert_eq!(
            (a.body.request_buffering, a.upstream.connect_timeout),
            (None, None)
        );
        assert_eq!(
            a.refusal, None,
            "a bad body or timeout value never refuses service"
        );
        let problems: Vec<String> = a.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("proxy-connect-timeout") && p.contains("\"5.5\"")));
        assert!(problems
            .iter()
            .any(|p| p.contains("proxy-request-buffering") && p.contains("\"maybe\"")));
    }

    #[test]
    fn access_guards_fail_closed() {
        let bad_list = parse(&[("denylist-source-range", "10.0.0.0/33")]);
        assert!(bad_list.refusal.is_some());
        assert_eq!(bad_list.problems[0].metric_label(), "invalid_guard");
        let auth = parse(&[("auth-keepalive-share-vars", "true")]);
        assert!(auth.refusal.is_some());
        assert!(auth.problems[0]
            .to_string()
            .contains("auth-keepalive-share-vars (authentication) is not supported"));
        // A malformed auth-url refuses service; a good one does not.
        let bad_url = parse(&[("auth-url", "auth.example/check")]);
        assert!(bad_url.refusal.is_some());
        assert_eq!(bad_url.problems[0].metric_label(), "invalid_guard");
        assert!(bad_url.problems[0]
            .to_string()
            .contains("auth.example/check"));
        assert_eq!(parse(&[("auth-url", "http://auth/")]).refusal, None);
        // A refused snippet never refuses service, even under auth-.
        assert_eq!(parse(&[("auth-snippet", "x")]).refusal, None);
        // A bad boolean is ignored, not fatal.
        let b = parse(&[("ssl-redirect", "yes")]);
        assert_eq!((b.redirect.ssl_redirect, b.refusal), (None, None));
    }

    #[test]
    fn other_prefixes_are_ignored_and_the_prefix_is_configurable() {
        let map: BTreeMap<String, String> = [
            ("example.com/auth-url".to_string(), "x".to_string()),
            (
                "nginx.ingress.kubernetes.io/auth-url".to_string(),
                "x".to_string(),
            ),
            (
                "custom.io/force-ssl-redirect".to_string(),
                "true".to_string(),
            ),
        ]
        .into();
        let a = IngressAnnotations::parse(&map, "custom.io");
        assert!(a.redirect.force_ssl_redirect);
        assert_eq!((a.refusal, a.problems.len()), (None, 0));
    }
}
