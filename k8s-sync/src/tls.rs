//! `spec.tls` + `kubernetes.io/tls` Secrets → the snapshot's per-SNI certificate index.
//!
//! As ingress-nginx: a host listed in an Ingress's `spec.tls` is served with the named Secret's
//! certificate when that certificate covers the host, otherwise (no `secretName`, missing or bad
//! Secret, certificate for other names) with the default certificate. A Secret whose new content
//! is bad keeps its last good certificate, and nothing else is affected.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::Secret;
use proxy_core::{CertError, CertIndex, TlsCert};

use crate::admission::ValidIngress;
use crate::objects::ObjectRef;
use crate::objects::ObjectSet;
use crate::translate::Warning;

/// Parsed Secrets, re-parsed only when their content changes; keeps the last good certificate.
#[derive(Default)]
pub struct CertCache {
    entries: HashMap<String, CacheEntry>,
}

struct CacheEntry {
    fingerprint: u64,
    last_good: Option<TlsCert>,
    error: Option<CertError>,
}

fn fingerprint(secret: &Secret) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let data = secret.data.as_ref();
    for k in ["tls.crt", "tls.key"] {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .hash(&mut h);
    }
    h.finish()
}

impl CertCache {
    /// The certificate of Secret `key` (`namespace/name`) and, when its current content is bad,
    /// why (the last good certificate, if any, is still returned).
    pub fn get(&mut self, key: &str, secret: &Secret) -> (Option<TlsCert>, Option<CertError>) {
        let fp = fingerprint(secret);
        let entry = self.entries.entry(key.to_string()).or_insert(CacheEntry {
            fingerprint: fp.wrapping_add(1),
            last_good: None,
            error: None,
        });
        if entry.fingerprint != fp {
            entry.fingerprint = fp;
            let data = secret.data.as_ref();
            let crt = data
                .and_then(|d| d.get("tls.crt"))
                .map(|b| b.0.as_slice())
                .unwrap_or_default();
            let key_pem = data
                .and_then(|d| d.get("tls.key"))
                .map(|b| b.0.as_slice())
                .unwrap_or_default();
            match TlsCert::from_pem(crt, key_pem) {
                Ok(c) => {
                    entry.last_good = Some(c);
                    entry.error = None;
                }
                Err(e) => entry.error = Some(e),
            }
        }
        (entry.last_good.clone(), entry.error.clone())
    }

    /// Forget Secrets not in `keep`.
    pub fn retain(&mut self, keep: &BTreeSet<String>) {
        self.entries.retain(|k, _| keep.contains(k));
    }
}

/// One certificate in use, for `nginx_ingress_controller_ssl_expire_time_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInUse {
    /// The host it serves.
    pub host: String,
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// Expiry (seconds since the Unix epoch).
    pub not_after: i64,
}

/// What [`build`] produced.
pub struct TlsBuild {
    /// The index for the snapshot.
    pub index: CertIndex,
    /// Hosts with a TLS section (HTTPS redirect and HSTS apply to them).
    pub tls_hosts: BTreeSet<String>,
    /// Problems, per Ingress (or `Secret ns/name` for the default certificate).
    pub warnings: Vec<Warning>,
    /// Certificates in use, per host.
    pub in_use: Vec<CertInUse>,
    /// Secrets whose current content was rejected (`namespace/name`, reason): for the metric.
    pub rejected: Vec<(String, CertError)>,
}

/// Build the certificate index for `ingresses` (oldest first wins a host).
pub fn build(
    objects: &ObjectSet,
    ingresses: &[&ValidIngress],
    default_certificate: Option<&ObjectRef>,
    fallback: &TlsCert,
    cache: &mut CertCache,
) -> TlsBuild {
    let mut out = TlsBuild {
        index: CertIndex::new(),
        tls_hosts: BTreeSet::new(),
        warnings: Vec::new(),
        in_use: Vec::new(),
        rejected: Vec::new(),
    };
    let mut used_secrets = BTreeSet::new();
    let mut load = |key: &str, out: &mut TlsBuild| -> Result<TlsCert, String> {
        used_secrets.insert(key.to_string());
        let Some(secret) = objects.secrets.get(key) else {
            return Err(format!("Secret {key} not found"));
        };
        let (cert, error) = cache.get(key, secret);
        if let Some(e) = &error {
            out.rejected.push((key.to_string(), e.clone()));
        }
        match (cert, error) {
            (Some(c), _) => Ok(c),
            (None, Some(e)) => Err(format!("Secret {key}: {e}")),
            (None, None) => Err(format!("Secret {key} holds no certificate")),
        }
    };

    let default = match default_certificate {
        Some(s) => {
            let key = s.key();
            match load(&key, &mut out) {
                Ok(c) => c,
                Err(message) => {
                    out.warnings.push(Warning {
                        ingress: "--default-ssl-certificate".into(),
                        message: format!("{message}; using the self-signed certificate"),
                    });
                    fallback.clone()
                }
            }
        }
        None => fallback.clone(),
    };
    out.index.set_default(default);

    let mut sorted: Vec<&&ValidIngress> = ingresses.iter().collect();
    sorted.sort_by(|a, b| a.order.cmp(&b.order));
    for ing in sorted {
        let ing_key = ing.key();
        for tls in &ing.tls {
            let cert = match &tls.secret {
                Some(name) => {
                    let key = format!("{}/{name}", ing.namespace);
                    match load(&key, &mut out) {
                        Ok(c) => Some((c, name.clone())),
                        Err(message) => {
                            out.warnings.push(Warning {
                                ingress: ing_key.to_string(),
                                message: format!("{message}; serving the default certificate"),
                            });
                            None
                        }
                    }
                }
                None => None,
            };
            for host in &tls.hosts {
                out.tls_hosts.insert(host.clone());
                let Some((cert, secret)) = &cert else {
                    continue;
                };
                if !cert.covers(host) {
                    out.warnings.push(Warning {
                        ingress: ing_key.to_string(),
                        message: format!(
                            "the certificate in Secret {}/{secret} is not valid for {host} (it names {}); serving the default certificate",
                            ing.namespace,
                            cert.names().join(", ")
                        ),
                    });
                    continue;
                }
                if !out.index.has_exact(host) {
                    out.index.insert(host, cert.clone());
                    out.in_use.push(CertInUse {
                        host: host.clone(),
                        namespace: ing.namespace.clone(),
                        secret: secret.clone(),
                        not_after: cert.not_after(),
                    });
                }
            }
        }
    }
    cache.retain(&used_secrets);
    out
}
