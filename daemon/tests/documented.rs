//! Documented behaviour, end to end in file mode: the class flags, refused flag combinations and
//! bind failures, the Pod labels on metrics, ConfigMap timeouts, allow/deny lists, a folder
//! mounted from a ConfigMap, and request bodies. The real `weir` binary, loopback listeners and
//! real clients (raw HTTP, curl).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;
use weir_loadtest::echo::EchoServer;

/// An IngressClass `name` of controller `controller`.
fn ingress_class(name: &str, controller: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: {name}}}\nspec: {{controller: {controller}}}\n"
    )
}

/// An Ingress for `host` → Service `a` with `spec.ingressClassName` and/or the legacy
/// annotation.
fn classed_ingress(
    name: &str,
    host: &str,
    class: Option<&str>,
    annotation: Option<&str>,
) -> String {
    let annotations = annotation.map_or(String::new(), |a| {
        format!("  annotations: {{kubernetes.io/ingress.class: {a}}}\n")
    });
    let class = class.map_or(String::new(), |c| format!("  ingressClassName: {c}\n"));
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: ns
{annotations}spec:
{class}  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: a, port: {{number: 80}}}}}}}}
"
    )
}

#[test]
fn class_flags_choose_the_ingresses_served() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write(
        "classes.yaml",
        &[
            ingress_class("nginx", "k8s.io/ingress-nginx"),
            ingress_class("custom", "example.com/weir"),
            ingress_class("internal", "other.example/controller"),
        ]
        .join("---\n"),
    );
    m.write("svc.yaml", &service("ns", "a", &[a.addr()]));
    m.write(
        "ing.yaml",
        &[
            classed_ingress("by-nginx", "nginx.test", Some("nginx"), None),
            classed_ingress("by-custom", "custom.test", Some("custom"), None),
            classed_ingress("by-internal", "internal.test", Some("internal"), None),
            classed_ingress("legacy", "legacy.test", None, Some("internal")),
            classed_ingress("none", "none.test", None, None),
        ]
        .join("---\n"),
    );
    let hosts = [
        "nginx.test",
        "custom.test",
        "internal.test",
        "legacy.test",
        "none.test",
    ];
    let served = |flags: &[&str]| -> Vec<&str> {
        let w = Weir::start(m.path(), flags);
        hosts
            .iter()
            .copied()
            .filter(|h| match w.get(h, "/").status {
                200 => true,
                404 => false,
                other => panic!("{h} with {flags:?}: status {other}"),
            })
            .collect()
    };
    assert_eq!(served(&[]), ["nginx.test"], "the defaults");
    assert_eq!(
        served(&["--controller-class", "example.com/weir"]),
        ["custom.test"],
        "--controller-class picks IngressClasses by controller"
    );
    assert_eq!(
        served(&["--ingress-class", "internal"]),
        ["nginx.test", "legacy.test"],
        "--ingress-class is the legacy annotation's value, not a class name"
    );
    assert_eq!(
        served(&["--ingress-class", "internal", "--ingress-class-by-name"]),
        ["nginx.test", "internal.test", "legacy.test"],
        "--ingress-class-by-name adds the IngressClass of that name"
    );
    assert_eq!(
        served(&["--watch-ingress-without-class"]),
        ["nginx.test", "none.test"],
        "--watch-ingress-without-class adds Ingresses without any class"
    );

    // The controller class is also the controller_class label of every metric.
    let w = Weir::start(m.path(), &["--controller-class", "example.com/weir"]);
    assert_eq!(
        w.metrics().single(
            "nginx_ingress_controller_config_last_reload_successful",
            &[("controller_class", "example.com/weir")]
        ),
        Some(1.0)
    );
}

#[test]
fn manifests_and_kubeconfig_together_are_refused() {
    let m = Manifests::new();
    let w = Weir::spawn(m.path(), &["--kubeconfig", "/nonexistent/kubeconfig"]);
    let (status, log) = w.wait_exit();
    assert_eq!(status.code(), Some(2), "a usage error: {log}");
    assert!(
        log.contains(
            "error: the argument '--manifests <DIR>' cannot be used with '--kubeconfig <FILE>'"
        ),
        "{log}"
    );
    assert!(
        listening_addresses(&log).is_empty(),
        "nothing was bound: {log}"
    );
}

