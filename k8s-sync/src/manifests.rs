//! File mode: the same manifests `kubectl apply -f DIR` takes, read from a folder.
//!
//! Every `*.yaml`, `*.yml` and `*.json` file directly in the folder is read (hidden files are
//! skipped). YAML files may hold several documents; a `kind: List` is unpacked. Kinds Weir does
//! not use (Deployments, ...) are ignored. A file that fails to parse is reported with the file,
//! the document number and the field, and its previously parsed objects stay in use.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::objects::{Object, ObjectSet};

/// Why a manifest could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// 1-based document number in the file, when the problem is inside one document.
    pub document: Option<usize>,
    /// `Kind namespace/name` of the document, when known.
    pub object: Option<String>,
    /// What is wrong, with the field path when there is one.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The folder could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read manifests folder {dir}: {source}")]
pub struct DirError {
    /// The folder.
    pub dir: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

#[derive(Deserialize)]
struct TypeMeta {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Option<NameMeta>,
}

#[derive(Deserialize)]
struct NameMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })
}

/// Turn one parsed document into objects (a `List` gives several). `Ok(vec![])` for kinds Weir
/// does not use.
fn document_objects(
    value: serde_json::Value,
    out: &mut Vec<Object>,
) -> Result<(), (Option<String>, String)> {
    if value.is_null() {
        return Ok(());
    }
    let tm: TypeMeta = typed(value.clone()).map_err(|m| (None, m))?;
    let label = {
        let (ns, name) = tm
            .metadata
            .as_ref()
            .map(|m| (m.namespace.clone(), m.name.clone()))
            .unwrap_or_default();
        let name = name.unwrap_or_default();
        Some(match ns {
            Some(ns) => format!("{} {ns}/{name}", tm.kind),
            None => format!("{} {name}", tm.kind),
        })
    };
    if tm.kind.is_empty() || tm.api_version.is_empty() {
        return Err((label, "apiVersion and kind are required".into()));
    }
    let mut obj = match (tm.api_version.as_str(), tm.kind.as_str()) {
        ("v1", "List") => {
            let items = value
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                document_objects(item, out).map_err(|(l, m)| (l, format!("items[{i}]: {m}")))?;
            }
            return Ok(());
        }
        ("networking.k8s.io/v1", "Ingress") => {
            Object::Ingress(Arc::new(typed(value).map_err(|m| (label.clone(), m))?))
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            Object::IngressClass(Arc::new(typed(value).map_err(|m| (label.clone(), m))?))
        }
        ("v1", "Service") => {
            Object::Service(Arc::new(typed(value).map_err(|m| (label.clone(), m))?))
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            Object::EndpointSlice(Arc::new(typed(value).map_err(|m| (label.clone(), m))?))
        }
        ("v1", "Secret") => Object::Secret(Arc::new(typed(value).map_err(|m| (label.clone(), m))?)),
        ("v1", "ConfigMap") => {
            Object::ConfigMap(Arc::new(typed(value).map_err(|m| (label.clone(), m))?))
        }
        (api, kind @ ("Ingress" | "IngressClass" | "EndpointSlice")) => {
            return Err((
                label,
                format!(
                    "{kind} must be of apiVersion {}, not {api}",
                    expected_api(kind)
                ),
            ));
        }
        _ => {
            tracing::debug!(kind = %tm.kind, api_version = %tm.api_version, "ignoring object of a kind Weir does not use");
            return Ok(());
        }
    };
    if obj.meta().name.as_deref().is_none_or(str::is_empty) {
        return Err((label, "metadata.name is required".into()));
    }
    // Stored complete, so that gathering a set from unchanged files copies nothing.
    obj.normalize();
    out.push(obj);
    Ok(())
}

fn expected_api(kind: &str) -> &'static str {
    match kind {
        "EndpointSlice" => "discovery.k8s.io/v1",
        _ => "networking.k8s.io/v1",
    }
}

