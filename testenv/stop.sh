#!/usr/bin/env bash
# Stop the API server and etcd started by testenv/start.sh DIR (data in DIR is kept).
#
#   testenv/stop.sh DIR
set -Eeuo pipefail

die() { echo "testenv/stop.sh: ERROR: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 DIR"
[ -d "$1" ] || die "no such directory: $1"
DIR="$(cd "$1" && pwd)"
[ -f "$DIR/pids" ] || { echo "testenv/stop.sh: nothing to stop ($DIR/pids missing)" >&2; exit 0; }

# Only signal a pid that is still the process we started (its command line names DIR).
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$DIR"; }

stop_one() {
  local pid=$1 name=$2
  ours "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do # up to 10 s
    kill -0 "$pid" 2>/dev/null || { echo "testenv/stop.sh: stopped $name (pid $pid)" >&2; return 0; }
    sleep 0.1
  done
  echo "testenv/stop.sh: $name (pid $pid) ignored SIGTERM; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# API server first, then etcd (reverse start order).
tac "$DIR/pids" | while read -r pid name; do stop_one "$pid" "$name"; done
rm -f "$DIR/pids"