#[test]
fn a_taken_https_or_health_port_stops_weir_with_the_address() {
    let m = Manifests::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for flag in ["--https-port", "--healthz-port"] {
        let w = Weir::spawn(m.path(), &[flag, &port]);
        let (status, log) = w.wait_exit();
        assert_eq!(status.code(), Some(1), "{flag}: {log}");
        assert!(
            log.contains(&format!("weir: cannot listen on 127.0.0.1:{port}: ")),
            "{flag}: {log}"
        );
    }
    // The port is still the other listener's.
    assert!(TcpStream::connect(taken.local_addr().unwrap()).is_ok());
}

#[test]
fn pod_name_and_namespace_label_the_ingress_nginx_metrics() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "a", &[a.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("pod.test", "Prefix", "/", "a")]),
    );
    let mut w = Weir::spawn_env(
        &["--manifests".as_ref(), m.path().as_os_str()],
        &[],
        &[
            ("POD_NAME", "weir-7d9f-abcde"),
            ("POD_NAMESPACE", "ingress"),
        ],
    );
    w.wait_ready();
    assert_eq!(w.get("pod.test", "/").server(), "a");
    let pod = [
        ("controller_pod", "weir-7d9f-abcde"),
        ("controller_namespace", "ingress"),
        ("controller_class", "k8s.io/ingress-nginx"),
    ];
    w.poll(Duration::from_secs(5), "the request counted", || {
        w.metrics()
            .single(
                "nginx_ingress_controller_requests",
                &[&pod[..], &[("host", "pod.test")]].concat(),
            )
            .filter(|v| *v == 1.0)
    });
    let metrics = w.metrics();
    for name in [
        "nginx_ingress_controller_config_hash",
        "nginx_ingress_controller_config_last_reload_successful",
        "nginx_ingress_controller_success",
    ] {
        assert!(
            metrics.single(name, &pod).is_some(),
            "{name} has the labels"
        );
    }
    // Every nginx_ingress_controller_* series has them; weir_* series have none.
    for s in metrics.samples() {
        let has_pod = s.has(&pod[..2]);
        if s.name.starts_with("nginx_ingress_controller_") {
            assert!(has_pod, "{s:?}");
        } else if s.name.starts_with("weir_") {
            assert!(!s.labels.contains_key("controller_pod"), "{s:?}");
        }
    }
}

/// An upstream whose accept queue is full: connecting to it hangs (the kernel drops the SYNs),
/// as with an endpoint behind a black hole. Kept for the whole test process.
fn unanswered_addr() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<(TcpListener, Vec<TcpStream>)>> =
        std::sync::Mutex::new(Vec::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let listener = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket.listen(0).unwrap().into_std().unwrap()
    });
    let addr = listener.local_addr().unwrap();
    // Fill the queue: connections that complete are queued and never accepted.
    let mut queued = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        queued.push(s);
        assert!(queued.len() < 16, "the accept queue does not fill");
    }
    HELD.lock().unwrap().push((listener, queued));
    addr
}

/// An upstream that accepts connections and never reads from them.
fn deaf_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for s in l.incoming().flatten() {
            kept.push(s);
        }
    });
    addr
}

