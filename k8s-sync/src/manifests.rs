//! File mode: the same manifests `kubectl apply -f DIR` takes, read from a folder.
//!
//! Every `*.yaml`, `*.yml` and `*.json` file directly in the folder is read (hidden files are
//! skipped). YAML files may hold several documents; a `kind: List` is unpacked. Kinds Weir does
//! not use (Deployments, ...) are ignored. A file that fails to parse is reported with the file,
//! the document number and the field, and its previously parsed objects stay in use.
//!
//! What one file may cost is bounded ([`ParseLimits`]: size, nesting depth, alias expansion), and
//! a file whose bytes did not change is not parsed again: its last result (objects or error) is
//! kept.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use serde::de::{DeserializeOwned, DeserializeSeed};
use serde::Deserialize;

use crate::objects::{Object, ObjectSet};

mod limits;

use limits::{prescan, Budget, ValueSeed};
pub use limits::{Limit, ParseLimits};

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
    /// The limit the file went over, when that is what is wrong.
    pub limit: Option<Limit>,
}

impl ManifestError {
    /// Short reason, used as a metric label: `limit` for a file over one of the
    /// [`ParseLimits`], `parse` for everything else.
    pub fn reason(&self) -> &'static str {
        match self.limit {
            Some(_) => "limit",
            None => "parse",
        }
    }
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

/// Parse the text of one manifest file (`json` selects the JSON parser), within the default
/// [`ParseLimits`].
pub fn parse_manifest(file: &Path, text: &str, json: bool) -> Result<Vec<Object>, ManifestError> {
    parse_manifest_with(file, text, json, &ParseLimits::default())
}

/// Parse the text of one manifest file within `limits`. Nesting is checked before the YAML parser
/// runs, so a nesting bomb costs time linear in its size.
pub fn parse_manifest_with(
    file: &Path,
    text: &str,
    json: bool,
    limits: &ParseLimits,
) -> Result<Vec<Object>, ManifestError> {
    let err = |document, object, message| ManifestError {
        file: file.to_path_buf(),
        document,
        object,
        message,
        limit: None,
    };
    let over = |document, limit, message| ManifestError {
        file: file.to_path_buf(),
        document,
        object: None,
        message,
        limit: Some(limit),
    };
    let limit_message = |limit: Limit, at: Option<(usize, usize)>| match (limit, at) {
        (Limit::FileSize, _) => too_large(text.len() as u64, limits),
        (Limit::Depth, at) => format!(
            "nested too deep: more than {} levels of sequences and mappings{}",
            limits.max_depth,
            at.map(|(l, c)| format!(" at line {l} column {c}"))
                .unwrap_or_default()
        ),
        (Limit::Aliases, at) => format!(
            "aliases expand to too many values: more than {} beyond those written in the file{}",
            limits.max_alias_values,
            at.map(|(l, c)| format!(" (stopped at line {l} column {c})"))
                .unwrap_or_default()
        ),
    };
    if text.len() as u64 > limits.max_file_bytes {
        return Err(over(
            None,
            Limit::FileSize,
            limit_message(Limit::FileSize, None),
        ));
    }
    let mut out = Vec::new();
    if json {
        // serde_json is linear and has no aliases: only the depth is checked.
        let mut budget = Budget::new(usize::MAX, limits.max_depth);
        let mut de = serde_json::Deserializer::from_str(text);
        let value = ValueSeed::new(&mut budget)
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| match budget.exceeded {
                Some(l) => over(Some(1), l, limit_message(l, Some((e.line(), e.column())))),
                None => err(None, None, format!("invalid JSON: {e}")),
            })?;
        document_objects(value, &mut out).map_err(|(o, m)| err(Some(1), o, m))?;
        return Ok(out);
    }
    let scanned = prescan(text, limits.max_depth).map_err(|d| {
        over(
            Some(d.document),
            Limit::Depth,
            limit_message(Limit::Depth, Some((d.line, d.column))),
        )
    })?;
    // Without aliases a file holds fewer values than twice its tokens: anything beyond that is
    // what aliases added.
    let mut budget = Budget::new(
        scanned
            .tokens
            .saturating_mul(2)
            .saturating_add(limits.max_alias_values),
        limits.max_depth,
    );
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value =
            ValueSeed::new(&mut budget)
                .deserialize(doc)
                .map_err(|e| match budget.exceeded {
                    Some(l) => {
                        let at = e.location().map(|l| (l.line(), l.column()));
                        over(Some(i + 1), l, limit_message(l, at))
                    }
                    None => err(Some(i + 1), None, format!("invalid YAML: {e}")),
                })?;
        document_objects(value, &mut out).map_err(|(o, m)| err(Some(i + 1), o, m))?;
    }
    Ok(out)
}

