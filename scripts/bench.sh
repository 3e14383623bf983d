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
#   BENCH_SKIP_ROLLOUT     set to leave out the rolling-update benchmark (scripts/bench-rollout.sh) run after that
#   DEVCLUSTER_*           the private cluster; defaults keep it clear of the default and the e2e clusters:
#                          DIR /tmp/redis-operator-bench-cluster, ports 22379/22380/26443/30257, pods 127.3,
#                          service CIDR 10.0.0.0/16 (one ClusterIP per instance)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

LOG_TAG=bench.sh
# shellcheck source=scripts/lib/bench-cluster.sh
. scripts/lib/bench-cluster.sh
private_cluster /tmp/redis-operator-bench-cluster 22379 22380 26443 30257 127.3 simulated
# One ClusterIP Service per instance: the default /24 runs out after ~250 instances ("range is full").
export DEVCLUSTER_SERVICE_CIDR=${DEVCLUSTER_SERVICE_CIDR:-10.0.0.0/16}

SIZES=${BENCH_SIZES:-10,100,500}
SAMPLES=${BENCH_SAMPLES:-100}
RESYNC_SECONDS=${BENCH_RESYNC_SECONDS:-20}
REPORT=$REPO/target/bench-report.md

build_release
trap stop_cluster EXIT
start_cluster

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

# The process-mode benchmarks run next, each in its own cluster, once this one is down: the failover benchmark
# (docs/benchmarks.md, Failover; `BENCH_SKIP_FAILOVER=1` leaves it out, `bash scripts/bench-failover.sh` runs it
# alone), then the rolling-update benchmark (Rolling update; `BENCH_SKIP_ROLLOUT=1`, `bash scripts/bench-rollout.sh`).
trap - EXIT
stop_cluster
if [ -z "${BENCH_SKIP_FAILOVER:-}" ]; then
  bash scripts/bench-failover.sh
fi
if [ -z "${BENCH_SKIP_ROLLOUT:-}" ]; then
  bash scripts/bench-rollout.sh
fi
