#!/usr/bin/env python3
"""Weir benchmark harness: Weir against nginx (the reference) and haproxy on loopback.

    python3 loadtest/bench.py [--quick] [--out docs/benchmarks]

Follows the protocol in loadtest/README.md ("How the numbers are made"): upstream nginx and the
load generator on CPU1, the proxy under test on CPU0, one worker each, real-time priority when
available, CPU-µs per request from /proc/PID/task/*/schedstat, 5 repetitions alternating targets,
each candidate reported as the median of its per-repetition ratios to nginx.

Python 3.11 standard library only. Installs nginx, haproxy, wrk, nghttp2-client (h2load) and
gnuplot with apt-get when missing, builds Weir with cargo, writes OUT/results.json, OUT/results.md,
OUT/cpu.png and OUT/rss.png, and prints the Markdown table. Every process it starts is stopped
before it exits (also on Ctrl-C, errors and its own global deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime as dt
import glob
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "bench.test"
DEFAULT_TARGETS = "nginx,haproxy,pingora,weir,weir-10k"
NS = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# CPU placement (reference protocol): the proxy under test on CPU0; the upstream, the load
# generator and this script on CPU1.
CPU_PROXY = "0"
CPU_LOAD = "1"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# Processes: everything started goes through Procs, in its own process group, and is stopped at
# exit by its process-group id (never by name).
# ------------------------------------------------------------------------------------------------


class Procs:
    def __init__(self) -> None:
        self.live: list[tuple[str, subprocess.Popen]] = []
        self.lock = threading.Lock()

    def add(self, name: str, p: subprocess.Popen) -> None:
        with self.lock:
            self.live.append((name, p))

    def forget(self, p: subprocess.Popen) -> None:
        with self.lock:
            self.live = [(n, q) for (n, q) in self.live if q is not p]

    def start(self, name: str, argv: list[str], logfile: Path, env: dict | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        f = open(logfile, "ab")
        full_env = os.environ.copy()
        if env:
            full_env.update(env)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             env=full_env, cwd=cwd, start_new_session=True)
        f.close()
        self.add(name, p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 5.0) -> None:
        if p.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # The leader exited; stop anything left in its group.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.forget(p)

    def stop_all(self) -> None:
        with self.lock:
            todo = list(reversed(self.live))
        for _, p in todo:
            self.stop(p, timeout=3.0)


PROCS = Procs()
# The parsed command line (set in main), for helpers that build configurations.
ARGS = None


def run(argv: list[str], timeout: float, check: bool = True, env: dict | None = None,
        cwd: Path | None = None, input_text: str | None = None) -> subprocess.CompletedProcess:
    """Run a bounded command in its own process group; kill the group on timeout."""
    full_env = os.environ.copy()
    if env:
        full_env.update(env)
    p = subprocess.Popen(argv, stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                         cwd=cwd, start_new_session=True)
    PROCS.add(argv[0], p)
    try:
        out, err = p.communicate(input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        PROCS.stop(p, timeout=1.0)
        out, err = p.communicate()
        raise BenchError(f"timed out after {timeout}s: {' '.join(argv)}\n{out[-2000:]}\n{err[-2000:]}")
    finally:
        PROCS.forget(p)
    cp = subprocess.CompletedProcess(argv, p.returncode, out, err)
    if check and p.returncode != 0:
        raise BenchError(f"exit {p.returncode}: {' '.join(argv)}\n{out[-3000:]}\n{err[-3000:]}")
    return cp


# ------------------------------------------------------------------------------------------------
# Environment: packages, build, real-time priority, pinning
# ------------------------------------------------------------------------------------------------

PACKAGES = {  # command -> Debian package(s) to try, in order
    "nginx": ["nginx"],
    "haproxy": ["haproxy"],
    "wrk": ["wrk"],
    "h2load": ["nghttp2-client"],
    "gnuplot": ["gnuplot-nox", "gnuplot"],
    "openssl": ["openssl"],
    "taskset": ["util-linux"],
    "chrt": ["util-linux"],
}
OPTIONAL_PACKAGES = {"valgrind": ["valgrind"], "callgrind_control": ["valgrind"],
                     "perf": ["linux-perf"], "strace": ["strace"]}

_apt_updated = False


def which(cmd: str) -> str | None:
    return shutil.which(cmd) or next(
        (p for p in (f"/usr/sbin/{cmd}", f"/sbin/{cmd}") if os.access(p, os.X_OK)), None)


def apt_install(pkg: str) -> bool:
    global _apt_updated
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        log("apt-get update")
        run(["apt-get", "update", "-q"], timeout=600, check=False, env=env)
        _apt_updated = True
    log(f"apt-get install {pkg}")
    r = run(["apt-get", "install", "-y", "-q", "--no-install-recommends", pkg], timeout=900,
            check=False, env=env)
    return r.returncode == 0


def ensure_tools() -> dict:
    notes = {}
    for table, required in ((PACKAGES, True), (OPTIONAL_PACKAGES, False)):
        for cmd, pkgs in table.items():
            if which(cmd):
                continue
            for pkg in pkgs:
                if apt_install(pkg) and which(cmd):
                    break
            if not which(cmd):
                if required:
                    raise BenchError(f"{cmd} is missing and could not be installed ({', '.join(pkgs)})")
                notes[cmd] = "not installed"
    return notes


def tool_versions() -> dict:
    def first_line(argv: list[str]) -> str:
        try:
            r = run(argv, timeout=20, check=False)
            text = (r.stdout + r.stderr).strip().splitlines()
            return text[0] if text else ""
        except Exception as e:  # noqa: BLE001 - version strings are informational
            return f"unknown ({e})"
    return {
        "nginx": first_line([which("nginx"), "-v"]),
        "haproxy": first_line([which("haproxy"), "-v"]),
        "wrk": first_line(["wrk", "-v"]),
        "h2load": first_line(["h2load", "--version"]),
        "valgrind": first_line(["valgrind", "--version"]) if which("valgrind") else None,
        "perf": first_line(["perf", "--version"]) if which("perf") else None,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


def build_weir(args) -> Path:
    if args.weir_bin:
        b = Path(args.weir_bin).resolve()
        if not os.access(b, os.X_OK):
            raise BenchError(f"--weir-bin {b} is not an executable")
        return b
    if not args.no_build:
        log("cargo build --release -p weir -p weir-loadtest")
        r = subprocess.run(["cargo", "build", "--release", "-p", "weir", "-p", "weir-loadtest"],
                           cwd=REPO, timeout=3600)
        if r.returncode != 0:
            raise BenchError("cargo build --release failed (see above)")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    b = target / "release" / "weir"
    if not os.access(b, os.X_OK):
        raise BenchError(f"{b} not found")
    return b


@dataclass
class Placement:
    rt: bool = False
    rt_note: str = ""
    pin: bool = False
    pin_note: str = ""

    def wrap(self, argv: list[str], cpu: str | None, rt: str | None) -> list[str]:
        """taskset/chrt prefix. rt: 'fifo' (single-threaded event loops), 'rr' (multi-threaded
        tokio processes) or None."""
        pre: list[str] = []
        if self.pin and cpu is not None:
            pre += ["taskset", "-c", cpu]
        if self.rt and rt:
            pre += ["chrt", "-f" if rt == "fifo" else "-r", "50"]
        return pre + argv


def detect_placement(no_rt: bool) -> Placement:
    pl = Placement()
    ncpu = os.cpu_count() or 1
    if ncpu >= 2 and which("taskset"):
        pl.pin = True
        pl.pin_note = "proxy on CPU0; upstream, load generator and harness on CPU1"
    else:
        pl.pin_note = f"not pinned ({ncpu} CPU(s) or no taskset): numbers include client/upstream interference"
    if no_rt:
        pl.rt_note = "not used (--no-rt)"
    elif not which("chrt"):
        pl.rt_note = "not used: chrt not found"
    else:
        r = run(["chrt", "-f", "50", "true"], timeout=10, check=False)
        if r.returncode == 0:
            pl.rt = True
            rt_runtime = Path("/proc/sys/kernel/sched_rt_runtime_us").read_text().strip() \
                if Path("/proc/sys/kernel/sched_rt_runtime_us").exists() else "?"
            pl.rt_note = (f"chrt -f 50 (nginx, haproxy, upstream, wrk, h2load), chrt -r 50 (Weir); "
                          f"sched_rt_runtime_us={rt_runtime}")
        else:
            pl.rt_note = f"not used: `chrt -f 50 true` failed: {r.stderr.strip()[:200]}"
    return pl


# ------------------------------------------------------------------------------------------------
# Small helpers: ports, HTTP, /proc
# ------------------------------------------------------------------------------------------------

_used_ports: set[int] = set()


def free_port() -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p not in _used_ports:
            _used_ports.add(p)
            return p
    raise BenchError("no free port")


def http_get(port: int, host: str = HOST, path: str = "/", tls: bool = False,
             timeout: float = 5.0, headers: list[str] = ()) -> tuple[int, str]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = raw
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(raw, server_hostname=host)
        extra = "".join(f"{h}\r\n" for h in headers)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
                  .encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body.decode(errors="replace")
    finally:
        raw.close()


def wait_for(what: str, deadline_s: float, fn, proc: subprocess.Popen | None = None,
             logfile: Path | None = None):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            tail = logfile.read_text(errors="replace")[-3000:] if logfile and logfile.exists() else ""
            raise BenchError(f"{what}: process exited with {proc.returncode}\n{tail}")
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling until the deadline
            last = e
        time.sleep(0.05)
    tail = logfile.read_text(errors="replace")[-3000:] if logfile and logfile.exists() else ""
    raise BenchError(f"timed out after {deadline_s}s waiting for {what} (last error: {last})\n{tail}")


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants (via /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for ch in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                todo += [int(x) for x in Path(ch).read_text().split()]
            except OSError:
                pass
    return out


def cpu_ns(pids: list[int]) -> int:
    """Sum over the pids' threads of /proc/PID/task/*/schedstat field 1 (ns on CPU)."""
    total = 0
    for pid in pids:
        for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            try:
                total += int(Path(f).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def stat_cpu_s(pids: list[int]) -> float:
    """utime+stime of /proc/PID/stat (whole thread group, exited threads included), in s."""
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def cpu0_jiffies() -> dict:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{CPU_PROXY} "):
            v = [int(x) for x in line.split()[1:]]
            return {"user": v[0], "nice": v[1], "system": v[2], "idle": v[3], "iowait": v[4],
                    "irq": v[5], "softirq": v[6], "steal": v[7]}
    return {}


def rss_kb(pids: list[int]) -> tuple[int, int]:
    """(sum of VmRSS, sum of Pss) over pids, in kB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def med_range(xs: list[float]) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# ------------------------------------------------------------------------------------------------
# Configurations
# ------------------------------------------------------------------------------------------------


def make_cert(work: Path) -> dict:
    crt, key, pem = work / "bench.crt", work / "bench.key", work / "bench.pem"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "30", "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST}"], timeout=60)
    pem.write_text(crt.read_text() + key.read_text())
    return {"crt": crt, "key": key, "pem": pem}


def nginx_head(d: Path) -> str:
    """The part of every nginx config here: one process, no logs, long keep-alive, temp paths in d."""
    return f"""
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8000; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
"""


def nginx_upstream_conf(work: Path, name: str, port: int) -> Path:
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(nginx_head(d) + f"""    server {{
        listen 127.0.0.1:{port} default_server backlog=4096;
        location = /__stub {{ stub_status; }}
        location / {{ default_type text/plain; return 200 "ok"; }}
    }}
}}
""")
    return conf


# ingress-nginx's default log-format-upstream, with fixed upstream names ($proxy_upstream_name
# and $proxy_alternative_upstream_name are ingress-nginx's Lua-set variables) and $request_id
# for $req_id.
NGINX_UPSTREAMINFO = ("'$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "
                      "\"$http_referer\" \"$http_user_agent\" $request_length $request_time "
                      "[bench-upstream-80] [] $upstream_addr $upstream_response_length "
                      "$upstream_response_time $upstream_status $request_id'")


def weir_log_config() -> str:
    """Weir's ConfigMap in the benchmark: the access log matches nginx's (off unless --access-log)."""
    on = getattr(ARGS, "access_log", False)
    data = "data: {}" if on else 'data: {disable-access-log: "true"}'
    return f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: weir-bench, namespace: {NS}}}
{data}
"""