#[test]
fn connect_and_send_timeouts_from_the_configmap() {
    let black_hole = unanswered_addr();
    let deaf = deaf_upstream();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write(
        "svc.yaml",
        &[
            service("ns", "hole", &[black_hole]),
            service("ns", "deaf", &[deaf]),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress(
            "ns",
            "i",
            &[
                ("hole.test", "Prefix", "/", "hole"),
                ("deaf.test", "Prefix", "/", "deaf"),
            ],
        ),
    );
    m.write(
        "config.yaml",
        &configmap(
            "ns",
            "cfg",
            &[
                ("proxy-connect-timeout", "1"),
                ("proxy-send-timeout", "1"),
                ("proxy-read-timeout", "4"),
                ("proxy-next-upstream-tries", "1"),
                // The 256 MiB body below must not be refused with 413 first.
                ("proxy-body-size", "0"),
            ],
        ),
    );
    let w = Weir::start(m.path(), &["--configmap", "ns/cfg"]);

    // proxy-connect-timeout: 1 s instead of the default 5 s, then 504.
    let started = Instant::now();
    let r = w.get("hole.test", "/");
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "answered after {took:?}"
    );

    // proxy-send-timeout: the upstream takes nothing of a large body; once the socket buffers
    // are full the proxy's writes stall, and after 1 s it stops sending. Unlike nginx, which
    // answers 504 then, Pingora goes on waiting for the upstream's answer: the client gets its
    // 504 at proxy-read-timeout (4 s).
    let mut s = TcpStream::connect(w.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let size = 256 << 20;
    write!(
        s,
        "POST /upload HTTP/1.1\r\nHost: deaf.test\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 16];
        let mut sent = 0usize;
        while sent < size {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let started = Instant::now();
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let took = started.elapsed();
    let _ = s.shutdown(std::net::Shutdown::Both);
    let sent = sender.join().unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 504"),
        "after {took:?}, {sent} bytes sent: {text}\n{}",
        w.log()
    );
    assert!(sent < size, "the body was not taken whole");
    assert!(
        took >= Duration::from_millis(3900) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
    w.wait_log("writing body, timeout: 1s");
}

fn annotated_ingress(name: &str, host: &str, path: &str, annotations: &[(&str, &str)]) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    edit(
        &ingress("ns", name, &[(host, "Prefix", path, "a")]),
        &format!("metadata: {{name: {name}, namespace: ns}}\n"),
        &format!("metadata:\n  name: {name}\n  namespace: ns\n  annotations:\n{ann}"),
    )
}

/// Status of a GET through curl from local address `from` (127.0.0.1 or another loopback one).
fn status_from(w: &Weir, from: &str, host: &str, path: &str) -> u16 {
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--interface",
        from,
        "-H",
        &format!("Host: {host}"),
        &format!("http://{}{path}", w.http),
    ]);
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "curl from {from}: {code} {out:?}");
    code.parse().unwrap()
}

#[test]
fn allow_and_deny_lists_answer_403_by_client_address() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "a", &[a.addr()]));
    m.write(
        "ing.yaml",
        &[
            annotated_ingress(
                "allow",
                "allow.test",
                "/",
                &[("whitelist-source-range", "127.0.0.1/32")],
            ),
            // Another Ingress's path on the same host is not under the list.
            annotated_ingress("open", "allow.test", "/open", &[]),
            annotated_ingress(
                "deny",
                "deny.test",
                "/",
                &[("denylist-source-range", "127.0.0.2")],
            ),
            // Both: the deny list is checked first.
            annotated_ingress(
                "both",
                "both.test",
                "/",
                &[
                    ("allowlist-source-range", "127.0.0.0/8"),
                    ("denylist-source-range", "127.0.0.2/32"),
                ],
            ),
            annotated_ingress(
                "broken",
                "broken.test",
                "/",
                &[("whitelist-source-range", "10.0.0.0/33")],
            ),
        ]
        .join("---\n"),
    );
    let w = Weir::start(m.path(), &[]);
    let table = [
        ("allow.test", "/", 200, 403),
        ("allow.test", "/open", 200, 200),
        ("deny.test", "/", 200, 403),
        ("both.test", "/", 200, 403),
        ("broken.test", "/", 503, 503),
    ];
    for (host, path, from_1, from_2) in table {
        assert_eq!(
            status_from(&w, "127.0.0.1", host, path),
            from_1,
            "{host}{path} from 127.0.0.1"
        );
        assert_eq!(
            status_from(&w, "127.0.0.2", host, path),
            from_2,
            "{host}{path} from 127.0.0.2"
        );
    }
    let r = exchange(
        w.http,
        b"GET / HTTP/1.1\r\nHost: deny.test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200, "from 127.0.0.1");
    w.wait_log("invalid CIDR or IP address \"10.0.0.0/33\"");
    w.poll(Duration::from_secs(5), "the 403s counted", || {
        w.metrics()
            .value(
                "nginx_ingress_controller_requests",
                &[("status", "403"), ("ingress", "deny")],
            )
            .filter(|v| *v == 1.0)
    });
}

