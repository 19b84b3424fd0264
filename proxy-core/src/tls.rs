//! TLS certificates chosen per SNI at handshake time.
//!
//! A [`CertIndex`] (exact names, then single-label wildcards, then the default certificate) is
//! part of the [`Snapshot`](crate::Snapshot), so certificates change with the same atomic swap as
//! routes; the listener's [`SniResolver`](crate::SniResolver) looks the server name up in the
//! current snapshot at every handshake. Certificates are parsed and checked (key matches
//! certificate, names, expiry) before they get into an index.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// No certificate in the PEM data.
    #[error("no PEM certificate found in tls.crt")]
    NoCertificate,
    /// The certificate PEM or DER does not parse.
    #[error("tls.crt does not parse: {0}")]
    BadCertificate(String),
    /// No usable private key.
    #[error("tls.key holds no usable private key: {0}")]
    BadKey(String),
    /// The key does not belong to the certificate.
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
}

/// A PEM error in words: the markers and lines it names as text, not as lists of byte values.
fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a PEM section is truncated: its \"-----END {}-----\" line is missing",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "invalid PEM section start line \"{}\"",
            String::from_utf8_lossy(line)
        ),
        Error::Base64Decode(m) => format!("invalid base64 in a PEM section: {m}"),
        Error::NoItemsFound => "no PEM section found".to_string(),
        other => other.to_string(),
    }
}

impl CertError {
    /// Short reason used as a metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CertError::NoCertificate | CertError::BadCertificate(_) => "bad_certificate",
            CertError::BadKey(_) => "bad_key",
            CertError::KeyMismatch => "key_mismatch",
        }
    }
}

/// A parsed certificate chain with its key, ready for handshakes.
#[derive(Clone)]
pub struct TlsCert {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    not_after: i64,
}

impl fmt::Debug for TlsCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCert")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

impl TlsCert {
    /// Parse a PEM chain (leaf first) and PEM private key, as in a `kubernetes.io/tls` Secret.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsCert, CertError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::BadCertificate(pem_error(&e)))?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate);
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::BadKey(pem_error(&e)))?;
        let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch,
            other => CertError::BadKey(other.to_string()),
        })?;
        Self::from_certified(certified)
    }

    fn from_certified(certified: CertifiedKey) -> Result<TlsCert, CertError> {
        let leaf = certified
            .end_entity_cert()
            .map_err(|e| CertError::BadCertificate(e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| CertError::BadCertificate(e.to_string()))?;
        let mut names: Vec<String> = Vec::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
        if names.is_empty() {
            // Legacy certificates carry the name only in the subject's CN.
            for cn in parsed.subject().iter_common_name() {
                if let Ok(s) = cn.as_str() {
                    names.push(s.to_ascii_lowercase());
                }
            }
        }
        Ok(TlsCert {
            not_after: parsed.validity().not_after.timestamp(),
            names,
            key: Arc::new(certified),
        })
    }

    /// The self-signed "Kubernetes Ingress Controller Fake Certificate" ingress-nginx serves when
    /// no default certificate is configured.
    pub fn fake() -> TlsCert {
        let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
            .expect("static names are valid");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme Co");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "Kubernetes Ingress Controller Fake Certificate",
        );
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let key = rcgen::KeyPair::generate().expect("key generation");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        TlsCert::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .expect("generated certificate is valid")
    }

    /// DNS names the certificate is valid for (SANs, or the CN when it has none).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Expiry, seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Whether the certificate is valid for `host` (exact or single-label wildcard SAN).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.names.iter().any(|n| {
            if *n == host {
                return true;
            }
            match (n.strip_prefix("*."), host.split_once('.')) {
                (Some(parent), Some((label, rest))) => !label.is_empty() && rest == parent,
                _ => false,
            }
        })
    }

    /// The rustls key for handshakes.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.key
    }
}

/// Certificates by server name.
#[derive(Debug, Clone, Default)]
pub struct CertIndex {
    exact: HashMap<String, TlsCert>,
    wildcard: HashMap<String, TlsCert>,
    default: Option<TlsCert>,
}