def nginx_proxy_conf(work: Path, name: str, http_port: int, https_port: int, upstream: int,
                     cert: dict) -> Path:
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    # --access-log: one upstreaminfo line per request to a file, as ingress-nginx by default
    # (in the server: `access_log off` at the http level cancels any other access_log there).
    on = getattr(ARGS, "access_log", False)
    log_format = f"    log_format upstreaminfo {NGINX_UPSTREAMINFO};\n" if on else ""
    access_log = f"        access_log {d}/access.log upstreaminfo;\n" if on else ""
    conf.write_text(nginx_head(d) + log_format + f"""    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 128;
        keepalive_requests 100000000;
    }}
    ssl_certificate {cert['crt']};
    ssl_certificate_key {cert['key']};
    server {{
        listen 127.0.0.1:{http_port} default_server backlog=4096;
        listen 127.0.0.1:{https_port} ssl http2 default_server backlog=4096;
        return 404;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl http2;
        server_name {HOST};
{access_log}        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""")
    return conf


def haproxy_conf(work: Path, name: str, http_port: int, https_port: int, upstream: int,
                 cert: dict) -> Path:
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "haproxy.cfg"
    conf.write_text(f"""
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always
frontend fe
    bind 127.0.0.1:{http_port}
    bind 127.0.0.1:{https_port} ssl crt {cert['pem']} alpn h2,http/1.1
    http-request return status 404 unless {{ hdr(host) -i {HOST} }}
    use_backend be if {{ hdr(host) -i {HOST} }}
backend be
    server up 127.0.0.1:{upstream}
""")
    return conf


def indent(text: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in text.strip().splitlines())


# Annotations of the `weir-annotated` variant: a regex path rewritten to itself, and CORS.
ANNOTATED = {"use-regex": "true", "rewrite-target": "/$1", "enable-cors": "true"}

# The `weir-guarded` variant: a request rate limit no request reaches (every request is still
# counted) and basic authentication (user `bench`, password `bench`, a bcrypt hash made by
# `htpasswd -nbB -C 5 bench bench`; Weir checks it once, then from its cache).
GUARDED = {"limit-rps": "100000", "auth-type": "basic", "auth-secret": "bench-users",
           "auth-realm": "bench"}
GUARDED_USERS = "bench:$2y$05$3eV6ZjRBo8T.WrMrOsqjYODdtDOrS/It/EgecswNlzS1ypVRB5EqS"
# Request headers each target needs (the guarded variant's credentials).
TARGET_HEADERS = {"weir-guarded": ["Authorization: Basic YmVuY2g6YmVuY2g="]}


def manifests_base(cert: dict, upstream: int, tls: bool = True,
                   annotated: bool = False, guarded: bool = False) -> dict[str, str]:
    files = {
        "00-class.yaml": """apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
spec:
  controller: k8s.io/ingress-nginx
""",
        "10-upstream.yaml": service_yaml(upstream),
        "05-config.yaml": weir_log_config(),
    }
    bench = ""
    if tls:
        bench += f"""apiVersion: v1
kind: Secret
metadata: {{name: bench-tls, namespace: {NS}}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{indent(cert['crt'].read_text(), 4)}  tls.key: |
{indent(cert['key'].read_text(), 4)}---
"""
    bench += f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: {NS}
  annotations:
    nginx.ingress.kubernetes.io/ssl-redirect: "false"
"""
    if annotated:
        for k, v in ANNOTATED.items():
            bench += f'    nginx.ingress.kubernetes.io/{k}: "{v}"\n'
    if guarded:
        for k, v in GUARDED.items():
            bench += f'    nginx.ingress.kubernetes.io/{k}: "{v}"\n'
        files["15-users.yaml"] = f"""apiVersion: v1
kind: Secret
metadata: {{name: bench-users, namespace: {NS}}}
type: Opaque
stringData:
  auth: '{GUARDED_USERS}'
"""
    bench += """spec:
  ingressClassName: nginx
"""
    if tls:
        bench += f"""  tls:
  - hosts: [{HOST}]
    secretName: bench-tls
"""
    bench += f"""  rules:
  - host: {HOST}
    http:
      paths:
      - path: {"/(.*)" if annotated else "/"}
        pathType: {"ImplementationSpecific" if annotated else "Prefix"}
        backend: {{service: {{name: upstream, port: {{number: 80}}}}}}
"""
    files["20-bench.yaml"] = bench
    return files


def service_yaml(port: int) -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: upstream, namespace: {NS}}}
spec:
  ports:
  - {{name: http, port: 80, targetPort: {port}}}
---
{endpointslice_yaml(port)}"""


def endpointslice_yaml(port: int) -> str:
    return f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: upstream-1
  namespace: {NS}
  labels: {{kubernetes.io/service-name: upstream}}
addressType: IPv4
ports:
- {{name: http, port: {port}, protocol: TCP}}
endpoints:
- addresses: ["127.0.0.1"]
  conditions: {{ready: true}}
"""


def many_ingresses_yaml(n: int) -> str:
    parts = []
    for i in range(n):
        parts.append(f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: h{i}, namespace: {NS}}}
spec:
  ingressClassName: nginx
  rules:
  - host: h{i}.{HOST}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: upstream, port: {{number: 80}}}}}}}}
      - {{path: /api/v{i % 3}, pathType: Exact, backend: {{service: {{name: upstream, port: {{number: 80}}}}}}}}
""")
    return "---\n".join(parts)


def extra_ingress_yaml() -> str:
    return f"""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: extra, namespace: {NS}}}
spec:
  ingressClassName: nginx
  rules:
  - host: extra.{HOST}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: upstream, port: {{number: 80}}}}}}}}
"""


def write_atomic(d: Path, name: str, text: str) -> None:
    tmp = d / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, d / name)


# ------------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------------


