#!/usr/bin/env bash
# Installs what building and testing Weir needs on a fresh Debian machine (idempotent).
set -euo pipefail
missing=()
command -v testssl >/dev/null || missing+=(testssl.sh)   # TLS configuration check
command -v openssl >/dev/null || missing+=(openssl)      # TLS tests use openssl s_client
command -v cmake >/dev/null || missing+=(cmake)      # pingora-core builds zlib-ng
command -v curl >/dev/null || missing+=(curl)        # end-to-end tests use curl as a client
command -v cc >/dev/null || missing+=(gcc)
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "deps.sh: cargo (Rust 1.89 or newer) is required" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
