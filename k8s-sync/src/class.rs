//! Which Ingresses this controller serves: ingress-nginx's class rules.
//!
//! In order:
//! 1. `spec.ingressClassName`, when set, must name an IngressClass whose `spec.controller` equals
//!    `--controller-class` (or, with `--ingress-class-by-name`, whose name is `--ingress-class`);
//! 2. otherwise the legacy `kubernetes.io/ingress.class` annotation, when present, must equal
//!    `--ingress-class`;
//! 3. an Ingress with neither is served with `--watch-ingress-without-class`, or when one of this
//!    controller's IngressClasses is marked default (`ingressclass.kubernetes.io/is-default-class`).
//!    In a cluster the API server's admission fills in the default class when an Ingress is
//!    created; file mode has no admission, so Weir applies the default itself.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::objects::ObjectSet;
use crate::SyncOptions;

/// The legacy class annotation.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The annotation marking an IngressClass as the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Why an Ingress is or is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassDecision {
    /// Served.
    Ours,
    /// Belongs to another controller (or to no one); the reason says why.
    NotOurs(String),
}

/// Decides ingress class membership for one set of objects.
pub struct ClassFilter<'a> {
    opts: &'a SyncOptions,
    ours: BTreeSet<&'a str>,
    default_is_ours: bool,
}

impl<'a> ClassFilter<'a> {
    /// Look at the IngressClasses in `objects`.
    pub fn new(opts: &'a SyncOptions, objects: &'a ObjectSet) -> Self {
        let mut ours = BTreeSet::new();
        let mut default_is_ours = false;
        for (name, class) in &objects.ingress_classes {
            if is_ours(opts, name, class) {
                ours.insert(name.as_str());
                let is_default = class
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true");
                default_is_ours |= is_default;
            }
        }
        ClassFilter {
            opts,
            ours,
            default_is_ours,
        }
    }

    /// Whether `ing` is served by this controller.
    pub fn decide(&self, ing: &Ingress) -> ClassDecision {
        if let Some(name) = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
        {
            return if self.ours.contains(name) {
                ClassDecision::Ours
            } else {
                ClassDecision::NotOurs(format!(
                    "ingressClassName {name:?} is not an IngressClass of controller {:?}",
                    self.opts.controller_class
                ))
            };
        }
        if let Some(class) = ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLASS_ANNOTATION))
        {
            return if *class == self.opts.ingress_class {
                ClassDecision::Ours
            } else {
                ClassDecision::NotOurs(format!("annotation {CLASS_ANNOTATION}={class:?}"))
            };
        }
        if self.opts.watch_ingress_without_class || self.default_is_ours {
            ClassDecision::Ours
        } else {
            ClassDecision::NotOurs(
                "no ingress class (see --watch-ingress-without-class or a default IngressClass)"
                    .into(),
            )
        }
    }
}

fn is_ours(opts: &SyncOptions, name: &str, class: &IngressClass) -> bool {
    let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref());
    controller == Some(opts.controller_class.as_str())
        || (opts.ingress_class_by_name && name == opts.ingress_class)
}
