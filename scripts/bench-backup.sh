#!/usr/bin/env bash
# The backup benchmark (docs/benchmarks.md, "Primary latency during a backup"): brings up a private cluster in
# process pod mode with its S3 server, builds the operator and the benchmark with --release, and runs
# `redis-operator-bench backup`: per source (a replica, then the primary of a one-pod instance) a fresh instance
# loaded with BENCH_KEYS keys, a probe timing GETs on the primary, and BENCH_TRIALS quiet windows and backups in
# turn; then, per segment length, the archive's lag under a steady write load (read from the primary's INFO
# replication). Writes target/bench-backup-report.md and tears the cluster down.
#
# Usage: scripts/bench-backup.sh
#
# Env (defaults in brackets):
#   BENCH_TRIALS        backups per source [10]; 0 measures only the archive
#   BENCH_ARCHIVE_SECONDS  seconds of steady writes per segment length for the archive's lag [120]; 0 skips it
#   BENCH_SEGMENTS      the segmentSeconds values measured [10,60]
#   BENCH_ARCHIVE_RATE  SETs per second during the archive's measurement [200]
#   BENCH_KEYS          keys loaded [200000]
#   BENCH_VALUE_BYTES   bytes per value [256]
#   BENCH_KEEP_CLUSTER  set to keep the cluster (and its state dir) afterwards
#   DEVCLUSTER_*        the private cluster: DIR /tmp/redis-operator-backup-bench, ports 53379/53380/57443/61257,
#                       pods 127.9
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

LOG_TAG=bench-backup.sh
# shellcheck source=scripts/lib/bench-cluster.sh
. scripts/lib/bench-cluster.sh
private_cluster /tmp/redis-operator-backup-bench 53379 53380 57443 61257 127.9 process
export DEVCLUSTER_RESTART_BACKOFF=${DEVCLUSTER_RESTART_BACKOFF:-1}

REPORT=${BENCH_REPORT:-$REPO/target/bench-backup-report.md}

build_release
trap stop_cluster EXIT
start_cluster

# shellcheck disable=SC1091
. "$DEVCLUSTER_DIR/s3/env"
node_describe
# This benchmark has no writer: drop the writer's line.
unset 'NODE_DESCRIBE[-1]'
unset 'NODE_DESCRIBE[-1]'
wait_heavy_lock "measuring"
mkdir -p "$REPO/target"
"$DEVCLUSTER_DIR/bin/redis-operator-bench" backup \
  --kubeconfig "$KUBECONFIG_FILE" \
  --operator "$DEVCLUSTER_DIR/bin/redis-operator" \
  --s3-endpoint "$DEVCLUSTER_S3_ENDPOINT" \
  --s3-key "$DEVCLUSTER_S3_ACCESS_KEY_ID" \
  --s3-secret "$DEVCLUSTER_S3_SECRET_ACCESS_KEY" \
  --trials "${BENCH_TRIALS:-10}" \
  --archive-seconds "${BENCH_ARCHIVE_SECONDS:-120}" \
  --segment-seconds "${BENCH_SEGMENTS:-10,60}" \
  --archive-rate "${BENCH_ARCHIVE_RATE:-200}" \
  --keys "${BENCH_KEYS:-200000}" \
  --value-bytes "${BENCH_VALUE_BYTES:-256}" \
  --log-dir "$REPO/target/bench-backup-logs" \
  --describe "operator build=release" \
  "${NODE_DESCRIBE[@]}" \
  --describe "commit=$(git rev-parse --short HEAD)" \
  --describe "load average at the start=$(cut -d' ' -f1-3 /proc/loadavg)" \
  --output "$REPORT"
log "report written to $REPORT"
