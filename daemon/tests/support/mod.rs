//! Shared helpers for end-to-end tests: run the real `weir` binary on a manifests folder, talk
//! HTTP to it over real sockets, poll with deadlines, read its metrics.

#![allow(dead_code)]

pub mod testenv;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A loopback address nothing listens on, that stays so for the rest of the test process: the
/// port is held by a socket that is bound but never listens (connections to it are refused, and
/// neither the kernel nor another test can hand the port out again).
pub fn closed_addr() -> SocketAddr {
    static HELD: Mutex<Vec<tokio::net::TcpSocket>> = Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = socket.local_addr().unwrap();
    HELD.lock().unwrap_or_else(|p| p.into_inner()).push(socket);
    addr
}

/// Run `cmd` to its end (with `stdin` written to it, or none) and return its output; panics
/// after `timeout`, naming the command and showing what it printed, after killing it and every
/// process it started (it runs in a process group of its own).
pub fn run_for(cmd: &mut Command, timeout: Duration, stdin: Option<&[u8]>) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown} does not start: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > end {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => std::process::Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{shown} timed out after {timeout:?}; it printed:\n{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Run curl with `args` (and `--max-time 20`); panics if it does not end within 30 s.
pub fn curl(args: &[&str]) -> std::process::Output {
    run_for(
        Command::new("curl").args(["--max-time", "20"]).args(args),
        Duration::from_secs(30),
        None,
    )
}

/// `text` with the one occurrence of `from` replaced by `to`; panics when `from` occurs zero or
/// several times (so an edit of generated YAML cannot silently do nothing).
pub fn edit(text: &str, from: &str, to: &str) -> String {
    let n = text.matches(from).count();
    assert_eq!(n, 1, "{from:?} occurs {n} times in:\n{text}");
    text.replacen(from, to, 1)
}

/// A ConfigMap `ns/name` with `data` (values quoted, so any string is kept as it is).
pub fn configmap(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let mut out =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\n");
    if data.is_empty() {
        out.push_str("data: {}\n");
    }
    for (i, (k, v)) in data.iter().enumerate() {
        if i == 0 {
            out.push_str("data:\n");
        }
        out.push_str(&format!(
            "  {}: {}\n",
            serde_json::to_string(k).unwrap(),
            serde_json::to_string(v).unwrap()
        ));
    }
    out
}

/// Requests sent over and over in the background (each on a new connection) until stopped,
/// counting those that did not get the expected status.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Load {
    /// GET `host` `path` on `addr` in a loop; each answer must have status `expect`.
    pub fn start(addr: SocketAddr, host: &str, path: &str, expect: u16) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (host, path, flag) = (host.to_string(), path.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let (mut sent, mut failures) = (0, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                match get(addr, &host, &path, &[]) {
                    Ok(r) if r.status == expect => {}
                    Ok(r) => failures.push(format!("status {}: {}", r.status, r.body)),
                    Err(e) => failures.push(e.to_string()),
                }
                sent += 1;
            }
            (sent, failures)
        });
        Load { stop, thread }
    }

    /// Stop; every request must have succeeded, and at least `min_sent` have been sent.
    /// Returns how many were sent.
    pub fn finish(self, min_sent: usize) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (sent, failures) = self.thread.join().unwrap();
        assert!(
            sent >= min_sent,
            "load sent {sent} requests, expected {min_sent} or more"
        );
        assert!(
            failures.is_empty(),
            "{} of {sent} requests failed, first ones: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        sent
    }
}

/// Poll `f` until it returns `Some`, or panic after `deadline` with `what`.
pub fn poll<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A manifests folder in a temporary directory.
pub struct Manifests {
    dir: tempfile::TempDir,
}

