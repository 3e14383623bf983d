#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from Debian bookworm's `kubernetes` source package
# (full upstream tree with vendored dependencies) using Debian's Go toolchain, and caches the two binaries
# keyed by the source version so that later runs take seconds.
#
# Usage: devcluster/build-control-plane.sh        # prints the cache directory holding the binaries
# Env:   DEVCLUSTER_CACHE (default /var/cache/redis-operator-devcluster)
set -euo pipefail

CACHE_ROOT=${DEVCLUSTER_CACHE:-/var/cache/redis-operator-devcluster}
log() { echo "[build-control-plane] $*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq >&2; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# A deb-src entry for the very archive the machine already uses, derived from its deb822 or one-line sources.
ensure_deb_src() {
  if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
    return 0
  fi
  log "adding deb-src entries derived from the existing apt sources"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed -e 's/^Types:.*$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
      as_root tee /etc/apt/sources.list.d/redis-operator-deb-src.sources >/dev/null
  else
    grep -hE '^deb ' /etc/apt/sources.list | sed -e 's/^deb /deb-src /' |
      as_root tee /etc/apt/sources.list.d/redis-operator-deb-src.list >/dev/null
  fi
  as_root apt-get update -qq >&2
  apt_updated=1
}

ensure_deb_src
if [ -z "$apt_updated" ]; then as_root apt-get update -qq >&2; apt_updated=1; fi
VERSION=$(apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ {print $2; exit}')
[ -n "$VERSION" ] || { log "cannot find the kubernetes source package"; exit 1; }
# The suffix names the local patches below, so a changed patch set rebuilds.
BIN_DIR="$CACHE_ROOT/kubernetes-$VERSION-reflect2-1.0.2/bin"

if [ -x "$BIN_DIR/kube-apiserver" ] && [ -x "$BIN_DIR/kube-controller-manager" ]; then
  echo "$BIN_DIR"
  exit 0
fi

apt_install dpkg-dev rsync jq golang-go make golang-github-modern-go-reflect2-dev
WORK="$CACHE_ROOT/src-$VERSION"
as_root mkdir -p "$WORK"
cd "$WORK"
TREE=$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
if [ -z "$TREE" ]; then
  log "fetching the kubernetes $VERSION source package"
  apt-get source -qq kubernetes >&2
  TREE=$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
fi
cd "$TREE"
# The vendored modern-go/reflect2 1.0.1 iterates maps through a runtime signature that changed in Go 1.18:
# built with Debian's Go 1.19 the apiserver crashes (fatal fault in mapiterinit) on the first custom resource
# it decodes. Debian's own reflect2 1.0.2 has the fix; use its sources in place of the vendored copy.
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -d "$REFLECT2" ] || { log "missing $REFLECT2"; exit 1; }
rm -f vendor/github.com/modern-go/reflect2/*.go
find "$REFLECT2" -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cp {} vendor/github.com/modern-go/reflect2/ \;
mkdir -p .go/src/k8s.io
[ -e .go/src/k8s.io/kubernetes ] || ln -s ../../.. .go/src/k8s.io/kubernetes
log "building kube-apiserver and kube-controller-manager (several minutes on 2 cores)"
GOPATH=$PWD/.go CGO_ENABLED=0 make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
OUT=$(find _output -type f \( -name kube-apiserver -o -name kube-controller-manager \) -path '*/bin/*' | head -n 2)
as_root mkdir -p "$BIN_DIR.tmp"
for f in $OUT; do as_root cp "$f" "$BIN_DIR.tmp/"; done
[ -x "$BIN_DIR.tmp/kube-apiserver" ] && [ -x "$BIN_DIR.tmp/kube-controller-manager" ] ||
  { log "build did not produce both binaries"; exit 1; }
as_root rm -rf "$BIN_DIR" && as_root mv "$BIN_DIR.tmp" "$BIN_DIR"
cd "$CACHE_ROOT" && as_root rm -rf "$WORK"
echo "$BIN_DIR"
