//! Stage 4: admitted Ingresses → routes.
//!
//! [`translate`] turns every served Ingress into routes of a [`SnapshotBuilder`]: its path
//! rules, its default backend for the unmatched paths of the hosts it is the oldest Ingress of,
//! and the catch-all; each route carries the Ingress's policy, built once per Ingress, so no route
//! of an Ingress is served without it. Backends come from [`crate::endpoints`].

use std::sync::Arc;

use proxy_core::{
    CustomErrors, DefaultRoute, HeaderPolicy, PoolCache, Refusal, Route, RouteMeta, RouteOrder,
    RoutePolicy, SnapshotBuilder, Target,
};

use crate::admission::{BackendRef, PortRef, ValidIngress};
use crate::endpoints::{BackendCache, Resolver};
use crate::objects::{ObjectRef, ObjectSet};

/// A problem found while translating that does not reject the Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// What is wrong.
    pub message: String,
}

/// Whether `host` is named by a `spec.tls` entry, directly or through a one-label wildcard.
fn tls_covers(tls_hosts: &std::collections::BTreeSet<String>, host: &str) -> bool {
    tls_hosts.contains(host)
        || host.split_once('.').is_some_and(|(label, parent)| {
            !label.is_empty() && tls_hosts.contains(&format!("*.{parent}"))
        })
}

/// The route policies of one Ingress, built once per Ingress: every route it produces (its
/// rules, its default backend for its hosts' unmatched paths, the catch-all) carries one of
/// them, so no route of an Ingress is served without the Ingress's policy.
struct IngressPolicies<'a> {
    ingress: &'a ValidIngress,
    settings: &'a TranslateSettings<'a>,
    /// The annotations applied on the ConfigMap defaults, for a host without TLS.
    base: Arc<RoutePolicy>,
    /// Per host: redirects and HSTS depend on whether the host has TLS. An Ingress names few
    /// hosts: a short list beats hashing an owned key per rule.
    by_host: std::cell::RefCell<Vec<(Option<String>, Arc<RoutePolicy>)>>,
}

impl<'a> IngressPolicies<'a> {
    /// `base`: the ConfigMap's defaults; `resolved`: the pieces read from other objects
    /// (`custom-headers`, error pages) or why the Ingress must not be served.
    fn new(
        ingress: &'a ValidIngress,
        settings: &'a TranslateSettings<'a>,
        base: &RoutePolicy,
        resolved: Resolved,
    ) -> Self {
        let a = &ingress.annotations;
        let refusal = a.refusal.as_deref().or(resolved.refusal.as_deref());
        let base = Arc::new(RoutePolicy {
            access: (!a.access.is_empty()).then(|| a.access.clone()),
            basic_auth: resolved.basic_auth,
            satisfy_any: a.auth.satisfy_any,
            cors: a.cors.policy(),
            refusal: refusal.map(|reason| Refusal {
                reason: reason.into(),
            }),
            rewrite: a.rewrite.policy(),
            upstream: a.upstream.apply(&base.upstream),
            body: a.body.apply(&base.body),
            headers: resolved.headers,
            errors: resolved.errors,
            external_auth: resolved.external_auth,
            skip_access_log: a.log.skip_access_log(),
            limits: a.limits.request_limits(&ingress.order.name),
            bandwidth: a.limits.bandwidth(base.bandwidth.as_ref()),
            ..base.clone()
        });
        IngressPolicies {
            ingress,
            settings,
            base,
            by_host: Default::default(),
        }
    }

    /// The policy of the Ingress's routes for `host` (`None`: rules without a host).
    fn for_host(&self, host: Option<&str>) -> Arc<RoutePolicy> {
        let mut by_host = self.by_host.borrow_mut();
        if let Some((_, p)) = by_host.iter().find(|(h, _)| h.as_deref() == host) {
            return p.clone();
        }
        let tls_host = host.is_some_and(|h| tls_covers(self.settings.tls_hosts, h));
        let https_redirect = self
            .ingress
            .annotations
            .redirect
            .policy(tls_host, self.settings.ssl_redirect);
        let p = if tls_host || https_redirect.is_some() {
            Arc::new(RoutePolicy {
                hsts: tls_host,
                https_redirect,
                ..(*self.base).clone()
            })
        } else {
            self.base.clone()
        };
        by_host.push((host.map(str::to_string), p.clone()));
        p
    }

    /// The policy of the catch-all (an Ingress with only a defaultBackend): everything but
    /// redirects, as ingress-nginx.
    fn catch_all(&self) -> Arc<RoutePolicy> {
        self.base.clone()
    }
}