impl Manifests {
    /// An empty folder.
    pub fn new() -> Self {
        Manifests {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write (or replace atomically) a file.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    /// Remove a file.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }
}

/// The default IngressClass (controller k8s.io/ingress-nginx, named nginx).
pub const INGRESS_CLASS: &str = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
spec:
  controller: k8s.io/ingress-nginx
";

/// A Service `name` (port 80 named http) with its endpoints, one EndpointSlice per port.
pub fn service(ns: &str, name: &str, endpoints: &[SocketAddr]) -> String {
    let mut by_port: std::collections::BTreeMap<u16, Vec<SocketAddr>> = Default::default();
    for e in endpoints {
        by_port.entry(e.port()).or_default().push(*e);
    }
    let slices: Vec<&[SocketAddr]> = by_port.values().map(Vec::as_slice).collect();
    service_slices(ns, name, &slices)
}

/// A Service plus one EndpointSlice per endpoint set, named `{name}-{i}`.
pub fn service_slices(ns: &str, name: &str, slices: &[&[SocketAddr]]) -> String {
    let mut out = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
"
    );
    for (i, eps) in slices.iter().enumerate() {
        let port = eps.first().map_or(1, |e| e.port());
        let addrs: Vec<String> = eps.iter().map(|e| format!("\"{}\"", e.ip())).collect();
        out.push_str(&format!(
            "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-{i}
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports:
- {{name: http, port: {port}}}
endpoints:
- addresses: [{}]
",
            addrs.join(", ")
        ));
    }
    out
}

/// An Ingress of class nginx with rules `(host, pathType, path, service)`.
pub fn ingress(ns: &str, name: &str, rules: &[(&str, &str, &str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ingressClassName: nginx
  rules:
"
    );
    for (host, kind, path, svc) in rules {
        if !host.is_empty() {
            out.push_str(&format!("  - host: \"{host}\"\n    http:\n"));
        } else {
            out.push_str("  - http:\n");
        }
        out.push_str(&format!(
            "      paths:
      - path: {path}
        pathType: {kind}
        backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}
"
        ));
    }
    out
}

/// A running `weir` process. Its listeners bind port 0 (any free port) and the addresses are
/// read from its log, so tests running in parallel cannot be given the same port.
pub struct Weir {
    child: Child,
    /// The HTTP listener (port 0 if weir exited before binding).
    pub http: SocketAddr,
    /// The /healthz and /metrics listener.
    pub admin: SocketAddr,
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// Weir's own log (stderr).
    log: PathBuf,
    /// The access log (stdout).
    access: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Weir {
    /// Start `weir --manifests dir` with `extra` flags and wait until /healthz says ready.
    pub fn start(dir: &Path, extra: &[&str]) -> Weir {
        let mut w = Self::spawn(dir, extra);
        w.wait_ready();
        w
    }

    /// Wait until /healthz answers 200 (panics with the log if weir exits first).
    pub fn wait_ready(&mut self) {
        let admin = self.admin;
        poll(
            Duration::from_secs(30),
            "weir /healthz to answer 200",
            || {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("weir exited early ({status}):\n{}", self.log());
                }
                get(admin, "localhost", "/healthz", &[])
                    .ok()
                    .filter(|r| r.status == 200)
            },
        );
    }

    /// Start `weir --manifests dir` without waiting for readiness (see [`Weir::spawn_env`]).
    pub fn spawn(dir: &Path, extra: &[&str]) -> Weir {
        Self::spawn_with(&["--manifests".as_ref(), dir.as_os_str()], extra)
    }

    /// Start in API mode with `kubeconfig` and wait until /healthz says ready (first full sync).
    pub fn start_api(kubeconfig: &Path, extra: &[&str]) -> Weir {
        let mut w = Self::spawn_with(&["--kubeconfig".as_ref(), kubeconfig.as_os_str()], extra);
        w.wait_ready();
        w
    }

    /// Start in API mode as Pod `pod` of namespace `namespace` (leader election identity).
    pub fn start_api_as(kubeconfig: &Path, pod: &str, namespace: &str, extra: &[&str]) -> Weir {
        let mut w = Self::spawn_env(
            &["--kubeconfig".as_ref(), kubeconfig.as_os_str()],
            extra,
            &[("POD_NAME", pod), ("POD_NAMESPACE", namespace)],
        );
        w.wait_ready();
        w
    }

    /// Start with the given source flags, without waiting for readiness.
    pub fn spawn_with(source: &[&std::ffi::OsStr], extra: &[&str]) -> Weir {
        Self::spawn_env(source, extra, &[])
    }

    /// Start with source flags, extra flags and environment; returns once weir has logged the
    /// addresses of its listeners (or has exited), without waiting for readiness. Every listener
    /// binds port 0 (a free port chosen by the kernel) unless `extra` names a port.
    pub fn spawn_env(source: &[&std::ffi::OsStr], extra: &[&str], env: &[(&str, &str)]) -> Weir {
        Self::spawn_bin(env!("CARGO_BIN_EXE_weir").as_ref(), source, extra, env)
    }