def target_labels(many: int) -> dict[str, str]:
    return {"nginx": "nginx (reference)", "haproxy": "haproxy",
            "pingora": "Pingora alone (floor)", "weir": "Weir",
            "weir-10k": f"Weir, {many:,} Ingresses",
            "weir-annotated": "Weir, rewrite-target + use-regex + CORS",
            "weir-guarded": "Weir, limit-rps + basic auth"}


# Targets without TLS or host routing: the bare Pingora proxy (`pingora-floor`).
PLAIN_ONLY = {"pingora"}


@dataclass
class Target:
    key: str           # results key
    label: str         # display name
    kind: str          # nginx | haproxy | weir
    http_port: int = 0
    https_port: int = 0
    admin_port: int = 0
    proc: subprocess.Popen | None = None
    logfile: Path | None = None
    extra: dict = field(default_factory=dict)

    def pids(self) -> list[int]:
        return tree_pids(self.proc.pid) if self.proc else []


class Lab:
    """Builds configurations and starts/stops the upstream and the proxies."""

    def __init__(self, args, work: Path, weir_bin: Path, pl: Placement):
        self.args = args
        self.work = work
        self.weir_bin = weir_bin
        self.floor_bin = weir_bin.parent / "pingora-floor"
        self.pl = pl
        self.cert = make_cert(work)
        self.nginx = which("nginx")
        self.haproxy = which("haproxy")
        self.upstream_port = free_port()
        self.upstream2_port = free_port()
        self.upstream_proc = None
        self.upstream2_proc = None
        # Manifest folders shared by every Weir instance of the same variant (read-only).
        self.manifests = {}
        base = manifests_base(self.cert, self.upstream_port)
        d = work / "manifests-1"
        d.mkdir()
        for n, t in base.items():
            (d / n).write_text(t)
        self.manifests["weir"] = d
        d = work / "manifests-10k"
        d.mkdir()
        for n, t in base.items():
            (d / n).write_text(t)
        (d / "30-many.yaml").write_text(many_ingresses_yaml(args.many))
        self.manifests["weir-10k"] = d
        d = work / "manifests-annotated"
        d.mkdir()
        for n, t in manifests_base(self.cert, self.upstream_port, annotated=True).items():
            (d / n).write_text(t)
        self.manifests["weir-annotated"] = d
        d = work / "manifests-guarded"
        d.mkdir()
        for n, t in manifests_base(self.cert, self.upstream_port, guarded=True).items():
            (d / n).write_text(t)
        self.manifests["weir-guarded"] = d

    # -- upstreams --
    def start_upstream(self, name: str, port: int) -> subprocess.Popen:
        conf = nginx_upstream_conf(self.work, name, port)
        lf = self.work / name / "out.log"
        p = PROCS.start(name, self.pl.wrap([self.nginx, "-c", str(conf)], CPU_LOAD, "fifo"), lf)
        wait_for(f"{name} on :{port}", 15, lambda: http_get(port)[0] == 200, p, lf)
        return p

    def start_upstreams(self) -> None:
        self.upstream_proc = self.start_upstream("upstream", self.upstream_port)
        self.upstream2_proc = self.start_upstream("upstream2", self.upstream2_port)

    # -- proxies --
    def start(self, key: str, instance: str, rt: bool = True, valgrind: list[str] | None = None,
              ready_timeout: float = 60.0) -> Target:
        kind = "weir" if key.startswith("weir") else key
        t = Target(key=key, label=target_labels(self.args.many)[key], kind=kind, http_port=free_port(),
                   https_port=free_port())
        name = f"{key}-{instance}"
        d = self.work / name
        d.mkdir(parents=True, exist_ok=True)
        t.logfile = d / "out.log"
        vg = valgrind or []
        if kind == "nginx":
            conf = nginx_proxy_conf(self.work, name, t.http_port, t.https_port, self.upstream_port,
                                    self.cert)
            argv = vg + [self.nginx, "-c", str(conf)]
            policy = "fifo"
        elif kind == "haproxy":
            conf = haproxy_conf(self.work, name, t.http_port, t.https_port, self.upstream_port,
                                self.cert)
            argv = vg + [self.haproxy, "-db", "-f", str(conf)]
            policy = "fifo"
        elif kind == "pingora":
            argv = vg + [str(self.floor_bin), "--listen", f"127.0.0.1:{t.http_port}",
                         "--upstream", f"127.0.0.1:{self.upstream_port}", "--threads", "1"]
            policy = "rr"
        else:
            t.admin_port = free_port()
            argv = vg + [str(self.weir_bin), "--manifests", str(self.manifests[key]),
                         "--configmap", f"{NS}/weir-bench",
                         "--http-port", str(t.http_port), "--https-port", str(t.https_port),
                         "--healthz-port", str(t.admin_port), "--bind-address", "127.0.0.1",
                         "--healthz-host", "127.0.0.1", "--worker-threads", "1",
                         "--worker-shutdown-timeout", "1"]
            policy = "rr"
        t0 = time.monotonic()
        t.proc = PROCS.start(name, self.pl.wrap(argv, CPU_PROXY, policy if rt else None), t.logfile)
        hdrs = TARGET_HEADERS.get(key, [])
        wait_for(f"{name} to proxy {HOST}", ready_timeout,
                 lambda: http_get(t.http_port, timeout=30, headers=hdrs)[0] == 200, t.proc,
                 t.logfile)
        t.extra["startup_s"] = round(time.monotonic() - t0, 3)
        st, body = http_get(t.http_port, headers=hdrs)
        if st != 200 or body != "ok":
            raise BenchError(f"{name}: GET / Host {HOST} gave {st} {body[:200]!r}, want 200 'ok'")
        if key in PLAIN_ONLY:
            return t
        st, _ = http_get(t.http_port, host="nope.invalid")
        if st != 404:
            raise BenchError(f"{name}: an unknown host gave {st}, want 404 (host routing check)")
        st, body = http_get(t.https_port, tls=True, headers=hdrs)
        if st != 200 or body != "ok":
            raise BenchError(f"{name}: HTTPS GET gave {st} {body[:200]!r}, want 200 'ok'")
        return t

    def stop(self, t: Target) -> None:
        if t.proc:
            PROCS.stop(t.proc)
            t.proc = None


# ------------------------------------------------------------------------------------------------
# Load generators and parsers
# ------------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(v: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out: str) -> dict:
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if not m:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    r["requests"] = int(m.group(1))
    m2 = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m2.group(1)) if m2 else None
    m3 = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                  map(int, m3.groups()))) if m3 else {}
    m4 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non_2xx"] = int(m4.group(1)) if m4 else 0
    lat = {}
    for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M):
        lat[f"p{p}_ms"] = _ms(v)
    r["latency"] = lat
    return r


def parse_h2load(out: str) -> dict:
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    if not m:
        raise BenchError(f"cannot parse h2load output:\n{out}")
    total, _, done, ok, failed, errored, tmo = map(int, m.groups())
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    return {"requests": done, "succeeded": ok, "failed": failed, "errored": errored,
            "timeout": tmo, "status_2xx": int(codes.group(1)) if codes else None,
            "non_2xx": sum(map(int, codes.groups()[1:])) if codes else None,
            "protocol": proto.group(1) if proto else None,
            "rps": float(rps.group(1)) if rps else None}


class Meter:
    """CPU of a target and of CPU0 over an interval."""

    def __init__(self, t: Target, upstream_port: int | None = None):
        self.t = t
        self.upstream_port = upstream_port
        self.u0 = stub_counts(upstream_port) if upstream_port else None
        self.pids = t.pids()
        self.c0 = cpu_ns(self.pids)
        self.s0 = stat_cpu_s(self.pids)
        self.j0 = cpu0_jiffies()
        self.w0 = time.monotonic()

    def done(self, requests: int) -> dict:
        c1, s1, j1, w1 = cpu_ns(self.pids), stat_cpu_s(self.pids), cpu0_jiffies(), time.monotonic()
        u1 = stub_counts(self.upstream_port) if self.upstream_port else None
        wall = w1 - self.w0
        cpu_s = (c1 - self.c0) / 1e9
        dj = {k: (j1[k] - self.j0[k]) / CLK_TCK for k in j1} if j1 and self.j0 else {}
        # Tick-sampled CPU0 busy time. Softirq work done in the proxy's context is also in its
        # schedstat (without CONFIG_IRQ_TIME_ACCOUNTING), so irq/softirq count as busy here.
        busy = sum(dj.get(k, 0) for k in ("user", "nice", "system", "irq", "softirq"))
        out = {
            "requests": requests,
            "wall_s": round(wall, 3),
            "proxy_cpu_s": round(cpu_s, 4),
            "proxy_cpu_s_from_stat": round(s1 - self.s0, 2),
            "cpu_us_per_req": (cpu_s * 1e6 / requests) if requests else None,
            "proxy_core_busy": round(cpu_s / wall, 3) if wall > 0 else None,
        }
        if u1 and self.u0:
            # Each stub_status read is one connection and one request of its own.
            out["upstream_conns_opened"] = u1[0] - self.u0[0] - 1
            out["upstream_requests"] = u1[1] - self.u0[1] - 1
        if dj:
            out["cpu0_busy"] = round(busy / wall, 3)
            out["cpu0_other"] = round(max(0.0, busy - cpu_s) / wall, 3)
            out["cpu0_irq_softirq"] = round((dj["irq"] + dj["softirq"]) / wall, 3)
            out["cpu0_steal"] = round(dj["steal"] / wall, 3)
        return out


