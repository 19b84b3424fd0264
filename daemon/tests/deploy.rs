//! The in-cluster manifests in `deploy/`: every document is a known, schema-valid Kubernetes
//! object, the RBAC grants what Weir calls, and the Deployment passes only flags `weir` knows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// The kinds `deploy/` may hold.
const KINDS: &[&str] = &[
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Deployment",
    "Service",
    "IngressClass",
];

/// One document of one file.
struct Doc {
    /// `deploy/FILE`.
    file: String,
    /// 1-based document number in the file.
    index: usize,
    kind: String,
    value: Value,
}

impl Doc {
    /// `FILE: document N (Kind namespace/name)`, as file mode reports errors.
    fn place(&self) -> String {
        let meta = &self.value["metadata"];
        let name = match (meta["namespace"].as_str(), meta["name"].as_str()) {
            (Some(ns), Some(n)) => format!(" {ns}/{n}"),
            (None, Some(n)) => format!(" {n}"),
            _ => String::new(),
        };
        format!(
            "{}: document {} ({}{name})",
            self.file, self.index, self.kind
        )
    }
}

/// The typed objects of `deploy/`.
#[derive(Default)]
struct Objects {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    ingress_classes: Vec<IngressClass>,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every non-empty document of every `*.yaml` in `deploy/`; YAML errors are collected.
fn documents(errors: &mut Vec<String>) -> Vec<Doc> {
    let dir = deploy_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.yaml in {}", dir.display());
    let mut docs = Vec::new();
    for path in files {
        let file = format!("deploy/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, de) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let index = i + 1;
            let value: Value = match serde_path_to_error::deserialize(de) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!("{file}: document {index}: invalid YAML: {e}"));
                    // A syntax error ends the stream of documents.
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            match (value["apiVersion"].as_str(), value["kind"].as_str()) {
                (Some(_), Some(kind)) => docs.push(Doc {
                    file: file.clone(),
                    index,
                    kind: kind.to_string(),
                    value,
                }),
                _ => errors.push(format!(
                    "{file}: document {index}: apiVersion and kind are required"
                )),
            }
        }
    }
    docs
}

/// The first field of `original` that the typed round trip lost: a field the schema does not
/// know (k8s-openapi ignores them silently; the API server would reject or drop them).
fn unknown_field(original: &Value, round_trip: &Value, path: &str) -> Option<String> {
    match (original, round_trip) {
        (Value::Object(o), Value::Object(r)) => o.iter().find_map(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match r.get(k) {
                _ if v.is_null() => None,
                None => Some(p),
                Some(rv) => unknown_field(v, rv, &p),
            }
        }),
        (Value::Array(o), Value::Array(r)) => o
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(i, (v, rv))| unknown_field(v, rv, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Deserialize `doc` as `T`, naming the field on error.
fn typed<T: DeserializeOwned + Serialize>(doc: &Doc) -> Result<T, String> {
    let object: T = serde_path_to_error::deserialize(&doc.value).map_err(|e| {
        let path = e.path().to_string();
        format!("{}: {path}: {}", doc.place(), e.into_inner())
    })?;
    let back = serde_json::to_value(&object).map_err(|e| format!("{}: {e}", doc.place()))?;
    match unknown_field(&doc.value, &back, "") {
        Some(field) => Err(format!(
            "{}: {field}: unknown field for {}",
            doc.place(),
            doc.kind
        )),
        None => Ok(object),
    }
}

/// Parse every document into its k8s-openapi type; panic with every error found.
fn load() -> Objects {
    let mut errors = Vec::new();
    let docs = documents(&mut errors);
    let mut o = Objects::default();
    for doc in &docs {
        let r = match doc.kind.as_str() {
            "Namespace" => typed(doc).map(|x| o.namespaces.push(x)),
            "ServiceAccount" => typed(doc).map(|x| o.service_accounts.push(x)),
            "ClusterRole" => typed(doc).map(|x| o.cluster_roles.push(x)),
            "ClusterRoleBinding" => typed(doc).map(|x| o.cluster_role_bindings.push(x)),
            "Role" => typed(doc).map(|x| o.roles.push(x)),
            "RoleBinding" => typed(doc).map(|x| o.role_bindings.push(x)),
            "Deployment" => typed(doc).map(|x| o.deployments.push(x)),
            "Service" => typed(doc).map(|x| o.services.push(x)),
            "IngressClass" => typed(doc).map(|x| o.ingress_classes.push(x)),
            other => Err(format!(
                "{}: unknown kind {other:?} (expected one of {})",
                doc.place(),
                KINDS.join(", ")
            )),
        };
        if let Err(e) = r {
            errors.push(e);
        }
    }
    assert!(
        errors.is_empty(),
        "invalid manifests in deploy/:\n{}",
        errors.join("\n")
    );
    o
}

/// Whether `rules` allow `verb` on `group`/`resource` (on the object `name`, when given).
fn allows(
    rules: &[PolicyRule],
    group: &str,
    resource: &str,
    name: Option<&str>,
    verb: &str,
) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.iter().flatten().any(|x| x == want || x == "*")
    };
    rules.iter().any(|r| {
        let names_ok = match r.resource_names.as_deref() {
            None | Some([]) => true,
            Some(names) => name.is_some_and(|n| names.iter().any(|x| x == n)),
        };
        has(&r.api_groups, group)
            && has(&r.resources, resource)
            && names_ok
            && r.verbs.iter().any(|v| v == verb || v == "*")
    })
}

