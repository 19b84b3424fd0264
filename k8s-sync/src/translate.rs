//! Ingress + Service + EndpointSlice → proxy-core routes.
//!
//! [`validate_ingress`] checks one Ingress on its own (a bad one is rejected whole, with the field
//! and the reason); [`translate`] resolves Services and EndpointSlices and fills a
//! [`SnapshotBuilder`]. A missing Service or port is not an error of the Ingress: its routes
//! answer 503 until the Service appears, as with ingress-nginx.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use proxy_core::{
    validate_rule, AccessList, BuildError, DefaultRoute, HttpsRedirect, PathKind, PoolCache,
    PoolKey, Refusal, Route, RouteMeta, RouteOrder, RoutePolicy, SnapshotBuilder, Target,
};

use crate::objects::{ObjectSet, SERVICE_NAME_LABEL};

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
    /// Settings from `nginx.ingress.kubernetes.io/*` annotations.
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

/// The annotation prefix of ingress-nginx.
pub const ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Annotation settings Weir implements; values that do not parse are reported and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressAnnotations {
    /// `ssl-redirect` (default: the ConfigMap's `ssl-redirect`).
    pub ssl_redirect: Option<bool>,
    /// `force-ssl-redirect`.
    pub force_ssl_redirect: bool,
    /// `preserve-trailing-slash`.
    pub preserve_trailing_slash: bool,
    /// `whitelist-source-range` / `allowlist-source-range`.
    pub allow_source: Vec<ipnet::IpNet>,
    /// `denylist-source-range`.
    pub deny_source: Vec<ipnet::IpNet>,
    /// An access annotation did not parse: the Ingress answers 503 rather than fail open.
    pub denied: bool,
    /// Problems: unparsable values, annotations not implemented yet, refused snippets.
    pub problems: Vec<String>,
}

impl IngressAnnotations {
    fn parse(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Self {
        let mut out = IngressAnnotations::default();
        for (k, v) in annotations.into_iter().flatten() {
            let Some(name) = k.strip_prefix(ANNOTATION_PREFIX) else {
                continue;
            };
            let boolean = |v: &str| match v.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
            match name {
                "ssl-redirect" | "force-ssl-redirect" | "preserve-trailing-slash" => match boolean(v) {
                    Some(b) => match name {
                        "ssl-redirect" => out.ssl_redirect = Some(b),
                        "force-ssl-redirect" => out.force_ssl_redirect = b,
                        _ => out.preserve_trailing_slash = b,
                    },
                    None => out.problems.push(format!("annotation {k}: expected \"true\" or \"false\", got {v:?}; ignored")),
                },
                "whitelist-source-range" | "allowlist-source-range" | "denylist-source-range" => {
                    match proxy_core::parse_cidrs(v) {
                        Ok(nets) if name == "denylist-source-range" => out.deny_source = nets,
                        Ok(nets) => out.allow_source = nets,
                        Err(e) => {
                            out.denied = true;
                            out.problems.push(format!(
                                "annotation {k}: {e}; the Ingress answers 503 until it is fixed"
                            ));
                        }
                    }
                }
                _ if name.starts_with("auth-") || name == "satisfy" => {
                    // Never serve without the authentication the Ingress asks for.
                    out.denied = true;
                    out.problems.push(format!(
                        "annotation {k} (authentication) is not supported by Weir yet; the Ingress answers 503 instead of serving without it"
                    ));
                }
                "configuration-snippet" | "server-snippet" | "stream-snippet" | "auth-snippet" => out.problems.push(format!(
                    "annotation {k} is refused: nginx snippets do not exist in Weir (and are disabled by default in ingress-nginx, CVE-2021-25742)"
                )),
                _ => out.problems.push(format!("annotation {k} is not supported by Weir yet; ignored")),
            }
        }
        out
    }
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

/// Check one Ingress. `created` is its creation time in seconds (used to order conflicts).
pub fn validate_ingress(ing: &Ingress, created: i64) -> Result<ValidIngress, InvalidIngress> {
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
        annotations: IngressAnnotations::parse(ing.metadata.annotations.as_ref()),
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

/// A problem found while translating that does not reject the Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// What is wrong.
    pub message: String,
}

/// Where `--default-backend-service` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
}

/// Backends resolved by earlier translations, by Service (`namespace/name`). An entry is reused
/// while its Service and EndpointSlices are the very objects it was resolved from (sources
/// share unchanged objects), so a rebuild re-reads only the Services that changed.
#[derive(Default)]
pub struct BackendCache {
    services: HashMap<String, ResolvedService>,
}

/// One Service as last resolved: the objects it came from and the target of each port asked for.
struct ResolvedService {
    service: Option<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    ports: HashMap<PortRef, (Target, Option<String>)>,
}

impl ResolvedService {
    fn resolved_from(
        &self,
        service: Option<&Arc<Service>>,
        slices: &[&Arc<EndpointSlice>],
    ) -> bool {
        let same_service = match (&self.service, service) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_service
            && self.slices.len() == slices.len()
            && self
                .slices
                .iter()
                .zip(slices)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// Resolves Service ports to endpoints, once per backend per build.
struct Resolver<'a> {
    objects: &'a ObjectSet,
    slices: HashMap<String, Vec<&'a Arc<EndpointSlice>>>,
    pools: &'a PoolCache,
    /// Targets resolved in this translation, by namespace then backend.
    resolved: HashMap<String, HashMap<BackendRef, Target>>,
    /// What earlier translations resolved; entries move to `current` when used.
    earlier: &'a mut BackendCache,
    /// The cache for the next translation: the Services this one resolved.
    current: BackendCache,
}

impl<'a> Resolver<'a> {
    fn new(objects: &'a ObjectSet, pools: &'a PoolCache, earlier: &'a mut BackendCache) -> Self {
        let mut slices: HashMap<String, Vec<&Arc<EndpointSlice>>> = HashMap::new();
        for s in objects.endpoint_slices.values() {
            let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            slices.entry(format!("{ns}/{svc}")).or_default().push(s);
        }
        Resolver {
            objects,
            slices,
            pools,
            resolved: HashMap::new(),
            earlier,
            current: BackendCache::default(),
        }
    }

