//! The access log through the real `weir` binary: one line per request on stdout in
//! ingress-nginx's default `upstreaminfo` format, parsed back field by field; a custom
//! `log-format-upstream` with JSON escaping, an unknown variable refused, `skip-access-log-urls`,
//! `disable-access-log`,
//! `enable-access-log: "false"` on one Ingress, and the default backend left out (as
//! ingress-nginx's `enable-access-log-for-default-backend: false`).

mod support;

use std::time::Duration;

use support::*;
use weir_loadtest::echo::EchoServer;

/// An Ingress `ns/name` for `host` → Service `app`, with annotations.
fn ingress_for(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let ing = ingress("ns", name, &[(host, "Prefix", "/", "app")]);
    if annotations.is_empty() {
        return ing;
    }
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    edit(
        &ing,
        &format!("metadata: {{name: {name}, namespace: ns}}\n"),
        &format!("metadata:\n  name: {name}\n  namespace: ns\n  annotations:\n{ann}"),
    )
}

/// curl through weir's HTTP listener; returns the body (the echo server's JSON).
fn curl_get(weir: &Weir, host: &str, path: &str, extra: &[&str]) -> String {
    let url = format!("http://{}{path}", weir.http);
    let host_header = format!("Host: {host}");
    let mut args = vec!["-s", "-H", host_header.as_str()];
    args.extend_from_slice(extra);
    args.push(url.as_str());
    let out = curl(&args);
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// One line of the default format, split into its fields.
#[derive(Debug)]
struct Line {
    remote_addr: String,
    remote_user: String,
    time_local: String,
    request: String,
    status: u16,
    body_bytes_sent: usize,
    referer: String,
    user_agent: String,
    request_length: usize,
    request_time: String,
    upstream_name: String,
    alternative_upstream_name: String,
    upstream_addr: String,
    upstream_response_length: String,
    upstream_response_time: String,
    upstream_status: String,
    req_id: String,
}

fn parse_line(line: &str) -> Line {
    let quoted: Vec<&str> = line.split('"').collect();
    assert_eq!(quoted.len(), 7, "three quoted fields: {line}");
    let head: Vec<&str> = quoted[0].splitn(4, ' ').collect();
    assert_eq!(head[1], "-", "{line}");
    let mid: Vec<&str> = quoted[2].split_whitespace().collect();
    let tail: Vec<&str> = quoted[6].split_whitespace().collect();
    assert_eq!(tail.len(), 9, "{line}");
    let bracketed = |s: &str| {
        s.strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or_else(|| panic!("[{s}] in {line}"))
            .to_string()
    };
    Line {
        remote_addr: head[0].into(),
        remote_user: head[2].into(),
        time_local: bracketed(head[3].trim_end()),
        request: quoted[1].into(),
        status: mid[0].parse().unwrap(),
        body_bytes_sent: mid[1].parse().unwrap(),
        referer: quoted[3].into(),
        user_agent: quoted[5].into(),
        request_length: tail[0].parse().unwrap(),
        request_time: tail[1].into(),
        upstream_name: bracketed(tail[2]),
        alternative_upstream_name: bracketed(tail[3]),
        upstream_addr: tail[4].into(),
        upstream_response_length: tail[5].into(),
        upstream_response_time: tail[6].into(),
        upstream_status: tail[7].into(),
        req_id: tail[8].into(),
    }
}

/// `0.001`: seconds with three decimals.
fn is_seconds(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.len() == 3
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

/// `03/Dec/2026:05:57:19 +0000`.
fn is_time_local(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 26 && b[2] == b'/' && b[6] == b'/' && b[11] == b':' && s.ends_with(" +0000")
}

#[test]
fn default_format_lines_parse_back_field_by_field() {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("ing.yaml", &ingress_for("web", "log.test", &[]));
    let weir = Weir::start(m.path(), &[]);

    // The default backend (no Ingress for the host) is not logged, as ingress-nginx.
    let r = weir.get("unknown.test", "/not-routed");
    assert_eq!(r.status, 404);
    // A request refused for its Host, before routing, is logged (nginx logs its 400s).
    let r = exchange(
        weir.http,
        b"GET /bad-framing HTTP/1.1\r\nHost: log..test\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let l = parse_line(&weir.wait_access_line("/bad-framing"));
    assert_eq!((l.status, l.upstream_addr.as_str()), (400, "-"));

    let body = curl_get(
        &weir,
        "log.test",
        "/hello?q=1",
        &["-A", "curl-log-test", "-e", "http://ref.test/page"],
    );
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    let seen_id = echo["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = weir.wait_access_line("/hello?q=1");
    let l = parse_line(&raw);
    assert_eq!(l.remote_addr, "127.0.0.1", "{raw}");
    assert_eq!(l.remote_user, "-");
    assert!(is_time_local(&l.time_local), "{raw}");
    assert_eq!(l.request, "GET /hello?q=1 HTTP/1.1");
    assert_eq!(l.status, 200);
    assert_eq!(l.body_bytes_sent, body.len(), "{raw}");
    assert_eq!(l.referer, "http://ref.test/page");
    assert_eq!(l.user_agent, "curl-log-test");
    assert!(l.request_length > 60 && l.request_length < 400, "{raw}");
    assert!(is_seconds(&l.request_time), "{raw}");
    assert_eq!(l.upstream_name, "ns-app-80");
    assert_eq!(l.alternative_upstream_name, "");
    assert_eq!(l.upstream_addr, app.addr().to_string());
    assert_eq!(l.upstream_response_length, body.len().to_string());
    assert!(is_seconds(&l.upstream_response_time), "{raw}");
    assert_eq!(l.upstream_status, "200");
    assert_eq!(l.req_id.len(), 32, "{raw}");
    assert!(l.req_id.bytes().all(|c| c.is_ascii_hexdigit()), "{raw}");
    assert_eq!(l.req_id, seen_id, "the id logged is the one sent upstream");

    // An incoming X-Request-ID is kept, logged and passed on; a Basic user is logged.
    let body = curl_get(
        &weir,
        "log.test",
        "/second",
        &["-H", "X-Request-ID: my-id-1", "-u", "alice:secret"],
    );
    assert!(body.contains("\"x-request-id\":\"my-id-1\""), "{body}");
    let l = parse_line(&weir.wait_access_line("/second"));
    assert_eq!(
        (l.req_id.as_str(), l.remote_user.as_str()),
        ("my-id-1", "alice")
    );
    assert_eq!((l.referer.as_str(), l.user_agent.len() > 4), ("-", true));

    let lines = weir.access_lines();
    assert!(
        !lines.iter().any(|l| l.contains("/not-routed")),
        "the default backend is not logged: {lines:?}"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        weir.metrics().single("weir_access_log_dropped_total", &[]),
        Some(0.0)
    );
    assert!(
        !weir.log().contains("/hello?q=1"),
        "access lines are not in weir's own log (stderr)"
    );
}

#[test]
fn enable_access_log_false_on_one_ingress_only() {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write(
        "off.yaml",
        &ingress_for("quiet", "off.test", &[("enable-access-log", "false")]),
    );
    m.write("on.yaml", &ingress_for("loud", "on.test", &[]));
    let weir = Weir::start(m.path(), &[]);
    assert_eq!(weir.get("off.test", "/off-request").status, 200);
    assert_eq!(weir.get("on.test", "/on-request").status, 200);
    weir.wait_access_line("/on-request");
    let lines = weir.access_lines();
    assert!(
        !lines.iter().any(|l| l.contains("/off-request")),
        "{lines:?}"
    );
}

#[test]
fn custom_format_json_escaping_and_disable_from_the_configmap() {
    let app = EchoServer::start("app").unwrap();
    let m = Manifests::new();
    m.write("class.yaml", INGRESS_CLASS);
    m.write("svc.yaml", &service("ns", "app", &[app.addr()]));
    m.write("ing.yaml", &ingress_for("web", "fmt.test", &[]));
    // An unknown variable: reported, and the default format is kept (nginx refuses it).
    m.write(
        "cfg.yaml",
        &configmap(
            "ns",
            "cfg",
            &[
                ("log-format-upstream", "$host $no_such_var"),
                ("skip-access-log-urls", "/skipped, /other"),
            ],
        ),
    );
    let weir = Weir::start(m.path(), &["--configmap", "ns/cfg"]);
    weir.wait_log("unknown variable");
    assert_eq!(weir.get("fmt.test", "/skipped").status, 200);
    assert_eq!(weir.get("fmt.test", "/first").status, 200);
    let l = parse_line(&weir.wait_access_line("/first"));
    assert_eq!(l.upstream_name, "ns-app-80");
    let lines = weir.access_lines();
    assert_eq!(lines.len(), 1, "skip-access-log-urls: {lines:?}");

    let format = r#"{"host": "$host", "foo": "$http_x_foo", "uri": "$request_uri", "status": $status, "svc": "$namespace/$ingress_name/$service_name:$service_port", "missing": "$http_x_missing", "t": "$time_iso8601"}"#;
    m.write(
        "cfg.yaml",
        &configmap(
            "ns",
            "cfg",
            &[
                ("log-format-upstream", format),
                ("log-format-escape-json", "true"),
            ],
        ),
    );
    let line = weir.poll(Duration::from_secs(20), "the custom format", || {
        let path = "/json?a=1";
        curl_get(&weir, "FMT.test:80", path, &["-H", "X-Foo: say \"hi\"\\"]);
        weir.access_lines()
            .into_iter()
            .find(|l| l.starts_with('{') && l.contains("/json"))
    });
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["host"], "fmt.test", "{line}");
    assert_eq!(v["foo"], "say \"hi\"\\", "{line}");
    assert_eq!(v["uri"], "/json?a=1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["svc"], "ns/web/app:80");
    assert_eq!(v["missing"], "", "an unset variable is empty in JSON");
    assert_eq!(v["t"].as_str().unwrap().len(), 25, "{line}");

    // disable-access-log: no more lines, once the configuration is applied.
    let applied = weir.log().matches("configuration applied").count();
    m.write(
        "cfg.yaml",
        &configmap("ns", "cfg", &[("disable-access-log", "true")]),
    );
    weir.poll(
        Duration::from_secs(20),
        "the ConfigMap change applied",
        || (weir.log().matches("configuration applied").count() > applied).then_some(()),
    );
    assert_eq!(weir.get("fmt.test", "/while-off").status, 200);
    m.write(
        "cfg.yaml",
        &configmap("ns", "cfg", &[("log-format-upstream", "on $request_uri")]),
    );
    // Switching back on proves the request in between was served while the log was off.
    weir.poll(Duration::from_secs(20), "the log to start again", || {
        assert_eq!(weir.get("fmt.test", "/back-on").status, 200);
        weir.access_lines().into_iter().find(|l| l == "on /back-on")
    });
    let lines = weir.access_lines();
    assert!(!lines.iter().any(|l| l.contains("/while-off")), "{lines:?}");
}
