//! The edge: TLS with per-SNI certificates, redirects, HSTS, HTTP/2, PROXY protocol and the
//! client address, through the real `weir` binary and real clients (openssl, curl, rustls).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use support::tls::*;
use support::*;
use weir_loadtest::echo::EchoServer;

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

fn base(m: &Manifests, echo: &EchoServer) {
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "echo", &[echo.addr()]));
}

#[test]
fn certificates_per_sni_wildcard_and_default() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let a = TestCert::self_signed(&["a.test"]);
    let wild = TestCert::self_signed(&["*.wild.test"]);
    let default = TestCert::self_signed(&["default.test"]);
    m.write(
        "secrets.yaml",
        &[
            tls_secret("ns", "a", &a),
            tls_secret("ns", "wild", &wild),
            tls_secret("ns", "default-cert", &default),
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
    let fake = served_certificate(w.https, None);
    assert!(
        fake.subject
            .contains("Kubernetes Ingress Controller Fake Certificate"),
        "no SNI: the fake certificate, {}",
        fake.subject
    );
    assert_eq!(
        served_certificate(w.https, Some("unknown.test")).der,
        fake.der,
        "unknown SNI: the fake certificate"
    );
    assert_eq!(served_certificate(w.https, Some("a.test")).der, a.der);
    assert_eq!(
        served_certificate(w.https, Some("x.wild.test")).der,
        wild.der
    );
    assert_eq!(
        served_certificate(w.https, Some("y.x.wild.test")).der,
        fake.der,
        "the wildcard covers one label only"
    );

    // curl, trusting only the Secret's certificate, verifies what SNI chose.
    let curl = |host: &str, ca: &TestCert| {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let out = run_for(
            Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .arg("--cacert")
                .arg(&ca_file)
                .args(["--resolve", &format!("{host}:{}:127.0.0.1", w.https.port())])
                .arg(format!("https://{host}:{}/", w.https.port())),
            Duration::from_secs(20),
            None,
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, status, _) = curl("a.test", &a);
    assert_eq!((code, status.as_str()), (Some(0), "200"), "a.test");
    let (code, status, _) = curl("x.wild.test", &wild);
    assert_eq!((code, status.as_str()), (Some(0), "200"), "x.wild.test");
    // Two labels under the wildcard: the fake certificate, which curl refuses (exit 60, peer
    // certificate not verified), after a completed handshake: not a dead listener (exit 7) nor
    // a failed handshake (35).
    let (code, status, err) = curl("y.x.wild.test", &wild);
    assert_eq!(
        (code, status.as_str()),
        (Some(60), "000"),
        "y.x.wild.test: curl must refuse the certificate: {err}"
    );
    assert_eq!(
        w.get("y.x.wild.test", "/").status,
        404,
        "and no rule serves it either"
    );

    // Expiry of each host's certificate: its notAfter.
    let expiry = |host: &str, secret: &str| {
        w.metrics().single(
            "nginx_ingress_controller_ssl_expire_time_seconds",
            &[("host", host), ("namespace", "ns"), ("secret_name", secret)],
        )
    };
    assert_eq!(expiry("a.test", "a"), Some(a.not_after as f64));
    assert_eq!(expiry("*.wild.test", "wild"), Some(wild.not_after as f64));
    drop(w);

    let w = Weir::start(m.path(), &["--default-ssl-certificate", "ns/default-cert"]);
    for sni in [None, Some("unknown.test"), Some("y.x.wild.test")] {
        assert_eq!(
            served_certificate(w.https, sni).der,
            default.der,
            "--default-ssl-certificate replaces the fake one (SNI {sni:?})"
        );
    }
    assert_eq!(served_certificate(w.https, Some("a.test")).der, a.der);
    assert_eq!(
        w.metrics().value(
            "nginx_ingress_controller_ssl_expire_time_seconds",
            &[("host", "default.test")]
        ),
        None,
        "hosts served the default certificate have no series"
    );
}

#[test]
fn rotation_applies_to_new_handshakes_and_keeps_open_connections() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let one = TestCert::self_signed(&["rot.test"]);
    let two = TestCert::self_signed(&["rot.test"]);
    // Written as people write them (stringData, merged into data in file mode).
    m.write("secret.yaml", &tls_secret_string_data("ns", "rot", &one));
    m.write(
        "ing.yaml",
        &tls_ingress("rot", "rot.test", Some("rot"), &[]),
    );
    let w = Weir::start(m.path(), &[]);

    let (mut old, shown) = tls_connect(w.https, "rot.test", b"");
    assert_eq!(shown, one.der);
    assert_eq!(get_on(&mut old, "rot.test", "/one").0, 200);

    m.write("secret.yaml", &tls_secret_string_data("ns", "rot", &two));
    w.poll(
        Duration::from_secs(3),
        "new handshakes to get the new certificate",
        || (tls_connect(w.https, "rot.test", b"").1 == two.der).then_some(()),
    );
    // The connection opened before the change still works.
    let (status, body) = get_on(&mut old, "rot.test", "/two");
    assert_eq!(status, 200);
    assert!(body.contains("\"/two\""), "{body}");

    // A bad Secret (key of another certificate) keeps the last good certificate.
    let mismatched = TestCert {
        key_pem: TestCert::self_signed(&["rot.test"]).key_pem,
        ..one.clone()
    };
    m.write("secret.yaml", &tls_secret("ns", "rot", &mismatched));
    w.wait_log("TLS Secret rejected");
    assert_eq!(tls_connect(w.https, "rot.test", b"").1, two.der);
    assert_eq!(
        w.metrics().single(
            "weir_objects_rejected_total",
            &[("kind", "Secret"), ("reason", "key_mismatch")]
        ),
        Some(1.0)
    );
    assert_eq!(
        w.metrics().single(
            "nginx_ingress_controller_ssl_expire_time_seconds",
            &[("host", "rot.test")]
        ),
        Some(two.not_after as f64),
        "the expiry of the certificate still served"
    );

    // Garbage instead of a ClientHello is counted.
    let mut s = TcpStream::connect(w.https).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: rot.test\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    w.poll(Duration::from_secs(5), "handshake error counted", || {
        w.metrics()
            .single(
                "weir_connection_errors_total",
                &[("listener", "https"), ("reason", "tls_handshake")],
            )
            .filter(|v| *v == 1.0)
    });
    assert_eq!(
        w.metrics().value("weir_connection_errors_total", &[]),
        Some(1.0),
        "no other connection error"
    );
}

#[test]
fn http2_is_negotiated_and_proxied_to_http1_upstreams() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let cert = TestCert::self_signed(&["h2.test"]);
    m.write("secret.yaml", &tls_secret("ns", "h2", &cert));
    m.write("ing.yaml", &tls_ingress("h2", "h2.test", Some("h2"), &[]));
    let w = Weir::start(m.path(), &[]);
    let out = curl(&[
        "-sk",
        "--http2",
        "-w",
        "\n%{http_version}",
        "--resolve",
        &format!("h2.test:{}:127.0.0.1", w.https.port()),
        &format!("https://h2.test:{}/over/h2?q=1", w.https.port()),
    ]);
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
    let cert = TestCert::self_signed(&["tls.test", "off.test", "keep.test"]);
    m.write("secret.yaml", &tls_secret("ns", "c", &cert));
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
        &configmap(
            "ns",
            "cfg",
            &[
                ("ssl-redirect", "false"),
                ("hsts-max-age", "600"),
                ("hsts-include-subdomains", "false"),
            ],
        ),
    );
    let w = Weir::start(m.path(), &["--configmap", "ns/cfg"]);
    assert_eq!(w.get("tls.test", "/x").status, 200);
    assert_eq!(w.get("force.test", "/x").status, 308);
    m.write(
        "config.yaml",
        &configmap(
            "ns",
            "cfg",
            &[
                ("use-port-in-redirects", "true"),
                ("hsts-max-age", "600"),
                ("hsts-include-subdomains", "false"),
            ],
        ),
    );
    let with_port = format!("https://tls.test:{}/p?q=1", w.https.port());
    w.poll(Duration::from_secs(3), "use-port-in-redirects", || {
        (w.get("tls.test", "/p?q=1").header("location") == Some(with_port.as_str())).then_some(())
    });

    // HSTS on HTTPS responses of TLS hosts only.
    let hsts = |host: &str| hsts_over_https(&w, host);
    assert_eq!(hsts("tls.test").as_deref(), Some("max-age=600"));
    assert_eq!(hsts("plain.test"), None);
    assert!(
        w.get("tls.test", "/")
            .header("strict-transport-security")
            .is_none(),
        "not over plain HTTP"
    );
}

