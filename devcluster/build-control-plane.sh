#!/usr/bin/env bash
# Builds a current Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl),
# the node components (kubelet, kube-proxy) and a matching etcd from Go modules, and caches the binaries keyed by the versions, so that later runs take no time.
#
# The technique: a throwaway module requires k8s.io/kubernetes vX and turns each of its
# `k8s.io/<staging> => ./staging/src/k8s.io/<staging>` replace lines into a replace by the matching published
# v0.<minor>.<patch> module; `go build` then builds the commands straight from the module cache (CGO off).
# etcd is built the same way from go.etcd.io/etcd/server/v3 with a two-line main (what etcd's own main.go does).
#
# Usage: devcluster/build-control-plane.sh        # prints the cache directory holding the four binaries
# Env:   DEVCLUSTER_K8S_VERSION   Kubernetes release [newest supported, see below]
#        DEVCLUSTER_K8S           newest | oldest: shorthand for the two supported releases [newest]
#        DEVCLUSTER_CACHE         cache root [/var/cache/redis-operator-devcluster]
set -euo pipefail

# The supported range. `newest` is the newest release the Go module proxy served that builds here; `oldest`
# is the oldest release we promise to support (README, user guide). etcd is the version each release's own
# go.mod requires.
K8S_NEWEST=v1.37.2
K8S_OLDEST=v1.34.4

case "${DEVCLUSTER_K8S:-newest}" in
  newest) DEFAULT_VERSION=$K8S_NEWEST ;;
  oldest) DEFAULT_VERSION=$K8S_OLDEST ;;
  *) echo "DEVCLUSTER_K8S must be newest or oldest" >&2; exit 2 ;;
esac
VERSION=${DEVCLUSTER_K8S_VERSION:-$DEFAULT_VERSION}
CACHE_ROOT=${DEVCLUSTER_CACHE:-/var/cache/redis-operator-devcluster}
BIN_DIR="$CACHE_ROOT/kubernetes-$VERSION/bin"
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd"
log() { echo "[build-control-plane] $*" >&2; }

have_all() {
  local b
  for b in $BINARIES; do [ -x "$BIN_DIR/$b" ] || return 1; done
}
if have_all; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null 2>&1 || { log "Go is needed to build the control plane (it is on PATH on this machine kind)"; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod
started=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/devcluster-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- Kubernetes -------------------------------------------------------------------------------------------------
staging_version="v0.${VERSION#v1.}"
mkdir -p "$WORK/k8s" && cd "$WORK/k8s"
go mod init devcluster/control-plane >/dev/null 2>&1
log "fetching k8s.io/kubernetes $VERSION's module list"
mod_file=$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$mod_file" ] || { log "the module proxy did not serve k8s.io/kubernetes@$VERSION"; exit 1; }
{
  echo "require k8s.io/kubernetes $VERSION"
  # `k8s.io/api => ./staging/src/k8s.io/api` becomes `k8s.io/api => k8s.io/api v0.X.Y`.
  sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\) => \./staging/src/.*$#replace \1 => \1 '"$staging_version"'#p' "$mod_file"
} >>go.mod
grep -q '^replace k8s.io/api ' go.mod || { log "no staging replace lines found in $mod_file"; exit 1; }
# The Go version Kubernetes asks for, so its go.mod's language features apply.
go_line=$(awk '/^go / {print $2; exit}' "$mod_file")
[ -n "$go_line" ] && go mod edit -go="$go_line"
ETCD_VERSION=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$mod_file")
[ -n "$ETCD_VERSION" ] || { log "cannot tell which etcd $VERSION uses"; exit 1; }
cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
EOF
log "resolving Kubernetes $VERSION dependencies (staging modules at $staging_version)"
go mod tidy -e >&2
mkdir -p "$BIN_DIR.tmp"
log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet and kube-proxy $VERSION (several minutes on 2 cores)"
go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$VERSION" | cut -d. -f2)" \
  -o "$BIN_DIR.tmp/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy >&2

# --- etcd -------------------------------------------------------------------------------------------------------
mkdir -p "$WORK/etcd" && cd "$WORK/etcd"
go mod init devcluster/etcd >/dev/null 2>&1
cat >main.go <<'EOF'
// The etcd server: what go.etcd.io/etcd/v3's main.go does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
go mod tidy >&2
log "building etcd $ETCD_VERSION"
go build -trimpath -ldflags "-s -w" -o "$BIN_DIR.tmp/etcd" . >&2

for b in $BINARIES; do
  [ -x "$BIN_DIR.tmp/$b" ] || { log "the build did not produce $b"; exit 1; }
done
rm -rf "$BIN_DIR" && mv "$BIN_DIR.tmp" "$BIN_DIR"
log "built Kubernetes $VERSION and etcd $ETCD_VERSION in $((SECONDS - started)) s"
echo "$BIN_DIR"
