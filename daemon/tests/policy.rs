//! Fail closed: every route an Ingress produces carries that Ingress's policy. Its path rules,
//! its `spec.defaultBackend` on its hosts' unmatched paths, the unmatched paths of a host whose
//! oldest Ingress has no defaultBackend (they go to `--default-backend-service`), and the
//! catch-all (an Ingress with only a defaultBackend) — each is checked for an authentication
//! refusal, an allow list, a deny list, the HTTPS redirect and HSTS, through the real `weir`
//! binary, with upstreams that count what reaches them.

mod support;

use std::process::Command;

use support::*;
use weir_loadtest::echo::EchoServer;

/// How a host's requests are routed, one kind per Ingress shape.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A path rule: `/` of the host.
    Rule,
    /// The Ingress's own defaultBackend, for a path none of its rules matches.
    OwnDefault,
    /// A path no rule matches, on a host whose Ingress has no defaultBackend: the global default
    /// backend (`--default-backend-service`).
    GlobalDefault,
    /// An unknown host, served by the catch-all Ingress (only a defaultBackend).
    CatchAll,
}

const KINDS: [Kind; 4] = [
    Kind::Rule,
    Kind::OwnDefault,
    Kind::GlobalDefault,
    Kind::CatchAll,
];

/// The Ingress for `kind`, named `name`, host `host`, with `annotations`; `tls` adds a TLS
/// section for the host (Secret `cert`). The rule's path is `/app` except for `Rule`, where it is
/// `/`; defaults go to Service `fallback`, rules to `app`.
fn ingress_of(
    kind: Kind,
    name: &str,
    host: &str,
    annotations: &[(&str, &str)],
    tls: bool,
) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    let tls = if tls {
        format!("  tls:\n  - hosts: [\"{host}\"]\n    secretName: cert\n")
    } else {
        String::new()
    };
    let backend = |svc: &str| format!("{{service: {{name: {svc}, port: {{number: 80}}}}}}");
    let rule = |path: &str| {
        format!(
            "  rules:\n  - host: \"{host}\"\n    http:\n      paths:\n      - {{path: {path}, pathType: Prefix, backend: {}}}\n",
            backend("app")
        )
    };
    let spec = match kind {
        Kind::Rule => rule("/"),
        Kind::OwnDefault => format!(
            "  defaultBackend: {}\n{}",
            backend("fallback"),
            rule("/app")
        ),
        Kind::GlobalDefault => rule("/app"),
        Kind::CatchAll => format!("  defaultBackend: {}\n", backend("fallback")),
    };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: ns
  annotations:
{ann}spec:
  ingressClassName: nginx
{tls}{spec}"
    )
}

/// Where a request of `kind` is sent: (Host header, path).
fn request_of(kind: Kind, host: &str) -> (String, &'static str) {
    match kind {
        Kind::Rule => (host.to_string(), "/"),
        Kind::OwnDefault | Kind::GlobalDefault => (host.to_string(), "/elsewhere"),
        Kind::CatchAll => ("unknown.test".to_string(), "/"),
    }
}

/// One `weir` with one Ingress of each kind carrying `annotations` (the catch-all in a run of
/// its own, as it takes every unknown host), the upstreams counting requests.
struct Case {
    weir: Weir,
    app: EchoServer,
    fallback: EchoServer,
    _global: EchoServer,
    _manifests: Manifests,
}

impl Case {
    fn start(kind: Kind, annotations: &[(&str, &str)], tls: bool, extra: &[&str]) -> Case {
        let app = EchoServer::start("app").unwrap();
        let fallback = EchoServer::start("fallback").unwrap();
        let global = EchoServer::start("global").unwrap();
        let m = Manifests::new();
        m.write("class.yaml", INGRESS_CLASS);
        m.write(
            "svc.yaml",
            &[
                service("ns", "app", &[app.addr()]),
                service("ns", "fallback", &[fallback.addr()]),
                service("ns", "global", &[global.addr()]),
            ]
            .join("---\n"),
        );
        if tls {
            let (crt, key) = self_signed(&["policy.test"]);
            m.write("secret.yaml", &tls_secret("ns", "cert", &crt, &key));
        }
        m.write(
            "ing.yaml",
            &ingress_of(kind, "guarded", "policy.test", annotations, tls),
        );
        let mut flags = vec!["--default-backend-service", "ns/global"];
        flags.extend_from_slice(extra);
        let weir = Weir::start(m.path(), &flags);
        Case {
            weir,
            app,
            fallback,
            _global: global,
            _manifests: m,
        }
    }

    fn get(&self, kind: Kind) -> Response {
        let (host, path) = request_of(kind, "policy.test");
        self.weir.get(&host, path)
    }

    /// Requests that reached the Ingress's own upstreams.
    fn reached(&self) -> usize {
        self.app.received() + self.fallback.received()
    }
}

/// A self-signed certificate for `names`: (PEM chain, PEM key).
fn self_signed(names: &[&str]) -> (String, String) {
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let c = params.self_signed(&key).unwrap();
    (c.pem(), key.serialize_pem())
}

fn tls_secret(ns: &str, name: &str, crt: &str, key: &str) -> String {
    let indent = |s: &str| -> String { s.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(crt),
        indent(key)
    )
}

/// Without a guarding annotation each kind of route is served by the upstream it names: the
/// baseline that makes the refusals below mean something.
#[test]
fn every_route_kind_is_served_without_a_policy() {
    for kind in KINDS {
        let case = Case::start(kind, &[], false, &[]);
        let r = case.get(kind);
        let expected = match kind {
            Kind::Rule => "app",
            Kind::OwnDefault | Kind::CatchAll => "fallback",
            Kind::GlobalDefault => "global",
        };
        assert_eq!(r.server(), expected, "{kind:?}");
    }
}

