//! Stage 1: which Ingresses are served, in which version.
//!
//! [`Admission::admit`] filters Ingresses by class ([`crate::class`]), validates each on its own
//! ([`validate_ingress`]: a bad one is rejected whole, with the field and the reason; its
//! annotations are parsed here, once per version) and remembers the last valid version of every
//! Ingress, so a broken edit keeps the previous version serving instead of removing routes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use proxy_core::validate_rule;
use proxy_core::{BuildError, PathKind, RouteOrder};

use crate::annotations::IngressAnnotations;
use crate::class::{ClassDecision, ClassFilter};
use crate::objects::ObjectSet;

/// Why an Ingress was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIngress {
    /// Neither rules nor a default backend.
    #[error("spec: the Ingress has no rules and no defaultBackend")]
    Empty,
    /// A backend names no Service (resource backends are not supported).
    #[error("{field}: only service backends are supported (resource backends are not)")]
    NotAService {
        /// Field path.
        field: String,
    },
    /// A service backend without a port number or name.
    #[error("{field}: a service backend needs port.number or port.name")]
    MissingPort {
        /// Field path.
        field: String,
    },
    /// `pathType` is not Exact, Prefix or ImplementationSpecific.
    #[error(
        "{field}: unknown pathType {value:?} (expected Exact, Prefix or ImplementationSpecific)"
    )]
    PathType {
        /// Field path.
        field: String,
        /// The value given.
        value: String,
    },
    /// A host or path the route table refuses.
    #[error("{field}: {source}")]
    Rule {
        /// Field path.
        field: String,
        /// The route table's reason.
        source: BuildError,
    },
}

impl InvalidIngress {
    /// Short reason used as the `reason` metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            InvalidIngress::Empty => "empty",
            InvalidIngress::NotAService { .. } => "resource_backend",
            InvalidIngress::MissingPort { .. } => "missing_port",
            InvalidIngress::PathType { .. } => "path_type",
            InvalidIngress::Rule {
                source: BuildError::InvalidHost(_),
                ..
            } => "invalid_host",
            InvalidIngress::Rule { .. } => "invalid_path",
        }
    }
}

/// A Service port as an Ingress names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    /// `port.number`.
    Number(i32),
    /// `port.name`.
    Name(String),
}

/// A service backend of a validated Ingress.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendRef {
    /// Service name (in the Ingress's namespace).
    pub service: String,
    /// The port.
    pub port: PortRef,
}

/// One host/path rule of a validated Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRule {
    /// Lowercased host; `None` for any host.
    pub host: Option<String>,
    /// Path type.
    pub kind: PathKind,
    /// Path as written (`/` when an ImplementationSpecific path is empty).
    pub path: String,
    /// Where it goes.
    pub backend: BackendRef,
}

/// An Ingress that passed validation, ready to translate.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidIngress {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Conflict order (creation time, then `namespace/name`).
    pub order: RouteOrder,
    /// Host/path rules.
    pub rules: Vec<ValidRule>,
    /// Hosts named by rules (including rules without paths).
    pub hosts: Vec<Option<String>>,
    /// `spec.defaultBackend`.
    pub default_backend: Option<BackendRef>,
    /// `spec.tls`.
    pub tls: Vec<ValidTls>,
    /// What its annotations ask for (parsed once per version of the Ingress).
    pub annotations: IngressAnnotations,
}

/// One `spec.tls` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidTls {
    /// Lowercased hosts.
    pub hosts: Vec<String>,
    /// `secretName`, in the Ingress's namespace.
    pub secret: Option<String>,
}

/// `field` names the backend in errors; it is only formatted when there is one.
fn backend_ref(
    b: &IngressBackend,
    field: &dyn Fn() -> String,
) -> Result<BackendRef, InvalidIngress> {
    let Some(svc) = &b.service else {
        return Err(InvalidIngress::NotAService { field: field() });
    };
    let port = match &svc.port {
        Some(p) => match (&p.number, &p.name) {
            (Some(n), _) => PortRef::Number(*n),
            (None, Some(name)) if !name.is_empty() => PortRef::Name(name.clone()),
            _ => None.ok_or_else(|| InvalidIngress::MissingPort {
                field: format!("{}.service.port", field()),
            })?,
        },
        None => {
            return Err(InvalidIngress::MissingPort {
                field: format!("{}.service.port", field()),
            })
        }
    };
    Ok(BackendRef {
        service: svc.name.clone(),
        port,
    })
}

