//! TLS helpers: test certificates and their Secrets, and two clients to see what the HTTPS
//! listener serves (`openssl s_client`, and rustls for requests over a kept connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::run_for;

/// A certificate made for a test, with its key.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The certificate chain, PEM (the leaf first; with its CA when issued by a [`TestCa`]).
    pub pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
    /// Its notAfter, in Unix seconds.
    pub not_after: i64,
}

/// Validity of test certificates: from a day ago to 90 days from now, in whole seconds (as
/// X.509 stores it), so that expiry metrics can be compared exactly.
fn validity(params: &mut rcgen::CertificateParams) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let not_after = now + 90 * 86_400;
    params.not_before = (UNIX_EPOCH + Duration::from_secs(now - 86_400)).into();
    params.not_after = (UNIX_EPOCH + Duration::from_secs(not_after)).into();
    i64::try_from(not_after).unwrap()
}

fn leaf_params(names: &[&str]) -> (rcgen::CertificateParams, i64) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let not_after = validity(&mut params);
    (params, not_after)
}

impl TestCert {
    /// A self-signed certificate for `names` (the first is also the CN).
    pub fn self_signed(names: &[&str]) -> TestCert {
        let (params, not_after) = leaf_params(names);
        let key = rcgen::KeyPair::generate().unwrap();
        let c = params.self_signed(&key).unwrap();
        TestCert {
            pem: c.pem(),
            key_pem: key.serialize_pem(),
            der: c.der().to_vec(),
            not_after,
        }
    }
}

/// A certificate authority for tests.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// Its certificate, PEM.
    pub pem: String,
}

impl TestCa {
    /// A CA named `cn`.
    pub fn new(cn: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        validity(&mut params);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// A server certificate for `names` issued by this CA, with a CRL distribution point; its
    /// `pem` is the chain (leaf, then this CA).
    pub fn issue(&self, names: &[&str]) -> TestCert {
        let (mut params, not_after) = leaf_params(names);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![format!("http://crl.{}/ca.crl", names[0])],
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let leaf = params.signed_by(&key, &issuer).unwrap();
        TestCert {
            pem: format!("{}{}", leaf.pem(), self.pem),
            key_pem: key.serialize_pem(),
            der: leaf.der().to_vec(),
            not_after,
        }
    }
}

/// A `kubernetes.io/tls` Secret holding `cert`, as one JSON document (a YAML file may hold it,
/// and `kubectl apply` takes it) with base64 `data`, as the API server stores Secrets.
pub fn tls_secret(ns: &str, name: &str, cert: &TestCert) -> String {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    "tls.crt".to_string(),
                    ByteString(cert.pem.clone().into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    ByteString(cert.key_pem.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let mut v = serde_json::to_value(&secret).unwrap();
    v["apiVersion"] = "v1".into();
    v["kind"] = "Secret".into();
    format!("{v}\n")
}

/// The same Secret written with `stringData`, as people write it by hand (file mode merges it
/// into `data`; the test API server does not).
pub fn tls_secret_string_data(ns: &str, name: &str, cert: &TestCert) -> String {
    let indent = |s: &str| -> String { s.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.pem),
        indent(&cert.key_pem)
    )
}

/// What `openssl s_client` was shown by the HTTPS listener.
#[derive(Debug, Clone)]
pub struct Served {
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
    /// openssl's `subject=` line.
    pub subject: String,
}

/// Connect with `openssl s_client` (SNI `sni`, or none) and return the leaf certificate shown;
/// panics with openssl's output when the handshake shows none, or after 20 s.
pub fn served_certificate(addr: SocketAddr, sni: Option<&str>) -> Served {
    use rustls::pki_types::pem::PemObject;
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string()]);
    match sni {
        Some(s) => cmd.args(["-servername", s]),
        None => cmd.arg("-noservername"),
    };
    let out = run_for(&mut cmd, Duration::from_secs(20), Some(b""));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let shown = || {
        format!(
            "openssl s_client to {addr} (SNI {sni:?}) shows no certificate:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
        .next()
        .unwrap_or_else(|| panic!("{}", shown()))
        .unwrap_or_else(|e| panic!("{e}: {}", shown()))
        .to_vec();
    let subject = text
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("{}", shown()))
        .to_string();
    Served { der, subject }
}

/// A rustls verifier that accepts any certificate and records the leaf it was shown.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Vec<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.seen.lock().unwrap().push(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection made by [`tls_connect`].
pub type TlsConn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connect with TLS (after `prelude` bytes, e.g. a PROXY header); returns the stream and the
/// certificate shown.
pub fn tls_connect(addr: SocketAddr, sni: &str, prelude: &[u8]) -> (TlsConn, Vec<u8>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(prelude).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), sni.to_string().try_into().unwrap())
        .unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    let seen = recorder
        .seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a certificate");
    (stream, seen)
}

/// One keep-alive HTTP/1.1 GET on an open stream; returns (status, body).
pub fn get_on<S: Read + Write>(s: &mut S, host: &str, path: &str) -> (u16, String) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    s.flush().unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("response");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            return (
                status,
                String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string(),
            );
        }
    }
}