/// `weir --help`: every flag name, and the default of each flag that shows one.
fn weir_help() -> (BTreeSet<String>, BTreeMap<String, String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--help")
        .output()
        .expect("run weir --help");
    assert!(out.status.success(), "weir --help failed: {out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeSet::new();
    let mut defaults = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            current = None;
            for token in trimmed.split_whitespace() {
                let token = token.trim_end_matches(',');
                if token.starts_with("--") {
                    flags.insert(token.to_string());
                    current = Some(token.to_string());
                }
            }
        } else if let (Some(flag), Some(at)) = (&current, trimmed.find("[default: ")) {
            let rest = &trimmed[at + "[default: ".len()..];
            if let Some(end) = rest.find(']') {
                defaults.insert(flag.clone(), rest[..end].to_string());
            }
        }
    }
    assert!(
        flags.contains("--publish-service"),
        "unexpected help:\n{help}"
    );
    (flags, defaults)
}

/// `--flag=value` and `--flag value` pairs of a container's arguments.
fn flags_of(container: &Container) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for arg in container.args.iter().flatten() {
        if let Some(flag) = arg.strip_prefix("--") {
            match flag.split_once('=') {
                Some((name, value)) => out.push((format!("--{name}"), Some(value.to_string()))),
                None => out.push((format!("--{flag}"), None)),
            }
        } else if let Some(last) = out.last_mut().filter(|(_, v)| v.is_none()) {
            last.1 = Some(arg.clone());
        } else {
            panic!(
                "argument {arg:?} of container {} is not a flag",
                container.name
            );
        }
    }
    out
}

fn controller(o: &Objects) -> (&Deployment, &Container) {
    assert_eq!(o.deployments.len(), 1, "deploy/ should hold one Deployment");
    let d = &o.deployments[0];
    let pod = d.spec.template.spec.as_ref().unwrap();
    let c = pod
        .containers
        .iter()
        .find(|c| c.name == "controller")
        .expect("a container named controller");
    (d, c)
}

#[test]
fn every_document_is_a_known_kind_and_valid() {
    let o = load();
    assert_eq!(o.namespaces.len(), 1);
    assert_eq!(o.deployments.len(), 1);
    assert_eq!(o.service_accounts.len(), 1);
    assert_eq!(o.cluster_roles.len(), 1);
    assert_eq!(o.cluster_role_bindings.len(), 1);
    assert_eq!(o.roles.len(), 1);
    assert_eq!(o.role_bindings.len(), 1);
    assert_eq!(o.services.len(), 1);
    assert_eq!(o.ingress_classes.len(), 1);
    let ns = o.namespaces[0].metadata.name.as_deref().unwrap();
    assert_eq!(ns, "weir");
    for (kind, meta) in [
        ("ServiceAccount", &o.service_accounts[0].metadata),
        ("Role", &o.roles[0].metadata),
        ("RoleBinding", &o.role_bindings[0].metadata),
        ("Deployment", &o.deployments[0].metadata),
        ("Service", &o.services[0].metadata),
    ] {
        assert_eq!(meta.namespace.as_deref(), Some(ns), "{kind} namespace");
    }
}

