#!/usr/bin/env bash
# Build the Weir test API server (testenv/apiserver) from Debian sid's Go packages, offline.
#
#   testenv/build.sh            -> prints the path of the built binary on its last line
#
# Environment:
#   WEIR_TESTENV_CACHE    cache folder (default ~/.cache/weir-testenv)
#   WEIR_TESTENV_REFRESH  =1 to refresh the private sid package lists before resolving
#
# The system's apt configuration is not changed: sid is only used through a private apt
# state folder under the cache, and packages are unpacked with dpkg-deb -x into a private root.
# The only system package installed (when `etcd` is missing) is bookworm's etcd-server.
set -Eeuo pipefail

die() { echo "testenv/build.sh: ERROR: $*" >&2; exit 1; }
trap 'echo "testenv/build.sh: ERROR: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
log() { echo "testenv/build.sh: $*" >&2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/apiserver"
CACHE="${WEIR_TESTENV_CACHE:-$HOME/.cache/weir-testenv}"
PKGS=(golang-k8s-apiserver-dev golang-k8s-api-dev golang-go)
SUITE=sid
K8S_VERSION=v1.36.4 # reported by /version; matches the 0.36 libraries

[ -d "$SRC" ] || die "missing Go sources at $SRC"
ls "$SRC"/*.go >/dev/null 2>&1 || die "no .go files in $SRC"
command -v apt-get >/dev/null || die "apt-get not found (a Debian machine is required)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
[ "$(id -u)" = 0 ] || die "run as root (apt-get install of etcd-server and apt-get download need it)"

apt_updated=0
system_apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -q >&2 || die "apt-get update failed"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

# --- etcd (bookworm's etcd-server works with the 0.36 client) -----------------------------------
if ! command -v etcd >/dev/null; then
  log "installing etcd-server with apt-get"
  system_apt_install etcd-server
  command -v etcd >/dev/null || die "etcd still not on PATH after installing etcd-server"
fi

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -s "$KEYRING" ]; then
  system_apt_install debian-archive-keyring
fi
[ -s "$KEYRING" ] || die "missing $KEYRING"

# --- private apt state for sid -------------------------------------------------------------------
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$CACHE/debs"
echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $SUITE main" >"$APT/sources.list"
touch "$APT/status"
APTOPTS=(
  -o Dir::Etc::SourceList="$APT/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$APT/lists"
  -o Dir::Cache="$APT/cache"
  -o Dir::Cache::pkgcache="$APT/cache/pkgcache.bin"
  -o Dir::Cache::srcpkgcache="$APT/cache/srcpkgcache.bin"
  -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
  -o Dir::State::status="$APT/status"
  -o APT::Install-Recommends=false
  -o APT::Get::Show-Versions=false
  -o Debug::NoLocking=true
  -o APT::Sandbox::User=root
)
private_update() {
  log "updating private $SUITE package lists"
  apt-get "${APTOPTS[@]}" -q update >&2 || die "apt-get update of the private $SUITE lists failed"
}
if [ "${WEIR_TESTENV_REFRESH:-0}" = 1 ] || ! ls "$APT/lists/"*_Packages* >/dev/null 2>&1; then
  private_update
fi

# The closure: every package apt would install on an empty system, keeping the golang-* ones
# (the rest, libc and friends, is not needed to run the statically linked Go toolchain).
resolve() {
  apt-get "${APTOPTS[@]}" -s install "${PKGS[@]}" 2>&1 \
    | awk '$1=="Inst" {gsub(/[()]/,"",$3); print $2"="$3}' | grep '^golang-' | sort
}
# Resolving takes seconds; remember the answer for these lists.
LISTS_KEY="$(cat "$APT/lists/"*Release "$APT/status" | sha256sum | cut -c1-16)-$(echo "${PKGS[*]}" | sha256sum | cut -c1-8)"
if [ -s "$APT/closure-$LISTS_KEY" ]; then
  CLOSURE="$(cat "$APT/closure-$LISTS_KEY")"
else
  CLOSURE="$(resolve || true)"
  [ -z "$CLOSURE" ] || { rm -f "$APT"/closure-*; echo "$CLOSURE" >"$APT/closure-$LISTS_KEY"; }
fi
if [ -z "$CLOSURE" ]; then
  apt-get "${APTOPTS[@]}" -s install "${PKGS[@]}" >&2 || true
  die "could not resolve the package closure of ${PKGS[*]} in $SUITE (see apt output above)"
fi
for p in "${PKGS[@]}"; do grep -q "^$p=" <<<"$CLOSURE" || die "$p missing from the resolved closure"; done

PKGHASH="$(sha256sum <<<"$CLOSURE" | cut -c1-16)"
SRCHASH="$(cd "$SRC" && cat $(ls *.go | sort) "$HERE/build.sh" | sha256sum | cut -c1-16)"
OUT="$CACHE/bin/$PKGHASH-$SRCHASH/weir-testenv-apiserver"
if [ -x "$OUT" ]; then
  log "cached build ($(wc -l <<<"$CLOSURE") packages, key $PKGHASH-$SRCHASH)"
  echo "$OUT"
  exit 0
fi

# --- download and unpack -------------------------------------------------------------------------
ROOT="$CACHE/root-$PKGHASH"
if [ ! -e "$ROOT/.complete" ]; then
  debfile() { # name=version -> expected .deb file name prefix
    local n="${1%%=*}" v="${1#*=}"
    echo "${n}_${v//:/%3a}_"
  }
  missing=()
  while read -r pv; do
    ls "$CACHE/debs/$(debfile "$pv")"*.deb >/dev/null 2>&1 || missing+=("$pv")
  done <<<"$CLOSURE"
  if [ "${#missing[@]}" -gt 0 ]; then
    log "downloading ${#missing[@]} of $(wc -l <<<"$CLOSURE") packages from $SUITE"
    if ! (cd "$CACHE/debs" && apt-get "${APTOPTS[@]}" -q download "${missing[@]}" >&2); then
      # sid moves fast: a stale list names versions the mirror no longer has.
      die "apt-get download failed; if versions were removed from $SUITE, rerun with WEIR_TESTENV_REFRESH=1"
    fi
  fi
  log "unpacking into $ROOT"
  rm -rf "$ROOT.tmp"
  mkdir -p "$ROOT.tmp"
  while read -r pv; do
    f=$(ls "$CACHE/debs/$(debfile "$pv")"*.deb | head -1)
    dpkg-deb -x "$f" "$ROOT.tmp" || die "dpkg-deb -x $f failed"
  done <<<"$CLOSURE"
  # Debian's Go packages use absolute symlinks (/usr/share/gocode/..., /usr/share/go-1.xx/...):
  # point them into the private root.
  find "$ROOT.tmp" -type l -lname '/*' -print0 | while IFS= read -r -d '' l; do
    t="$(readlink "$l")"
    ln -sfn "$ROOT${t}" "$l"
  done
  echo "$CLOSURE" >"$ROOT.tmp/.closure"
  touch "$ROOT.tmp/.complete"
  rm -rf "$ROOT"
  mv "$ROOT.tmp" "$ROOT"
  # Absolute links were written for $ROOT, which is now where they live.
fi

GOROOT_DIR="$(ls -d "$ROOT"/usr/lib/go-1.* 2>/dev/null | sort -V | tail -1)"
[ -n "$GOROOT_DIR" ] && [ -x "$GOROOT_DIR/bin/go" ] || die "no Go toolchain found under $ROOT/usr/lib"
[ -d "$ROOT/usr/share/gocode/src/k8s.io/apiserver" ] || die "k8s.io/apiserver sources missing from $ROOT"

# --- build ---------------------------------------------------------------------------------------
export GOROOT="$GOROOT_DIR" GOPATH="$ROOT/usr/share/gocode" GOCACHE="$CACHE/gocache"
export GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 GOTELEMETRY=off
export PATH="$GOROOT/bin:$PATH"
log "building with $("$GOROOT/bin/go" version) (cold builds take minutes)"
mkdir -p "$(dirname "$OUT")"
V=k8s.io/component-base/version
MAJOR="${K8S_VERSION#v}"; MAJOR="${MAJOR%%.*}"
MINOR="${K8S_VERSION#v*.}"; MINOR="${MINOR%%.*}"
start=$(date +%s)
(cd "$SRC" && go build -trimpath -o "$OUT.tmp" \
  -ldflags "-s -w -X $V.gitVersion=$K8S_VERSION -X $V.gitMajor=$MAJOR -X $V.gitMinor=$MINOR" .) >&2 \
  || die "go build failed (sources: $SRC)"
mv "$OUT.tmp" "$OUT"
log "built in $(( $(date +%s) - start )) s"
# Keep the three newest builds and only the package root in use.
ls -dt "$CACHE"/bin/*/ | tail -n +4 | xargs -r rm -rf
for r in "$CACHE"/root-*; do [ "$r" = "$ROOT" ] || rm -rf "$r"; done
echo "$OUT"