class Load:
    def __init__(self, pl: Placement, upstream_port: int | None = None):
        self.pl = pl
        self.upstream_port = upstream_port

    def wrk(self, port: int, duration: float, conns: int = 50, tls: bool = False,
            host: str = HOST, rt: bool = True, headers: list[str] = ()) -> dict:
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        extra = [a for h in headers for a in ("-H", h)]
        argv = self.pl.wrap(["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency",
                             "-H", f"Host: {host}", *extra, url], CPU_LOAD,
                            "fifo" if rt else None)
        r = run(argv, timeout=duration + 60)
        out = parse_wrk(r.stdout)
        out["raw"] = r.stdout
        return out

    def h2load(self, port: int, n: int, conns: int, streams: int, h1: bool = False,
               tls: bool = True, headers: list[str] = ()) -> dict:
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        argv = ["h2load", "-n", str(n), "-c", str(conns), "-m", str(streams)]
        if h1:
            argv.append("--h1")
        argv += ["-H", f":authority: {HOST}"]  # also sets Host with --h1 (-H Host: does not)
        argv += [a for h in headers for a in ("-H", h)]
        argv.append(url)
        r = run(self.pl.wrap(argv, CPU_LOAD, "fifo"), timeout=600, check=False)
        out = parse_h2load(r.stdout)
        out["raw"] = r.stdout[-1500:]
        return out


def measured_wrk(load: Load, t: Target, duration: float, warmup: float, tls: bool = False) -> dict:
    port = t.https_port if tls else t.http_port
    headers = TARGET_HEADERS.get(t.key, [])
    if warmup > 0:
        load.wrk(port, warmup, tls=tls, headers=headers)
    m = Meter(t, load.upstream_port)
    w = load.wrk(port, duration, tls=tls, headers=headers)
    res = m.done(w["requests"])
    res.update({k: w[k] for k in ("rps", "socket_errors", "non_2xx", "latency")})
    return res


# ------------------------------------------------------------------------------------------------
# Benchmarks
# ------------------------------------------------------------------------------------------------


def alternate(order: list[str], rep: int) -> list[str]:
    """Reference first on even repetitions, last on odd ones (balances drift)."""
    return list(order) if rep % 2 == 0 else list(reversed(order))


def paired(runs: dict[str, list[dict]], keys: list[str], metric: str = "cpu_us_per_req") -> dict:
    ref = runs["nginx"]
    out = {}
    for k in keys:
        ratios = [r[metric] / n[metric] for r, n in zip(runs[k], ref)
                  if r.get(metric) and n.get(metric)]
        out[k] = med_range(ratios)
        out[k]["values"] = [round(x, 4) for x in ratios]
    return out


def validity(runs: list[dict], ratio: dict | None, min_busy: float, max_other: float,
             max_spread: float) -> list[str]:
    flags = []
    for i, r in enumerate(runs):
        if r.get("proxy_core_busy") is not None and r["proxy_core_busy"] < min_busy:
            flags.append(f"rep {i + 1}: proxy used {r['proxy_core_busy']:.3f} core (< {min_busy})")
        if r.get("cpu0_other") is not None and r["cpu0_other"] > max_other:
            flags.append(f"rep {i + 1}: other work on CPU0 {r['cpu0_other']:.3f} core (> {max_other})")
        if r.get("non_2xx"):
            flags.append(f"rep {i + 1}: {r['non_2xx']} non-2xx responses")
        if any((r.get("socket_errors") or {}).values()):
            flags.append(f"rep {i + 1}: socket errors {r['socket_errors']}")
        a, b = r.get("proxy_cpu_s"), r.get("proxy_cpu_s_from_stat")
        if a and b is not None and abs(a - b) > max(0.05, 0.05 * a):
            flags.append(f"rep {i + 1}: schedstat ({a:.2f}s) and /proc/stat ({b:.2f}s) disagree "
                         "(a thread exited during the run?)")
    flags += spread_flags(ratio, max_spread)
    return flags


def spread_flags(ratio: dict | None, max_spread: float) -> list[str]:
    if ratio and ratio.get("n", 0) >= 2 and ratio["median"]:
        lo, hi, md = ratio["min"], ratio["max"], ratio["median"]
        if max(hi / md - 1, 1 - lo / md) > max_spread:
            return [f"ratio range {lo:.3f}–{hi:.3f} exceeds ±{max_spread:.0%} of the median "
                    f"{md:.3f}: rerun"]
    return []


def bench_wrk_series(lab: Lab, load: Load, targets: dict[str, Target], keys: list[str],
                     reps: int, duration: float, warmup: float, tls: bool, args) -> dict:
    runs = {k: [] for k in keys}
    for rep in range(reps):
        for k in alternate(keys, rep):
            log(f"{'TLS ' if tls else ''}HTTP/1.1 rep {rep + 1}/{reps}: {k} "
                f"({warmup:g}s warm-up + {duration:g}s)")
            r = measured_wrk(load, targets[k], duration, warmup, tls=tls)
            log(f"  {r['requests']} requests, {r['cpu_us_per_req']:.2f} CPU-µs/req, "
                f"busy {r['proxy_core_busy']}, CPU0 other {r.get('cpu0_other')}, "
                f"upstream connections opened {r.get('upstream_conns_opened')}")
            runs[k].append(r)
    cands = [k for k in keys if k != "nginx"]
    ratios = paired(runs, cands)
    out = {}
    for k in keys:
        ratio = ratios.get(k)
        out[k] = {
            "cpu_us_per_req": med_range([r["cpu_us_per_req"] for r in runs[k]]),
            "ratio_to_nginx": ratio if k != "nginx" else {"median": 1.0, "min": 1.0, "max": 1.0},
            "rps": med_range([r["rps"] for r in runs[k]]),
            "p50_ms": med_range([r["latency"].get("p50_ms") for r in runs[k]]),
            "p99_ms": med_range([r["latency"].get("p99_ms") for r in runs[k]]),
            "proxy_core_busy": med_range([r["proxy_core_busy"] for r in runs[k]]),
            "upstream_conns_opened": med_range([r.get("upstream_conns_opened") for r in runs[k]]),
            "runs": runs[k],
            "flags": validity(runs[k], ratio, args.min_busy, args.max_other, args.max_spread),
        }
    return out


