#!/usr/bin/env bash
# How long Redis' own `FAILOVER TO <host> <port> TIMEOUT <ms>` takes, without Kubernetes or the operator: two
# local redis-server processes (a primary and its replica), one write before each switchover, and the time from
# the command until the target answers ROLE as master; the roles swap back and forth for N trials. The
# rolling-update benchmark's write gap (docs/benchmarks.md, "Rolling update") contains this time: the primary
# checks whether the target has caught up only in its once-per-second replication cron, so the command alone
# takes between 0 and 1 s, whatever the operator does.
#
# With WAIT=1 in the environment, each write is followed by `WAIT 1 1000`, as the benchmark's writer does.
#
# Usage: [WAIT=1] scripts/failover-command-latency.sh [TRIALS (default 20)] [FIRST_PORT (default 17001)]
set -euo pipefail
TRIALS=${1:-20}
A=${2:-17001}
WAIT=${WAIT:-0}
B=$((A + 1))
DIR=$(mktemp -d)
cli() { redis-cli -p "$1" "${@:2}"; }
cleanup() {
  cli "$A" shutdown nosave >/dev/null 2>&1 || true
  cli "$B" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for port in "$A" "$B"; do
  redis-server --port "$port" --save "" --appendonly no --dir "$DIR" --logfile "$DIR/$port.log" --daemonize yes
done
until cli "$A" ping >/dev/null 2>&1 && cli "$B" ping >/dev/null 2>&1; do sleep 0.05; done
cli "$B" replicaof 127.0.0.1 "$A" >/dev/null

primary=$A
replica=$B
times=()
for trial in $(seq 1 "$TRIALS"); do
  # The target must be an online replica (the first sync is diskless and waits repl-diskless-sync-delay).
  until cli "$primary" info replication | grep -q "state=online"; do sleep 0.05; done
  # A random phase against the servers' cron.
  sleep "0.$((RANDOM % 9 + 1))"
  cli "$primary" set key "$trial" >/dev/null
  if [ "$WAIT" = 1 ]; then cli "$primary" wait 1 1000 >/dev/null; fi
  start=$(date +%s%N)
  reply=$(cli "$primary" failover to 127.0.0.1 "$replica" timeout 5000)
  [ "$reply" = OK ] || { echo "trial $trial: FAILOVER answered: $reply" >&2; exit 1; }
  until [ "$(cli "$replica" role | head -1)" = master ]; do sleep 0.005; done
  ms=$((($(date +%s%N) - start) / 1000000))
  times+=("$ms")
  echo "trial $trial: ${ms} ms"
  swap=$primary
  primary=$replica
  replica=$swap
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
count=${#times[@]}
mode="SET"
if [ "$WAIT" = 1 ]; then mode="SET + WAIT 1 1000"; fi
echo "FAILOVER TO → target is master, $count trials, $mode before each ($(redis-server --version | cut -d' ' -f3)):" \
  "min $(echo "$sorted" | head -1) ms," \
  "p50 $(echo "$sorted" | sed -n "$(((count + 1) / 2))p") ms," \
  "max $(echo "$sorted" | tail -1) ms"