fn too_large(len: u64, limits: &ParseLimits) -> String {
    format!(
        "too large: {len} bytes, more than the limit of {} bytes",
        limits.max_file_bytes
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
}

/// What was last read of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastRead {
    /// Nothing yet (its first parse is still running).
    Nothing,
    /// Its bytes, by hash: the same bytes are not parsed again.
    Content(u64),
    /// Over the size limit, so not read.
    TooLarge,
    /// It could not be read: tried again at every scan.
    Failed,
}

type ParseResult = Result<Vec<Object>, ManifestError>;

/// A parse running on a thread of its own.
struct Pending {
    /// The file as it was when read.
    fingerprint: Fingerprint,
    hash: u64,
    result: mpsc::Receiver<ParseResult>,
}

struct FileState {
    fingerprint: Fingerprint,
    read: LastRead,
    /// Objects of the last successful parse (kept while the file is broken).
    objects: Vec<Object>,
    error: Option<ManifestError>,
    /// A parse of newer content still running; the file is not read again until it is done.
    pending: Option<Pending>,
}

impl FileState {
    fn new(fingerprint: Fingerprint) -> Self {
        FileState {
            fingerprint,
            read: LastRead::Nothing,
            objects: Vec::new(),
            error: None,
            pending: None,
        }
    }

    /// Take in what reading (and parsing) the file gave; whether the objects or the error changed.
    fn settle(&mut self, fingerprint: Fingerprint, read: LastRead, result: ParseResult) -> bool {
        self.fingerprint = fingerprint;
        self.read = read;
        let previous_error = self.error.take();
        match result {
            Ok(objects) => {
                let mut changed = previous_error.is_some();
                // Equal objects are kept as they were, so that they stay the same objects.
                if objects != self.objects {
                    self.objects = objects;
                    changed = true;
                }
                changed
            }
            Err(e) => {
                let changed = previous_error.as_ref() != Some(&e);
                self.error = Some(e);
                changed
            }
        }
    }
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
    limits: ParseLimits,
    files: BTreeMap<PathBuf, FileState>,
    parses: u64,
}

/// Files at least this large are parsed on a thread of their own: within the [`ParseLimits`]
/// parsing one can still take a second or so, and other files' changes must not wait for it.
/// Smaller files cost at most a few tens of milliseconds and are parsed in place.
pub const PARSE_APART_BYTES: usize = 64 * 1024;

/// How long [`ManifestDir::scan`] waits for parses running apart before going on without them
/// (their results are taken by a later scan).
pub const PARSE_APART_WAIT: Duration = Duration::from_millis(100);

enum ReadFailure {
    TooLarge(u64),
    Io(std::io::Error),
}

/// Read a file of `len` bytes (its size when listed), unless it is over `max` bytes.
fn read_limited(path: &Path, len: u64, max: u64) -> Result<Vec<u8>, ReadFailure> {
    if len > max {
        return Err(ReadFailure::TooLarge(len));
    }
    let file = std::fs::File::open(path).map_err(ReadFailure::Io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFailure::Io)?;
    if bytes.len() as u64 > max {
        // It grew since it was listed.
        let len = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(ReadFailure::TooLarge(len.max(max + 1)));
    }
    Ok(bytes)
}

/// Parse a file's bytes.
fn parse_bytes(path: &Path, bytes: &[u8], limits: &ParseLimits) -> ParseResult {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_manifest_with(
            path,
            text,
            path.extension().is_some_and(|e| e == "json"),
            limits,
        ),
        Err(_) => Err(ManifestError {
            file: path.to_path_buf(),
            document: None,
            object: None,
            message: "cannot read: stream did not contain valid UTF-8".into(),
            limit: None,
        }),
    }
}

/// Parse on a thread of its own; `None` when no thread could be started.
fn parse_apart(
    path: &Path,
    bytes: Arc<[u8]>,
    limits: ParseLimits,
) -> Option<mpsc::Receiver<ParseResult>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("weir-parse".into())
        .spawn(move || {
            // The file may be gone (and its receiver with it) by the time this is done.
            let _ = tx.send(parse_bytes(&path, &bytes, &limits));
        })
        .ok()?;
    Some(rx)
}

