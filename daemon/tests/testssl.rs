//! `testssl.sh` (Debian's package) against the HTTPS listener with default settings: no HIGH or
//! CRITICAL finding. The certificate is issued by a test CA given to testssl, valid for 90 days,
//! with a CRL distribution point, so that findings are about Weir's TLS configuration.

mod support;

use std::process::Command;
use std::time::Duration;

use support::tls::*;
use support::*;
use weir_loadtest::echo::EchoServer;

/// testssl.sh takes about 40 s against a loopback listener on 2 cores.
const TESTSSL_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn testssl_finds_nothing_high_or_critical() {
    let echo = EchoServer::start("echo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Weir Test CA");
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    let cert = ca.issue(&["secure.test"]);
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "echo", &[echo.addr()]));
    m.write("secret.yaml", &tls_secret("ns", "s", &cert));
    m.write(
        "ing.yaml",
        &edit(
            &ingress("ns", "i", &[("secure.test", "Prefix", "/", "echo")]),
            "spec:\n",
            "spec:\n  tls: [{hosts: [secure.test], secretName: s}]\n",
        ),
    );
    let w = Weir::start(m.path(), &[]);
    let json = dir.path().join("testssl.json");
    let out = run_for(
        Command::new("testssl")
            .args(["--quiet", "--color", "0", "--warnings", "off", "--add-ca"])
            .arg(dir.path().join("ca.pem"))
            .arg("--jsonfile")
            .arg(&json)
            .args(["--ip", "127.0.0.1"])
            .arg(format!("https://secure.test:{}", w.https.port())),
        TESTSSL_TIMEOUT,
        None,
    );
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
