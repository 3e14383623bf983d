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

export DEVCLUSTER_DIR=${DEVCLUSTER_DIR:-/tmp/redis-operator-failover-bench}
export DEVCLUSTER_ETCD_PORT=${DEVCLUSTER_ETCD_PORT:-32379}
export DEVCLUSTER_ETCD_PEER_PORT=${DEVCLUSTER_ETCD_PEER_PORT:-32380}
export DEVCLUSTER_APISERVER_PORT=${DEVCLUSTER_APISERVER_PORT:-36443}
export DEVCLUSTER_CM_PORT=${DEVCLUSTER_CM_PORT:-40257}
export DEVCLUSTER_POD_CIDR_PREFIX=${DEVCLUSTER_POD_CIDR_PREFIX:-127.5}
export DEVCLUSTER_POD_MODE=process
export DEVCLUSTER_RESTART_BACKOFF=${BENCH_RESTART_BACKOFF:-60}

TRIALS=${BENCH_TRIALS:-20}
DELAYS=${BENCH_DELAYS:-10}
DOWN_AFTER=${BENCH_SENTINEL_DOWN_AFTER:-}
REJOIN=${BENCH_REJOIN:-delete}
SENTINEL_DIR=/tmp/redis-operator-failover-bench-sentinel
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
REPORT=$REPO/target/bench-failover-report.md

log() { echo "[bench-failover.sh] $*" >&2; }

wait_heavy_lock() {
  while [ -e /tmp/heavy.lock ]; do
    log "/tmp/heavy.lock exists: waiting (before $1)"
    sleep 30
  done
}

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
  if [ -n "${BENCH_KEEP_CLUSTER:-}" ]; then
    log "keeping the cluster: DEVCLUSTER_DIR=$DEVCLUSTER_DIR (stop: bash devcluster/cluster.sh down --purge with the same env)"
  else
    bash devcluster/cluster.sh down --purge
  fi
}

if ! command -v redis-sentinel >/dev/null; then
  log "installing redis-sentinel (Debian package)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-sentinel; } >&2; then
    log "error: redis-sentinel could not be installed: the Sentinel anchor cannot run"
    exit 1
  fi
fi

wait_heavy_lock "the release build"
log "building the operator and the benchmark (release)"
cargo build --release --quiet -p redis-operator -p redis-operator-bench --bin redis-operator --bin redis-operator-bench

wait_heavy_lock "starting the cluster"
bash devcluster/cluster.sh down --purge >/dev/null 2>&1 || true
trap teardown EXIT
bash devcluster/cluster.sh up >/dev/null
KUBECONFIG_FILE=$DEVCLUSTER_DIR/kubeconfig
export PATH=$DEVCLUSTER_DIR/bin:$PATH
SERVER_VERSION=$(kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin version -o json |
  sed -n '/serverVersion/,/}/s/.*"gitVersion": "\(.*\)".*/\1/p')
log "Kubernetes server $SERVER_VERSION"

# Private copies, so a concurrent rebuild never swaps a binary under the run.
mkdir -p "$DEVCLUSTER_DIR/bin"
cp "$TARGET/release/redis-operator" "$DEVCLUSTER_DIR/bin/redis-operator"
cp "$TARGET/release/redis-operator-bench" "$DEVCLUSTER_DIR/bin/redis-operator-bench"

log "installing the CRD"
kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin apply -f crds/redisinstance.yaml >/dev/null
kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin wait --for=condition=Established --timeout=60s \
  crd/redisinstances.redis.github.com >/dev/null

ARGS=(--trials "$TRIALS" --delays "$DELAYS" --rejoin "$REJOIN")
[ -n "$DOWN_AFTER" ] && ARGS+=(--sentinel-down-after "$DOWN_AFTER")
# shellcheck disable=SC2206
[ -n "${BENCH_EXTRA_ARGS:-}" ] && ARGS+=($BENCH_EXTRA_ARGS)

wait_heavy_lock "measuring"
mkdir -p "$REPO/target"
log "running: $TRIALS trials, delays $DELAYS, Sentinel down-after ${DOWN_AFTER:-30000 and each delay}, rejoin $REJOIN, node agent restart back-off ${DEVCLUSTER_RESTART_BACKOFF}s"
"$DEVCLUSTER_DIR/bin/redis-operator-bench" failover \
  --kubeconfig "$KUBECONFIG_FILE" \
  --operator "$DEVCLUSTER_DIR/bin/redis-operator" \
  --log-dir "$REPO/target/bench-failover-logs" \
  --sentinel-dir "$SENTINEL_DIR" \
  --redis-sentinel "$(command -v redis-sentinel)" \
  "${ARGS[@]}" \
  --describe "pod mode=process (each pod is a real redis-server, $(redis-server --version | cut -d' ' -f1-3))" \
  --describe "operator build=release" \
  --describe "control plane=Kubernetes $SERVER_VERSION (etcd, kube-apiserver, kube-controller-manager from devcluster/) on loopback" \
  --describe "node agent=readiness PING every 1 s; first restart of a killed server after ${DEVCLUSTER_RESTART_BACKOFF} s (DEVCLUSTER_RESTART_BACKOFF)" \
  --describe "load average at the start=$(cut -d' ' -f1-3 /proc/loadavg)" \
  --output "$REPORT"
log "report written to $REPORT"