    /// The pool for a backend; a warning when the Service or port does not exist.
    fn target(&mut self, namespace: &str, b: &BackendRef) -> (Target, Option<String>) {
        if let Some(t) = self.resolved.get(namespace).and_then(|m| m.get(b)) {
            return (t.clone(), None);
        }
        let svc_key = format!("{namespace}/{}", b.service);
        let service = self.objects.services.get(&svc_key);
        let slices = self.slices.get(&svc_key).map_or(&[][..], Vec::as_slice);
        let entry = match self.current.services.entry(svc_key.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let reused = self
                    .earlier
                    .services
                    .remove(e.key())
                    .filter(|r| r.resolved_from(service, slices));
                e.insert(reused.unwrap_or_else(|| ResolvedService {
                    service: service.cloned(),
                    slices: slices.iter().map(|s| Arc::clone(s)).collect(),
                    ports: HashMap::new(),
                }))
            }
        };
        if !entry.ports.contains_key(&b.port) {
            let port_label = match &b.port {
                PortRef::Number(n) => n.to_string(),
                PortRef::Name(n) => n.clone(),
            };
            let key = PoolKey(format!("{svc_key}:{port_label}").into());
            let (endpoints, warning) = match service {
                None => (Vec::new(), Some(format!("Service {svc_key} not found"))),
                Some(svc) => match endpoints(&svc_key, svc, slices, &b.port) {
                    Ok(e) => (e, None),
                    Err(w) => (Vec::new(), Some(w)),
                },
            };
            let target = Target::Pool(self.pools.get(&key, &endpoints));
            entry.ports.insert(b.port.clone(), (target, warning));
        }
        let (target, warning) = entry.ports[&b.port].clone();
        self.resolved
            .entry(namespace.to_string())
            .or_default()
            .insert(b.clone(), target.clone());
        (target, warning)
    }