/// The parts of an Ingress's policy read from other objects at each build.
struct Resolved {
    headers: Option<Arc<HeaderPolicy>>,
    errors: Option<Arc<CustomErrors>>,
    /// Basic authentication with the users of its Secret.
    basic_auth: Option<Arc<proxy_core::BasicAuth>>,
    /// External authentication (`auth-url`, or the ConfigMap's `global-auth-url`).
    external_auth: Option<Arc<proxy_core::ExternalAuth>>,
    /// Why the Ingress must not be served (a `custom-headers` problem, as ingress-nginx).
    refusal: Option<String>,
}

/// `custom-headers`: the ConfigMap's headers set after the ConfigMap's `add-headers`. As
/// ingress-nginx, the ConfigMap (`namespace/name`, any namespace Weir reads) must exist and
/// every header must be valid and allowed by `global-allowed-response-headers`, else the
/// Ingress is not served.
fn custom_headers(
    ing: &ValidIngress,
    objects: &ObjectSet,
    allowed: &[String],
    base: Option<&Arc<HeaderPolicy>>,
) -> Result<Option<Arc<HeaderPolicy>>, String> {
    let Some(key) = &ing.annotations.headers.custom_headers else {
        return Ok(base.cloned());
    };
    let cm = objects
        .config_maps
        .get(key)
        .ok_or_else(|| format!("custom-headers: ConfigMap {key} not found"))?;
    let mut policy = base.map(|b| (**b).clone()).unwrap_or_default();
    for (name, value) in cm.data.iter().flatten() {
        use crate::annotations::headers::{valid_custom_name, valid_custom_value};
        if !valid_custom_name(name) {
            return Err(format!(
                "custom-headers: invalid header name {name:?} in ConfigMap {key}"
            ));
        }
        if !valid_custom_value(value) {
            return Err(format!(
                "custom-headers: invalid value {value:?} of header {name} in ConfigMap {key}"
            ));
        }
        if !allowed.iter().any(|a| a == name) {
            return Err(format!(
                "custom-headers: header {name} is not listed in the ConfigMap key global-allowed-response-headers"
            ));
        }
        let header = proxy_core::HeaderEntry::new(name, value)
            .map_err(|e| format!("custom-headers: ConfigMap {key}: {e}"))?;
        policy.set_response(header);
    }
    Ok((!policy.is_empty()).then(|| Arc::new(policy)))
}

/// `no-auth-locations`: a path starting with one of them is not authenticated, neither by the
/// external service nor by basic authentication (as ingress-nginx's template skips both).
fn without_auth_at(
    policy: Arc<RoutePolicy>,
    path: &str,
    global: &crate::config::GlobalAuth,
) -> Arc<RoutePolicy> {
    if policy.authenticates() && global.exempts(path) {
        return Arc::new(RoutePolicy {
            external_auth: None,
            basic_auth: None,
            ..(*policy).clone()
        });
    }
    policy
}

/// The Service's first port (80 when it has none or is unknown), as ingress-nginx picks the
/// port of a default backend.
fn first_port(objects: &ObjectSet, key: &str) -> PortRef {
    PortRef::Number(
        objects
            .services
            .get(key)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map_or(80, |p| p.port),
    )
}

