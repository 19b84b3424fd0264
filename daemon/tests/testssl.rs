//! `testssl.sh` (Debian's package) against the HTTPS listener with default settings: no HIGH or
//! CRITICAL finding. The certificate is issued by a test CA given to testssl, valid for 90 days,
//! with a CRL distribution point, so that findings are about Weir's TLS configuration.

mod support;

use std::process::Command;

use support::*;
use weir_loadtest::echo::EchoServer;

fn issued_certificate(dir: &std::path::Path) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Weir Test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["secure.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "secure.test");
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(86_400)).into();
    params.not_after = (now + std::time::Duration::from_secs(90 * 86_400)).into();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
        uris: vec!["http://crl.secure.test/ca.crl".to_string()],
    }];
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = params.signed_by(&key, &issuer).unwrap();
    (format!("{}{}", leaf.pem(), ca.pem()), key.serialize_pem())
}

#[test]
fn testssl_finds_nothing_high_or_critical() {
    let echo = EchoServer::start("echo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = issued_certificate(dir.path());
    let indent = |s: &str| -> String { s.lines().map(|l| format!("    {l}\n")).collect() };
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "echo", &[echo.addr()]));
    m.write(
        "secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: ns}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&chain),
            indent(&key)
        ),
    );
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("secure.test", "Prefix", "/", "echo")]).replace(
            "spec:\n",
            "spec:\n  tls: [{hosts: [secure.test], secretName: s}]\n",
        ),
    );
    let w = Weir::start(m.path(), &[]);
    let json = dir.path().join("testssl.json");
    let out = Command::new("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "off", "--add-ca"])
        .arg(dir.path().join("ca.pem"))
        .arg("--jsonfile")
        .arg(&json)
        .args(["--ip", "127.0.0.1"])
        .arg(format!("https://secure.test:{}", w.https.port()))
        .output()
        .expect("testssl is installed (scripts/deps.sh)");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "testssl wrote no JSON:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(
        findings.len() > 50,
        "testssl ran its checks: {} findings",
        findings.len()
    );
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("HIGH" | "CRITICAL")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(bad.is_empty(), "testssl findings:\n{}", bad.join("\n"));
    // What it negotiated, for the record: TLS 1.3 offered, no TLS 1.0/1.1, h2 over ALPN.
    let finding = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .and_then(|f| f["finding"].as_str())
            .unwrap_or("")
            .to_string()
    };
    assert!(
        finding("TLS1_3").starts_with("offered"),
        "{}",
        finding("TLS1_3")
    );
    assert!(
        finding("TLS1").starts_with("not offered"),
        "{}",
        finding("TLS1")
    );
    assert!(
        finding("TLS1_1").starts_with("not offered"),
        "{}",
        finding("TLS1_1")
    );
    assert_eq!(finding("ALPN_HTTP2"), "h2");
}