    /// Ends the translation: what it resolved becomes the cache of the next one.
    fn finish(self) {
        *self.earlier = self.current;
    }
}

/// The ready endpoints of `svc`'s port `port`, from the Service's EndpointSlices.
fn endpoints(
    svc_key: &str,
    svc: &Service,
    slices: &[&Arc<EndpointSlice>],
    port: &PortRef,
) -> Result<Vec<SocketAddr>, String> {
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Err(format!(
            "Service {svc_key} is of type ExternalName, which Weir does not support yet"
        ));
    }
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let svc_port = ports.iter().find(|p| match port {
        PortRef::Number(n) => p.port == *n,
        PortRef::Name(n) => p.name.as_deref() == Some(n.as_str()),
    });
    let Some(svc_port) = svc_port else {
        let wanted = match port {
            PortRef::Number(n) => format!("port {n}"),
            PortRef::Name(n) => format!("port named {n:?}"),
        };
        return Err(format!("Service {svc_key} has no {wanted}"));
    };
    let port_name = svc_port.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(number) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        let Ok(number) = u16::try_from(number) else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            // A nil `ready` condition means ready (EndpointSlice API contract).
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, number));
                }
            }
        }
    }
    Ok(out)
}

/// Whether `host` is named by a `spec.tls` entry, directly or through a one-label wildcard.
fn tls_covers(tls_hosts: &std::collections::BTreeSet<String>, host: &str) -> bool {
    tls_hosts.contains(host)
        || host.split_once('.').is_some_and(|(label, parent)| {
            !label.is_empty() && tls_hosts.contains(&format!("*.{parent}"))
        })
}

/// Controller-wide inputs of a translation.
pub struct TranslateSettings<'a> {
    /// `--default-backend-service`.
    pub default_backend_service: Option<&'a ServiceRef>,
    /// Route defaults from the ConfigMap.
    pub base_policy: &'a RoutePolicy,
    /// The ConfigMap's `ssl-redirect` (default true).
    pub ssl_redirect: bool,
    /// Hosts named in some Ingress's `spec.tls`.
    pub tls_hosts: &'a std::collections::BTreeSet<String>,
}

/// The result of a translation.
pub struct Translation {
    /// The routes, ready to build.
    pub builder: SnapshotBuilder,
    /// Non-fatal problems, per Ingress.
    pub warnings: Vec<Warning>,
}

