#!/usr/bin/env bash
# The benchmark (docs/benchmarks.md): brings up a private cluster in process pod mode (every pod is a real
# redis-server, authentication on as by default), installs the CRD, builds the operator and the benchmark with
# --release, runs every measurement against the operator as a separate process — reaction latency against the
# floor, reaction after API server outages, convergence of N instances with their API and Redis-side cost, an
# idle window and a restart — prints the markdown report with each target met or missed (also written to
# target/bench-report.md), and tears the cluster down; then the failover and rolling-update benchmarks.
#
# Usage: scripts/bench.sh
#
# Env (defaults in brackets):
#   BENCH_SIZES            instance counts of the convergence runs, one pod each [10,100,1000]
#   BENCH_REPLICATED       instance counts of the replicated runs, 3 pods each [300]
#   BENCH_CONFIG           spec.config of every instance, comma-separated key=value [hz=1]
#   BENCH_IDLE_SECONDS     how long each converged size is watched idle [300]
#   BENCH_SAMPLES          spec changes of the latency run [100]
#   BENCH_OUTAGES          API server outages (kill -9, 15 s down, restart) after the latency run [3]
#   BENCH_RESYNC_SECONDS   --resync-seconds of the operator [300, its default]
#   BENCH_CONVERGE_TIMEOUT longest wait for one size to converge, seconds [1200: N = 1000 takes ~10 minutes here]
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
private_cluster /tmp/redis-operator-bench-cluster 22379 22380 26443 30257 127.3 process
# The node agent PINGs each pod at its readiness probe's period (5 s), as a kubelet's pace, instead of forking the
# exec probe (a shell, cat and redis-cli) every second, the tests' pace: that kept both cores forking and stalled
# the lab at a few hundred pods (2026-12-07). The operator under test is the same either way.
export DEVCLUSTER_READINESS=${DEVCLUSTER_READINESS:-ping}
# And it refreshes pods' ConfigMap and Secret volumes every 60 s, about the kubelet's pace, not every 2 s (the
# tests' setting, so they see a rotation within seconds): at 2 s, 1,000 idle one-pod instances cost the API server
# 1,097 GETs a second (its apiserver_request_total, 2026-12-07), many times the operator's own requests.
export DEVCLUSTER_VOLUME_REFRESH=${DEVCLUSTER_VOLUME_REFRESH:-60}
# One ClusterIP Service per instance: the default /24 runs out after ~250 instances ("range is full").
export DEVCLUSTER_SERVICE_CIDR=${DEVCLUSTER_SERVICE_CIDR:-10.0.0.0/16}

SIZES=${BENCH_SIZES:-10,100,1000}
REPLICATED=${BENCH_REPLICATED-300}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-300}
SAMPLES=${BENCH_SAMPLES:-100}
OUTAGES=${BENCH_OUTAGES:-3}
RESYNC_SECONDS=${BENCH_RESYNC_SECONDS:-300}
CONVERGE_TIMEOUT=${BENCH_CONVERGE_TIMEOUT:-1200}
CONFIG_ARGS=()
IFS=, read -ra entries <<<"${BENCH_CONFIG-hz=1}"
for entry in "${entries[@]}"; do CONFIG_ARGS+=(--config "$entry"); done
REPORT=$REPO/target/bench-report.md

build_release
trap stop_cluster EXIT
start_cluster

REPLICATED_ARGS=()
[ -n "$REPLICATED" ] && REPLICATED_ARGS=(--replicated-sizes "$REPLICATED")
log "running: sizes $SIZES (1 pod), replicated $REPLICATED (3 pods), config ${BENCH_CONFIG-hz=1}, $SAMPLES latency samples, $OUTAGES outages, idle ${IDLE_SECONDS}s, resync every ${RESYNC_SECONDS}s"
"$DEVCLUSTER_DIR/bin/redis-operator-bench" \
  --kubeconfig "$KUBECONFIG_FILE" \
  --audit-log "$DEVCLUSTER_DIR/audit.log" \
  --operator "$DEVCLUSTER_DIR/bin/redis-operator" \
  --sizes "$SIZES" "${REPLICATED_ARGS[@]}" --samples "$SAMPLES" --resync-seconds "$RESYNC_SECONDS" \
  --idle-seconds "$IDLE_SECONDS" --converge-timeout "$CONVERGE_TIMEOUT" "${CONFIG_ARGS[@]}" \
  --outage-trials "$OUTAGES" --outage-pid-file "$DEVCLUSTER_DIR/run/kube-apiserver.pid" \
  --outage-restart "bash $REPO/devcluster/cluster.sh up" \
  --log-dir "$REPO/target/bench-logs" \
  --describe "pod mode=process (each pod is a real redis-server, $(redis-server --version | cut -d' ' -f1-3), started by the node agent; readiness: $([ "$DEVCLUSTER_READINESS" = ping ] && echo "a PING at the probe's period (5 s), not the exec probe (DEVCLUSTER_READINESS=ping)" || echo "the exec probe every 1 s"); volumes refreshed every ${DEVCLUSTER_VOLUME_REFRESH} s (DEVCLUSTER_VOLUME_REFRESH); authentication on, the default)" \
  --describe "control plane=Kubernetes $SERVER_VERSION (etcd, kube-apiserver, kube-controller-manager from devcluster/) on loopback" \
  --describe "operator build=release (target/release/redis-operator)" \
  --describe "audit log=Metadata level (the operator's API requests are counted from it)" \
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
