//! Basic authentication (`auth-type: basic`, `auth-secret`, `auth-secret-type`, `auth-realm`)
//! and `satisfy`, through the real `weir` binary in file mode, with hashes made by `htpasswd`
//! (apache2-utils) and an echo upstream that shows what reaches it.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;
use weir_loadtest::echo::EchoServer;

/// `user:hash` as `htpasswd -n` prints it with `flag` (`-B`, `-m`, `-s`, `-d`).
fn htpasswd(flag: &str, user: &str, password: &str) -> String {
    let mut args = vec!["-nb", flag];
    if flag == "-B" {
        args.extend(["-C", "5"]);
    }
    args.extend([user, password]);
    let out = Command::new("htpasswd")
        .args(&args)
        .output()
        .expect("htpasswd (apache2-utils) must be installed: scripts/deps.sh");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn basic(user: &str, password: &str) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{user}:{password}").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    format!("Basic {}", String::from_utf8(out.stdout).unwrap().trim())
}

/// A Secret in `ns` with `data` as stringData (each value a block).
fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: ns}}\nstringData:\n"
    );
    for (k, v) in data {
        s.push_str(&format!("  \"{k}\": |\n"));
        for line in v.lines() {
            s.push_str(&format!("    {line}\n"));
        }
    }
    s
}

/// An Ingress for `host` (`/` to Service `app`) with `annotations`.
fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: ns
  annotations:
{ann}spec:
  ingressClassName: nginx
  rules:
  - host: \"{host}\"
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}
"
    )
}

fn start(ingresses: &[String], secrets: &[String]) -> (Weir, EchoServer, Manifests) {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    if !secrets.is_empty() {
        m.write("secrets.yaml", &secrets.join("---\n"));
    }
    m.write("ing.yaml", &ingresses.join("---\n"));
    let weir = Weir::start(m.path(), &[]);
    (weir, app, m)
}

fn status(weir: &Weir, host: &str, auth: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    weir.get_with(host, "/", &headers).status
}

/// Each hash `htpasswd` makes (bcrypt, apr1-md5, SHA-1, DES crypt) lets its user in with the
/// right password only; a missing or wrong one gets 401 with the realm's challenge, and the
/// credentials are not passed upstream. An `auth-map` Secret works the same.
#[test]
fn htpasswd_hashes_realm_and_auth_map() {
    let users = [
        ("bcrypt", "-B", "b-pass"),
        ("apr1", "-m", "a-pass"),
        ("sha", "-s", "s-pass"),
        ("des", "-d", "d-pass"),
    ];
    let file: Vec<String> = users
        .iter()
        .map(|(u, flag, p)| htpasswd(flag, u, p))
        .collect();
    let map_hash = htpasswd("-m", "x", "m-pass");
    let map_hash = map_hash.split_once(':').unwrap().1;
    let (weir, app, _m) = start(
        &[
            ingress(
                "file",
                "file.test",
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "users"),
                    ("auth-realm", "Staff only"),
                ],
            ),
            ingress(
                "map",
                "map.test",
                &[
                    ("auth-type", "basic"),
                    ("auth-secret", "ns/usermap"),
                    ("auth-secret-type", "auth-map"),
                ],
            ),
        ],
        &[
            secret("users", &[("auth", &file.join("\n"))]),
            secret("usermap", &[("mallory", map_hash)]),
        ],
    );
    let r = weir.get("file.test", "/");
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Staff only\"")
    );
    assert!(r.body.contains("401 Authorization Required"), "{r:?}");
    for (user, _, password) in users {
        let good = basic(user, password);
        // Twice: the second check is answered from the cache of successes.
        for _ in 0..2 {
            let r = weir.get_with("file.test", "/", &[("Authorization", &good)]);
            assert_eq!(r.status, 200, "{user}: {r:?}");
            assert_eq!(
                r.echo()["headers"].get("authorization"),
                None,
                "credentials are not passed upstream"
            );
        }
        let wrong = basic(user, "wrong");
        let r = weir.get_with("file.test", "/", &[("Authorization", &wrong)]);
        assert_eq!(r.status, 401, "{user}: {r:?}");
        assert!(r.header("www-authenticate").is_some());
    }
    assert_eq!(
        status(&weir, "file.test", Some(&basic("nobody", "b-pass"))),
        401
    );
    assert_eq!(status(&weir, "file.test", Some("Bearer abc")), 401);
    // auth-map: the key is the user; the realm defaults to empty.
    let r = weir.get("map.test", "/");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"\""));
    assert_eq!(
        status(&weir, "map.test", Some(&basic("mallory", "m-pass"))),
        200
    );
    assert_eq!(status(&weir, "map.test", Some(&basic("mallory", "x"))), 401);
    assert_eq!(
        status(&weir, "map.test", Some(&basic("bcrypt", "b-pass"))),
        401
    );
    assert_eq!(app.received(), 9);
}

