#!/usr/bin/env bash
# The rolling-update benchmark (docs/benchmarks.md, "Rolling update"): brings up a private cluster in process pod
# mode (pods run as real redis-server processes), builds the operator and the benchmark with --release, and runs
# `redis-operator-bench rollout`: per trial a fresh instance of 3 replicas, its primary moved to ordinal 1, a
# writer confirming each write with WAIT, and a `spec.image` change, for the operator's primary-last rollout and
# the plain StatefulSet rolling update (the operator started with REDIS_OPERATOR_ROLLOUT=statefulset) in turn.
# Writes target/bench-rollout-report.md, replaces the generated block of docs/benchmarks.md with the run's
# numbers and tears the cluster down.
#
# Usage: scripts/bench-rollout.sh
#
# Env (defaults in brackets):
#   BENCH_TRIALS              rolling updates per configuration [20]
#   BENCH_ROLLOUTS            configurations, comma-separated [primary-last,statefulset]
#   BENCH_RESTART_BACKOFF     the node agent's first restart delay, seconds [1]: close to a kubelet's immediate
#                             first restart, so the failovers that move the primary take the restart path
#   BENCH_UPDATE_DOCS         set to 0 to leave docs/benchmarks.md alone [1]
#   BENCH_KEEP_CLUSTER        set to keep the cluster (and its state dir) afterwards for inspection
#   BENCH_EXTRA_ARGS          more arguments for redis-operator-bench rollout (e.g. --rollout-timeout 600)
#   DEVCLUSTER_*              the private cluster; defaults keep it clear of the other clusters:
#                             DIR /tmp/redis-operator-rollout-bench, ports 52379/52380/56443/60257, pods 127.8
#
# While /tmp/heavy.lock exists (someone runs a heavy job on this machine) the script waits before building,
# before starting the cluster and before measuring.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

LOG_TAG=bench-rollout.sh
# shellcheck source=scripts/lib/bench-cluster.sh
. scripts/lib/bench-cluster.sh
private_cluster /tmp/redis-operator-rollout-bench 52379 52380 56443 60257 127.8 process
export DEVCLUSTER_RESTART_BACKOFF=${BENCH_RESTART_BACKOFF:-1}

TRIALS=${BENCH_TRIALS:-20}
ROLLOUTS=${BENCH_ROLLOUTS:-primary-last,statefulset}
REPORT=${BENCH_REPORT:-$REPO/target/bench-rollout-report.md}

build_release
trap stop_cluster EXIT
start_cluster

ARGS=(--trials "$TRIALS" --rollouts "$ROLLOUTS")
if [ "${BENCH_UPDATE_DOCS:-1}" != 0 ]; then
  COMMAND="BENCH_TRIALS=$TRIALS${BENCH_EXTRA_ARGS:+ BENCH_EXTRA_ARGS='$BENCH_EXTRA_ARGS'} scripts/bench-rollout.sh"
  ARGS+=(--docs "$REPO/docs/benchmarks.md" --run-title "Run of $(date -u +%F) (\`$COMMAND\`)")
fi
# shellcheck disable=SC2206
[ -n "${BENCH_EXTRA_ARGS:-}" ] && ARGS+=($BENCH_EXTRA_ARGS)

node_describe
wait_heavy_lock "measuring"
mkdir -p "$REPO/target"
log "running: $TRIALS trials of $ROLLOUTS, node agent restart back-off ${DEVCLUSTER_RESTART_BACKOFF}s"
"$DEVCLUSTER_DIR/bin/redis-operator-bench" rollout \
  --kubeconfig "$KUBECONFIG_FILE" \
  --operator "$DEVCLUSTER_DIR/bin/redis-operator" \
  --log-dir "$REPO/target/bench-rollout-logs" \
  "${ARGS[@]}" --via "${BENCH_VIA:-pod-ip}" \
  --describe "operator build=release" \
  "${NODE_DESCRIBE[@]}" \
  --describe "load average at the start=$(cut -d' ' -f1-3 /proc/loadavg)" \
  --output "$REPORT"
log "report written to $REPORT"
