//! Canary Ingresses (`canary: "true"`): stage 4's last step, after the main Ingresses' routes.
//!
//! As ingress-nginx, a canary Ingress has no routes of its own: each of its rules adds its
//! Service as the canary backend of the main rule with the same host, path and path type, and
//! the main rule's policy applies to both backends. A rule without a main rule is reported and
//! serves nothing; at most one canary per main rule (the oldest canary Ingress wins).

use std::sync::Arc;

use proxy_core::{PoolKey, Route, RoutePolicy, SnapshotBuilder, Target};

use crate::admission::{BackendRef, ValidIngress};
use crate::endpoints::Resolver;
use crate::objects::ObjectSet;
use crate::translate::Warning;

/// Add the backends of `canaries` (sorted oldest first) to the main routes of `builder`.
pub(crate) fn merge(
    canaries: &[&ValidIngress],
    objects: &ObjectSet,
    resolver: &mut Resolver<'_>,
    builder: &mut SnapshotBuilder,
    warnings: &mut Vec<Warning>,
) {
    for ing in canaries {
        let mut warn = |message: String| {
            warnings.push(Warning {
                ingress: ing.order.name.clone(),
                message,
            })
        };
        let mut backend = |b: &BackendRef, warn: &mut dyn FnMut(String)| {
            let key = format!("{}/{}", ing.namespace, b.service);
            if !objects.services.contains_key(&key) {
                warn(format!(
                    "canary: Service {key} not found; the main backend keeps all traffic"
                ));
                return None;
            }
            let (target, w) = resolver.target(&ing.namespace, b);
            if let Some(w) = w {
                warn(format!("canary: {w}"));
            }
            Some(target)
        };
        if let Some(refusal) = &ing.annotations.refusal {
            warn(format!(
                "canary: the canary Ingress's own annotations are ignored (the main Ingress's apply), so it is not refused: {refusal}"
            ));
        }
        for rule in &ing.rules {
            let host = rule.host.as_deref();
            let Some(target) = backend(&rule.backend, &mut warn) else {
                continue;
            };
            match builder.route_mut(host, rule.kind, &rule.path) {
                Some(route) => {
                    if let Err(message) = attach(ing, route, target) {
                        warn(message);
                    }
                }
                None => warn(format!(
                    "canary: no main Ingress defines {} path {} of host {}; the canary serves nothing there",
                    rule.kind,
                    rule.path,
                    host.unwrap_or("*")
                )),
            }
        }
        // A canary's defaultBackend is the canary of every rule without a host.
        if let Some(b) = &ing.default_backend {
            let Some(target) = backend(b, &mut warn) else {
                continue;
            };
            let mut merged = false;
            for route in builder.routes_mut(None) {
                merged |= attach(ing, route, target.clone()).is_ok();
            }
            if !merged {
                warn(format!(
                    "canary: no main rule without a host can take the defaultBackend {}; it serves nothing",
                    b.service
                ));
            }
        }
    }
}

fn pool_key(t: &Target) -> Option<&PoolKey> {
    match t {
        Target::Pool(p) => Some(p.key()),
        Target::NotFound => None,
    }
}

/// Make `target` the canary backend of `route` with the rules of `ing`.
fn attach(ing: &ValidIngress, route: &mut Route, target: Target) -> Result<(), String> {
    let at = || format!("{} path {}", route.kind, route.path);
    if pool_key(&route.target).is_some() && pool_key(&route.target) == pool_key(&target) {
        return Err(format!(
            "canary: {} is also the main backend of {}; not a canary there",
            route.meta.service,
            at()
        ));
    }
    if route.policy.canary.is_some() {
        return Err(format!(
            "canary: {} already has the canary of an older Ingress (one canary per path); ignored there",
            at()
        ));
    }
    route.policy = Arc::new(RoutePolicy {
        canary: Some(ing.annotations.canary.canary(target)),
        ..(*route.policy).clone()
    });
    Ok(())
}