/// Check one Ingress and parse its annotations under `prefix`. `created` is its creation time in
/// seconds (used to order conflicts).
pub fn validate_ingress(
    ing: &Ingress,
    created: i64,
    prefix: &str,
) -> Result<ValidIngress, InvalidIngress> {
    let namespace = ing.metadata.namespace.clone().unwrap_or_default();
    let name = ing.metadata.name.clone().unwrap_or_default();
    let spec = ing.spec.as_ref();
    let default_backend = spec
        .and_then(|s| s.default_backend.as_ref())
        .map(|b| backend_ref(b, &|| "spec.defaultBackend".to_string()))
        .transpose()?;
    let mut rules = Vec::new();
    let mut hosts = Vec::new();
    let spec_rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
    if spec_rules.is_empty() && default_backend.is_none() {
        return Err(InvalidIngress::Empty);
    }
    for (ri, rule) in spec_rules.iter().enumerate() {
        let host = rule
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(str::to_ascii_lowercase);
        validate_rule(host.as_deref(), PathKind::Prefix, "/").map_err(|source| {
            InvalidIngress::Rule {
                field: format!("spec.rules[{ri}].host"),
                source,
            }
        })?;
        if !hosts.contains(&host) {
            hosts.push(host.clone());
        }
        let Some(http) = &rule.http else { continue };
        for (pi, p) in http.paths.iter().enumerate() {
            let field = || format!("spec.rules[{ri}].http.paths[{pi}]");
            let kind = match p.path_type.as_str() {
                "Exact" => PathKind::Exact,
                "Prefix" => PathKind::Prefix,
                "ImplementationSpecific" => PathKind::ImplementationSpecific,
                other => {
                    return Err(InvalidIngress::PathType {
                        field: format!("{}.pathType", field()),
                        value: other.to_string(),
                    })
                }
            };
            let path = match p.path.as_deref() {
                Some(p) if !p.is_empty() => p.to_string(),
                _ if kind == PathKind::ImplementationSpecific => "/".to_string(),
                _ => String::new(),
            };
            validate_rule(host.as_deref(), kind, &path).map_err(|source| InvalidIngress::Rule {
                field: format!("{}.path", field()),
                source,
            })?;
            let backend = backend_ref(&p.backend, &|| format!("{}.backend", field()))?;
            rules.push(ValidRule {
                host: host.clone(),
                kind,
                path,
                backend,
            });
        }
    }
    let tls = spec
        .and_then(|s| s.tls.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|t| ValidTls {
            hosts: t
                .hosts
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            secret: t.secret_name.clone().filter(|s| !s.is_empty()),
        })
        .collect();
    Ok(ValidIngress {
        tls,
        annotations: IngressAnnotations::parse(ing.metadata.annotations.iter().flatten(), prefix),
        order: RouteOrder {
            created,
            name: format!("{namespace}/{name}"),
        },
        namespace,
        name,
        rules,
        hosts,
        default_backend,
    })
}

/// Remembers the last valid version of every Ingress between rounds.
#[derive(Default)]
pub struct Admission {
    /// `--annotations-prefix`.
    prefix: String,
    /// The last valid version of every Ingress, with the object it was validated from.
    accepted: HashMap<String, (Arc<Ingress>, ValidIngress)>,
    /// When each Ingress without a creation timestamp (file mode) was first seen.
    first_seen: HashMap<String, i64>,
}

/// The outcome of one round of admission.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Ingresses refused in this round (`namespace/name`, reason). Those with an earlier valid
    /// version keep serving that version.
    pub rejected: Vec<(String, InvalidIngress)>,
    /// Ingresses left to other controllers (`namespace/name`, why).
    pub ignored: Vec<(String, String)>,
}

impl ValidIngress {
    /// `namespace/name`.
    pub fn key(&self) -> &str {
        &self.order.name
    }
}

impl Admission {
    /// Annotations are read under `prefix` (`--annotations-prefix`, without the trailing `/`).
    pub fn new(prefix: &str) -> Self {
        Admission {
            prefix: prefix.to_string(),
            ..Default::default()
        }
    }

    /// Decide which Ingresses of `objects` are served; `now` (seconds) dates Ingresses that
    /// carry no creation timestamp. The served versions are then in [`Admission::served`].
    pub fn admit(&mut self, objects: &ObjectSet, filter: &ClassFilter<'_>, now: i64) -> Admitted {
        let mut out = Admitted::default();
        let mut live: HashSet<&str> = HashSet::new();
        for (key, ing) in &objects.ingresses {
            if let ClassDecision::NotOurs(why) = filter.decide(ing) {
                tracing::debug!(ingress = %key, %why, "ignoring Ingress of another class");
                out.ignored.push((key.clone(), why));
                continue;
            }
            live.insert(key.as_str());
            // The same object as last time (sources share unchanged objects): still valid.
            if self
                .accepted
                .get(key)
                .is_some_and(|(source, _)| Arc::ptr_eq(source, ing))
            {
                continue;
            }
            let created = match &ing.metadata.creation_timestamp {
                Some(t) => t.0.as_second(),
                None => *self.first_seen.entry(key.clone()).or_insert(now),
            };
            match validate_ingress(ing, created, &self.prefix) {
                Ok(valid) => {
                    self.accepted.insert(key.clone(), (ing.clone(), valid));
                }
                Err(e) => out.rejected.push((key.clone(), e)),
            }
        }
        self.accepted.retain(|k, _| live.contains(k.as_str()));
        self.first_seen
            .retain(|k, _| objects.ingresses.contains_key(k));
        out
    }

    /// The served version of every admitted Ingress (any order).
    pub fn served(&self) -> impl Iterator<Item = &ValidIngress> {
        self.accepted.values().map(|(_, v)| v)
    }

    /// Whether `key` (`namespace/name`) has a served version.
    pub fn is_served(&self, key: &str) -> bool {
        self.accepted.contains_key(key)
    }

    /// `namespace/name` of every served Ingress, sorted.
    pub fn served_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.accepted.keys().cloned().collect();
        keys.sort_unstable();
        keys
    }
}
