#!/usr/bin/env bash
# Builds the devcluster's S3-compatible object store, SeaweedFS's `weed` command (Apache-2.0), from the Go module
# proxy and caches the binary keyed by the version, so that later runs take no time.
#
# The technique (as build-control-plane.sh): a throwaway module requires github.com/seaweedfs/seaweedfs at the
# pinned version and repeats that module's own replace lines (a dependency's replaces do not apply to the module
# that requires it); `go build` (CGO off) then builds github.com/seaweedfs/seaweedfs/weed from the module cache.
#
# Usage: devcluster/build-s3.sh        # prints the path of the weed binary
# Env:   DEVCLUSTER_CACHE   cache root [/var/cache/redis-operator-devcluster]
set -euo pipefail

# SeaweedFS 4.53 (weed/util/version): the newest pseudo-version the Go module proxy served (the project tags no
# Go-module releases). Its go.mod asks for Go 1.26.6, which the machine's Go satisfies.
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
MODULE=github.com/seaweedfs/seaweedfs
CACHE_ROOT=${DEVCLUSTER_CACHE:-/var/cache/redis-operator-devcluster}
BIN=$CACHE_ROOT/seaweedfs-$SEAWEEDFS_VERSION/weed
log() { echo "[build-s3] $*" >&2; }

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null 2>&1 || { log "Go is needed to build SeaweedFS (it is on PATH on this machine kind)"; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod
started=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/devcluster-build-s3.XXXXXX")
trap 'rm -rf "$WORK" "$BIN.tmp"' EXIT
cd "$WORK"
go mod init devcluster/seaweedfs >/dev/null 2>&1

log "fetching $MODULE $SEAWEEDFS_VERSION's module list"
mod_file=$(go mod download -json "$MODULE@$SEAWEEDFS_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$mod_file" ] || { log "the module proxy did not serve $MODULE@$SEAWEEDFS_VERSION"; exit 1; }
# Single-line replaces (`replace a => b v`) and those of a replace block.
awk '/^replace \(/ {block = 1; next} block && /^\)/ {block = 0; next}
     block && /=>/ {print "replace " $0; next} /^replace .*=>/ {print}' "$mod_file" >>go.mod
go_line=$(awk '/^go / {print $2; exit}' "$mod_file")
[ -n "$go_line" ] && go mod edit -go="$go_line"

log "resolving SeaweedFS's dependencies"
go get "$MODULE@$SEAWEEDFS_VERSION" >&2
mkdir -p "$(dirname "$BIN")"
log "building weed (CGO off; several minutes on 2 cores)"
go build -trimpath -ldflags "-s -w -X $MODULE/weed/util/version.COMMIT=${SEAWEEDFS_VERSION##*-}" \
  -o "$BIN.tmp" "$MODULE/weed" >&2
"$BIN.tmp" version >/dev/null || { log "the built weed does not run"; exit 1; }
mv "$BIN.tmp" "$BIN"
log "built weed $("$BIN" version 2>/dev/null | head -n 1) in $((SECONDS - started)) s ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
