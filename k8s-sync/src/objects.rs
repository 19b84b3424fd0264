//! The Kubernetes objects Weir reads, gathered into one set per build, whatever their source
//! (API watchers or manifest files).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The namespace of objects that name none (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One object of a supported kind. Objects are shared, not copied, between the source (a
/// watcher's store or a parsed file) and every set built from it, so an unchanged object keeps
/// its identity from one build to the next.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// networking.k8s.io/v1 Ingress.
    Ingress(Arc<Ingress>),
    /// networking.k8s.io/v1 IngressClass.
    IngressClass(Arc<IngressClass>),
    /// v1 Service.
    Service(Arc<Service>),
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice(Arc<EndpointSlice>),
    /// v1 Secret.
    Secret(Arc<Secret>),
    /// v1 ConfigMap.
    ConfigMap(Arc<ConfigMap>),
}

impl Object {
    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
        }
    }

    /// The metadata, for changing: a shared object is copied first.
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Ingress(o) => &mut Arc::make_mut(o).metadata,
            Object::IngressClass(o) => &mut Arc::make_mut(o).metadata,
            Object::Service(o) => &mut Arc::make_mut(o).metadata,
            Object::EndpointSlice(o) => &mut Arc::make_mut(o).metadata,
            Object::Secret(o) => &mut Arc::make_mut(o).metadata,
            Object::ConfigMap(o) => &mut Arc::make_mut(o).metadata,
        }
    }

    /// The kind, as in `kind:`.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
        }
    }

    /// Whether the kind lives in a namespace.
    pub fn namespaced(&self) -> bool {
        !matches!(self, Object::IngressClass(_))
    }

    /// Complete the object as the API server would store it: namespaced objects without a
    /// namespace go into `default`, and a Secret's `stringData` is merged into `data` (and wins).
    /// An object that needs neither is left as it is (and keeps its identity).
    pub fn normalize(&mut self) {
        if self.namespaced() && self.meta().namespace.as_deref().is_none_or(str::is_empty) {
            self.meta_mut().namespace = Some(DEFAULT_NAMESPACE.to_string());
        }
        if let Object::Secret(o) = self {
            if o.string_data.is_some() {
                let o = Arc::make_mut(o);
                let strings = o.string_data.take().unwrap_or_default();
                let data = o.data.get_or_insert_with(Default::default);
                for (k, v) in strings {
                    data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
                }
            }
        }
    }

    /// `namespace/name` (or `name` for cluster-scoped kinds).
    pub fn key(&self) -> String {
        key_of(self.meta())
    }
}

/// `namespace/name`, or `name` without a namespace.
pub fn key_of(meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or("");
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Every supported object, by kind and key. Later inserts of the same key replace earlier ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectSet {
    /// Ingresses by `namespace/name`.
    pub ingresses: BTreeMap<String, Arc<Ingress>>,
    /// IngressClasses by name.
    pub ingress_classes: BTreeMap<String, Arc<IngressClass>>,
    /// Services by `namespace/name`.
    pub services: BTreeMap<String, Arc<Service>>,
    /// EndpointSlices by `namespace/name`.
    pub endpoint_slices: BTreeMap<String, Arc<EndpointSlice>>,
    /// Secrets by `namespace/name`.
    pub secrets: BTreeMap<String, Arc<Secret>>,
    /// ConfigMaps by `namespace/name`.
    pub config_maps: BTreeMap<String, Arc<ConfigMap>>,
}

impl ObjectSet {
    /// Add (or replace) an object.
    pub fn insert(&mut self, mut obj: Object) {
        obj.normalize();
        let key = obj.key();
        match obj {
            Object::Ingress(o) => {
                self.ingresses.insert(key, o);
            }
            Object::IngressClass(o) => {
                self.ingress_classes.insert(key, o);
            }
            Object::Service(o) => {
                self.services.insert(key, o);
            }
            Object::EndpointSlice(o) => {
                self.endpoint_slices.insert(key, o);
            }
            Object::Secret(o) => {
                self.secrets.insert(key, o);
            }
            Object::ConfigMap(o) => {
                self.config_maps.insert(key, o);
            }
        }
    }

    /// Keep only namespaced objects in `namespace` (cluster-scoped ones stay).
    pub fn restrict_to_namespace(&mut self, namespace: &str) {
        let prefix = format!("{namespace}/");
        self.ingresses.retain(|k, _| k.starts_with(&prefix));
        self.services.retain(|k, _| k.starts_with(&prefix));
        self.endpoint_slices.retain(|k, _| k.starts_with(&prefix));
        self.secrets.retain(|k, _| k.starts_with(&prefix));
        self.config_maps.retain(|k, _| k.starts_with(&prefix));
    }

    /// Total number of objects.
    pub fn len(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.config_maps.len()
    }

    /// Whether the set holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A namespaced object named by a flag (`--default-backend-service`, `--configmap`,
/// `--default-ssl-certificate`, `--publish-service`): `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// Its key in an [`ObjectSet`]: `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
