//! Stage 5: one sink for everything worth telling the operator.
//!
//! Each round of [`crate::Syncer::apply`] hands the [`Reporter`] every current finding (rejected
//! objects, warnings, unreadable files, unusable ConfigMap options). A finding is logged and
//! counted once, when it first appears, and stays quiet while it lasts; the new ones are returned
//! so API mode can record them as Events. An Ingress no longer rejected (fixed, or deleted) is
//! logged.

use std::collections::HashSet;

use crate::metrics::SyncMetrics;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// An Ingress was rejected; its last valid version, if any, keeps serving.
    IngressRejected {
        /// Short reason (metric label).
        reason: &'static str,
        /// An earlier valid version keeps serving.
        kept_previous: bool,
    },
    /// Part of an Ingress was not applied (missing Service, shadowed path, certificate, ...).
    IngressWarning,
    /// An annotation of an Ingress was not applied.
    Annotation {
        /// Short reason (metric label).
        reason: &'static str,
    },
    /// A manifest file (or document) could not be read; its last good objects stay in use.
    Manifest {
        /// Short reason (metric label): `parse`, or `limit` for a file over a parse limit.
        reason: &'static str,
    },
    /// A ConfigMap option was not applied.
    ConfigOption,
    /// A TLS Secret was rejected; its last good certificate (or the default) stays in use.
    SecretRejected {
        /// Short reason (metric label).
        reason: &'static str,
    },
}

/// One thing worth telling the operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// The object: `namespace/name` of an Ingress or Secret, a ConfigMap key, a file, a flag.
    pub subject: String,
    /// What is wrong.
    pub message: String,
}

impl Finding {
    /// Whether the finding is about the Ingress `subject` (and so deserves an Event on it), and
    /// whether it rejected it.
    pub fn ingress_event(&self) -> Option<bool> {
        match self.kind {
            FindingKind::IngressRejected { .. } => Some(true),
            FindingKind::IngressWarning | FindingKind::Annotation { .. } => Some(false),
            _ => None,
        }
    }
}

/// De-duplicates findings across rounds and emits log lines and metrics.
#[derive(Default)]
pub struct Reporter {
    metrics: Option<SyncMetrics>,
    current: HashSet<Finding>,
}

impl Reporter {
    /// A reporter counting into `metrics` (`weir_objects_rejected_total`), if any.
    pub fn new(metrics: Option<SyncMetrics>) -> Self {
        Reporter {
            metrics,
            current: HashSet::new(),
        }
    }

    /// This round's findings: those not reported by the previous round are logged, counted and
    /// returned (in the order given).
    pub fn round(&mut self, findings: Vec<Finding>) -> Vec<Finding> {
        let mut news = Vec::new();
        let mut current = HashSet::with_capacity(findings.len());
        for f in findings {
            if !self.current.contains(&f) && !current.contains(&f) {
                self.emit(&f);
                news.push(f.clone());
            }
            current.insert(f);
        }
        for gone in self.current.difference(&current) {
            if matches!(gone.kind, FindingKind::IngressRejected { .. })
                && !current.iter().any(|f| {
                    f.subject == gone.subject
                        && matches!(f.kind, FindingKind::IngressRejected { .. })
                })
            {
                tracing::info!(ingress = %gone.subject, "Ingress no longer rejected");
            }
        }
        self.current = current;
        news
    }

    fn emit(&self, f: &Finding) {
        let (subject, message) = (&f.subject, &f.message);
        let counted = match f.kind {
            FindingKind::IngressRejected {
                reason,
                kept_previous,
            } => {
                tracing::warn!(
                    ingress = %subject,
                    reason = %message,
                    kept_previous_version = kept_previous,
                    "Ingress rejected"
                );
                Some(("Ingress", reason))
            }
            FindingKind::IngressWarning => {
                tracing::warn!(ingress = %subject, warning = %message, "Ingress partially applied");
                None
            }
            FindingKind::Annotation { reason } => {
                tracing::warn!(ingress = %subject, warning = %message, "Ingress partially applied");
                Some(("Annotation", reason))
            }
            FindingKind::Manifest { reason } => {
                tracing::error!(error = %message, "manifest rejected, its last good objects stay in use");
                Some(("File", reason))
            }
            FindingKind::ConfigOption => {
                tracing::warn!(configmap_key = %subject, problem = %message, "ConfigMap option not applied");
                Some(("ConfigMap", "option"))
            }
            FindingKind::SecretRejected { reason } => {
                tracing::warn!(secret = %subject, reason = %message, "TLS Secret rejected; its last good certificate (or the default) stays in use");
                Some(("Secret", reason))
            }
        };
        if let (Some(m), Some((kind, reason))) = (&self.metrics, counted) {
            m.rejected.with_label_values(&[kind, reason]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(subject: &str, message: &str) -> Finding {
        Finding {
            kind: FindingKind::IngressWarning,
            subject: subject.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_finding_is_new_once_while_it_lasts() {
        let mut r = Reporter::new(None);
        assert_eq!(r.round(vec![warning("a", "x"), warning("a", "x")]).len(), 1);
        assert!(r.round(vec![warning("a", "x")]).is_empty());
        assert_eq!(r.round(vec![warning("a", "y")]), vec![warning("a", "y")]);
        assert!(r.round(vec![]).is_empty());
        assert_eq!(
            r.round(vec![warning("a", "y")]).len(),
            1,
            "back after it was gone"
        );
    }

    #[test]
    fn findings_are_counted_by_kind_and_reason() {
        let registry = prometheus::Registry::new();
        let m = SyncMetrics::register(&registry, &Default::default()).unwrap();
        let mut r = Reporter::new(Some(m.clone()));
        let secret = Finding {
            kind: FindingKind::SecretRejected { reason: "bad_pem" },
            subject: "ns/cert".into(),
            message: "no certificate".into(),
        };
        r.round(vec![
            secret.clone(),
            warning("ns/i", "Service ns/s not found"),
        ]);
        r.round(vec![secret]);
        assert_eq!(
            m.rejected.with_label_values(&["Secret", "bad_pem"]).get(),
            1
        );
    }
}