/// Controller-wide inputs of a translation.
pub struct TranslateSettings<'a> {
    /// `--default-backend-service`.
    pub default_backend_service: Option<&'a ObjectRef>,
    /// Route defaults from the ConfigMap.
    pub base_policy: &'a RoutePolicy,
    /// The ConfigMap's `ssl-redirect` (default true).
    pub ssl_redirect: bool,
    /// Hosts named in some Ingress's `spec.tls`.
    pub tls_hosts: &'a std::collections::BTreeSet<String>,
    /// The ConfigMap's `global-allowed-response-headers`.
    pub allowed_response_headers: &'a [String],
    /// The ConfigMap's `custom-http-errors`.
    pub custom_http_errors: &'a [u16],
    /// The ConfigMap's `global-auth-url` and `no-auth-locations`.
    pub global_auth: &'a crate::config::GlobalAuth,
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
    let mut ingresses: Vec<&ValidIngress> = ingresses.to_vec();
    ingresses.sort_unstable_by(|a, b| a.order.cmp(&b.order));
    // Canary Ingresses add backends to the main Ingresses' rules (at the end), nothing else.
    let (canaries, ingresses): (Vec<&ValidIngress>, Vec<&ValidIngress>) = ingresses
        .into_iter()
        .partition(|i| i.annotations.canary.enabled);
    let mut resolver = Resolver::new(objects, pools, backends);
    let mut builder = SnapshotBuilder::new();
    let mut warnings = Vec::new();
    let policy = Arc::new(settings.base_policy.clone());
    // Where requests go that no Ingress claims: `--default-backend-service` or the built-in 404.
    // A host's unmatched paths go there too when the host's oldest Ingress has no defaultBackend.
    let mut global_default = match settings.default_backend_service {
        Some(svc) => {
            let b = BackendRef {
                service: svc.name.clone(),
                port: first_port(objects, &svc.key()),
            };
            let (target, w) = resolver.target(&svc.namespace, &b);
            if let Some(message) = w {
                warnings.push(Warning {
                    ingress: "--default-backend-service".into(),
                    message,
                });
            }
            DefaultRoute {
                target,
                meta: RouteMeta {
                    namespace: svc.namespace.as_str().into(),
                    service: svc.name.as_str().into(),
                    ..Default::default()
                },
                policy: policy.clone(),
            }
        }
        None => DefaultRoute {
            policy: policy.clone(),
            ..Default::default()
        },
    };
    // `custom-http-errors` of the ConfigMap: pages from the global default backend, for every
    // route (the default route too, as ingress-nginx's default server).
    let base = RoutePolicy {
        errors: (!settings.custom_http_errors.is_empty()).then(|| {
            Arc::new(CustomErrors::new(
                settings.custom_http_errors.iter().copied(),
                global_default.target.clone(),
            ))
        }),
        ..settings.base_policy.clone()
    };
    if base.errors.is_some() {
        global_default.policy = Arc::new(base.clone());
    }
    // As ingress-nginx's `enforceRegexModifier`: a host where any Ingress uses regex paths or
    // rewrites has all its paths (of every Ingress) matched as regexes.
    for ing in &ingresses {
        for rule in &ing.rules {
            if ing.annotations.rewrite.wants_regex(&rule.path) {
                if let Err(e) = builder.regex_host(rule.host.as_deref()) {
                    warnings.push(Warning {
                        ingress: ing.order.name.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }
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
        let namespace: Arc<str> = ing.namespace.as_str().into();
        let ingress_name: Arc<str> = ing.name.as_str().into();
        let pages = &ing.annotations.errors;
        let errors = if pages.codes.is_none() && pages.default_backend.is_none() {
            base.errors.clone()
        } else {
            let backend = match &pages.default_backend {
                Some(svc) => {
                    let b = BackendRef {
                        service: svc.clone(),
                        port: first_port(objects, &format!("{}/{svc}", ing.namespace)),
                    };
                    let (target, w) = resolver.target(&ing.namespace, &b);
                    warn(w.map(|w| format!("default-backend: {w}")));
                    target
                }
                None => global_default.target.clone(),
            };
            let codes = match &pages.codes {
                Some(c) => c.as_slice(),
                None => settings.custom_http_errors,
            };
            let mut e = CustomErrors::new(codes.iter().copied(), backend);
            e.intercept_upstream = !pages.disable_intercept;
            e.serves_empty_service =
                matches!(e.backend, Target::Pool(_)) && pages.default_backend.is_some();
            Some(Arc::new(e))
        };
        // Parts read from other objects: one that cannot be used refuses the Ingress (503),
        // each is reported, and the first names the refusal.
        let mut unusable: Vec<String> = Vec::new();
        let headers = custom_headers(
            ing,
            objects,
            settings.allowed_response_headers,
            base.headers.as_ref(),
        )
        .unwrap_or_else(|reason| {
            unusable.push(reason);
            base.headers.clone()
        });
        let external_auth =
            crate::annotations::external_auth::resolve(ing, objects, settings.global_auth)
                .unwrap_or_else(|reason| {
                    unusable.push(reason);
                    None
                });
        let mut auth_warnings = Vec::new();
        let basic_auth = ing
            .annotations
            .auth
            .resolve(&ing.namespace, objects, &mut auth_warnings)
            .unwrap_or_else(|reason| {
                unusable.push(reason);
                None
            });
        for reason in &unusable {
            warn(Some(format!(
                "{reason}; the Ingress answers 503 until it is fixed"
            )));
        }
        for w in auth_warnings {
            warn(Some(w));
        }
        let refusal = unusable.into_iter().next();
        let policies = IngressPolicies::new(
            ing,
            settings,
            &base,
            Resolved {
                headers,
                errors,
                basic_auth,
                external_auth,
                refusal,
            },
        );
        // The Ingress's own default backend: where its hosts' unmatched paths go (when it is
        // their oldest Ingress), or every unknown host's requests when it has no rules.
        let own_default = ing.default_backend.as_ref().map(|b| {
            let (target, w) = resolver.target(&ing.namespace, b);
            warn(w);
            (target, Arc::<str>::from(b.service.as_str()))
        });
        let fallback = |policy: Arc<RoutePolicy>| {
            let (target, service) = match &own_default {
                Some((t, s)) => (t.clone(), s.clone()),
                None => (
                    global_default.target.clone(),
                    global_default.meta.service.clone(),
                ),
            };
            DefaultRoute {
                target,
                meta: RouteMeta {
                    namespace: namespace.clone(),
                    ingress: ingress_name.clone(),
                    service,
                    path: "/".into(),
                    canary: false,
                },
                policy,
            }
        };
        if ing.rules.is_empty() && ing.hosts.is_empty() {
            // Only spec.defaultBackend: the catch-all for hosts no rule names (the oldest wins).
            // It carries the Ingress's policy except redirects, as ingress-nginx.
            if catch_all.is_none() && own_default.is_some() {
                catch_all = Some(fallback(policies.catch_all()));
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
                policy: without_auth_at(
                    policies.for_host(rule.host.as_deref()),
                    &rule.path,
                    settings.global_auth,
                ),
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
        // As ingress-nginx: the oldest Ingress naming a host decides what the host's unmatched
        // paths do: they go to its own defaultBackend (else the global default) with its
        // policy (access lists, authentication, redirects, HSTS). The any-host server's
        // fallback is only ever the catch-all Ingress.
        for host in ing.hosts.iter().flatten() {
            if !hosts_seen.insert(host.clone()) {
                continue;
            }
            let route = fallback(policies.for_host(Some(host)));
            if let Err(e) = builder.host_default(Some(host), route, ing.order.clone()) {
                warn(Some(e.to_string()));
            }
        }
    }
    crate::canary::merge(
        &canaries,
        objects,
        &mut resolver,
        &mut builder,
        &mut warnings,
    );
    // `server-alias`: as ingress-nginx, the oldest Ingress of a host with aliases names them;
    // an alias that is a host of some Ingress is not one.
    let mut aliased: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for ing in &ingresses {
        if ing.annotations.rewrite.aliases.is_empty() {
            continue;
        }
        for host in ing.hosts.iter().flatten() {
            if !aliased.insert(host.as_str()) {
                continue;
            }
            for alias in &ing.annotations.rewrite.aliases {
                if alias == host || hosts_seen.contains(alias) {
                    continue;
                }
                if let Err(e) = builder.alias_host(alias, host) {
                    warnings.push(Warning {
                        ingress: ing.order.name.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    // `from-to-www-redirect`: the other name of a host (`www.` added or removed) redirects to
    // it, unless some Ingress names that host (the oldest Ingress asking wins).
    for ing in &ingresses {
        if !ing.annotations.rewrite.from_to_www {
            continue;
        }
        for host in ing.hosts.iter().flatten() {
            if host.starts_with("*.") {
                continue;
            }
            let from = match host.strip_prefix("www.") {
                Some(apex) => apex.to_string(),
                None => format!("www.{host}"),
            };
            if hosts_seen.contains(&from) {
                warnings.push(Warning {
                    ingress: ing.order.name.clone(),
                    message: format!(
                        "an Ingress already defines host {from}: no from-to-www redirect from it to {host}"
                    ),
                });
                continue;
            }
            let route = DefaultRoute {
                target: proxy_core::Target::NotFound,
                meta: RouteMeta {
                    namespace: ing.namespace.as_str().into(),
                    ingress: ing.name.as_str().into(),
                    path: "/".into(),
                    ..Default::default()
                },
                policy: Arc::new(RoutePolicy {
                    rewrite: Some(Box::new(proxy_core::Rewrite {
                        www_redirect: Some(host.as_str().into()),
                        ..Default::default()
                    })),
                    ..settings.base_policy.clone()
                }),
            };
            if let Err(e) = builder.host_default(Some(&from), route, ing.order.clone()) {
                warnings.push(Warning {
                    ingress: ing.order.name.clone(),
                    message: e.to_string(),
                });
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
    builder.default_route(global_default);
    resolver.finish();
    Translation { builder, warnings }
}
