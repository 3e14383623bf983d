#!/usr/bin/env bash
# What idle instances cost their Redis servers (docs/benchmarks.md, "Redis-side cost when idle"): a private
# cluster in process pod mode (every pod a real redis-server), N instances of 2 pods each (authentication on, the
# default; `hz 1` through spec.config, as a user tuning for a crowded host would), the operator as a separate
# process. Once every instance is Running and 30 s have passed, it counts over BENCH_IDLE_SECONDS what the
# servers accepted (INFO stats `total_connections_received` and `total_commands_processed`, summed over every
# pod and read with the application password), first with the operator running, then with it stopped (what the
# node agent's readiness probes and this script's own reads cost alone), and the operator's own counters
# (`redis_operator_redis_*` on its metrics port, where the build has them). The difference is the operator's
# cost, reported per pod per minute. Prints a markdown report (also written to target/bench-redis-cost-report.md).
#
# Usage: scripts/bench-redis-cost.sh
#
# Env (defaults in brackets):
#   BENCH_INSTANCES        instances (2 pods each) [20]
#   BENCH_IDLE_SECONDS     length of each idle window [60]
#   BENCH_RESYNC_SECONDS   --resync-seconds of the operator [300, its default]
#   BENCH_KEEP_CLUSTER     set to keep the cluster afterwards
#   DEVCLUSTER_*           the private cluster: DIR /tmp/redis-operator-cost-bench, ports 42379/42380/46443/50257,
#                          pods on 127.6.x.y
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

LOG_TAG=bench-redis-cost.sh
# shellcheck source=scripts/lib/bench-cluster.sh
. scripts/lib/bench-cluster.sh
private_cluster /tmp/redis-operator-cost-bench 42379 42380 46443 50257 127.6 process

N=${BENCH_INSTANCES:-20}
IDLE=${BENCH_IDLE_SECONDS:-60}
RESYNC_SECONDS=${BENCH_RESYNC_SECONDS:-300}
REPORT=${BENCH_REPORT:-$REPO/target/bench-redis-cost-report.md}
NS=redis-cost
METRICS=127.0.0.1:18481
OPERATOR_PID=

stop_operator() {
  if [ -n "$OPERATOR_PID" ] && kill -0 "$OPERATOR_PID" 2>/dev/null; then
    kill -TERM "$OPERATOR_PID"
    wait "$OPERATOR_PID" 2>/dev/null || true
  fi
  OPERATOR_PID=
}

build_release
trap 'stop_operator; stop_cluster' EXIT
start_cluster
kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin "$@"; }

kc create namespace "$NS" >/dev/null
mkdir -p "$REPO/target/bench-logs"
KUBECONFIG=$KUBECONFIG_FILE "$DEVCLUSTER_DIR/bin/redis-operator" run --namespace "$NS" --leader-election=false \
  --context redis-operator --resync-seconds "$RESYNC_SECONDS" --metrics-address "$METRICS" \
  >"$REPO/target/bench-logs/redis-cost-operator.log" 2>&1 &
OPERATOR_PID=$!

log "creating $N instances of 2 pods"
for i in $(seq 1 "$N"); do
  cat <<EOF
---
apiVersion: redis-operator.github.io/v1beta1
kind: RedisInstance
metadata: {name: c$i, namespace: $NS}
spec:
  replicas: 2
  config: {hz: "1"}
EOF
done | kc apply -f - >/dev/null

log "waiting for every instance to be Running"
deadline=$((SECONDS + 600))
while :; do
  running=$(kc -n "$NS" get redisinstances -o jsonpath='{range .items[*]}{.status.status}{"\n"}{end}' | grep -c '^Running$' || true)
  [ "$running" -ge "$N" ] && break
  [ $SECONDS -lt $deadline ] || { log "only $running of $N Running after 600 s"; exit 1; }
  sleep 2
done
log "all $N Running; settling for 30 s"
sleep 30

# Sums INFO stats over every pod: "connections commands".
server_totals() {
  local pod ip instance password c=0 m=0 stats
  while read -r pod ip instance; do
    password=$(kc -n "$NS" get secret "$instance-auth" -o jsonpath='{.data.password}' | base64 -d)
    stats=$(REDISCLI_AUTH=$password redis-cli -h "$ip" -p 6379 --no-auth-warning INFO stats)
    c=$((c + $(echo "$stats" | tr -d '\r' | sed -n 's/^total_connections_received://p')))
    m=$((m + $(echo "$stats" | tr -d '\r' | sed -n 's/^total_commands_processed://p')))
  done < <(kc -n "$NS" get pods -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP} {.metadata.labels.app\.kubernetes\.io/instance}{"\n"}{end}')
  echo "$c $m"
}
operator_counter() {
  curl -s "http://$METRICS/metrics" | sed -n "s/^redis_operator_redis_$1_total \([0-9.e+]*\)$/\1/p" | head -1
}
pods=$(kc -n "$NS" get pods --no-headers | wc -l)

window() {
  local before after
  before=$(server_totals)
  sleep "$IDLE"
  after=$(server_totals)
  echo "$before $after" | awk -v pods="$pods" -v secs="$IDLE" \
    '{printf "%.2f %.2f", ($3 - $1) / pods * 60 / secs, ($4 - $2) / pods * 60 / secs}'
}

log "idle window with the operator running (${IDLE} s)"
op_conn_before=$(operator_counter connections_opened)
op_cmd_before=$(operator_counter commands)
read -r with_conn with_cmd <<<"$(window)"
op_conn_after=$(operator_counter connections_opened)
op_cmd_after=$(operator_counter commands)
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$OPERATOR_PID/status")
cpu_ticks=$(awk '{print $14 + $15}' "/proc/$OPERATOR_PID/stat")
stop_operator
log "idle window with the operator stopped (${IDLE} s)"
read -r base_conn base_cmd <<<"$(window)"

own() {
  if [ -n "$1" ] && [ -n "$2" ]; then
    awk -v a="$1" -v b="$2" -v pods="$pods" -v secs="$IDLE" 'BEGIN {printf "%.2f", (b - a) / pods * 60 / secs}'
  else
    echo "n/a (this build has no such counter)"
  fi
}
load=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "### Redis-side cost when idle"
  echo
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), load average after the run $load"
  echo "- $N instances x 2 pods ($pods pods), authentication on, hz 1; operator --resync-seconds $RESYNC_SECONDS; each window ${IDLE} s"
  echo "- pods: $(redis-server --version | cut -d' ' -f1-3) processes (node agent, readiness: the exec probe every 1 s)"
  echo
  echo "| per pod per minute | connections accepted | commands processed |"
  echo "| --- | --- | --- |"
  echo "| operator running | $with_conn | $with_cmd |"
  echo "| operator stopped (probes, this script) | $base_conn | $base_cmd |"
  echo "| **operator's cost** (difference) | $(awk -v a="$with_conn" -v b="$base_conn" 'BEGIN {printf "%.2f", a - b}') | $(awk -v a="$with_cmd" -v b="$base_cmd" 'BEGIN {printf "%.2f", a - b}') |"
  echo "| operator's own counters | $(own "$op_conn_before" "$op_conn_after") | $(own "$op_cmd_before" "$op_cmd_after") |"
  echo
  echo "Operator at the end of the running window: RSS $((rss_kib / 1024)) MiB, CPU $((cpu_ticks / $(getconf CLK_TCK))) s since start."
} | tee "$REPORT"
log "report written to $REPORT"