impl ManifestDir {
    /// A folder to read within the default [`ParseLimits`]; nothing is read until
    /// [`ManifestDir::scan`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_limits(dir, ParseLimits::default())
    }

    /// A folder to read within `limits`.
    pub fn with_limits(dir: impl Into<PathBuf>, limits: ParseLimits) -> Self {
        ManifestDir {
            dir: dir.into(),
            limits,
            files: BTreeMap::new(),
            parses: 0,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many times a file's content was parsed so far. Content already parsed (same bytes,
    /// valid or not) is not parsed again.
    pub fn parses(&self) -> u64 {
        self.parses
    }

    /// Whether some file's parse is still running apart (see [`PARSE_APART_BYTES`]).
    pub fn parsing(&self) -> bool {
        self.files.values().any(|s| s.pending.is_some())
    }

    /// Read what changed since the last scan, waiting up to [`PARSE_APART_WAIT`] for large files'
    /// parses. Fails only when the folder itself cannot be listed.
    ///
    /// A file is read again when its size or modification time changed (or it was modified in the
    /// last 2 seconds), and parsed again only when its bytes changed. The work per file is bounded
    /// by the [`ParseLimits`].
    pub fn scan(&mut self) -> Result<Scan, DirError> {
        self.scan_waiting(PARSE_APART_WAIT)
    }

    /// [`ManifestDir::scan`], waiting up to `wait` for parses running apart. A parse still running
    /// then is taken in by a later scan; until then the file keeps its previous objects (none for
    /// a new file).
    pub fn scan_waiting(&mut self, wait: Duration) -> Result<Scan, DirError> {
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
        // A removed file's running parse finishes on its own; its result is dropped.
        self.files.retain(|p, _| seen.contains_key(p));
        if self.files.len() != before {
            changed = true;
        }
        for (path, fp) in seen {
            let state = self
                .files
                .entry(path.clone())
                .or_insert_with(|| FileState::new(fp.clone()));
            if state.pending.is_some() {
                continue;
            }
            // File times are coarse (a few ms): a file modified very recently is re-read even
            // when its size and time look the same, and its content compared.
            let settled = fp
                .modified
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > SETTLE);
            if settled
                && state.fingerprint == fp
                && !matches!(state.read, LastRead::Failed | LastRead::Nothing)
            {
                continue;
            }
            let error = |message: String, limit| ManifestError {
                file: path.clone(),
                document: None,
                object: None,
                message,
                limit,
            };
            let (read, result) = match read_limited(&path, fp.len, self.limits.max_file_bytes) {
                Ok(bytes) => {
                    let hash = content_hash(&bytes);
                    if state.read == LastRead::Content(hash) {
                        // The same bytes give the same result, objects or error.
                        state.fingerprint = fp;
                        continue;
                    }
                    self.parses += 1;
                    let bytes: Arc<[u8]> = bytes.into();
                    if bytes.len() >= PARSE_APART_BYTES {
                        if let Some(result) = parse_apart(&path, Arc::clone(&bytes), self.limits) {
                            state.pending = Some(Pending {
                                fingerprint: fp,
                                hash,
                                result,
                            });
                            continue;
                        }
                    }
                    (
                        LastRead::Content(hash),
                        parse_bytes(&path, &bytes, &self.limits),
                    )
                }
                Err(ReadFailure::TooLarge(len)) => (
                    LastRead::TooLarge,
                    Err(error(too_large(len, &self.limits), Some(Limit::FileSize))),
                ),
                Err(ReadFailure::Io(e)) => (
                    LastRead::Failed,
                    Err(error(format!("cannot read: {e}"), None)),
                ),
            };
            changed |= state.settle(fp, read, result);
        }
        // Take in the parses that ran apart, waiting for them up to `wait` in all.
        let deadline = Instant::now() + wait;
        for (path, state) in &mut self.files {
            let Some(pending) = &state.pending else {
                continue;
            };
            let timeout = deadline.saturating_duration_since(Instant::now());
            let result = match pending.result.recv_timeout(timeout) {
                Ok(result) => result,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(ManifestError {
                    file: path.clone(),
                    document: None,
                    object: None,
                    message: "parse failed".into(),
                    limit: None,
                }),
            };
            if let Some(p) = state.pending.take() {
                changed |= state.settle(p.fingerprint, LastRead::Content(p.hash), result);
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

fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn is_manifest_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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

    /// Rejected with `limit`, in well under a second: microseconds for nesting (the parser alone
    /// takes seconds on some), about 0.2 s for aliases in a debug build (15-30 ms optimized).
    fn rejected(what: &str, text: &str, limit: Limit) -> ManifestError {
        let start = Instant::now();
        let e = parse_manifest(Path::new("bomb.yaml"), text, false).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.limit, Some(limit), "{what}: {e}");
        assert_eq!(e.reason(), "limit");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
        e
    }

    #[test]
    fn nesting_bombs_are_rejected_before_parsing() {
        let block_maps: String = (0..600).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        let bombs = [
            (
                "flow sequences",
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
                "at line 1 column 65",
            ),
            (
                "flow mappings",
                format!("{}x{}", "{a: ".repeat(50_000), "}".repeat(50_000)),
                "at line 1 column 257",
            ),
            (
                "keys",
                format!("{}x{}", "? [".repeat(60_000), "]".repeat(60_000)),
                "at line 1 column 192",
            ),
            (
                "block sequences",
                format!("{}x\n", "- ".repeat(100_000)),
                "at line 1 column 129",
            ),
            ("block mappings", block_maps, "at line 65 column 66"),
        ];
        for (what, text, at) in bombs {
            assert!(text.len() > 150_000);
            let e = rejected(what, &text, Limit::Depth);
            assert_eq!(e.document, Some(1));
            assert_eq!(
                e.to_string(),
                format!(
                    "bomb.yaml: document 1: nested too deep: more than 64 levels of sequences \
                     and mappings {at}"
                ),
                "{what}"
            );
        }
        // In a later document, with the earlier ones fine.
        let text = format!("a: 1\n---\nb: {}", "[".repeat(100));
        assert_eq!(
            rejected("second document", &text, Limit::Depth).document,
            Some(2)
        );
        // 64 levels are fine (for the limits: a sequence is no Kubernetes object).
        let text = format!("{}x{}", "[".repeat(64), "]".repeat(64));
        let e = parse_manifest(Path::new("ok.yaml"), &text, false).unwrap_err();
        assert_eq!(e.limit, None, "{e}");
        // JSON too.
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let e = parse_manifest(Path::new("b.json"), &text, true).unwrap_err();
        assert_eq!(e.limit, Some(Limit::Depth));
        assert!(e.message.contains("at line 1 column 65"), "{e}");
    }

    #[test]
    fn nesting_the_pre_scan_cannot_see_is_caught_while_building() {
        // Block sequences at their key's indentation add levels without indenting: 40 keys are 81
        // levels here, caught by the depth count while the values are built.
        let mut text = String::from("a:\n");
        for i in 0..40 {
            text.push_str(&format!("{}- a:\n", " ".repeat(2 * i)));
        }
        text.push_str(&format!("{}- x\n", " ".repeat(80)));
        let e = rejected("indentless sequences", &text, Limit::Depth);
        assert!(
            e.message.starts_with(
                "nested too deep: more than 64 levels of sequences and mappings at line"
            ),
            "{e}"
        );
    }

    #[test]
    fn alias_bombs_are_rejected() {
        // "Billion laughs": 10^9 values from 600 bytes.
        let mut laughs =
            String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        // Wide: one large anchor used many times.
        let mut wide = format!("a: &a [{}]\nb: [", vec!["x"; 5_000].join(","));
        wide.push_str(&vec!["*a"; 5_000].join(","));
        wide.push_str("]\n");
        for (what, text) in [("laughs", laughs), ("wide", wide)] {
            let e = rejected(what, &text, Limit::Aliases);
            assert_eq!(e.document, Some(1));
            assert!(
                e.message.starts_with(
                    "aliases expand to too many values: more than 100000 beyond those written in \
                     the file (stopped at line"
                ),
                "{what}: {e}"
            );
        }
        // Ordinary use of anchors is fine.
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  labels: &l {app: x}\n  \
                    annotations: *l\n";
        let objs = parse_manifest(Path::new("ok.yaml"), text, false).unwrap();
        assert_eq!(objs.len(), 1);
    }

    #[test]
    fn oversize_files_are_rejected_unread() {
        let limits = ParseLimits::default();
        let text = "#".repeat(limits.max_file_bytes as usize + 1);
        let e = rejected("oversize text", &text, Limit::FileSize);
        assert_eq!(e.document, None);
        assert_eq!(
            e.to_string(),
            "bomb.yaml: too large: 3145729 bytes, more than the limit of 3145728 bytes"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.yaml"), &text).unwrap();
        std::fs::write(
            dir.path().join("svc.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
        )
        .unwrap();
        let mut m = ManifestDir::new(dir.path());
        let s = m.scan().unwrap();
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].limit, Some(Limit::FileSize));
        assert!(s.objects.services.contains_key("default/a"));
        assert_eq!(m.parses(), 1, "only svc.yaml was parsed");

        // A smaller limit applies to every file.
        let small = ParseLimits {
            max_file_bytes: 10,
            ..ParseLimits::default()
        };
        let s = ManifestDir::with_limits(dir.path(), small).scan().unwrap();
        assert_eq!(s.errors.len(), 2);
        assert!(s.objects.is_empty());
    }

    #[test]
    fn unchanged_files_are_not_parsed_again_valid_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let svc =
            |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n");
        std::fs::write(path("svc.yaml"), svc("a")).unwrap();
        std::fs::write(
            path("bomb.yaml"),
            format!("{}x{}", "{a: ".repeat(50_000), "}".repeat(50_000)),
        )
        .unwrap();
        std::fs::write(path("broken.yaml"), "kind: [").unwrap();
        let mut m = ManifestDir::new(dir.path());
        let s = m.scan().unwrap();
        assert!(s.changed);
        assert_eq!(m.parses(), 3);
        assert_eq!(s.errors.len(), 2);
        assert!(s.objects.services.contains_key("default/a"));

        // Just written, so every file is read again, but none is parsed again.
        for _ in 0..3 {
            let s = m.scan().unwrap();
            assert!(!s.changed);
            assert_eq!(s.errors.len(), 2, "errors are kept");
        }
        assert_eq!(m.parses(), 3);

        // A file rewritten with the same bytes is not parsed either.
        std::fs::write(path("broken.yaml"), "kind: [").unwrap();
        assert!(!m.scan().unwrap().changed);
        assert_eq!(m.parses(), 3);

        // A change elsewhere: parsed alone, applied, and the bomb stays rejected.
        std::fs::write(path("svc.yaml"), svc("b")).unwrap();
        let s = m.scan().unwrap();
        assert!(s.changed);
        assert_eq!(m.parses(), 4);
        assert!(s.objects.services.contains_key("default/b"));
        assert_eq!(s.errors.len(), 2);
        assert!(s.errors.iter().any(|e| e.limit == Some(Limit::Depth)));

        // Settled files (older than 2 s) whose size and time did not change are not even read.
        let old = SystemTime::now() - Duration::from_secs(60);
        for name in ["svc.yaml", "bomb.yaml", "broken.yaml"] {
            let f = std::fs::File::options()
                .write(true)
                .open(path(name))
                .unwrap();
            f.set_modified(old).unwrap();
        }
        m.scan().unwrap();
        let parses = m.parses();
        assert!(!m.scan().unwrap().changed);
        assert_eq!(m.parses(), parses);
    }

    #[test]
    fn large_files_are_parsed_apart_and_do_not_hold_up_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let services = |names: &[String]| {
            names
                .iter()
                .map(|n| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {n}}}\n"))
                .collect::<Vec<_>>()
                .join("---\n")
        };
        let big: Vec<String> = (0..2_000).map(|i| format!("big-{i}")).collect();
        let text = services(&big);
        assert!(text.len() >= PARSE_APART_BYTES);
        std::fs::write(path("big.yaml"), &text).unwrap();
        std::fs::write(path("small.yaml"), services(&["s1".into()])).unwrap();
        let mut m = ManifestDir::new(dir.path());
        let s = m.scan_waiting(Duration::from_secs(60)).unwrap();
        assert!(!m.parsing());
        assert!(s.objects.services.contains_key("default/big-1999"));
        assert!(s.objects.services.contains_key("default/s1"));

        // Both change; the small one is applied at once, whether or not the big one is done.
        let mut more = big.clone();
        more.push("big-new".into());
        std::fs::write(path("big.yaml"), services(&more)).unwrap();
        std::fs::write(path("small.yaml"), services(&["s2".into()])).unwrap();
        let s = m.scan_waiting(Duration::ZERO).unwrap();
        assert!(s.changed);
        assert!(s.objects.services.contains_key("default/s2"));
        assert!(
            s.objects.services.contains_key("default/big-0"),
            "the big file keeps its objects while it is parsed"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = m.scan().unwrap();
            if s.changed && s.objects.services.contains_key("default/big-new") {
                assert!(s.objects.services.contains_key("default/s2"));
                break;
            }
            assert!(Instant::now() < deadline, "big file never applied");
        }
        assert!(!m.parsing());
    }

    #[test]
    fn missing_folder_is_an_error() {
        let mut m = ManifestDir::new("/nonexistent/weir-manifests");
        let e = m.scan().unwrap_err();
        assert!(e.to_string().contains("/nonexistent/weir-manifests"));
    }
}
