//! The edge: TLS with per-SNI certificates, redirects, HSTS, HTTP/2, PROXY protocol and the
//! client address, through the real `weir` binary and real clients (openssl, curl, rustls).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use weir_loadtest::echo::EchoServer;

/// A self-signed certificate for `names`: (PEM chain, PEM key, DER).
fn cert(names: &[&str]) -> (String, String, Vec<u8>) {
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let c = params.self_signed(&key).unwrap();
    (c.pem(), key.serialize_pem(), c.der().to_vec())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn tls_secret(ns: &str, name: &str, crt: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(crt),
        indent(key)
    )
}

/// An Ingress for `host` → Service `svc`, with a TLS section naming `secret` (if any) and
/// extra annotations.
fn tls_ingress(
    name: &str,
    host: &str,
    secret: Option<&str>,
    annotations: &[(&str, &str)],
) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    let ann = if ann.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{ann}")
    };
    let tls = match secret {
        Some(s) => format!("  tls:\n  - hosts: [\"{host}\"]\n    secretName: {s}\n"),
        None => String::new(),
    };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: ns
{ann}spec:
  ingressClassName: nginx
{tls}  rules:
  - host: \"{host}\"
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: echo, port: {{number: 80}}}}}}}}
"
    )
}

/// `openssl s_client` → the subject line of the certificate served for `sni` (None: no SNI).
fn served_subject(w: &Weir, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{}", w.https.port()),
    ]);
    match sni {
        Some(s) => cmd.args(["-servername", s]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| {
            panic!(
                "no certificate in s_client output:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

fn base(m: &Manifests, echo: &EchoServer) {
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "echo", &[echo.addr()]));
}

#[test]
fn certificates_per_sni_wildcard_and_default() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let (a_crt, a_key, _) = cert(&["a.test"]);
    let (w_crt, w_key, _) = cert(&["*.wild.test"]);
    let (d_crt, d_key, _) = cert(&["default.test"]);
    m.write(
        "secrets.yaml",
        &[
            tls_secret("ns", "a", &a_crt, &a_key),
            tls_secret("ns", "wild", &w_crt, &w_key),
            tls_secret("ns", "default-cert", &d_crt, &d_key),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &[
            tls_ingress("a", "a.test", Some("a"), &[]),
            tls_ingress("w", "*.wild.test", Some("wild"), &[]),
        ]
        .join("---\n"),
    );
    let w = Weir::start(m.path(), &[]);
    // rcgen names its certificates "rcgen self signed cert"; the SANs tell them apart, so
    // compare through curl's view of the names as well.
    assert!(served_subject(&w, None).contains("Kubernetes Ingress Controller Fake Certificate"));
    assert!(served_subject(&w, Some("unknown.test")).contains("Fake Certificate"));
    assert!(!served_subject(&w, Some("a.test")).contains("Fake"));

    for (host, expect_ok) in [
        ("a.test", true),
        ("x.wild.test", true),
        ("y.x.wild.test", false),
    ] {
        let ca = if host == "a.test" { &a_crt } else { &w_crt };
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca_file)
            .args(["--resolve", &format!("{host}:{}:127.0.0.1", w.https.port())])
            .arg(format!("https://{host}:{}/", w.https.port()))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        if expect_ok {
            assert_eq!(
                code, "200",
                "{host}: curl verifies the certificate chosen by SNI"
            );
        } else {
            assert_eq!(
                code, "000",
                "{host}: the wildcard covers one label only, so curl must refuse"
            );
        }
    }
    drop(w);

    let w = Weir::start(m.path(), &["--default-ssl-certificate", "ns/default-cert"]);
    let fake = served_subject(&w, Some("unknown.test"));
    assert!(
        !fake.contains("Fake"),
        "--default-ssl-certificate replaces the fake one: {fake}"
    );
    let metrics = w.metrics();
    assert!(
        metrics
            .value(
                "nginx_ingress_controller_ssl_expire_time_seconds",
                &[
                    ("host", "a.test"),
                    ("namespace", "ns"),
                    ("secret_name", "a")
                ]
            )
            .unwrap()
            > 1.7e9
    );
}

/// A rustls client that accepts any certificate and records the leaf it was shown.
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

type TlsConn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connect with TLS (after `prelude` bytes, e.g. a PROXY header); returns the stream and the
/// certificate shown.
fn tls_connect(addr: SocketAddr, sni: &str, prelude: &[u8]) -> (TlsConn, Vec<u8>) {
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
fn get_on<S: Read + Write>(s: &mut S, host: &str, path: &str) -> (u16, String) {
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

#[test]
fn rotation_applies_to_new_handshakes_and_keeps_open_connections() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let (c1, k1, der1) = cert(&["rot.test"]);
    let (c2, k2, der2) = cert(&["rot.test"]);
    m.write("secret.yaml", &tls_secret("ns", "rot", &c1, &k1));
    m.write(
        "ing.yaml",
        &tls_ingress("rot", "rot.test", Some("rot"), &[]),
    );
    let w = Weir::start(m.path(), &[]);

    let (mut old, shown) = tls_connect(w.https, "rot.test", b"");
    assert_eq!(shown, der1);
    assert_eq!(get_on(&mut old, "rot.test", "/one").0, 200);

    m.write("secret.yaml", &tls_secret("ns", "rot", &c2, &k2));
    w.poll(
        Duration::from_secs(3),
        "new handshakes to get the new certificate",
        || (tls_connect(w.https, "rot.test", b"").1 == der2).then_some(()),
    );
    // The connection opened before the change still works.
    let (status, body) = get_on(&mut old, "rot.test", "/two");
    assert_eq!(status, 200);
    assert!(body.contains("\"/two\""), "{body}");

    // A bad Secret (key of another certificate) keeps the last good certificate.
    let (_, k3, _) = cert(&["rot.test"]);
    m.write("secret.yaml", &tls_secret("ns", "rot", &c1, &k3));
    w.wait_log("TLS Secret rejected");
    assert_eq!(tls_connect(w.https, "rot.test", b"").1, der2);
    assert!(
        w.metrics()
            .value(
                "weir_objects_rejected_total",
                &[("kind", "Secret"), ("reason", "key_mismatch")]
            )
            .unwrap_or(0.0)
            >= 1.0
    );

    // Garbage instead of a ClientHello is counted.
    let mut s = TcpStream::connect(w.https).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: rot.test\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    w.poll(Duration::from_secs(5), "handshake error counted", || {
        w.metrics()
            .value(
                "weir_connection_errors_total",
                &[("listener", "https"), ("reason", "tls_handshake")],
            )
            .filter(|v| *v >= 1.0)
    });
}

#[test]
fn http2_is_negotiated_and_proxied_to_http1_upstreams() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let (crt, key, _) = cert(&["h2.test"]);
    m.write("secret.yaml", &tls_secret("ns", "h2", &crt, &key));
    m.write("ing.yaml", &tls_ingress("h2", "h2.test", Some("h2"), &[]));
    let w = Weir::start(m.path(), &[]);
    let out = Command::new("curl")
        .args(["-sk", "--http2", "-w", "\n%{http_version}", "--resolve"])
        .arg(format!("h2.test:{}:127.0.0.1", w.https.port()))
        .arg(format!("https://h2.test:{}/over/h2?q=1", w.https.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "ALPN negotiated h2");
    let e: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(e["path"], "/over/h2?q=1");
    assert_eq!(e["headers"]["x-forwarded-proto"], "https");
    assert_eq!(e["host"], format!("h2.test:{}", w.https.port()));
}

#[test]
fn https_redirect_matrix_and_hsts() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let (crt, key, _) = cert(&["tls.test", "off.test", "keep.test"]);
    m.write("secret.yaml", &tls_secret("ns", "c", &crt, &key));
    m.write(
        "ing.yaml",
        &[
            tls_ingress("tls", "tls.test", Some("c"), &[]),
            tls_ingress("off", "off.test", Some("c"), &[("ssl-redirect", "false")]),
            tls_ingress(
                "keep",
                "keep.test",
                Some("c"),
                &[("preserve-trailing-slash", "true")],
            ),
            tls_ingress("plain", "plain.test", None, &[]),
            tls_ingress(
                "force",
                "force.test",
                None,
                &[("force-ssl-redirect", "true")],
            ),
        ]
        .join("---\n"),
    );
    let w = Weir::start(m.path(), &[]);
    let loc = |host: &str, path: &str| {
        let r = w.get(host, path);
        (r.status, r.header("location").map(str::to_string))
    };
    // As ingress-nginx, the URL has no port unless use-port-in-redirects (clients reach 443).
    let redirect = |to: &str| (308, Some(to.to_string()));
    assert_eq!(
        loc("tls.test", "/a/b?x=1&y=2"),
        redirect("https://tls.test/a/b?x=1&y=2")
    );
    assert_eq!(
        loc("TLS.test:80", "/dir/"),
        redirect("https://tls.test/dir")
    );
    assert_eq!(loc("tls.test", "/"), redirect("https://tls.test/"));
    assert_eq!(
        loc("keep.test", "/dir/"),
        redirect("https://keep.test/dir/")
    );
    assert_eq!(
        loc("force.test", "/x?q"),
        redirect("https://force.test/x?q"),
        "force-ssl-redirect without TLS"
    );
    assert_eq!(loc("off.test", "/x").0, 200, "ssl-redirect: false");
    assert_eq!(
        loc("plain.test", "/x").0,
        200,
        "no TLS section, no redirect"
    );
    assert_eq!(
        loc("tls.test", "/.well-known/acme-challenge/token").0,
        200,
        "ACME HTTP-01 challenges are not redirected"
    );
    drop(w);

    // ConfigMap ssl-redirect=false turns it off globally; the annotation still forces.
    m.write(
        "config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: ns}\ndata: {ssl-redirect: \"false\", hsts-max-age: \"600\", hsts-include-subdomains: \"false\"}\n",
    );
    let w = Weir::start(m.path(), &["--configmap", "ns/cfg"]);
    assert_eq!(w.get("tls.test", "/x").status, 200);
    assert_eq!(w.get("force.test", "/x").status, 308);
    m.write(
        "config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: ns}\ndata: {use-port-in-redirects: \"true\", hsts-max-age: \"600\", hsts-include-subdomains: \"false\"}\n",
    );
    let with_port = format!("https://tls.test:{}/p?q=1", w.https.port());
    w.poll(Duration::from_secs(3), "use-port-in-redirects", || {
        (w.get("tls.test", "/p?q=1").header("location") == Some(with_port.as_str())).then_some(())
    });

    // HSTS on HTTPS responses of TLS hosts only.
    let hsts = |host: &str| {
        let out = Command::new("curl")
            .args(["-sk", "-D", "-", "-o", "/dev/null", "--resolve"])
            .arg(format!("{host}:{}:127.0.0.1", w.https.port()))
            .arg(format!("https://{host}:{}/", w.https.port()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            l.strip_prefix("strict-transport-security: ")
                .map(|v| v.trim().to_string())
        })
    };
    assert_eq!(hsts("tls.test").as_deref(), Some("max-age=600"));
    assert_eq!(hsts("plain.test"), None);
    assert!(
        w.get("tls.test", "/")
            .header("strict-transport-security")
            .is_none(),
        "not over plain HTTP"
    );
}

fn proxy_config(extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: ns}}\ndata:\n  use-proxy-protocol: \"true\"\n{extra}"
    )
}