/// An authentication annotation Weir does not implement yet refuses every route of the Ingress
/// with 503, and nothing reaches its upstreams.
#[test]
fn unsupported_authentication_refuses_every_route_kind() {
    for kind in KINDS {
        let case = Case::start(kind, &[("auth-keepalive-share-vars", "true")], false, &[]);
        assert_eq!(case.get(kind).status, 503, "{kind:?}");
        assert_eq!(
            case.reached(),
            0,
            "{kind:?}: a refused request reached an upstream"
        );
        if let Kind::GlobalDefault = kind {
            // The host's other paths are the Ingress's too; an unrelated host is not.
            assert_eq!(case.weir.get("other.test", "/").server(), "global");
        }
    }
}

/// `whitelist-source-range` without the client's network answers 403 on every route kind.
#[test]
fn allow_list_guards_every_route_kind() {
    for kind in KINDS {
        let case = Case::start(
            kind,
            &[("whitelist-source-range", "10.0.0.0/8")],
            false,
            &[],
        );
        assert_eq!(case.get(kind).status, 403, "{kind:?}");
        assert_eq!(
            case.reached(),
            0,
            "{kind:?}: a refused request reached an upstream"
        );
        // The client's own network is allowed.
        let open = Case::start(
            kind,
            &[("whitelist-source-range", "127.0.0.0/8")],
            false,
            &[],
        );
        assert_eq!(open.get(kind).status, 200, "{kind:?}");
    }
}

/// `denylist-source-range` naming the client's network answers 403 on every route kind.
#[test]
fn deny_list_guards_every_route_kind() {
    for kind in KINDS {
        let case = Case::start(
            kind,
            &[("denylist-source-range", "127.0.0.1/32")],
            false,
            &[],
        );
        assert_eq!(case.get(kind).status, 403, "{kind:?}");
        assert_eq!(
            case.reached(),
            0,
            "{kind:?}: a refused request reached an upstream"
        );
    }
}

/// A host with TLS redirects plain HTTP on every route of its Ingress, including the paths no
/// rule matches; the catch-all keeps no redirect, as ingress-nginx (it applies the catch-all
/// Ingress's annotations except redirects).
#[test]
fn https_redirect_covers_every_route_of_a_tls_host() {
    for kind in [Kind::Rule, Kind::OwnDefault, Kind::GlobalDefault] {
        let case = Case::start(kind, &[], true, &[]);
        let r = case.get(kind);
        assert_eq!(r.status, 308, "{kind:?}");
        assert_eq!(
            r.header("location"),
            Some(format!("https://policy.test{}", request_of(kind, "").1).as_str()),
            "{kind:?}"
        );
        assert_eq!(case.reached(), 0, "{kind:?}");
        // force-ssl-redirect without a TLS section: the same, on every route of the Ingress.
        let forced = Case::start(kind, &[("force-ssl-redirect", "true")], false, &[]);
        assert_eq!(forced.get(kind).status, 308, "{kind:?}");
    }
    let catch_all = Case::start(
        Kind::CatchAll,
        &[("force-ssl-redirect", "true")],
        false,
        &[],
    );
    assert_eq!(catch_all.get(Kind::CatchAll).server(), "fallback");
}

/// HTTPS responses of a TLS host carry HSTS on every route of its Ingress.
#[test]
fn hsts_covers_every_route_of_a_tls_host() {
    for kind in [Kind::Rule, Kind::OwnDefault, Kind::GlobalDefault] {
        let case = Case::start(kind, &[], true, &[]);
        let (host, path) = request_of(kind, "policy.test");
        let port = case.weir.https.port();
        let out = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "10",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "--resolve",
            ])
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("https://{host}:{port}{path}"))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 200") || head.starts_with("http/2 200"),
            "{kind:?}: {head}"
        );
        assert!(
            head.contains("strict-transport-security: max-age=31536000"),
            "{kind:?}: {head}"
        );
    }
}

/// `--annotations-prefix` chooses which annotations are read; others are ignored.
#[test]
fn annotations_are_read_under_the_configured_prefix() {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    let with = |name: &str, host: &str, annotation: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: ns
  annotations: {{\"{annotation}\": \"10.0.0.0/8\"}}
spec:
  ingressClassName: nginx
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}
"
        )
    };
    m.write(
        "ing.yaml",
        &[
            with("custom", "custom.test", "custom.io/whitelist-source-range"),
            with(
                "nginx",
                "nginx.test",
                "nginx.ingress.kubernetes.io/whitelist-source-range",
            ),
            with("typo", "typo.test", "custom.io/whitelist-source-rnage"),
        ]
        .join("---\n"),
    );
    let w = Weir::start(m.path(), &["--annotations-prefix", "custom.io/"]);
    assert_eq!(w.get("custom.test", "/").status, 403);
    assert_eq!(
        w.get("nginx.test", "/").server(),
        "app",
        "other prefixes are not read"
    );
    assert_eq!(w.get("typo.test", "/").server(), "app");
    w.wait_log("annotation custom.io/whitelist-source-rnage is not an ingress-nginx annotation");
    let (status, log) = Weir::spawn(m.path(), &["--annotations-prefix", " "]).wait_exit();
    assert!(!status.success());
    assert!(log.contains("--annotations-prefix"), "{log}");
}
