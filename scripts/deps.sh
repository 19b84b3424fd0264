#!/usr/bin/env bash
# Installs what building and testing Weir needs on a fresh Debian machine (idempotent).
set -euo pipefail
missing=()
command -v testssl >/dev/null || missing+=(testssl.sh)   # TLS configuration check
command -v openssl >/dev/null || missing+=(openssl)      # TLS tests use openssl s_client
command -v cmake >/dev/null || missing+=(cmake)      # pingora-core builds zlib-ng
command -v curl >/dev/null || missing+=(curl)        # end-to-end tests use curl as a client
command -v htpasswd >/dev/null || missing+=(apache2-utils)  # basic-auth tests make their hashes with htpasswd
command -v cc >/dev/null || missing+=(gcc)
need_kubectl=0
command -v kubectl >/dev/null || need_kubectl=1      # API-mode tests drive the test API server with it
if ((${#missing[@]} || need_kubectl)); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  if ((need_kubectl)); then
    # Debian ships kubectl as kubernetes-client (bookworm: 1.20); a configured Kubernetes or
    # Google Cloud apt repository names it kubectl. The tests use only what 1.20 has.
    pkg=""
    for candidate in kubernetes-client kubectl; do
      if apt-cache policy "$candidate" 2>/dev/null | grep -q 'Candidate: [^(]'; then
        pkg=$candidate
        break
      fi
    done
    if [ -z "$pkg" ]; then
      echo "deps.sh: no apt package provides kubectl (tried kubernetes-client, kubectl); install kubectl 1.20 or newer" >&2
      exit 1
    fi
    missing+=("$pkg")
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
kubectl version --client >/dev/null 2>&1 || { echo "deps.sh: kubectl is installed but does not run" >&2; exit 1; }
command -v cargo >/dev/null || { echo "deps.sh: cargo (Rust 1.89 or newer) is required" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