/// Parse the text of one manifest file (`json` selects the JSON parser).
pub fn parse_manifest(file: &Path, text: &str, json: bool) -> Result<Vec<Object>, ManifestError> {
    let err = |document, object, message| ManifestError {
        file: file.to_path_buf(),
        document,
        object,
        message,
    };
    let mut out = Vec::new();
    if json {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| err(None, None, format!("invalid JSON: {e}")))?;
        document_objects(value, &mut out).map_err(|(o, m)| err(Some(1), o, m))?;
        return Ok(out);
    }
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(doc)
            .map_err(|e| err(Some(i + 1), None, format!("invalid YAML: {e}")))?;
        document_objects(value, &mut out).map_err(|(o, m)| err(Some(i + 1), o, m))?;
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
}

struct FileState {
    fingerprint: Fingerprint,
    content_hash: u64,
    /// Objects of the last successful parse (kept while the file is broken).
    objects: Vec<Object>,
    error: Option<ManifestError>,
}

/// What a scan found.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Whether anything differs from the previous scan.
    pub changed: bool,
    /// All objects (current files, plus the last good objects of broken files) when `changed`;
    /// empty otherwise.
    pub objects: ObjectSet,
    /// Files that are currently broken.
    pub errors: Vec<ManifestError>,
}

/// A manifests folder, re-read when its files change.
pub struct ManifestDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
}

impl ManifestDir {
    /// A folder to read; nothing is read until [`ManifestDir::scan`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ManifestDir {
            dir: dir.into(),
            files: BTreeMap::new(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Read what changed since the last scan. Fails only when the folder itself cannot be listed.
    pub fn scan(&mut self) -> Result<Scan, DirError> {
        let dir_err = |source| DirError {
            dir: self.dir.clone(),
            source,
        };
        let mut seen: BTreeMap<PathBuf, Fingerprint> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(dir_err)? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !is_manifest_name(&name) {
                continue;
            }
            // Follow symlinks (ConfigMap volumes link every file through `..data`).
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            seen.insert(
                path,
                Fingerprint {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                },
            );
        }
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| seen.contains_key(p));
        if self.files.len() != before {
            changed = true;
        }
        for (path, fp) in seen {
            // File times are coarse (a few ms): a file modified very recently is re-read even
            // when its size and time look the same, and its content compared.
            let settled = fp
                .modified
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > SETTLE);
            let known = self.files.get(&path);
            if settled && known.is_some_and(|s| s.fingerprint == fp && s.error.is_none()) {
                continue;
            }
            let text = std::fs::read_to_string(&path);
            let hash = text.as_ref().map(|t| content_hash(t)).unwrap_or(0);
            if known.is_some_and(|s| s.content_hash == hash && s.error.is_none() && text.is_ok()) {
                if let Some(s) = self.files.get_mut(&path) {
                    s.fingerprint = fp;
                }
                continue;
            }
            let result = match text {
                Ok(text) => {
                    parse_manifest(&path, &text, path.extension().is_some_and(|e| e == "json"))
                }
                Err(e) => Err(ManifestError {
                    file: path.clone(),
                    document: None,
                    object: None,
                    message: format!("cannot read: {e}"),
                }),
            };
            let state = self.files.entry(path.clone()).or_insert_with(|| FileState {
                fingerprint: fp.clone(),
                content_hash: 0,
                objects: Vec::new(),
                error: None,
            });
            state.content_hash = hash;
            let previous_error = state.error.take();
            state.fingerprint = fp;
            match result {
                Ok(objects) => {
                    // Equal objects are kept as they were, so that they stay the same objects.
                    if objects != state.objects {
                        state.objects = objects;
                        changed = true;
                    }
                    if previous_error.is_some() {
                        changed = true;
                    }
                }
                Err(e) => {
                    if previous_error.as_ref() != Some(&e) {
                        changed = true;
                    }
                    state.error = Some(e);
                }
            }
        }
        let mut objects = ObjectSet::default();
        let mut errors = Vec::new();
        for state in self.files.values() {
            // Objects are shared, not copied; the set is gathered only when something changed.
            if changed {
                for o in &state.objects {
                    objects.insert(o.clone());
                }
            }
            if let Some(e) = &state.error {
                errors.push(e.clone());
            }
        }
        Ok(Scan {
            changed,
            objects,
            errors,
        })
    }
}

