#!/usr/bin/env bash
# Start etcd and the test API server on loopback, with their state in DIR.
#
#   testenv/start.sh DIR      -> last line: KUBECONFIG=DIR/kubeconfig
#
# Writes DIR/kubeconfig, DIR/pids ("PID name" lines), DIR/etcd.log, DIR/apiserver.log, DIR/certs/.
# Stop with testenv/stop.sh DIR.
#
# Environment:
#   WEIR_TESTENV_APISERVER       binary to run (default: built or taken from the cache by build.sh)
#   WEIR_TESTENV_APISERVER_ARGS  extra API server flags, e.g. "--watch-cache=false --etcd-compaction-interval=2s"
#   WEIR_TESTENV_COMPACTION      etcd --auto-compaction-retention in periodic mode, e.g. "2s" (default: off)
#   WEIR_TESTENV_TIMEOUT         seconds to wait for each server to be ready (default 60)
set -Eeuo pipefail

die() { echo "testenv/start.sh: ERROR: $*" >&2; exit 1; }
trap 'echo "testenv/start.sh: ERROR: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
log() { echo "testenv/start.sh: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 DIR"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
TIMEOUT="${WEIR_TESTENV_TIMEOUT:-60}"

if [ -s "$DIR/pids" ]; then
  while read -r pid name; do
    if kill -0 "$pid" 2>/dev/null; then
      die "$name (pid $pid) from an earlier start is still running in $DIR; run testenv/stop.sh $DIR first"
    fi
  done <"$DIR/pids"
fi
rm -f "$DIR/pids" "$DIR/kubeconfig"

if ! command -v curl >/dev/null; then
  log "installing curl with apt-get"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl; } >&2 || die "could not install curl"
fi
command -v etcd >/dev/null || die "etcd not found: run testenv/build.sh (it installs etcd-server)"

BIN="${WEIR_TESTENV_APISERVER:-}"
if [ -z "$BIN" ]; then
  BIN="$("$HERE/build.sh" | tail -n 1)" || die "testenv/build.sh failed"
fi
[ -x "$BIN" ] || die "API server binary not executable: $BIN"

# A port nothing listens on now (a connection is refused). Another process may still take it
# before we bind it; each server start is retried on a new port if it dies early.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free loopback port found"
}

# wait_ready PID NAME LOG URL [curl args…]: poll URL until it answers 200 "ok", PID exits or the deadline passes.
# Returns 0 when ready, 1 if the process died, and fails the script on the deadline.
wait_ready() {
  local pid=$1 name=$2 logf=$3 url=$4; shift 4
  local deadline=$(( $(date +%s) + TIMEOUT ))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if [ "$(curl -s --max-time 2 "$@" "$url" 2>/dev/null || true)" = ok ] \
      || curl -sf --max-time 2 "$@" "$url" 2>/dev/null | grep -q '"health": *"true"'; then
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 30 "$logf" >&2 || true
      kill "$pid" 2>/dev/null || true
      die "$name not ready at $url within ${TIMEOUT}s (log: $logf)"
    fi
    sleep 0.1
  done
}

# --- etcd ---------------------------------------------------------------------------------------
mkdir -p "$DIR/etcd"
COMPACTION=()
if [ -n "${WEIR_TESTENV_COMPACTION:-}" ]; then
  COMPACTION=(--auto-compaction-mode periodic --auto-compaction-retention "$WEIR_TESTENV_COMPACTION")
fi
for attempt in 1 2 3; do
  ETCD_PORT=$(free_port); PEER_PORT=$(free_port)
  ETCD_URL="http://127.0.0.1:$ETCD_PORT"
  setsid etcd --name weir-testenv --data-dir "$DIR/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "weir-testenv=http://127.0.0.1:$PEER_PORT" --initial-cluster-state new \
    --logger zap --log-level warn "${COMPACTION[@]}" \
    </dev/null >"$DIR/etcd.log" 2>&1 &
  ETCD_PID=$!
  if wait_ready "$ETCD_PID" etcd "$DIR/etcd.log" "$ETCD_URL/health"; then break; fi
  tail -n 20 "$DIR/etcd.log" >&2 || true
  if [ "$attempt" -ge 3 ] || ! grep -q "address already in use" "$DIR/etcd.log"; then
    die "etcd exited during start-up (log: $DIR/etcd.log)"
  fi
  log "etcd exited during start-up; retrying on other ports"
done
echo "$ETCD_PID etcd" >"$DIR/pids"
log "etcd ready at $ETCD_URL (pid $ETCD_PID)"

# --- API server ---------------------------------------------------------------------------------
mkdir -p "$DIR/certs"
read -r -a EXTRA <<<"${WEIR_TESTENV_APISERVER_ARGS:-}"
for attempt in 1 2 3; do
  PORT=$(free_port)
  setsid "$BIN" --etcd-servers "$ETCD_URL" --bind-address 127.0.0.1 --secure-port "$PORT" \
    --cert-dir "$DIR/certs" "${EXTRA[@]}" \
    </dev/null >"$DIR/apiserver.log" 2>&1 &
  API_PID=$!
  if wait_ready "$API_PID" "API server" "$DIR/apiserver.log" "https://127.0.0.1:$PORT/readyz" \
    --cacert "$DIR/certs/apiserver.crt"; then break; fi
  tail -n 20 "$DIR/apiserver.log" >&2 || true
  if [ "$attempt" -ge 3 ] || ! grep -q "address already in use" "$DIR/apiserver.log"; then
    kill "$ETCD_PID" 2>/dev/null || true
    die "API server exited during start-up (log: $DIR/apiserver.log)"
  fi
  log "API server exited during start-up; retrying on another port"
done
echo "$API_PID apiserver" >>"$DIR/pids"
log "API server ready at https://127.0.0.1:$PORT (pid $API_PID)"

# --- kubeconfig ---------------------------------------------------------------------------------
CA="$(base64 -w0 <"$DIR/certs/apiserver.crt")"
cat >"$DIR/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weir-testenv
  cluster:
    server: https://127.0.0.1:$PORT
    certificate-authority-data: $CA
users:
- name: weir-testenv
  user:
    token: weir-testenv-anonymous
contexts:
- name: weir-testenv
  context:
    cluster: weir-testenv
    user: weir-testenv
    namespace: default
current-context: weir-testenv
EOF
mv "$DIR/kubeconfig.tmp" "$DIR/kubeconfig"
echo "KUBECONFIG=$DIR/kubeconfig"