/// The Strict-Transport-Security header of an HTTPS GET of `host` / (curl, HTTP/2).
fn hsts_over_https(w: &Weir, host: &str) -> Option<String> {
    let out = curl(&[
        "-sk",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "--resolve",
        &format!("{host}:{}:127.0.0.1", w.https.port()),
        &format!("https://{host}:{}/", w.https.port()),
    ]);
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        head.starts_with("HTTP/2 200"),
        "{host}: {head}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    head.lines().find_map(|l| {
        l.strip_prefix("strict-transport-security: ")
            .map(|v| v.trim().to_string())
    })
}

#[test]
fn hsts_defaults_preload_and_off() {
    let echo = EchoServer::start("echo").unwrap();
    let m = Manifests::new();
    base(&m, &echo);
    let cert = TestCert::self_signed(&["sts.test"]);
    m.write("secret.yaml", &tls_secret("ns", "c", &cert));
    m.write("ing.yaml", &tls_ingress("sts", "sts.test", Some("c"), &[]));
    m.write("config.yaml", &configmap("ns", "cfg", &[]));
    let w = Weir::start(m.path(), &["--configmap", "ns/cfg"]);
    assert_eq!(
        hsts_over_https(&w, "sts.test").as_deref(),
        Some("max-age=31536000; includeSubDomains"),
        "the defaults"
    );
    m.write(
        "config.yaml",
        &configmap("ns", "cfg", &[("hsts-preload", "true")]),
    );
    w.poll(Duration::from_secs(3), "hsts-preload", || {
        (hsts_over_https(&w, "sts.test").as_deref()
            == Some("max-age=31536000; includeSubDomains; preload"))
        .then_some(())
    });
    m.write(
        "config.yaml",
        &configmap("ns", "cfg", &[("hsts", "false"), ("hsts-preload", "true")]),
    );
    w.poll(Duration::from_secs(3), "hsts: \"false\"", || {
        hsts_over_https(&w, "sts.test").is_none().then_some(())
    });
}

