//! Stage 3: Services and EndpointSlices → upstream pools.
//!
//! A backend (Service and port) resolves to the ready endpoints of the Service's EndpointSlices
//! for that port, once per backend per rebuild; a [`BackendCache`] carries resolved Services
//! across rebuilds, so only Services whose objects changed are read again, and pools come from a
//! [`PoolCache`] so unchanged endpoint sets keep their pool. A missing Service or port is not an
//! error of the Ingress: its routes answer 503 until the Service appears, as with ingress-nginx.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proxy_core::{PoolCache, PoolKey, Target};

use crate::admission::{BackendRef, PortRef};
use crate::objects::{ObjectSet, SERVICE_NAME_LABEL};

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
pub(crate) struct Resolver<'a> {
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
    pub(crate) fn new(
        objects: &'a ObjectSet,
        pools: &'a PoolCache,
        earlier: &'a mut BackendCache,
    ) -> Self {
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
    pub(crate) fn target(&mut self, namespace: &str, b: &BackendRef) -> (Target, Option<String>) {
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
    pub(crate) fn finish(self) {
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