    /// [`Weir::spawn_env`] with the `weir` binary at `bin` (a copy, say).
    pub fn spawn_bin(
        bin: &Path,
        source: &[&std::ffi::OsStr],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Weir {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("weir.log");
        let logfile = std::fs::File::create(&log).unwrap();
        let access = logdir.path().join("access.log");
        let accessfile = std::fs::File::create(&access).unwrap();
        let child = Command::new(bin)
            .args(source)
            .args(["--bind-address", "127.0.0.1", "--healthz-host", "127.0.0.1"])
            .args([
                "--http-port",
                "0",
                "--https-port",
                "0",
                "--healthz-port",
                "0",
            ])
            .args(["--worker-threads", "2", "--worker-shutdown-timeout", "1"])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(accessfile)
            .stderr(logfile)
            .spawn()
            .expect("weir binary starts");
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut w = Weir {
            child,
            http: unbound,
            admin: unbound,
            https: unbound,
            log,
            access,
            _logdir: logdir,
        };
        w.wait_bound();
        w
    }

    /// Wait until weir logged `listening listener=NAME addr=ADDR` for its three listeners, and
    /// take the addresses; a weir that exits first keeps port 0 (see [`Weir::wait_exit`]).
    fn wait_bound(&mut self) {
        let deadline = Duration::from_secs(30);
        let end = Instant::now() + deadline;
        loop {
            let found = listening_addresses(&self.log());
            let get = |name: &str| found.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
            if let (Some(http), Some(https), Some(admin)) =
                (get("http"), get("https"), get("admin"))
            {
                (self.http, self.https, self.admin) = (http, https, admin);
                return;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            if Instant::now() > end {
                panic!(
                    "weir logged no listening addresses within {deadline:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (`TERM`, `INT`, `QUIT`, `STOP`, `CONT`, ...) with `kill`; panics if it
    /// cannot be sent.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} {pid}");
    }

    /// The exit status, once the process has exited.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Stop gracefully (SIGTERM, as the kubelet does) and wait for the exit.
    pub fn terminate(self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        self.wait_exit()
    }

    /// Kill the process at once (SIGKILL), as a crashed node would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything weir logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The access log lines written so far (weir's stdout), complete lines only.
    pub fn access_lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.access).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Poll until an access log line contains `needle`, and return it.
    pub fn wait_access_line(&self, needle: &str) -> String {
        self.poll(
            Duration::from_secs(10),
            &format!("access log line containing {needle:?}"),
            || self.access_lines().into_iter().find(|l| l.contains(needle)),
        )
    }

    /// GET `path` with Host `host` through the proxy.
    pub fn get(&self, host: &str, path: &str) -> Response {
        get(self.http, host, path, &[])
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}\n{}", self.log()))
    }

    /// GET with extra headers.
    pub fn get_with(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        get(self.http, host, path, headers)
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}\n{}", self.log()))
    }

    /// The /metrics text.
    pub fn metrics(&self) -> Metrics {
        let r = get(self.admin, "localhost", "/metrics", &[]).unwrap();
        assert_eq!(r.status, 200);
        Metrics(r.body)
    }

    /// Poll `f` like [`poll`], but on timeout show weir's log.
    pub fn poll<T>(&self, deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let end = Instant::now() + deadline;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {deadline:?} waiting for {what}; weir log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Poll the log until it contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        poll(
            Duration::from_secs(10),
            &format!("log line containing {needle:?}"),
            || self.log().contains(needle).then_some(()),
        );
    }
}

impl Weir {
    /// Wait for the process to exit (it must exit by itself within 10 s).
    pub fn wait_exit(self) -> (std::process::ExitStatus, String) {
        self.wait_exit_within(Duration::from_secs(10))
    }

    /// Wait for the process to exit by itself within `deadline` (panics with the log if not).
    pub fn wait_exit_within(mut self, deadline: Duration) -> (std::process::ExitStatus, String) {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            if Instant::now() > end {
                panic!(
                    "weir did not exit within {deadline:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `(listener, address)` pairs of weir's `listening listener=NAME addr=ADDR` log lines.
pub fn listening_addresses(log: &str) -> Vec<(String, SocketAddr)> {
    log.lines()
        .filter(|l| l.contains(" listening "))
        .filter_map(|l| {
            let field = |key: &str| {
                l.split_whitespace()
                    .find_map(|t| t.strip_prefix(key))
                    .map(str::to_string)
            };
            let addr = field("addr=")?.parse().ok()?;
            Some((field("listener=")?, addr))
        })
        .collect()
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The echo server's JSON reply.
    pub fn echo(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an echo reply ({e}): {self:?}"))
    }

    /// Which echo server answered.
    pub fn server(&self) -> String {
        assert_eq!(self.status, 200, "{self:?}");
        self.echo()["server"].as_str().unwrap().to_string()
    }
}

/// One HTTP/1.1 GET on a fresh connection.
pub fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {:?}", String::from_utf8_lossy(&raw)),
        )
    })
}

/// Send `raw` (a whole request, body included, with `Connection: close`) on a new connection
/// and read the response to the end.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(raw)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    parse_response(&out).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {:?}", String::from_utf8_lossy(&out)),
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..nl]).ok()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(nl + 2..nl + 2 + size)?);
            rest = rest.get(nl + 4 + size..)?;
        }
        body = out;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Prometheus text exposition as served on `/metrics`. Lookups parse it with a strict parser of
/// the text format: output that is not valid exposition text fails the test, it is never read as
/// "no such series".
pub struct Metrics(pub String);

