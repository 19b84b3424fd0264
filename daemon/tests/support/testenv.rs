//! A real Kubernetes API server for tests: `testenv/build.sh` builds it (cached), `start.sh`
//! runs it with etcd on loopback, `stop.sh` stops it. Nothing here skips: if the server cannot
//! be built or started, the test fails with the scripts' output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{poll, run_for};

/// Deadline of one kubectl call.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build the test API server once per test binary; its path.
fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Cached: well under a second; cold: about 6 minutes on 2 cores.
        let out = run_for(
            &mut Command::new(repo().join("testenv/build.sh")),
            Duration::from_secs(30 * 60),
            None,
        );
        assert!(
            out.status.success(),
            "testenv/build.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("build.sh prints the binary path")
                .trim(),
        )
    })
}

/// A running API server with etcd; stopped on drop.
pub struct TestEnv {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl TestEnv {
    /// Start a fresh API server (watch cache off, so resuming a compacted revision gets 410).
    pub fn start() -> TestEnv {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        // start.sh waits for readiness itself (WEIR_TESTENV_TIMEOUT, 60 s by default).
        let out = run_for(
            Command::new(repo().join("testenv/start.sh"))
                .arg(dir.path())
                .env("WEIR_TESTENV_APISERVER", bin)
                .env("WEIR_TESTENV_APISERVER_ARGS", "--watch-cache=false"),
            Duration::from_secs(120),
            None,
        );
        assert!(
            out.status.success(),
            "testenv/start.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = dir.path().join("kubeconfig");
        assert!(kubeconfig.exists(), "start.sh wrote no kubeconfig");
        TestEnv { dir, kubeconfig }
    }

    /// The kubeconfig for kubectl and weir.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Run kubectl; panics with its output on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_in(args, None)
    }

    fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        // The server answers in milliseconds; the request timeout ends a call to a server that
        // stopped answering, the process deadline a kubectl that hangs anyway.
        let out = run_for(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--request-timeout=20s")
                .args(args),
            KUBECTL_TIMEOUT,
            stdin.map(str::as_bytes),
        );
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -`.
    pub fn apply(&self, yaml: &str) {
        self.kubectl_in(&["apply", "-f", "-"], Some(yaml));
    }

    /// Set a Service's load-balancer address, as a cloud controller would: a PUT of the
    /// Service to its `/status` subresource (`kubectl patch --subresource` needs kubectl 1.24;
    /// Debian bookworm's kubernetes-client is 1.20).
    pub fn set_lb_address(&self, ns: &str, name: &str, ip: &str) {
        let mut svc: serde_json::Value =
            serde_json::from_str(&self.kubectl(&["-n", ns, "get", "service", name, "-o", "json"]))
                .expect("kubectl get -o json prints JSON");
        svc["status"] = serde_json::json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
        self.kubectl_in(
            &[
                "replace",
                "--raw",
                &format!("/api/v1/namespaces/{ns}/services/{name}/status"),
                "-f",
                "-",
            ],
            Some(&svc.to_string()),
        );
    }

    fn pid_of(&self, name: &str) -> Option<u32> {
        let pids = std::fs::read_to_string(self.dir.path().join("pids")).ok()?;
        pids.lines().find_map(|l| {
            let (pid, n) = l.split_once(' ')?;
            (n.trim() == name).then(|| pid.parse().ok()).flatten()
        })
    }

    fn cmdline(pid: u32) -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// Stop the API server (etcd keeps running); remembers how to start it again.
    pub fn stop_apiserver(&self) {
        let pid = self.pid_of("apiserver").expect("API server pid");
        let cmd = Self::cmdline(pid);
        assert!(!cmd.is_empty(), "API server {pid} is not running");
        std::fs::write(self.dir.path().join("apiserver.cmdline"), cmd.join("\0")).unwrap();
        // SIGKILL: a crash, and no wait for the graceful drain of open watches.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        poll(Duration::from_secs(10), "the API server to exit", || {
            (!Path::new(&format!("/proc/{pid}/cmdline")).exists() || Self::cmdline(pid).is_empty())
                .then_some(())
        });
        self.wait_status(false);
    }

    /// Start the API server again on the same port and certificates.
    pub fn start_apiserver(&self) {
        let cmd = std::fs::read_to_string(self.dir.path().join("apiserver.cmdline"))
            .expect("stopped before");
        let cmd: Vec<&str> = cmd.split('\0').collect();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.path().join("apiserver.log"))
            .unwrap();
        let child = Command::new(cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("API server restarts");
        let pids = std::fs::read_to_string(self.dir.path().join("pids")).unwrap();
        let kept: Vec<&str> = pids
            .lines()
            .filter(|l| !l.ends_with(" apiserver"))
            .collect();
        std::fs::write(
            self.dir.path().join("pids"),
            format!("{}\n{} apiserver\n", kept.join("\n"), child.id()),
        )
        .unwrap();
        std::mem::forget(child);
        self.wait_status(true);
    }

    fn wait_status(&self, up: bool) {
        poll(
            Duration::from_secs(30),
            if up {
                "API server ready"
            } else {
                "API server down"
            },
            || {
                let ok = run_for(
                    Command::new("kubectl")
                        .arg("--kubeconfig")
                        .arg(&self.kubeconfig)
                        .args(["get", "--raw", "/readyz", "--request-timeout=2s"]),
                    KUBECTL_TIMEOUT,
                    None,
                )
                .status
                .success();
                (ok == up).then_some(())
            },
        );
    }

    /// Compact etcd up to its current revision, so watches resuming from older revisions get
    /// 410 Gone and must re-list.
    pub fn compact(&self) {
        let etcd = self.pid_of("etcd").expect("etcd pid");
        let cmd = Self::cmdline(etcd);
        let url = cmd
            .iter()
            .position(|a| a == "--listen-client-urls")
            .and_then(|i| cmd.get(i + 1))
            .expect("etcd client URL")
            .clone();
        let post = |path: &str, body: &str| -> String {
            let out = run_for(
                Command::new("curl").args([
                    "-sf",
                    "--max-time",
                    "20",
                    "-X",
                    "POST",
                    &format!("{url}{path}"),
                    "-d",
                    body,
                ]),
                Duration::from_secs(30),
                None,
            );
            assert!(
                out.status.success(),
                "etcd {path} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let status: serde_json::Value =
            serde_json::from_str(&post("/v3/kv/range", r#"{"key":"AA=="}"#)).unwrap();
        let rev = status["header"]["revision"]
            .as_str()
            .expect("etcd revision")
            .to_string();
        post(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{rev}","physical":true}}"#),
        );
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // stop.sh sends SIGKILL after 10 s itself.
        let _ = Command::new(repo().join("testenv/stop.sh"))
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output();
    }
}