fn proxy_config(extra: &[(&str, &str)]) -> String {
    let mut data = vec![("use-proxy-protocol", "true")];
    data.extend_from_slice(extra);
    configmap("ns", "cfg", &data)
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
    let cert = TestCert::self_signed(&["pp.test"]);
    m.write("secret.yaml", &tls_secret("ns", "pp", &cert));
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
    m.write("config.yaml", &proxy_config(&[]));
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
    let errors = |reason: &str| {
        w.metrics().single(
            "weir_connection_errors_total",
            &[("listener", "http"), ("reason", reason)],
        )
    };
    w.poll(
        Duration::from_secs(5),
        "PROXY protocol errors counted by reason",
        || {
            (errors("not_proxy_protocol") == Some(1.0) && errors("malformed") == Some(1.0))
                .then_some(())
        },
    );
    // /healthz checks the listener with a connection of its own, which is not an error.
    for _ in 0..3 {
        assert_eq!(get(w.admin, "x", "/healthz", &[]).unwrap().status, 200);
    }
    assert_eq!(
        w.metrics().value("weir_connection_errors_total", &[]),
        Some(2.0),
        "nothing else counted: {:?}",
        w.metrics().series("weir_connection_errors_total", &[])
    );

    // On the TLS listener the PROXY header comes before the handshake.
    let (mut s, _) = tls_connect(w.https, "pp.test", v1);
    let (status, body) = get_on(&mut s, "pp.test", "/tls");
    assert_eq!(status, 200);
    assert!(body.contains("\"x-real-ip\":\"203.0.113.7\""), "{body}");

    // Only a trusted sender may set the address (proxy-real-ip-cidr).
    m.write(
        "config.yaml",
        &proxy_config(&[("proxy-real-ip-cidr", "10.0.0.0/8")]),
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
        configmap(
            "ns",
            "cfg",
            &[
                ("use-forwarded-headers", "true"),
                ("compute-full-forwarded-for", &full.to_string()),
                ("proxy-real-ip-cidr", cidr),
            ],
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
    let cert = TestCert::self_signed(&["ws.test"]);
    m.write("secret.yaml", &tls_secret("ns", "c", &cert));
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