/// Translate validated Ingresses (any order) with the Services and EndpointSlices of `objects`.
pub fn translate(
    objects: &ObjectSet,
    ingresses: &[&ValidIngress],
    settings: &TranslateSettings<'_>,
    pools: &PoolCache,
    backends: &mut BackendCache,
) -> Translation {
    let default_backend_service = settings.default_backend_service;
    let mut ingresses: Vec<&ValidIngress> = ingresses.to_vec();
    ingresses.sort_unstable_by(|a, b| a.order.cmp(&b.order));
    let mut resolver = Resolver::new(objects, pools, backends);
    let mut builder = SnapshotBuilder::new();
    let mut warnings = Vec::new();
    let policy = Arc::new(settings.base_policy.clone());
    let mut catch_all: Option<DefaultRoute> = None;
    let mut hosts_seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for ing in &ingresses {
        let ing_key = &ing.order.name; // "namespace/name"
        let mut warn = |message: Option<String>| {
            if let Some(message) = message {
                if !warnings
                    .iter()
                    .any(|w: &Warning| &w.ingress == ing_key && w.message == message)
                {
                    warnings.push(Warning {
                        ingress: ing_key.clone(),
                        message,
                    });
                }
            }
        };
        for problem in &ing.annotations.problems {
            warn(Some(problem.clone()));
        }
        let namespace: Arc<str> = ing.namespace.as_str().into();
        let ingress_name: Arc<str> = ing.name.as_str().into();
        // Per host of this Ingress: redirect and HSTS depend on whether the host has TLS.
        // An Ingress names few hosts: a short list beats hashing an owned key per rule.
        let mut host_policies: Vec<(Option<String>, Arc<RoutePolicy>)> = Vec::new();
        let mut policy_for = |host: Option<&str>| -> Arc<RoutePolicy> {
            if let Some((_, p)) = host_policies.iter().find(|(h, _)| h.as_deref() == host) {
                return p.clone();
            }
            let tls_host = host.is_some_and(|h| tls_covers(settings.tls_hosts, h));
            let a = &ing.annotations;
            let redirect = a.force_ssl_redirect
                || (tls_host && a.ssl_redirect.unwrap_or(settings.ssl_redirect));
            let lists = !a.allow_source.is_empty() || !a.deny_source.is_empty();
            let p = Arc::new(RoutePolicy {
                hsts: tls_host,
                https_redirect: redirect.then_some(HttpsRedirect {
                    preserve_trailing_slash: a.preserve_trailing_slash,
                }),
                access: lists.then(|| AccessList {
                    allow: a.allow_source.clone(),
                    deny: a.deny_source.clone(),
                }),
                refusal: a.denied.then(|| Refusal {
                    reason: a.problems.join("; ").into(),
                }),
                ..settings.base_policy.clone()
            });
            host_policies.push((host.map(str::to_string), p.clone()));
            p
        };
        let default_route = ing.default_backend.as_ref().map(|b| {
            let (target, w) = resolver.target(&ing.namespace, b);
            warn(w);
            DefaultRoute {
                target,
                meta: RouteMeta {
                    namespace: namespace.clone(),
                    ingress: ingress_name.clone(),
                    service: b.service.as_str().into(),
                    path: "/".into(),
                    canary: false,
                },
                policy: policy.clone(),
            }
        });
        if ing.rules.is_empty() && ing.hosts.is_empty() {
            // Only spec.defaultBackend: the catch-all for hosts no rule names (the oldest wins).
            if catch_all.is_none() {
                catch_all = default_route;
            }
            continue;
        }
        for rule in &ing.rules {
            let (target, w) = resolver.target(&ing.namespace, &rule.backend);
            warn(w);
            let route = Route {
                kind: rule.kind,
                path: rule.path.clone(),
                target,
                meta: RouteMeta {
                    namespace: namespace.clone(),
                    ingress: ingress_name.clone(),
                    service: rule.backend.service.as_str().into(),
                    path: rule.path.as_str().into(),
                    canary: false,
                },
                policy: policy_for(rule.host.as_deref()),
                order: ing.order.clone(),
            };
            match builder.add_route(rule.host.as_deref(), route) {
                Ok(proxy_core::AddOutcome::Shadowed(by)) => warn(Some(format!(
                    "{} path {} of host {} is already defined by the older Ingress {}/{}",
                    rule.kind,
                    rule.path,
                    rule.host.as_deref().unwrap_or("*"),
                    by.namespace,
                    by.ingress
                ))),
                Ok(_) => {}
                Err(e) => warn(Some(e.to_string())),
            }
        }
        // As ingress-nginx: the oldest Ingress naming a host decides where that host's unmatched
        // paths go (its own defaultBackend, else the global default). The any-host server's
        // fallback is only ever the catch-all Ingress.
        for host in ing.hosts.iter().flatten() {
            if !hosts_seen.insert(host.clone()) {
                continue;
            }
            if let Err(e) = builder.declare_host(host) {
                warn(Some(e.to_string()));
            }
            if let Some(d) = &default_route {
                if let Err(e) = builder.host_default(Some(host), d.clone(), ing.order.clone()) {
                    warn(Some(e.to_string()));
                }
            }
        }
    }
    if let Some(d) = catch_all {
        if let Err(e) = builder.host_default(None, d, RouteOrder::default()) {
            warnings.push(Warning {
                ingress: "catch-all".into(),
                message: e.to_string(),
            });
        }
    }
    let default = match default_backend_service {
        Some(svc) => {
            let b = BackendRef {
                service: svc.name.clone(),
                port: PortRef::Number(
                    objects
                        .services
                        .get(&format!("{}/{}", svc.namespace, svc.name))
                        .and_then(|s| s.spec.as_ref())
                        .and_then(|s| s.ports.as_ref())
                        .and_then(|p| p.first())
                        .map_or(80, |p| p.port),
                ),
            };
            let (target, w) = resolver.target(&svc.namespace, &b);
            if let Some(message) = w {
                warnings.push(Warning {
                    ingress: "--default-backend-service".into(),
                    message,
                });
            }
            Some(DefaultRoute {
                target,
                meta: RouteMeta {
                    namespace: svc.namespace.as_str().into(),
                    service: svc.name.as_str().into(),
                    ..Default::default()
                },
                policy,
            })
        }
        None => None,
    };
    if let Some(d) = default {
        builder.default_route(d);
    }
    resolver.finish();
    Translation { builder, warnings }
}
