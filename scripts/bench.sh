#!/usr/bin/env bash
# The benchmark (docs/benchmarks.md): brings up a private cluster in simulated pod mode (the node agent reports
# pods Running/Ready without starting redis-server), installs the CRD, builds the operator and the benchmark
# with --release, runs every measurement against the operator as a separate process, prints the markdown
# report (also written to target/bench-report.md), and tears the cluster down.
#
# Usage: scripts/bench.sh
#
# Env (defaults in brackets):
#   BENCH_SIZES            instance counts of the convergence runs [10,100,500]
#   BENCH_SAMPLES          spec changes of the latency run [100]
#   BENCH_RESYNC_SECONDS   --resync-seconds of the operator; the idle resync is waited for [20]
#   BENCH_KEEP_CLUSTER     set to keep the cluster (and its state dir) afterwards for inspection
#   BENCH_SKIP_FAILOVER    set to leave out the failover benchmark (scripts/bench-failover.sh) run afterwards
#   DEVCLUSTER_*           the private cluster; defaults keep it clear of the default and the e2e clusters:
#                          DIR /tmp/redis-operator-bench-cluster, ports 22379/22380/26443/30257, pods 127.3,
#                          service CIDR 10.0.0.0/16 (one ClusterIP per instance)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

export DEVCLUSTER_DIR=${DEVCLUSTER_DIR:-/tmp/redis-operator-bench-cluster}
export DEVCLUSTER_ETCD_PORT=${DEVCLUSTER_ETCD_PORT:-22379}
export DEVCLUSTER_ETCD_PEER_PORT=${DEVCLUSTER_ETCD_PEER_PORT:-22380}
export DEVCLUSTER_APISERVER_PORT=${DEVCLUSTER_APISERVER_PORT:-26443}
export DEVCLUSTER_CM_PORT=${DEVCLUSTER_CM_PORT:-30257}
export DEVCLUSTER_POD_CIDR_PREFIX=${DEVCLUSTER_POD_CIDR_PREFIX:-127.3}
export DEVCLUSTER_POD_MODE=simulated
# One ClusterIP Service per instance: the default /24 runs out after ~250 instances ("range is full").
export DEVCLUSTER_SERVICE_CIDR=${DEVCLUSTER_SERVICE_CIDR:-10.0.0.0/16}

SIZES=${BENCH_SIZES:-10,100,500}
SAMPLES=${BENCH_SAMPLES:-100}
RESYNC_SECONDS=${BENCH_RESYNC_SECONDS:-20}
REPORT=$REPO/target/bench-report.md

log() { echo "[bench.sh] $*" >&2; }

teardown() {
  if [ -n "${BENCH_KEEP_CLUSTER:-}" ]; then
    log "keeping the cluster: DEVCLUSTER_DIR=$DEVCLUSTER_DIR (stop: bash devcluster/cluster.sh down --purge with the same env)"
  else
    bash devcluster/cluster.sh down --purge
  fi
}

log "building the operator and the benchmark (release)"
cargo build --release --quiet -p redis-operator -p redis-operator-bench --bin redis-operator --bin redis-operator-bench

# A fresh cluster every run: the audit log and etcd start empty.
bash devcluster/cluster.sh down --purge >/dev/null 2>&1 || true
trap teardown EXIT
bash devcluster/cluster.sh up >/dev/null
KUBECONFIG_FILE=$DEVCLUSTER_DIR/kubeconfig
export PATH=$DEVCLUSTER_DIR/bin:$PATH
SERVER_VERSION=$(kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin version -o json |
  sed -n '/serverVersion/,/}/s/.*"gitVersion": "\(.*\)".*/\1/p')
log "Kubernetes server $SERVER_VERSION"

# Private copies, so a concurrent rebuild of target/release never swaps a binary under the run.
mkdir -p "$DEVCLUSTER_DIR/bin"
cp target/release/redis-operator "$DEVCLUSTER_DIR/bin/redis-operator"
cp target/release/redis-operator-bench "$DEVCLUSTER_DIR/bin/redis-operator-bench"

log "installing the CRD"
kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin apply -f crds/redisinstance.yaml >/dev/null
kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin wait --for=condition=Established --timeout=60s \
  crd/redisinstances.redis.github.com >/dev/null

log "running: sizes $SIZES, $SAMPLES latency samples, resync every ${RESYNC_SECONDS}s"
"$DEVCLUSTER_DIR/bin/redis-operator-bench" \
  --kubeconfig "$KUBECONFIG_FILE" \
  --audit-log "$DEVCLUSTER_DIR/audit.log" \
  --operator "$DEVCLUSTER_DIR/bin/redis-operator" \
  --sizes "$SIZES" --samples "$SAMPLES" --resync-seconds "$RESYNC_SECONDS" \
  --log-dir "$REPO/target/bench-logs" \
  --describe "pod mode=simulated (node agent reports pods Ready without starting redis-server)" \
  --describe "operator build=release (target/release/redis-operator)" \
  --describe "control plane=Kubernetes $SERVER_VERSION (etcd, kube-apiserver, kube-controller-manager from devcluster/) on loopback, audit log at Metadata level" \
  --output "$REPORT"
log "report written to $REPORT"

# The failover benchmark (docs/benchmarks.md, Failover) runs next, in its own process-mode cluster, once this
# one is down: `BENCH_SKIP_FAILOVER=1` leaves it out, `bash scripts/bench-failover.sh` runs it alone.
if [ -z "${BENCH_SKIP_FAILOVER:-}" ]; then
  trap - EXIT
  teardown
  bash scripts/bench-failover.sh
fi