/// How old a file's modification time must be before size and time alone are trusted.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

fn content_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn is_manifest_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_lists() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: IngressClass
  metadata: {name: nginx}
  spec: {controller: k8s.io/ingress-nginx}
"#;
        let objs = parse_manifest(Path::new("x.yaml"), text, false).unwrap();
        let kinds: Vec<_> = objs.iter().map(|o| o.kind()).collect();
        assert_eq!(kinds, vec!["Service", "IngressClass"]);
    }

    #[test]
    fn errors_name_document_object_and_field() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: ok}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bad, namespace: web}
spec:
  rules:
  - host: a.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: s, port: {number: "eighty"}}}
"#;
        let e = parse_manifest(Path::new("x.yaml"), text, false).unwrap_err();
        assert_eq!(e.document, Some(2));
        assert_eq!(e.object.as_deref(), Some("Ingress web/bad"));
        assert!(
            e.message
                .starts_with("spec.rules[0].http.paths[0].backend.service.port.number"),
            "{}",
            e.message
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with("x.yaml: document 2 (Ingress web/bad): spec.rules[0]"),
            "{shown}"
        );
    }

    #[test]
    fn syntax_errors_and_missing_fields() {
        let e = parse_manifest(Path::new("y.yaml"), "kind: [unclosed", false).unwrap_err();
        assert_eq!(e.document, Some(1));
        assert!(e.message.contains("invalid YAML"), "{}", e.message);
        let e = parse_manifest(
            Path::new("y.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {}\n",
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("metadata.name"), "{}", e.message);
        let e = parse_manifest(Path::new("y.json"), "{\"kind\": ", true).unwrap_err();
        assert!(e.message.contains("invalid JSON"), "{}", e.message);
        let e = parse_manifest(
            Path::new("y.yaml"),
            "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: x}\n",
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("networking.k8s.io/v1"), "{}", e.message);
    }

    #[test]
    fn broken_file_keeps_its_last_good_objects() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("svc.yaml");
        std::fs::write(&f, "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "garbage: [").unwrap();
        let mut m = ManifestDir::new(dir.path());
        let s = m.scan().unwrap();
        assert!(s.changed);
        assert!(s.errors.is_empty());
        assert!(s.objects.services.contains_key("default/a"));
        assert!(!m.scan().unwrap().changed);

        std::fs::write(&f, "apiVersion: v1\nkind: Service\nmetadata: {name: [}\n").unwrap();
        let s = m.scan().unwrap();
        assert!(s.changed);
        assert_eq!(s.errors.len(), 1);
        assert!(
            s.objects.services.contains_key("default/a"),
            "last good objects kept"
        );

        std::fs::write(&f, "apiVersion: v1\nkind: Service\nmetadata: {name: b}\n").unwrap();
        let s = m.scan().unwrap();
        assert!(s.changed && s.errors.is_empty());
        assert!(s.objects.services.contains_key("default/b"));
        assert!(!s.objects.services.contains_key("default/a"));

        std::fs::remove_file(&f).unwrap();
        let s = m.scan().unwrap();
        assert!(s.changed && s.objects.is_empty());
    }

    #[test]
    fn missing_folder_is_an_error() {
        let mut m = ManifestDir::new("/nonexistent/weir-manifests");
        let e = m.scan().unwrap_err();
        assert!(e.to_string().contains("/nonexistent/weir-manifests"));
    }
}