/// One sample line of an exposition: full sample name (`…_bucket`, `…_sum`, `…_count` for
/// histograms), labels (unescaped) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name as written on its line.
    pub name: String,
    /// Label names and values.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// Whether the sample has all of `labels` (and maybe more).
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels
            .iter()
            .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

/// A label value as written in the text format, unescaped (`\\`, `\"`, `\n`).
fn unescape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

impl Metrics {
    /// Every sample; panics (showing the text) when the exposition does not parse.
    pub fn samples(&self) -> Vec<Sample> {
        use prom_text_format_parser::{Scrape, Type, ValueType};
        let scrape = Scrape::parse(&self.0)
            .unwrap_or_else(|e| panic!("/metrics is not valid exposition text: {e:?}\n{}", self.0));
        let mut out = Vec::new();
        for metric in scrape.metrics {
            for sample in metric.samples {
                let suffix = match (metric.kind, sample.value.value_type) {
                    (_, ValueType::Sum) => "_sum",
                    (_, ValueType::Count) => "_count",
                    (Type::Histogram, ValueType::Sample) => "_bucket",
                    _ => "",
                };
                out.push(Sample {
                    name: format!("{}{suffix}", metric.name),
                    labels: sample
                        .labels
                        .iter()
                        .map(|l| (l.key.clone(), unescape_label(&l.value)))
                        .collect(),
                    value: sample.value.value.as_f64(),
                });
            }
        }
        out
    }

    /// The samples named `name` that have all of `labels`.
    pub fn series(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
        self.samples()
            .into_iter()
            .filter(|s| s.name == name && s.has(labels))
            .collect()
    }

    /// Sum of the samples named `name` whose labels include all of `labels` (None: no sample).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.series(name, labels);
        (!found.is_empty()).then(|| found.iter().map(|s| s.value).sum())
    }

    /// The value of the one sample named `name` with all of `labels`; panics when several match
    /// (a lookup that should name more labels), None when none does.
    pub fn single(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.series(name, labels);
        assert!(
            found.len() <= 1,
            "{name} {labels:?} matches {} series: {found:?}",
            found.len()
        );
        found.first().map(|s| s.value)
    }
}

/// An upstream that accepts WebSocket-style upgrades on `/chat` and echoes bytes after the
/// 101; `/early` gets its 101 before the upstream has even read the request (the answer is
/// already waiting when the proxy looks for it); any other request gets a 403 with a body.
pub fn upgrade_upstream() -> SocketAddr {
    use std::io::{BufRead, BufReader};
    const SWITCH: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                // Early answers go out before the request is read: peek until the start of
                // the request line is there (it may arrive in pieces).
                const EARLY: &[u8] = b"GET /early";
                let mut peek = [0u8; EARLY.len()];
                let early = loop {
                    match stream.peek(&mut peek) {
                        Ok(0) | Err(_) => return,
                        Ok(n) if n < EARLY.len() && EARLY.starts_with(&peek[..n]) => {
                            std::thread::yield_now()
                        }
                        Ok(_) => break peek == EARLY,
                    }
                };
                if early && stream.write_all(SWITCH).is_err() {
                    return;
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut upgrade = false;
                let mut chat = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    chat |= lower.starts_with("get /chat ");
                    upgrade |= lower.starts_with("upgrade: websocket");
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut out = stream;
                if !early {
                    if !(upgrade && chat) {
                        let _ = out.write_all(
                            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 14\r\n\r\nno chat here\r\n",
                        );
                        return;
                    }
                    if out.write_all(SWITCH).is_err() {
                        return;
                    }
                }
                let mut buf = [0u8; 1024];
                loop {
                    match Read::read(&mut reader, &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if out.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Sends a WebSocket upgrade request for `host` and `path` on `s`; returns the response head
/// (lower-cased).
pub fn send_upgrade<S: Read + Write>(s: &mut S, host: &str, path: &str) -> String {
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "response head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

/// Connects to `addr` and sends a WebSocket upgrade request; returns the stream and the response
/// head (lower-cased).
pub fn connect_upgrade(addr: SocketAddr, host: &str, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = send_upgrade(&mut s, host, path);
    (s, head)
}

/// An upgrade through `addr` is switched (101) and echoes what is sent over it.
pub fn assert_tunnel(addr: SocketAddr, host: &str, path: &str) {
    let (mut s, head) = connect_upgrade(addr, host, path);
    assert!(head.starts_with("http/1.1 101"), "{host}{path}: {head}");
    assert_echoes(&mut s);
}

/// Bytes sent over an upgraded connection come back from the echoing upstream.
pub fn assert_echoes<S: Read + Write>(s: &mut S) {
    for msg in [&b"hello"[..], b"over the upgraded connection"] {
        s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
}