impl CertIndex {
    /// An empty index (every handshake gets the default certificate).
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve `cert` for `host` (`*.example.com` for a wildcard). The first one added for a host wins.
    pub fn insert(&mut self, host: &str, cert: TlsCert) {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(parent) => {
                self.wildcard.entry(parent.to_string()).or_insert(cert);
            }
            None => {
                self.exact.entry(host).or_insert(cert);
            }
        }
    }

    /// The certificate for unknown or absent SNI (`--default-ssl-certificate`, else the fake one).
    pub fn set_default(&mut self, cert: TlsCert) {
        self.default = Some(cert);
    }

    /// The certificate for a server name: exact, then wildcard, then the default.
    pub fn find(&self, sni: Option<&str>) -> Option<&TlsCert> {
        sni.and_then(|name| self.find_own(name))
            .or(self.default.as_ref())
    }

    /// The host's own certificate (exact, then one-label wildcard), not the default.
    fn find_own(&self, name: &str) -> Option<&TlsCert> {
        let name = name.trim_end_matches('.');
        let name = crate::routing::ascii_lowercase(name);
        let name = name.as_ref();
        self.exact.get(name).or_else(|| {
            let (label, parent) = name.split_once('.')?;
            (!label.is_empty())
                .then(|| self.wildcard.get(parent))
                .flatten()
        })
    }

    /// Whether a certificate was inserted under exactly this name (`*.x` for wildcards).
    pub fn has_exact(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.contains_key(parent),
            None => self.exact.contains_key(&host),
        }
    }

    /// Whether a host has its own certificate (not the default).
    pub fn has_host(&self, host: &str) -> bool {
        self.find_own(host).is_some()
    }

    /// `(host, certificate)` pairs, wildcards as `*.parent`.
    pub fn hosts(&self) -> impl Iterator<Item = (String, &TlsCert)> {
        self.exact
            .iter()
            .map(|(h, c)| (h.clone(), c))
            .chain(self.wildcard.iter().map(|(p, c)| (format!("*.{p}"), c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> (String, String) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn truncated_certificate_errors_are_in_words() {
        let (c, k) = cert_for(&["a.example.com"]);
        let truncated = &c[..c.len() / 2];
        let err = TlsCert::from_pem(truncated.as_bytes(), k.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tls.crt does not parse: a PEM section is truncated: its \"-----END CERTIFICATE-----\" line is missing"
        );
    }

    #[test]
    fn parses_checks_and_indexes_certificates() {
        let (c1, k1) = cert_for(&["a.example.com"]);
        let (c2, k2) = cert_for(&["*.example.com"]);
        let a = TlsCert::from_pem(c1.as_bytes(), k1.as_bytes()).unwrap();
        let w = TlsCert::from_pem(c2.as_bytes(), k2.as_bytes()).unwrap();
        assert_eq!(a.names(), ["a.example.com"]);
        assert!(a.covers("A.example.com"));
        assert!(w.covers("b.example.com"));
        assert!(!w.covers("x.b.example.com"));
        assert!(!w.covers("example.com"));
        assert!(a.not_after() > 0);

        assert_eq!(
            TlsCert::from_pem(c1.as_bytes(), k2.as_bytes()).unwrap_err(),
            CertError::KeyMismatch
        );
        assert_eq!(
            TlsCert::from_pem(b"", k1.as_bytes()).unwrap_err(),
            CertError::NoCertificate
        );
        assert!(matches!(
            TlsCert::from_pem(c1.as_bytes(), b"not a key").unwrap_err(),
            CertError::BadKey(_)
        ));

        let mut idx = CertIndex::new();
        idx.insert("a.example.com", a);
        idx.insert("*.example.com", w);
        let fake = TlsCert::fake();
        assert!(fake.covers("ingress.local"));
        idx.set_default(fake);
        let names = |sni: Option<&str>| idx.find(sni).unwrap().names().to_vec();
        assert_eq!(names(Some("a.example.com")), ["a.example.com"]);
        assert_eq!(names(Some("A.EXAMPLE.COM.")), ["a.example.com"]);
        assert_eq!(names(Some("b.example.com")), ["*.example.com"]);
        assert_eq!(names(Some("c.b.example.com")), ["ingress.local"]);
        assert_eq!(names(None), ["ingress.local"]);
        assert!(idx.has_host("b.example.com"));
        assert!(!idx.has_host("other.test"));
    }
}