def bench_h2(load: Load, targets: dict[str, Target], keys: list[str], reps: int, n: int,
             max_spread: float) -> dict:
    runs = {k: [] for k in keys}
    for rep in range(reps):
        for k in alternate(keys, rep):
            t = targets[k]
            log(f"HTTP/2 rep {rep + 1}/{reps}: {k} (h2load -n {n} -c 50 -m 10)")
            load.h2load(t.https_port, max(1000, n // 10), 50, 10)  # warm-up
            m = Meter(t, load.upstream_port)
            h = load.h2load(t.https_port, n, 50, 10)
            r = m.done(h["succeeded"])
            r.update({x: h[x] for x in ("failed", "errored", "timeout", "non_2xx", "protocol", "rps")})
            if r["cpu_us_per_req"] is not None:
                log(f"  {h['succeeded']} ok ({h['protocol']}), {r['cpu_us_per_req']:.2f} CPU-µs/req, "
                    f"upstream connections opened {r.get('upstream_conns_opened')}")
            runs[k].append(r)
    ratios = paired(runs, [k for k in keys if k != "nginx"])
    out = {}
    for k in keys:
        flags = []
        for i, r in enumerate(runs[k]):
            if r.get("protocol") != "h2":
                flags.append(f"rep {i + 1}: negotiated {r.get('protocol')}, not h2")
            if r.get("failed") or r.get("errored") or r.get("timeout") or r.get("non_2xx"):
                flags.append(f"rep {i + 1}: failed {r.get('failed')}, errored {r.get('errored')}, "
                             f"timeout {r.get('timeout')}, non-2xx {r.get('non_2xx')}")
        flags += spread_flags(ratios.get(k), max_spread)
        out[k] = {"cpu_us_per_req": med_range([r["cpu_us_per_req"] for r in runs[k]]),
                  "ratio_to_nginx": ratios.get(k, {"median": 1.0, "min": 1.0, "max": 1.0}),
                  "rps": med_range([r["rps"] for r in runs[k]]),
                  "upstream_conns_opened": med_range([r.get("upstream_conns_opened")
                                                      for r in runs[k]]),
                  "runs": runs[k], "flags": flags}
    return out


def bench_syscalls(load: Load, targets: dict[str, Target], keys: list[str], duration: float,
                   work: Path, tool: str = "auto") -> dict:
    out = {}
    use_perf = False
    note = ""
    if tool == "strace":
        note = "strace chosen with --syscall-tool; "
    elif which("perf"):
        r = run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "--", "true"], timeout=30,
                check=False)
        use_perf = r.returncode == 0 and "raw_syscalls:sys_enter" in r.stderr \
            and "not supported" not in r.stderr
        if not use_perf:
            note = f"perf unusable ({(r.stderr.strip().splitlines() or ['?'])[-1][:200]}); "
    events = ["raw_syscalls:sys_enter"]
    if use_perf:
        avail = run(["perf", "list", "syscalls:sys_enter_*"], timeout=60, check=False).stdout
        for sc in ("read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
                   "epoll_wait", "epoll_pwait", "epoll_ctl", "accept4", "accept", "close",
                   "getpeername", "getsockname", "setsockopt", "getsockopt", "connect", "socket",
                   "futex", "sched_yield", "mmap", "munmap", "madvise", "mprotect", "brk",
                   "io_uring_enter", "ioctl", "fcntl", "shutdown", "timerfd_settime", "openat",
                   "statx", "newfstatat", "clock_nanosleep"):
            ev = f"syscalls:sys_enter_{sc}"
            if re.search(rf"\b{re.escape(ev)}\b", avail):
                events.append(ev)
    elif not which("strace"):
        return {"method": None, "note": note + "neither perf nor strace available", "targets": {}}
    method = "perf stat -e raw_syscalls:sys_enter (+ per-syscall tracepoints)" if use_perf \
        else "strace -c -f (ptrace: slows the proxy, counts stay valid)"
    for k in keys:
        t = targets[k]
        pids = t.pids()
        res_file = work / f"syscalls-{k}.txt"
        if use_perf:
            argv = ["perf", "stat", "-x", ",", "-o", str(res_file), "-p", ",".join(map(str, pids))]
            for ev in events:
                argv += ["-e", ev]
        else:
            argv = ["strace", "-c", "-f", "-o", str(res_file)]
            for p in pids:
                argv += ["-p", str(p)]
        argv = load.pl.wrap(argv, CPU_LOAD, None)
        log(f"syscalls: {k} ({'perf' if use_perf else 'strace'}, wrk {duration:g}s)")
        mon = PROCS.start(f"syscalls-{k}", argv, work / f"syscalls-{k}.log")
        time.sleep(0.7)
        try:
            w = load.wrk(t.http_port, duration)
        finally:
            time.sleep(0.2)
            try:
                os.killpg(mon.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                mon.wait(30)
            except subprocess.TimeoutExpired:
                pass
            PROCS.stop(mon)
        n = w["requests"]
        per = {}
        if use_perf:
            for line in res_file.read_text().splitlines():
                f = line.split(",")
                if len(f) >= 3 and f[0].strip().isdigit():
                    per[f[2]] = int(f[0])
            total = per.pop("raw_syscalls:sys_enter", None)
            by = {ev.split("sys_enter_", 1)[1]: c / n for ev, c in per.items() if c / n >= 0.01}
        else:
            text = res_file.read_text() if res_file.exists() else ""
            total = None
            by = {}
            for line in text.splitlines():
                f = line.split()
                if len(f) >= 5 and f[0][0].isdigit():
                    name = f[-1]
                    calls = int(f[3])
                    if name == "total":
                        total = calls
                    elif calls / n >= 0.01:
                        by[name] = calls / n
        out[k] = {"requests": n, "total": total,
                  "per_request": (total / n) if (total is not None and n) else None,
                  "by_syscall_per_request": dict(sorted(((a, round(b, 3)) for a, b in by.items()),
                                                        key=lambda x: -x[1]))}
        log(f"  {n} requests, {out[k]['per_request']} syscalls/req: "
            f"{dict(list(out[k]['by_syscall_per_request'].items())[:6])}")
    return {"method": method, "note": note, "targets": out}


def _cg_window(pid: int, d: Path, action) -> tuple[dict[int, int], float]:
    """Zero callgrind's counters, run action(), dump; return ({thread: Ir}, wall seconds).
    Needs --separate-threads=yes: one dump file per thread, named …-NN (valgrind thread id)."""
    run(["callgrind_control", "-z", str(pid)], timeout=120)
    before = set(glob.glob(f"{d}/callgrind.out.{pid}*"))
    t0 = time.monotonic()
    action()
    wall = time.monotonic() - t0
    run(["callgrind_control", "-d", str(pid)], timeout=300)
    dumps = set(glob.glob(f"{d}/callgrind.out.{pid}*")) - before
    if not dumps:
        raise BenchError("callgrind_control -d wrote no dump")
    per: dict[int, int] = {}
    for f in dumps:
        m = re.search(r"^(?:totals|summary):\s*(\d+)", Path(f).read_text(errors="replace"), re.M)
        if not m:
            raise BenchError(f"no totals in {f}")
        tid = re.search(r"-(\d+)$", f)
        key = int(tid.group(1)) if tid else 1
        per[key] = per.get(key, 0) + int(m.group(1))
    return per, wall


def bench_callgrind(lab: Lab, load: Load, keys: list[str], n: int, idle_s: float,
                    work: Path) -> dict:
    if not (which("valgrind") and which("callgrind_control")):
        return {"note": "valgrind not available", "targets": {}}
    out = {}
    for k in keys:
        d = work / f"callgrind-{k}"
        d.mkdir(exist_ok=True)
        vg = ["valgrind", "--tool=callgrind", "--collect-atstart=yes", "--separate-threads=yes",
              f"--callgrind-out-file={d}/callgrind.out.%p"]
        log(f"callgrind: {k} (starting under valgrind)")
        try:
            t = lab.start(k, "callgrind", rt=False, valgrind=vg, ready_timeout=600)
        except BenchError as e:
            out[k] = {"error": str(e)[:500]}
            continue
        try:
            pid = t.proc.pid
            # Warm up (connections, pools, lazy initialisation), then count only measured windows.
            headers = TARGET_HEADERS.get(k, [])
            load.h2load(t.http_port, max(200, n // 10), 10, 1, h1=True, tls=False,
                        headers=headers)
            time.sleep(1.0)
            # Idle window: which threads work without requests (timers, folder polling, …).
            idle, idle_wall = _cg_window(pid, d, lambda: time.sleep(idle_s))
            h: dict = {}
            busy, wall = _cg_window(pid, d, lambda: h.update(
                load.h2load(t.http_port, n, 10, 1, h1=True, tls=False, headers=headers)))
            ok = h["succeeded"]
            # A thread counts as serving requests unless what it does when idle would account for
            # more than 5 % of what it did during the requests (a background thread).
            req_threads, bg_threads = {}, {}
            for tid, ir in busy.items():
                idle_in_window = idle.get(tid, 0) / idle_wall * wall
                (bg_threads if idle_in_window > 0.05 * ir else req_threads)[tid] = ir
            ir_all = sum(busy.values())
            ir_req = sum(req_threads.values())
            out[k] = {"requests": ok, "failed": h["failed"] + h["errored"], "window_s": round(wall, 2),
                      "ir_per_request": ir_req / ok if ok else None,
                      "ir_per_request_all_threads": ir_all / ok if ok else None,
                      "threads_serving": {str(a): b for a, b in sorted(req_threads.items())},
                      "threads_background": {str(a): b for a, b in sorted(bg_threads.items())},
                      "idle_ir_per_s_by_thread": {str(a): round(b / idle_wall)
                                                  for a, b in sorted(idle.items()) if b},
                      "startup_s_under_valgrind": t.extra.get("startup_s")}
            log(f"  {ok} requests, {ir_req / max(ok, 1):,.0f} Ir/request "
                f"(all threads {ir_all / max(ok, 1):,.0f}; background threads {sorted(bg_threads)})")
        except (BenchError, KeyError) as e:
            out[k] = {"error": str(e)[:500]}
            log(f"  callgrind {k} failed: {str(e)[:300]}")
        finally:
            lab.stop(t)
    return {"method": "valgrind --tool=callgrind --collect-atstart=yes --separate-threads=yes; after "
                      "a warm-up, counters zeroed (callgrind_control -z) and dumped (-d) around an "
                      "idle window and around a fixed number of requests (h2load --h1 -c 10). "
                      "ir_per_request counts the threads serving requests (a thread whose idle work "
                      "would be > 5 % of its count in the request window is background and left "
                      "out); ir_per_request_all_threads counts every thread",
            "targets": out}


async def _hold_conns(port: int, n: int, measure, hold_s: float) -> dict:
    """Open n connections (at most 100 connects at a time); once all are open, send one request on
    each (at most 50 in flight, the concurrency of the CPU runs, so that the result is the memory
    of open idle connections rather than of a burst's high-water mark), read the answers, keep the
    connections open for hold_s, then call measure()."""
    sem = asyncio.Semaphore(100)
    inflight = asyncio.Semaphore(50)
    req = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    writers = []
    go = asyncio.Event()

    async def one():
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        writers.append(w)
        await go.wait()
        async with inflight:
            w.write(req)
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if m:
                await r.readexactly(int(m.group(1)))
        return status

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    while len(writers) < n and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(1 for r in results if r == 200)
    errors = [repr(r) for r in results if isinstance(r, BaseException)][:3]
    await asyncio.sleep(hold_s)
    value = measure()
    for w in writers:
        w.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    return {"ok": ok, "errors_sample": errors, "measure": value}


def bench_rss(lab: Lab, keys: list[str], conns: int) -> dict:
    out = {}
    for k in keys:
        log(f"RSS: {k} (fresh instance, idle, then {conns} keep-alive connections)")
        t = lab.start(k, "rss", rt=False)
        try:
            for _ in range(20):
                http_get(t.http_port)
            time.sleep(1.0)
            idle = rss_kb(t.pids())
            held = asyncio.run(asyncio.wait_for(
                _hold_conns(t.http_port, conns, lambda: rss_kb(t.pids()), 1.0), timeout=120))
            out[k] = {"idle_kb": idle[0], "idle_pss_kb": idle[1],
                      "conns_kb": held["measure"][0], "conns_pss_kb": held["measure"][1],
                      "conns_ok": held["ok"], "conns_errors_sample": held["errors_sample"],
                      "startup_s": t.extra.get("startup_s")}
            log(f"  idle {idle[0] / 1024:.1f} MB -> {held['measure'][0] / 1024:.1f} MB "
                f"with {held['ok']}/{conns} connections")
        finally:
            lab.stop(t)
    return out


def stub_counts(port: int) -> tuple[int, int]:
    """(connections accepted, requests) of an upstream nginx, from stub_status."""
    _, body = http_get(port, path="/__stub")
    m = re.search(r"\n\s*(\d+)\s+(\d+)\s+(\d+)", body)
    return (int(m.group(1)), int(m.group(3))) if m else (-1, -1)


def stub_requests(port: int) -> int:
    return stub_counts(port)[1]


def metric_value(text: str, name: str) -> float | None:
    tot = None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            tot = (tot or 0.0) + float(line.rsplit(" ", 1)[1])
    return tot


def weir_metrics(admin_port: int) -> str:
    return http_get(admin_port, host="127.0.0.1", path="/metrics")[1]


def reload_baseline(lab: Lab, t: Target) -> tuple[str, int, int]:
    """Weir's metrics and both upstreams' request counts before a reload-under-load run."""
    return (weir_metrics(t.admin_port), stub_requests(lab.upstream_port),
            stub_requests(lab.upstream2_port))


def reload_result(lab: Lab, t: Target, base: tuple[str, int, int], wrk_out: dict, mode: str,
                  duration: float, fields: dict) -> dict:
    """The result of a reload-under-load run: the mode's own fields, then what wrk saw, the
    configurations Weir applied, and what each upstream served (less the stub_status reads)."""
    m0, a0, b0 = base
    m1 = weir_metrics(t.admin_port)
    a1, b1 = stub_requests(lab.upstream_port), stub_requests(lab.upstream2_port)
    res = {
        "mode": mode,
        "duration_s": duration,
        **fields,
        "requests": wrk_out.get("requests"),
        "non_2xx": wrk_out.get("non_2xx"),
        "socket_errors": wrk_out.get("socket_errors"),
        "rps": wrk_out.get("rps"),
        "configs_applied": (metric_value(m1, "nginx_ingress_controller_success") or 0)
        - (metric_value(m0, "nginx_ingress_controller_success") or 0),
        "config_errors": (metric_value(m1, "nginx_ingress_controller_errors") or 0)
        - (metric_value(m0, "nginx_ingress_controller_errors") or 0),
        "upstream_a_requests": a1 - a0 - 1,
        "upstream_b_requests": b1 - b0 - 1,
    }
    res["pass"] = (res["non_2xx"] == 0 and not any((res["socket_errors"] or {}).values())
                   and res["upstream_a_requests"] > 0 and res["upstream_b_requests"] > 0)
    log(f"  {res}")
    return res


def bench_reload_file(lab: Lab, load: Load, duration: float, rate: float) -> dict:
    work = lab.work
    d = work / "manifests-reload"
    d.mkdir()
    for n, txt in manifests_base(lab.cert, lab.upstream_port, tls=False).items():
        (d / n).write_text(txt)
    lab.manifests["weir-reload"] = d
    t = Target(key="weir-reload", label="Weir (file mode, reloading)", kind="weir",
               http_port=free_port(), https_port=free_port(), admin_port=free_port())
    t.logfile = work / "weir-reload.log"
    argv = [str(lab.weir_bin), "--manifests", str(d), "--configmap", f"{NS}/weir-bench",
            "--http-port", str(t.http_port),
            "--https-port", str(t.https_port), "--healthz-port", str(t.admin_port),
            "--bind-address", "127.0.0.1", "--healthz-host", "127.0.0.1", "--worker-threads", "1",
            "--worker-shutdown-timeout", "1"]
    t.proc = PROCS.start("weir-reload", lab.pl.wrap(argv, CPU_PROXY, None), t.logfile)
    try:
        wait_for("weir-reload", 60, lambda: http_get(t.http_port)[0] == 200, t.proc, t.logfile)
        base = reload_baseline(lab, t)
        ports = [lab.upstream_port, lab.upstream2_port]
        writes = 0
        wrk_out: dict = {}

        # No RT priority here: this is a correctness test, and the writer must not be starved.
        th = threading.Thread(target=lambda: wrk_out.update(load.wrk(t.http_port, duration, rt=False)))
        log(f"reload (file mode): wrk {duration:g}s while rewriting the folder {rate:g}×/s")
        start = time.monotonic()
        th.start()
        i = 0
        while th.is_alive() and time.monotonic() - start < duration + 30:
            i += 1
            write_atomic(d, "10-upstream.yaml", service_yaml(ports[i % 2]))
            if i % 2:
                write_atomic(d, "40-extra.yaml", extra_ingress_yaml())
            else:
                try:
                    (d / "40-extra.yaml").unlink()
                except FileNotFoundError:
                    pass
            writes += 1
            next_t = start + i / rate
            time.sleep(max(0.0, next_t - time.monotonic()))
        th.join(60)
        time.sleep(1.0)
        return reload_result(lab, t, base, wrk_out, "file", duration, {
            "rewrites": writes,
            "rewrite_rate_per_s": round(writes / max(duration, 1e-9), 2),
        })
    finally:
        lab.stop(t)


def bench_reload_api(lab: Lab, load: Load, duration: float, rate: float) -> dict:
    work = lab.work
    env_dir = work / "kube"
    if not which("kubectl"):
        return {"mode": "api", "skipped": "kubectl not found"}
    log("reload (API mode): testenv/start.sh")
    try:
        r = run(["bash", str(REPO / "testenv" / "start.sh"), str(env_dir)], timeout=900)
    except BenchError as e:
        return {"mode": "api", "skipped": f"testenv/start.sh failed: {str(e)[:400]}"}
    t = None
    try:
        m = re.search(r"KUBECONFIG=(\S+)", r.stdout.strip().splitlines()[-1])
        if not m:
            return {"mode": "api", "skipped": f"no KUBECONFIG in start.sh output: {r.stdout[-300:]}"}
        kcfg = m.group(1)
        kenv = {"KUBECONFIG": kcfg}

        # kubectl may use both CPUs (this script's own affinity is CPU1 only).
        kpre = ["taskset", "-c", "0-1"] if load.pl.pin else []

        def kubectl(*a, timeout=60):
            return run(kpre + ["kubectl", *a], timeout=timeout, env=kenv)

        files = work / "api-objects"
        files.mkdir()
        (files / "ns.yaml").write_text(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
        base = manifests_base(lab.cert, lab.upstream_port, tls=False)
        (files / "base.yaml").write_text("---\n".join(base.values()))
        (files / "slice-a.yaml").write_text(endpointslice_yaml(lab.upstream_port))
        (files / "slice-b.yaml").write_text(endpointslice_yaml(lab.upstream2_port))
        (files / "extra.yaml").write_text(extra_ingress_yaml())
        kubectl("apply", "-f", str(files / "ns.yaml"))
        kubectl("apply", "-f", str(files / "base.yaml"))

        t = Target(key="weir-api", label="Weir (API mode)", kind="weir", http_port=free_port(),
                   https_port=free_port(), admin_port=free_port())
        t.logfile = work / "weir-api.log"
        argv = [str(lab.weir_bin), "--kubeconfig", kcfg, "--http-port", str(t.http_port),
                "--https-port", str(t.https_port), "--healthz-port", str(t.admin_port),
                "--bind-address", "127.0.0.1", "--healthz-host", "127.0.0.1",
                "--worker-threads", "1", "--worker-shutdown-timeout", "1"]
        t.proc = PROCS.start("weir-api", lab.pl.wrap(argv, CPU_PROXY, None), t.logfile,
                             env={"POD_NAMESPACE": NS, "POD_NAME": "weir-bench"})
        wait_for("weir (API mode) to proxy", 90, lambda: http_get(t.http_port)[0] == 200, t.proc,
                 t.logfile)
        base = reload_baseline(lab, t)
        # Server-side apply: concurrent kubectl runs cannot race on create (AlreadyExists).
        ssa = ["apply", "--server-side", "--force-conflicts", "--field-manager=weir-bench", "-f"]
        actions = [[*ssa, str(files / "slice-b.yaml")],
                   [*ssa, str(files / "extra.yaml")],
                   [*ssa, str(files / "slice-a.yaml")],
                   ["delete", "ingress", "-n", NS, "extra", "--ignore-not-found", "--wait=false"]]
        wrk_out: dict = {}
        # No RT priority here: kubectl (normal priority) must not be starved by wrk.
        th = threading.Thread(target=lambda: wrk_out.update(load.wrk(t.http_port, duration, rt=False)))
        log(f"reload (API mode): wrk {duration:g}s while running kubectl {rate:g}×/s")
        inflight: list[subprocess.Popen] = []
        launched = failed = 0
        start = time.monotonic()
        th.start()
        i = 0
        while th.is_alive() and time.monotonic() - start < duration + 30:
            still = []
            for p in inflight:
                if p.poll() is None:
                    still.append(p)
                else:
                    failed += p.returncode != 0
                    PROCS.forget(p)
            inflight = still
            if len(inflight) < 10:
                p = PROCS.start("kubectl", kpre + ["kubectl", *actions[i % 4]], work / "kubectl.log",
                                env=kenv)
                inflight.append(p)
                launched += 1
            i += 1
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
        th.join(60)
        for p in inflight:
            try:
                p.wait(30)
                failed += p.returncode != 0
            except subprocess.TimeoutExpired:
                failed += 1
            PROCS.stop(p)
        time.sleep(1.0)
        return reload_result(lab, t, base, wrk_out, "api", duration, {
            "kubectl_launched": launched,
            "kubectl_failed": failed,
            "kubectl_rate_per_s": round(launched / max(duration, 1e-9), 2),
        })
    finally:
        if t is not None and t.proc:
            PROCS.stop(t.proc)
        run(["bash", str(REPO / "testenv" / "stop.sh"), str(env_dir)], timeout=60, check=False)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def fmt_mr(x: dict | None, nd: int = 2) -> str:
    if not x or x.get("median") is None:
        return "–"
    if x.get("n", 1) <= 1 or x["min"] == x["max"]:
        return f"{x['median']:.{nd}f}"
    return f"{x['median']:.{nd}f} [{x['min']:.{nd}f}–{x['max']:.{nd}f}]"


def markdown(res: dict) -> str:
    keys = res["targets_order"]
    labels = res["labels"]
    h1, tls1, h2 = res.get("http1", {}), res.get("tls_http1", {}), res.get("http2", {})
    cg = res.get("callgrind", {}).get("targets", {})
    sc = res.get("syscalls", {}).get("targets", {})
    rss = res.get("rss", {})
    idle = res.get("idle_cpu_ms_per_s", {})
    lines = [
        f"Weir benchmark — {res['meta']['date']} — {res['meta']['mode']} "
        f"(git {res['meta']['git']}), RT priority: {'yes' if res['meta']['rt_priority'] else 'no'}",
        "",
        "| target | CPU-µs/req | ÷ nginx | req/s | instr/req | syscalls/req | "
        "RSS idle → 1000 conns (MB) | TLS h1 CPU-µs/req (÷ nginx) | h2 CPU-µs/req (÷ nginx) | "
        "idle CPU ms/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in keys:
        a = h1.get(k, {})
        ir = cg.get(k, {}).get("ir_per_request")
        s = sc.get(k, {}).get("per_request")
        r = rss.get(k, {})
        rs = (f"{r['idle_kb'] / 1024:.1f} → {r['conns_kb'] / 1024:.1f}"
              if r.get("idle_kb") is not None else "–")
        t1, t2 = tls1.get(k, {}), h2.get(k, {})
        lines.append(
            f"| {labels[k]} | {fmt_mr(a.get('cpu_us_per_req'))} | {fmt_mr(a.get('ratio_to_nginx'), 3)} "
            f"| {fmt_mr(a.get('rps'), 0) if a.get('rps', {}).get('median') else '–'} "
            f"| {f'{ir:,.0f}' if ir else '–'} | {f'{s:.2f}' if s is not None else '–'} | {rs} "
            f"| {fmt_mr(t1.get('cpu_us_per_req'))} ({fmt_mr(t1.get('ratio_to_nginx'), 3)}) "
            f"| {fmt_mr(t2.get('cpu_us_per_req'))} ({fmt_mr(t2.get('ratio_to_nginx'), 3)}) "
            f"| {idle.get(k, '–')} |")
    lines.append("")
    for name, rel in (("reload_file", "file mode"), ("reload_api", "API mode")):
        rl = res.get(name)
        if not rl:
            continue
        if rl.get("skipped"):
            lines.append(f"Reload under load ({rel}): skipped — {rl['skipped']}")
            continue
        if rl.get("error"):
            lines.append(f"Reload under load ({rel}): error — {rl['error'][:300]}")
            continue
        changes = (f"{rl['rewrites']} folder rewrites" if name == "reload_file"
                   else f"{rl['kubectl_launched']} kubectl runs ({rl['kubectl_failed']} failed)")
        lines.append(
            f"Reload under load ({rel}): {'PASS' if rl['pass'] else 'FAIL'} — {changes} in "
            f"{rl['duration_s']:g}s, {rl['configs_applied']:.0f} configurations applied; "
            f"{rl['requests']} requests, {rl['non_2xx']} non-2xx, socket errors "
            f"{sum((rl['socket_errors'] or {}).values())}; upstream A/B served "
            f"{rl['upstream_a_requests']}/{rl['upstream_b_requests']}")
    flags = []
    for sect in ("http1", "tls_http1", "http2"):
        for k, v in res.get(sect, {}).items():
            for f in (v.get("flags", []) if isinstance(v, dict) else []):
                flags.append(f"{sect} {k}: {f}")
    for n in res["meta"].get("notes", []):
        flags.append(n)
    if flags:
        lines += ["", "Validity flags and notes:"] + [f"- {f}" for f in flags]
    return "\n".join(lines) + "\n"


def plots(res: dict, out: Path, work: Path) -> list[str]:
    notes = []
    keys = res["targets_order"]
    labels = res["labels"]
    gp = which("gnuplot")
    if not gp:
        return ["gnuplot not available: no plots"]

    def col(sect, k, what):
        x = res.get(sect, {}).get(k, {}).get("cpu_us_per_req") or {}
        v = x.get(what)
        return f"{v:.4f}" if v is not None else "NaN"

    dat = work / "cpu.dat"
    with open(dat, "w") as f:
        f.write("# label h1_med h1_min h1_max tls_med tls_min tls_max h2_med h2_min h2_max\n")
        for k in keys:
            f.write(f"\"{labels[k]}\" " + " ".join(
                col(s, k, w) for s in ("http1", "tls_http1", "http2") for w in ("median", "min", "max"))
                + "\n")
    series_def = [("http1", 2, "HTTP/1.1 (wrk -c50)"), ("tls_http1", 5, "HTTP/1.1 over TLS (wrk -c50)"),
                  ("http2", 8, "HTTP/2 over TLS (h2load -c50 -m10)")]
    have = [(c, t) for (sect, c, t) in series_def
            if any((res.get(sect, {}).get(k, {}).get("cpu_us_per_req") or {}).get("median")
                   is not None for k in keys)]
    gp_files = []
    if have:
        gp_files.append("cpu.gp")
    else:
        notes.append("no CPU results: cpu.png not drawn")
    series = ", ".join(f"'{dat}' using {c}:{c + 1}:{c + 2}" + (":xtic(1)" if i == 0 else "")
                       + f' title "{t}"' for i, (c, t) in enumerate(have))
    title = (f"Proxy CPU-µs per request (median, bars: min–max over repetitions) — "
             f"{res['meta']['mode']}, RT {'on' if res['meta']['rt_priority'] else 'off'}")
    (work / "cpu.gp").write_text(f"""
set terminal pngcairo size 1100,560 font "sans,10"
set output '{out / "cpu.png"}'
set title "{title}"
set ylabel "CPU-µs / request (proxy, all threads)"
set yrange [0:*]
set grid ytics
set style data histogram
set style histogram errorbars gap 2 lw 1.5
set style fill solid 0.7 border -1
set key top left
set xtics noenhanced
plot {series}
""")
    if any(res.get("rss", {}).get(k, {}).get("idle_kb") for k in keys):
        gp_files.append("rss.gp")
    else:
        notes.append("no RSS results: rss.png not drawn")
    rdat = work / "rss.dat"
    with open(rdat, "w") as f:
        f.write("# label idle_MB conns_MB\n")
        for k in keys:
            r = res.get("rss", {}).get(k, {})
            a = r.get("idle_kb")
            b = r.get("conns_kb")
            f.write(f"\"{labels[k]}\" {a / 1024 if a else 'NaN'} {b / 1024 if b else 'NaN'}\n")
    (work / "rss.gp").write_text(f"""
set terminal pngcairo size 1000,520 font "sans,10"
set output '{out / "rss.png"}'
set title "Resident memory (VmRSS, MB): idle and holding {res['meta']['rss_conns']} keep-alive connections"
set ylabel "MB"
set yrange [0:*]
set grid ytics
set style data histogram
set style histogram clustered gap 2
set style fill solid 0.7 border -1
set key top left
set xtics noenhanced
plot '{rdat}' using 2:xtic(1) title "idle", '' using 3 title "{res['meta']['rss_conns']} connections open"
""")
    for gpf in gp_files:
        r = run([gp, str(work / gpf)], timeout=60, check=False)
        if r.returncode != 0:
            notes.append(f"gnuplot {gpf} failed: {r.stderr.strip()[:300]}")
    return notes


def strip_raw(obj):
    if isinstance(obj, dict):
        return {k: strip_raw(v) for k, v in obj.items() if k != "raw"}
    if isinstance(obj, list):
        return [strip_raw(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--access-log", action="store_true",
                    help="access log on in nginx (to a file) and Weir (stdout, to a file); "
                         "default off in both")
    ap.add_argument("--quick", action="store_true",
                    help="development run: 1 repetition of 3 s, short companions")
    ap.add_argument("--out", default="docs/benchmarks", help="output folder (relative to the repo root)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5, --quick 1)")
    ap.add_argument("--duration", type=float, help="seconds per measured wrk run (default 10, --quick 3)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds before each run (default 3, --quick 1)")
    ap.add_argument("--many", type=int, default=10_000, help="Ingresses of the weir-10k variant")
    ap.add_argument("--weir-bin", help="use this weir binary instead of building one")
    ap.add_argument("--no-build", action="store_true", help="use target/release/weir as it is")
    ap.add_argument("--no-rt", action="store_true", help="do not use chrt real-time priority")
    ap.add_argument("--no-api", action="store_true", help="skip the API-mode reload test")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: "
                    "http1,tls,h2,callgrind,syscalls,rss,reload,api")
    ap.add_argument("--targets", default=DEFAULT_TARGETS,
                    help="comma list (nginx is always included as the reference)")
    ap.add_argument("--syscall-tool", choices=("auto", "perf", "strace"), default="auto",
                    help="auto: perf when it works, else strace")
    ap.add_argument("--min-busy", type=float, default=0.9)
    ap.add_argument("--max-other", type=float, default=0.1)
    ap.add_argument("--max-spread", type=float, default=0.05)
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary folder (logs, configs)")
    ap.add_argument("--deadline", type=float, help="global time limit in seconds after the build "
                    "(default 2400, --quick 900)")
    args = ap.parse_args()
    global ARGS
    ARGS = args

    q = args.quick
    reps = args.reps or (1 if q else 5)
    duration = args.duration or (3.0 if q else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if q else 3.0)
    tls_reps, tls_duration, tls_warmup = (1, duration, warmup) if q else (3, 5.0, 1.0)
    h2_n = 5000 if q else 20000
    cg_n = 300 if q else 2000
    sc_duration = 3.0 if q else 5.0
    reload_duration = 3.0 if q else 10.0
    skip = set(filter(None, args.skip.split(",")))
    if args.no_api:
        skip.add("api")
    bad = skip - {"http1", "tls", "h2", "callgrind", "syscalls", "rss", "reload", "api"}
    if bad:
        ap.error(f"unknown --skip section(s): {', '.join(sorted(bad))}")
    keys = ["nginx"] + [k for k in args.targets.split(",") if k and k != "nginx"]
    for k in keys:
        if k not in target_labels(0):
            ap.error(f"unknown target {k}")
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out

    if os.geteuid() != 0:
        log("warning: not root: apt-get, chrt and perf may fail")

    atexit.register(PROCS.stop_all)

    def on_signal(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    notes = [f"{k}: {v}" for k, v in ensure_tools().items()]
    weir_bin = build_weir(args)
    if "pingora" in keys and not os.access(weir_bin.parent / "pingora-floor", os.X_OK):
        keys.remove("pingora")
        notes.append(f"no pingora-floor beside {weir_bin}: the Pingora floor was not measured")

    def on_alarm(_s, _f):
        raise BenchError("global deadline reached")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.deadline or (900 if q else 2400)))

    pl = detect_placement(args.no_rt)
    if not pl.rt:
        notes.append(f"real-time priority {pl.rt_note}: absolute numbers are more sensitive to "
                     "other load on the machine")
    if pl.pin:
        os.sched_setaffinity(0, {int(CPU_LOAD)})  # this script and its helpers stay off CPU0
    else:
        notes.append(f"CPU pinning: {pl.pin_note}")

    work = Path(tempfile.mkdtemp(prefix="weir-bench-"))
    log(f"work folder {work}")
    try:
        git = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], timeout=20,
                  check=False).stdout.strip() or "?"
        dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                    timeout=20, check=False).stdout.strip()
        res: dict = {
            "meta": {
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "mode": ("quick" if q else "full") + (
                    "" if args.reps is None and args.duration is None and args.warmup is None
                    and not skip and args.targets == DEFAULT_TARGETS else " (custom)"),
                "git": git + ("+dirty" if dirty else ""),
                "weir_bin": str(weir_bin),
                "cpus": os.cpu_count(),
                "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
                "rt_priority": pl.rt, "rt_note": pl.rt_note,
                "pinning": pl.pin, "pin_note": pl.pin_note,
                "reps": reps, "duration_s": duration, "warmup_s": warmup,
                "wrk": "wrk -t1 -c50 --latency -H 'Host: bench.test'",
                "tls_http1": {"reps": tls_reps, "duration_s": tls_duration, "warmup_s": tls_warmup},
                "h2load": f"h2load -n {h2_n} -c 50 -m 10", "callgrind_requests": cg_n,
                "syscalls_duration_s": sc_duration, "rss_conns": 1000,
                "many_ingresses": args.many,
                "versions": tool_versions(),
                "notes": notes,
            },
            "targets_order": keys,
        }
        lab = Lab(args, work, weir_bin, pl)
        res["labels"] = {k: target_labels(args.many)[k] for k in keys}
        lab.start_upstreams()
        load = Load(pl, lab.upstream_port)

        targets = {}
        for k in keys:
            log(f"starting {k}")
            targets[k] = lab.start(k, "main", ready_timeout=300)
            log(f"  {k} ready in {targets[k].extra['startup_s']}s "
                f"(http :{targets[k].http_port}, https :{targets[k].https_port})")
        res["startup_s"] = {k: targets[k].extra["startup_s"] for k in keys}
        tls_keys = [k for k in keys if k not in PLAIN_ONLY]

        # Idle CPU: what each proxy burns without traffic (timers, polling), all measured at once.
        # Weir re-reads manifest files modified in the last 2 s: start well after that.
        time.sleep(3.0)
        idle_s = 2.0 if q else 5.0
        c0 = {k: cpu_ns(targets[k].pids()) for k in keys}
        w0 = time.monotonic()
        time.sleep(idle_s)
        wall = time.monotonic() - w0
        res["idle_cpu_ms_per_s"] = {k: round((cpu_ns(targets[k].pids()) - c0[k]) / 1e6 / wall, 3)
                                    for k in keys}
        log(f"idle CPU (ms per s): {res['idle_cpu_ms_per_s']}")

        if "http1" not in skip:
            res["http1"] = bench_wrk_series(lab, load, targets, keys, reps, duration, warmup, False, args)
        if "tls" not in skip:
            res["tls_http1"] = bench_wrk_series(lab, load, targets, tls_keys, tls_reps,
                                                tls_duration, tls_warmup, True, args)
        def companion(name: str, fn) -> None:
            """A companion that fails is recorded as an error; the rest of the run goes on."""
            try:
                res[name] = fn()
            except BenchError as e:
                log(f"{name} failed: {str(e)[:500]}")
                res[name] = {"error": str(e)[:1000]}
                res["meta"]["notes"].append(f"{name} failed: {str(e)[:200]}")

        if "h2" not in skip:
            companion("http2", lambda: bench_h2(load, targets, tls_keys, reps, h2_n,
                                                args.max_spread))
        if "syscalls" not in skip:
            companion("syscalls", lambda: bench_syscalls(load, targets, keys, sc_duration, work,
                                                         args.syscall_tool))
        res["rss_after_load"] = {k: dict(zip(("vmrss_kb", "pss_kb"), rss_kb(targets[k].pids())))
                                 for k in keys}
        for k in keys:
            lab.stop(targets[k])
        if "callgrind" not in skip:
            companion("callgrind", lambda: bench_callgrind(lab, load, keys, cg_n, 2.0 if q else 3.0,
                                                           work))
        if "rss" not in skip:
            companion("rss", lambda: bench_rss(lab, keys, 1000))
        if "reload" not in skip:
            companion("reload_file", lambda: bench_reload_file(lab, load, reload_duration, 10.0))
        if "api" not in skip:
            companion("reload_api", lambda: bench_reload_api(lab, load, reload_duration, 10.0))

        res["meta"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        out.mkdir(parents=True, exist_ok=True)
        for old in ("cpu.png", "rss.png"):
            (out / old).unlink(missing_ok=True)
        res["meta"]["notes"] += plots(res, out, work)
        md = markdown(res)
        (out / "results.json").write_text(json.dumps(strip_raw(res), indent=1, ensure_ascii=False) + "\n")
        (out / "results.md").write_text(md)
        print(md)
        written = ["results.json", "results.md"] + [p for p in ("cpu.png", "rss.png")
                                                     if (out / p).exists()]
        log(f"wrote {', '.join(str(out / p) for p in written)}")
        return 0
    finally:
        signal.alarm(0)
        PROCS.stop_all()
        if args.keep_work:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"ERROR: {e}")
        PROCS.stop_all()
        sys.exit(1)
