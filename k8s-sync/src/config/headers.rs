//! `add-headers`, `proxy-set-headers` (references to ConfigMaps of headers), `hide-headers`,
//! `global-allowed-response-headers` and `custom-http-errors`.
//!
//! The referenced ConfigMaps are read at every build, so a change to one applies without a
//! restart; a missing one is reported and adds nothing, as ingress-nginx.

use http::HeaderName;
use proxy_core::{HeaderEntry, HeaderPolicy};

use super::ConfigProblem;
use crate::objects::{ObjectRef, ObjectSet};

/// The keys of this module.
pub(super) const KEYS: &[&str] = &[
    "add-headers",
    "custom-http-errors",
    "global-allowed-response-headers",
    "hide-headers",
    "proxy-set-headers",
];

/// What the keys say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderKeys {
    /// `add-headers`: the ConfigMap of response headers.
    pub add_headers: Option<ObjectRef>,
    /// `proxy-set-headers`: the ConfigMap of upstream request headers.
    pub proxy_set_headers: Option<ObjectRef>,
    /// `hide-headers`.
    pub hide: Vec<HeaderName>,
    /// `global-allowed-response-headers`: the names `custom-headers` may set.
    pub allowed_response_headers: Vec<String>,
    /// `custom-http-errors`.
    pub custom_http_errors: Vec<u16>,
}

/// `namespace/name`.
pub(crate) fn object_ref(v: &str) -> Result<ObjectRef, String> {
    match v.trim().split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectRef {
                namespace: ns.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(format!("expected a ConfigMap as namespace/name, got {v:?}")),
    }
}

impl HeaderKeys {
    /// Take one key of [`KEYS`]. A partly bad list keeps its good entries.
    pub(super) fn parse(&mut self, key: &str, value: &str) -> Result<(), String> {
        let words = || value.split(',').map(str::trim).filter(|w| !w.is_empty());
        match key {
            "add-headers" => self.add_headers = Some(object_ref(value)?),
            "proxy-set-headers" => self.proxy_set_headers = Some(object_ref(value)?),
            "hide-headers" => {
                let mut bad = Vec::new();
                for w in words() {
                    match HeaderName::from_bytes(w.as_bytes()) {
                        Ok(n) => self.hide.push(n),
                        Err(_) => bad.push(w),
                    }
                }
                if !bad.is_empty() {
                    return Err(format!("not header names, skipped: {}", bad.join(", ")));
                }
            }
            "global-allowed-response-headers" => {
                let mut bad = Vec::new();
                for w in words() {
                    if crate::annotations::headers::valid_custom_name(w) {
                        self.allowed_response_headers.push(w.to_string());
                    } else {
                        bad.push(w);
                    }
                }
                if !bad.is_empty() {
                    return Err(format!("not header names, skipped: {}", bad.join(", ")));
                }
            }
            _ => {
                // As ingress-nginx: codes from 300 to 599; others are skipped.
                let mut bad = Vec::new();
                for w in words() {
                    match w.parse::<u16>() {
                        Ok(c @ 300..=599) => self.custom_http_errors.push(c),
                        _ => bad.push(w),
                    }
                }
                if !bad.is_empty() {
                    return Err(format!(
                        "not status codes from 300 to 599, skipped: {}",
                        bad.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The header policy of every route: the referenced ConfigMaps read from `objects`.
    /// Problems name the key; a bad header is skipped, the others kept.
    pub fn resolve(&self, objects: &ObjectSet, problems: &mut Vec<ConfigProblem>) -> HeaderPolicy {
        let mut policy = HeaderPolicy {
            hide: self.hide.clone(),
            ..Default::default()
        };
        let mut read = |key: &str, r: &Option<ObjectRef>, into: &mut Vec<HeaderEntry>| {
            let Some(r) = r else { return };
            let Some(cm) = objects.config_maps.get(&r.key()) else {
                problems.push(ConfigProblem {
                    key: key.to_string(),
                    message: format!("ConfigMap {r} not found; no headers added"),
                });
                return;
            };
            for (name, value) in cm.data.iter().flatten() {
                match header(name, value) {
                    Ok(h) => into.push(h),
                    Err(message) => problems.push(ConfigProblem {
                        key: key.to_string(),
                        message: format!("ConfigMap {r}: {message}; skipped"),
                    }),
                }
            }
        };
        read(
            "proxy-set-headers",
            &self.proxy_set_headers,
            &mut policy.upstream,
        );
        read("add-headers", &self.add_headers, &mut policy.response);
        policy
    }
}

/// One header of a ConfigMap. nginx variables (`$name`) are not expanded by Weir: such a
/// value is refused rather than sent literally.
fn header(name: &str, value: &str) -> Result<HeaderEntry, String> {
    if value.contains('$') {
        return Err(format!(
            "header {name}: nginx variables are not supported, got {value:?}"
        ));
    }
    HeaderEntry::new(name, value).map_err(|e| format!("header {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::sync::Arc;

    #[test]
    fn keys_parse_and_bad_entries_are_skipped() {
        let mut k = HeaderKeys::default();
        k.parse("add-headers", "ns/resp").unwrap();
        assert_eq!(k.add_headers.as_ref().unwrap().key(), "ns/resp");
        for bad in ["resp", "ns/", "/x", "a/b/c"] {
            assert!(k.parse("proxy-set-headers", bad).is_err(), "{bad}");
        }
        assert!(k
            .parse("hide-headers", "X-Powered-By, Server,bad header")
            .is_err());
        assert_eq!(k.hide.len(), 2);
        assert!(k.parse("custom-http-errors", "404,502, 200,x").is_err());
        assert_eq!(k.custom_http_errors, [404, 502]);
        k.parse("global-allowed-response-headers", "X-A, X-B")
            .unwrap();
        assert_eq!(k.allowed_response_headers, ["X-A", "X-B"]);
        assert!(k.parse("global-allowed-response-headers", "a:b").is_err());
    }

    #[test]
    fn referenced_config_maps_are_read_and_missing_ones_reported() {
        let mut objects = ObjectSet::default();
        let cm = ConfigMap {
            data: Some(
                [("X-Ok", "1"), ("X-Var", "$host"), ("bad name", "x")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        objects.config_maps.insert("ns/req".into(), Arc::new(cm));
        let mut k = HeaderKeys::default();
        k.parse("proxy-set-headers", "ns/req").unwrap();
        k.parse("add-headers", "ns/missing").unwrap();
        let mut problems = Vec::new();
        let p = k.resolve(&objects, &mut problems);
        assert_eq!(p.upstream.len(), 1);
        assert_eq!(p.upstream[0].name(), "x-ok");
        assert!(p.response.is_empty());
        let msgs: Vec<_> = problems
            .iter()
            .map(|p| (p.key.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs
            .iter()
            .any(|(k, m)| *k == "add-headers" && m.contains("not found")));
        assert!(msgs.iter().any(|(_, m)| m.contains("$host")));
    }
}