/// A missing Secret refuses the Ingress (503, nothing reaches the upstream) until the Secret
/// appears; a change of the Secret's users applies without touching the Ingress. `digest` is
/// refused with 503 and a reported problem.
#[test]
fn missing_secret_refuses_until_it_exists_and_changes_apply() {
    let (weir, app, m) = start(
        &[
            ingress(
                "guarded",
                "guarded.test",
                &[("auth-type", "basic"), ("auth-secret", "late")],
            ),
            ingress(
                "digest",
                "digest.test",
                &[("auth-type", "digest"), ("auth-secret", "late")],
            ),
        ],
        &[],
    );
    let alice = basic("alice", "pw1");
    assert_eq!(status(&weir, "guarded.test", Some(&alice)), 503);
    assert_eq!(status(&weir, "digest.test", Some(&alice)), 503);
    assert_eq!(
        app.received(),
        0,
        "nothing reached the upstream while refused"
    );
    weir.wait_log("Secret ns/late not found");
    weir.wait_log("digest authentication is not supported");
    m.write(
        "secrets.yaml",
        &secret("late", &[("auth", &htpasswd("-m", "alice", "pw1"))]),
    );
    weir.poll(Duration::from_secs(10), "the Secret to apply", || {
        (status(&weir, "guarded.test", Some(&alice)) == 200).then_some(())
    });
    assert_eq!(status(&weir, "guarded.test", None), 401);
    assert_eq!(
        status(&weir, "digest.test", Some(&alice)),
        503,
        "digest stays refused"
    );
    m.write(
        "secrets.yaml",
        &secret("late", &[("auth", &htpasswd("-m", "alice", "pw2"))]),
    );
    weir.poll(Duration::from_secs(10), "the new password to apply", || {
        (status(&weir, "guarded.test", Some(&alice)) == 401).then_some(())
    });
    assert_eq!(
        status(&weir, "guarded.test", Some(&basic("alice", "pw2"))),
        200
    );
    // A Secret without the `auth` key refuses again.
    m.write("secrets.yaml", &secret("late", &[("other", "x")]));
    weir.poll(
        Duration::from_secs(10),
        "the broken Secret to refuse",
        || (status(&weir, "guarded.test", Some(&basic("alice", "pw2"))) == 503).then_some(()),
    );
}

/// `satisfy: any` lets a client in that the allow list names or that authenticates; `all` (the
/// default) needs both. The test client is 127.0.0.1.
#[test]
fn satisfy_any_and_all_with_an_allow_list() {
    let auth = [("auth-type", "basic"), ("auth-secret", "users")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        auth.iter().chain(extra).copied().collect()
    };
    let (weir, _app, _m) = start(
        &[
            ingress(
                "any-in",
                "any-in.test",
                &with(&[
                    ("satisfy", "any"),
                    ("whitelist-source-range", "127.0.0.1/32"),
                ]),
            ),
            ingress(
                "any-out",
                "any-out.test",
                &with(&[("satisfy", "any"), ("whitelist-source-range", "10.0.0.0/8")]),
            ),
            ingress(
                "all-in",
                "all-in.test",
                &with(&[
                    ("satisfy", "all"),
                    ("whitelist-source-range", "127.0.0.1/32"),
                ]),
            ),
            ingress(
                "all-out",
                "all-out.test",
                &with(&[("whitelist-source-range", "10.0.0.0/8")]),
            ),
            ingress(
                "any-deny",
                "any-deny.test",
                &with(&[("satisfy", "any"), ("denylist-source-range", "127.0.0.0/8")]),
            ),
            ingress("bad", "bad.test", &with(&[("satisfy", "some")])),
        ],
        &[secret("users", &[("auth", &htpasswd("-s", "u", "p"))])],
    );
    let good = basic("u", "p");
    let bad = basic("u", "nope");
    let cases = [
        ("any-in.test", [200, 200, 200]),
        ("any-out.test", [401, 200, 401]),
        ("all-in.test", [401, 200, 401]),
        ("all-out.test", [403, 403, 403]),
        // As nginx: under `any` a deny list alone never admits, and authenticating gets past it.
        ("any-deny.test", [401, 200, 401]),
        ("bad.test", [503, 503, 503]),
    ];
    for (host, [none, right, wrong]) in cases {
        assert_eq!(
            status(&weir, host, None),
            none,
            "{host} without credentials"
        );
        assert_eq!(
            status(&weir, host, Some(&good)),
            right,
            "{host} with credentials"
        );
        assert_eq!(
            status(&weir, host, Some(&bad)),
            wrong,
            "{host} with a wrong password"
        );
    }
}

/// `no-auth-locations` (default `/.well-known/acme-challenge`): an Ingress path under one of them
/// is not authenticated, by basic authentication either, as ingress-nginx's template skips both
/// kinds for such a location (the Ingress path counts, as there, not the request path).
#[test]
fn no_auth_locations_skip_basic_authentication() {
    let line = htpasswd("-m", "alice", "pw");
    let auth = &[("auth-type", "basic"), ("auth-secret", "users")];
    let solver = ingress("solver", "guarded.test", auth)
        .replace("path: /,", "path: /.well-known/acme-challenge/token,");
    let (weir, _app, _m) = start(
        &[ingress("guarded", "guarded.test", auth), solver],
        &[secret("users", &[("auth", &line)])],
    );
    assert_eq!(status(&weir, "guarded.test", None), 401);
    let r = weir.get("guarded.test", "/.well-known/acme-challenge/token");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(weir.get("guarded.test", "/.well-known/other").status, 401);
}