#[test]
fn rbac_grants_what_weir_calls() {
    let o = load();
    let rules = o.cluster_roles[0].rules.as_deref().unwrap_or_default();
    // Reflectors: list + watch on every kind the snapshot is built from.
    for (group, resource) in [
        ("networking.k8s.io", "ingressclasses"),
        ("networking.k8s.io", "ingresses"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("", "secrets"),
        ("", "configmaps"),
    ] {
        for verb in ["list", "watch"] {
            assert!(
                allows(rules, group, resource, None, verb),
                "ClusterRole lacks {verb} on {group}/{resource}"
            );
        }
        // Nothing more than the reflectors need.
        for verb in ["get", "create", "update", "patch", "delete"] {
            assert!(
                !allows(rules, group, resource, None, verb),
                "ClusterRole grants {verb} on {group}/{resource}, which Weir never calls"
            );
        }
    }
    // Status: a merge patch on the status subresource.
    assert!(allows(
        rules,
        "networking.k8s.io",
        "ingresses/status",
        None,
        "patch"
    ));
    assert!(!allows(
        rules,
        "networking.k8s.io",
        "ingresses/status",
        None,
        "update"
    ));
    assert!(!allows(
        rules,
        "networking.k8s.io",
        "ingresses",
        None,
        "patch"
    ));
    // Events on Ingresses.
    assert!(allows(rules, "", "events", None, "create"));
    assert!(!allows(rules, "", "events", None, "patch"));

    // The Lease: created once, then read and renewed by name (--election-id).
    let (_, defaults) = weir_help();
    let (_, c) = controller(&o);
    let election_id = flags_of(c)
        .into_iter()
        .find(|(f, _)| f == "--election-id")
        .and_then(|(_, v)| v)
        .or_else(|| defaults.get("--election-id").cloned())
        .expect("--election-id default in weir --help");
    let lease_rules = o.roles[0].rules.as_deref().unwrap_or_default();
    let lease = |name: Option<&str>, verb: &str| {
        allows(lease_rules, "coordination.k8s.io", "leases", name, verb)
    };
    assert!(lease(None, "create"), "Role lacks create on leases");
    for verb in ["get", "update"] {
        assert!(
            lease(Some(election_id.as_str()), verb),
            "Role lacks {verb} on the Lease {election_id:?}"
        );
    }

    // Both bindings give their role to the controller's ServiceAccount.
    let sa = &o.service_accounts[0].metadata;
    let pod = o.deployments[0].spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, sa.name);
    let is_sa = |s: &[Subject]| {
        s.iter().any(|s| {
            s.kind == "ServiceAccount"
                && Some(&s.name) == sa.name.as_ref()
                && s.namespace == sa.namespace
        })
    };
    let crb = &o.cluster_role_bindings[0];
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(
        Some(&crb.role_ref.name),
        o.cluster_roles[0].metadata.name.as_ref()
    );
    assert!(is_sa(crb.subjects.as_deref().unwrap_or_default()));
    let rb = &o.role_bindings[0];
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(Some(&rb.role_ref.name), o.roles[0].metadata.name.as_ref());
    assert!(is_sa(rb.subjects.as_deref().unwrap_or_default()));
}

#[test]
fn deployment_uses_real_flags_and_matches_the_other_objects() {
    let o = load();
    let (known, defaults) = weir_help();
    let (d, c) = controller(&o);
    let flags = flags_of(c);
    for (flag, _) in &flags {
        assert!(
            known.contains(flag),
            "Deployment passes {flag}, which `weir --help` does not list"
        );
    }
    let value = |name: &str| {
        flags
            .iter()
            .find(|(f, _)| f == name)
            .and_then(|(_, v)| v.clone())
            .or_else(|| defaults.get(name).cloned())
    };

    // --publish-service names the LoadBalancer Service of deploy/, which selects these pods.
    let publish = value("--publish-service").expect("--publish-service is set");
    let svc = o
        .services
        .iter()
        .find(|s| {
            format!(
                "{}/{}",
                s.metadata.namespace.as_deref().unwrap_or_default(),
                s.metadata.name.as_deref().unwrap_or_default()
            ) == publish
        })
        .unwrap_or_else(|| panic!("--publish-service={publish} is not a Service in deploy/"));
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    let template = &d.spec.template;
    let pod_labels = template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap_or_default();
    for (k, v) in spec.selector.iter().flatten() {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "Service selector {k}={v} does not match the pods"
        );
    }

    // The IngressClass belongs to this controller.
    let class = o.ingress_classes[0].spec.as_ref().unwrap();
    assert_eq!(class.controller, value("--controller-class"));

    // Pod shape: host network, downward API, probes on /healthz at --healthz-port.
    let pod = template.spec.as_ref().unwrap();
    assert_eq!(d.spec.replicas, Some(2));
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let from = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == var)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|f| f.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(from, Some(field), "{var} from the downward API");
    }
    let healthz_port: i32 = value("--healthz-port").unwrap().parse().unwrap();
    for (which, probe) in [
        ("readiness", &c.readiness_probe),
        ("liveness", &c.liveness_probe),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{which} probe is an httpGet"));
        assert_eq!(get.path.as_deref(), Some("/healthz"), "{which} probe path");
        assert_eq!(
            get.port,
            IntOrString::Int(healthz_port),
            "{which} probe port"
        );
    }
    let ports: BTreeSet<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    let http: i32 = value("--http-port").unwrap().parse().unwrap();
    let https: i32 = value("--https-port").unwrap().parse().unwrap();
    assert_eq!(ports, BTreeSet::from([http, https, healthz_port]));

    // Shutdown: the preStop hook runs /wait-shutdown, and the pod's termination grace period
    // covers the grace period, the wait for requests in flight and the Lease release.
    let pre_stop = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone());
    assert_eq!(pre_stop, Some(vec!["/wait-shutdown".to_string()]));
    let secs = |flag: &str| -> i64 { value(flag).unwrap().parse().unwrap() };
    let needed = secs("--shutdown-grace-period") + secs("--worker-shutdown-timeout") + 5;
    let period = pod.termination_grace_period_seconds.unwrap_or(30);
    assert!(
        period >= needed,
        "terminationGracePeriodSeconds {period} < {needed} needed to shut down"
    );
}