/// Write `files` as a ConfigMap volume does: into a new timestamped folder, published by
/// replacing the `..data` link atomically; every file is a link through `..data`.
fn publish_configmap_volume(dir: &Path, version: &str, files: &[(&str, String)]) {
    let data = dir.join(version);
    std::fs::create_dir(&data).unwrap();
    for (name, text) in files {
        std::fs::write(data.join(name), text).unwrap();
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[test]
fn a_folder_mounted_from_a_configmap_follows_its_atomic_updates() {
    let a = EchoServer::start("a").unwrap();
    let b = EchoServer::start("b").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = |upstream: SocketAddr| {
        vec![
            ("class.yaml", INGRESS_CLASS.to_string()),
            ("svc.yaml", service("ns", "s", &[upstream])),
            (
                "ing.yaml",
                ingress("ns", "i", &[("cm.test", "Prefix", "/", "s")]),
            ),
        ]
    };
    publish_configmap_volume(dir.path(), "..2026_01_01_00_00_00.1", &files(a.addr()));
    let w = Weir::start(dir.path(), &[]);
    assert_eq!(w.get("cm.test", "/").server(), "a");

    let changed_at = Instant::now();
    publish_configmap_volume(dir.path(), "..2026_01_01_00_01_00.2", &files(b.addr()));
    w.poll(
        Duration::from_secs(2),
        "the new version to be served",
        || (w.get("cm.test", "/").server() == "b").then_some(()),
    );
    assert!(changed_at.elapsed() < Duration::from_secs(2));
    let log = w.log();
    assert!(
        !log.contains(" WARN ") && !log.contains(" ERROR "),
        "the hidden folders and links are not read as manifests:\n{log}"
    );
}

#[test]
fn request_bodies_reach_the_upstream_intact() {
    let a = EchoServer::start("a").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "a", &[a.addr()]));
    m.write(
        "ing.yaml",
        &ingress("ns", "i", &[("body.test", "Prefix", "/", "a")]),
    );
    let w = Weir::start(m.path(), &[]);
    // 300 KB of varied text: larger than the socket buffers, so it is streamed.
    let body: String = (0..300_000u32)
        .map(|i| char::from(b'a' + (i.wrapping_mul(7919) % 26) as u8))
        .collect();

    let mut raw = format!(
        "POST /upload?x=1 HTTP/1.1\r\nHost: body.test\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body.as_bytes());
    let e = exchange(w.http, &raw).unwrap().echo();
    assert_eq!(e["method"], "POST");
    assert_eq!(e["path"], "/upload?x=1");
    assert_eq!(e["body_len"], body.len());
    assert!(e["body"] == body.as_str(), "the body arrived changed");

    // Chunked, in uneven pieces.
    let mut raw = b"PUT /chunks HTTP/1.1\r\nHost: body.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let mut rest = body.as_bytes();
    for size in [1usize, 10, 4096, 65_536, 100_000].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).min(rest.len()));
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
        rest = tail;
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let e = exchange(w.http, &raw).unwrap().echo();
    assert_eq!(e["method"], "PUT");
    assert_eq!(e["body_len"], body.len());
    assert!(
        e["body"] == body.as_str(),
        "the chunked body arrived changed"
    );

    // An empty POST has an empty body upstream.
    let e = exchange(
        w.http,
        b"POST /empty HTTP/1.1\r\nHost: body.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap()
    .echo();
    assert_eq!(e["body_len"], 0);
}
