#!/usr/bin/env bash
# The failover benchmark (docs/benchmarks.md, "Failover"): brings up a private cluster in process pod mode (pods
# run as real redis-server processes), installs Debian's redis-sentinel if it is missing, builds the operator and
# the benchmark with --release, and runs `redis-operator-bench failover`: the operator (one instance, 3 replicas)
# at each failoverDelaySeconds, then three Sentinels on loopback at Sentinel's default down-after-milliseconds and
# at each delay, the same writer and kill -9 trials for both. Writes target/bench-failover-report.md and tears
# the cluster down.
#
# Usage: scripts/bench-failover.sh
#
# Env (defaults in brackets):
#   BENCH_TRIALS                 kills per configuration [20]
#   BENCH_STALLS                 stall trials of the operator per delay, after its kills [5]: the primary's server
#                                stopped (SIGSTOP) for 80 % of the delay on a busy host; a failover is a false one
#   BENCH_DELAYS                 failoverDelaySeconds values, comma-separated [10]
#   BENCH_SENTINEL_DOWN_AFTER    Sentinel down-after-milliseconds values [30000 and each delay in ms]
#   BENCH_REJOIN                 delete | restart: how the killed pod comes back [delete]
#   BENCH_RESTART_BACKOFF        the node agent's first restart delay, seconds [60]: longer than the failover,
#                                so a killed server stays down through it, as with Sentinel (see the docs)
#   BENCH_KEEP_CLUSTER           set to keep the cluster (and its state dir) afterwards for inspection
#   BENCH_EXTRA_ARGS             more arguments for redis-operator-bench failover (e.g. --no-sentinel)
#   DEVCLUSTER_*                 the private cluster; defaults keep it clear of the default, e2e and bench
#                                clusters: DIR /tmp/redis-operator-failover-bench, ports 32379/32380/36443/40257,
#                                pods 127.5
# The Sentinel anchor uses 127.0.0.1 ports 26500-26502 (servers) and 26600-26602 (sentinels) and its state in
# /tmp/redis-operator-failover-bench-sentinel.
#
# While /tmp/heavy.lock exists (someone runs a heavy job on this machine) the script waits before building,
# before starting the cluster and before measuring.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

LOG_TAG=bench-failover.sh
# shellcheck source=scripts/lib/bench-cluster.sh
. scripts/lib/bench-cluster.sh
private_cluster /tmp/redis-operator-failover-bench 32379 32380 36443 40257 127.5 process
export DEVCLUSTER_RESTART_BACKOFF=${BENCH_RESTART_BACKOFF:-60}

TRIALS=${BENCH_TRIALS:-20}
DELAYS=${BENCH_DELAYS:-10}
DOWN_AFTER=${BENCH_SENTINEL_DOWN_AFTER:-}
REJOIN=${BENCH_REJOIN:-delete}
SENTINEL_DIR=/tmp/redis-operator-failover-bench-sentinel
REPORT=${BENCH_REPORT:-$REPO/target/bench-failover-report.md}

# The anchor's processes, if the benchmark itself was killed before it could stop them: only pids it recorded,
# and only while they still are redis processes.
kill_anchor() {
  local file pid
  for file in "$SENTINEL_DIR"/*/pids; do
    [ -f "$file" ] || continue
    while read -r pid; do
      [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || continue
      if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q redis; then kill -KILL "$pid" 2>/dev/null || true; fi
    done <"$file"
    rm -f "$file"
  done
}

teardown() {
  kill_anchor
  stop_cluster
}

if ! command -v redis-sentinel >/dev/null; then
  log "installing redis-sentinel (Debian package)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-sentinel; } >&2; then
    log "error: redis-sentinel could not be installed: the Sentinel anchor cannot run"
    exit 1
  fi
fi

build_release
trap teardown EXIT
start_cluster

ARGS=(--trials "$TRIALS" --stalls "${BENCH_STALLS:-5}" --delays "$DELAYS" --rejoin "$REJOIN")
[ -n "$DOWN_AFTER" ] && ARGS+=(--sentinel-down-after "$DOWN_AFTER")
# shellcheck disable=SC2206
[ -n "${BENCH_EXTRA_ARGS:-}" ] && ARGS+=($BENCH_EXTRA_ARGS)

node_describe
wait_heavy_lock "measuring"
mkdir -p "$REPO/target"
log "running: $TRIALS trials, delays $DELAYS, Sentinel down-after ${DOWN_AFTER:-30000 and each delay}, rejoin $REJOIN, node agent restart back-off ${DEVCLUSTER_RESTART_BACKOFF}s"
"$DEVCLUSTER_DIR/bin/redis-operator-bench" failover \
  --kubeconfig "$KUBECONFIG_FILE" \
  --operator "$DEVCLUSTER_DIR/bin/redis-operator" \
  --log-dir "$REPO/target/bench-failover-logs" \
  --sentinel-dir "$SENTINEL_DIR" \
  --redis-sentinel "$(command -v redis-sentinel)" \
  "${ARGS[@]}" --via "${BENCH_VIA:-pod-ip}" \
  --describe "operator build=release" \
  "${NODE_DESCRIBE[@]}" \
  --describe "load average at the start=$(cut -d' ' -f1-3 /proc/loadavg)" \
  --output "$REPORT"
log "report written to $REPORT"