/// Raw HTTP after `prelude` on a fresh connection: the response text ("" when closed).
fn raw(addr: SocketAddr, prelude: &[u8], host: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(prelude).unwrap();
    let _ = write!(
        s,
        "GET /pp HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn v2_header(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

#[test]
fn proxy_protocol_sets_the_client_address_for_upstreams_and_allow_lists() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let (crt, key, _) = cert(&["pp.test"]);
    m.write("secret.yaml", &tls_secret("ns", "pp", &crt, &key));
    m.write(
        "ing.yaml",
        &[
            tls_ingress("pp", "pp.test", Some("pp"), &[("ssl-redirect", "false")]),
            tls_ingress(
                "allow",
                "allow.test",
                None,
                &[("whitelist-source-range", "203.0.113.0/24")],
            ),
        ]
        .join("---\n"),
    );
    m.write("config.yaml", &proxy_config(""));
    let w = Weir::start(m.path(), &["--configmap", "ns/cfg"]);

    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\n";
    let r = raw(w.http, v1, "pp.test");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"x-real-ip\":\"203.0.113.7\""), "{r}");
    assert!(r.contains("\"x-forwarded-for\":\"203.0.113.7\""), "{r}");
    assert!(
        r.contains("\"x-forwarded-port\":\"80\""),
        "the PROXY destination port: {r}"
    );
    // A load balancer that terminated TLS sends destination port 443: the request counts as HTTPS.
    let tls_lb = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n";
    let r = raw(w.http, tls_lb, "pp.test");
    assert!(r.contains("\"x-forwarded-proto\":\"https\""), "{r}");
    assert!(
        raw(w.http, v1, "allow.test").starts_with("HTTP/1.1 200"),
        "allow-list sees the PROXY source"
    );
    let other = b"PROXY TCP4 198.51.100.1 10.0.0.1 40000 80\r\n";
    assert!(raw(w.http, other, "allow.test").starts_with("HTTP/1.1 403"));
    let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n";
    assert!(raw(w.http, v6, "pp.test").contains("\"x-real-ip\":\"2001:db8::7\""));

    let v2 = v2_header([203, 0, 113, 9], [10, 0, 0, 1], 40001, 80);
    let r = raw(w.http, &v2, "pp.test");
    assert!(r.contains("\"x-real-ip\":\"203.0.113.9\""), "{r}");

    // No header, or garbage: the connection is closed without a response, and counted.
    assert_eq!(raw(w.http, b"", "pp.test"), "");
    assert_eq!(raw(w.http, b"PROXY NONSENSE\r\n", "pp.test"), "");
    w.poll(
        Duration::from_secs(5),
        "PROXY protocol errors counted",
        || {
            let v = w
                .metrics()
                .value("weir_connection_errors_total", &[("listener", "http")])
                .unwrap_or(0.0);
            (v >= 2.0).then_some(())
        },
    );

    // On the TLS listener the PROXY header comes before the handshake.
    let (mut s, _) = tls_connect(w.https, "pp.test", v1);
    let (status, body) = get_on(&mut s, "pp.test", "/tls");
    assert_eq!(status, 200);
    assert!(body.contains("\"x-real-ip\":\"203.0.113.7\""), "{body}");

    // Only a trusted sender may set the address (proxy-real-ip-cidr).
    m.write(
        "config.yaml",
        &proxy_config("  proxy-real-ip-cidr: \"10.0.0.0/8\"\n"),
    );
    w.poll(Duration::from_secs(3), "untrusted sender ignored", || {
        raw(w.http, v1, "pp.test")
            .contains("\"x-real-ip\":\"127.0.0.1\"")
            .then_some(())
    });
}

