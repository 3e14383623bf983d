#!/usr/bin/env bash
# Writes the directives each server of the support matrix knows (`CONFIG GET *` on the real server, names only,
# sorted) to src/api/servers/NAME.directives: what the operator refuses in spec.config for a Valkey image (the
# Redis directives Valkey lacks) comes from these files, and tests/redis_client.rs fails when a server's own
# list drifts from its file. Needs the binaries of devcluster/servers.sh (it installs them).
# Usage: scripts/server-directives.sh [NAME...]   (default: every server but redis-6.2, which is refused)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash devcluster/servers.sh install
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(redis-7.0 valkey-9.1)
for name in "${names[@]}"; do
  binary=$(bash devcluster/servers.sh path "$name")
  dir=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$binary" --bind 127.0.0.1 --port "$port" --save "" --dir "$dir" --daemonize no >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$port" config get '*' | awk 'NR % 2 == 1' | LC_ALL=C sort >"src/api/servers/$name.directives"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  echo "src/api/servers/$name.directives: $(wc -l <"src/api/servers/$name.directives") directives"
done
