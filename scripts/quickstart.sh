#!/usr/bin/env bash
# Runs Weir on conf/quickstart: an echo upstream on 127.0.0.1:8080, the proxy on :8000,
# /healthz and /metrics on :10254. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --locked -p weir -p weir-loadtest
target/release/weir-echo --listen 127.0.0.1:8080 --name echo &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null' EXIT
cat <<'MSG'
Weir is starting. In another terminal:
  curl -i http://127.0.0.1:8000/hello                       # routed to the echo Service
  curl -i -H 'Host: echo.localhost' http://127.0.0.1:8000/api # host rule, Prefix /api
  curl -i -H 'Host: echo.localhost' http://127.0.0.1:8000/x   # no rule: built-in 404
  curl http://127.0.0.1:10254/metrics
Edit conf/quickstart/*.yaml while it runs: changes apply within 2 s.
MSG
exec target/release/weir --manifests conf/quickstart --http-port 8000 --https-port 8443 --healthz-port 10254