#[test]
fn forwarded_headers_are_trusted_only_from_trusted_peers() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    m.write("ing.yaml", &tls_ingress("f", "f.test", None, &[]));
    let config = |cidr: &str, full: bool| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: ns}}\ndata:\n  use-forwarded-headers: \"true\"\n  compute-full-forwarded-for: \"{full}\"\n  proxy-real-ip-cidr: \"{cidr}\"\n"
        )
    };
    m.write("config.yaml", &config("127.0.0.1/32", false));
    let w = Weir::start(m.path(), &["--configmap", "ns/cfg"]);
    let h = [
        ("X-Forwarded-For", "198.51.100.9"),
        ("X-Forwarded-Proto", "https"),
    ];
    let e = w.get_with("f.test", "/", &h).echo();
    assert_eq!(e["headers"]["x-real-ip"], "198.51.100.9");
    assert_eq!(e["headers"]["x-forwarded-for"], "198.51.100.9");
    assert_eq!(
        e["headers"]["x-forwarded-proto"], "https",
        "scheme from a trusted proxy"
    );

    m.write("config.yaml", &config("127.0.0.1/32", true));
    w.poll(Duration::from_secs(3), "compute-full-forwarded-for", || {
        let e = w.get_with("f.test", "/", &h).echo();
        (e["headers"]["x-forwarded-for"] == "198.51.100.9, 127.0.0.1").then_some(())
    });

    m.write("config.yaml", &config("10.0.0.0/8", false));
    w.poll(Duration::from_secs(3), "untrusted peer", || {
        let e = w.get_with("f.test", "/", &h).echo();
        (e["headers"]["x-real-ip"] == "127.0.0.1" && e["headers"]["x-forwarded-proto"] == "http")
            .then_some(())
    });
}

#[test]
fn websockets_over_tls() {
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "echo", &[upgrade_upstream()]));
    let (crt, key, _) = cert(&["ws.test"]);
    m.write("secret.yaml", &tls_secret("ns", "c", &crt, &key));
    m.write("ing.yaml", &tls_ingress("ws", "ws.test", Some("c"), &[]));
    let w = Weir::start(m.path(), &[]);
    for path in ["/chat", "/early", "/early", "/early", "/early"] {
        let (mut s, _) = tls_connect(w.https, "ws.test", b"");
        let head = send_upgrade(&mut s, "ws.test", path);
        assert!(head.starts_with("http/1.1 101"), "{path}: {head}");
        assert_echoes(&mut s);
    }
    // Plain HTTP to a TLS host is redirected first, upgrade or not (as ingress-nginx).
    let (_, head) = connect_upgrade(w.http, "ws.test", "/chat");
    assert!(head.starts_with("http/1.1 308"), "{head}");
    assert!(head.contains("location: https://ws.test/chat"), "{head}");
}
