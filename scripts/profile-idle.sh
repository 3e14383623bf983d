#!/usr/bin/env bash
# Profiles an operator binary idle over the instances a kept benchmark cluster holds (docs/benchmarks.md, Idle CPU
# by commit): starts BIN as the benchmark does (one namespace, no leader election, resync 300 s), waits SETTLE
# seconds (the first pass over every instance after a start), then for MEASURE seconds records its CPU
# (/proc/PID/stat), reconciles and Redis commands (its /metrics, scraped twice), and a perf profile; prints one
# summary line and writes the profile's top symbols to OUT/top.txt. Two binaries profiled one after the other
# over the same cluster compare commits on the same instances.
#
# Usage: BENCH_KEEP_CLUSTER=1 BENCH_SIZES=1000 ... scripts/bench.sh   # once, to get a cluster with instances
#        scripts/profile-idle.sh BIN LABEL [NAMESPACE bench-n1000] [SETTLE 120] [MEASURE 120]
# Needs perf (Debian: linux-perf) for the profile; without it, the summary alone. Output in /tmp/profile-idle-LABEL.
set -euo pipefail
BIN=$1
LABEL=$2
NAMESPACE=${3:-bench-n1000}
SETTLE=${4:-120}
MEASURE=${5:-120}
DIR=${DEVCLUSTER_DIR:-/tmp/redis-operator-bench-cluster}
PORT=19999
OUT=/tmp/profile-idle-$LABEL
mkdir -p "$OUT"

KUBECONFIG=$DIR/kubeconfig "$BIN" run --namespace "$NAMESPACE" --leader-election=false --context redis-operator \
  --resync-seconds 300 --metrics-address "127.0.0.1:$PORT" --log-level info >"$OUT/operator.log" 2>&1 &
PID=$!
sleep 2
kill -0 "$PID" 2>/dev/null || { cat "$OUT/operator.log" >&2; exit 1; }
trap 'kill -TERM $PID 2>/dev/null && wait $PID || true' EXIT
sleep "$SETTLE"

ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
t0=$(ticks)
r0=$(metric redis_operator_reconcile_duration_seconds_count)
c0=$(metric redis_operator_redis_commands_total)
if command -v perf >/dev/null; then
  perf record -F 499 -p "$PID" -o "$OUT/perf.data" -- sleep "$MEASURE" >/dev/null 2>&1
else
  sleep "$MEASURE"
fi
t1=$(ticks)
r1=$(metric redis_operator_reconcile_duration_seconds_count)
c1=$(metric redis_operator_redis_commands_total)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
hz=$(getconf CLK_TCK)
awk -v l="$LABEL" -v t="$((t1 - t0))" -v hz="$hz" -v m="$MEASURE" -v r0="$r0" -v r1="$r1" -v c0="$c0" -v c1="$c1" \
  -v rss="$rss" 'BEGIN {
    cpu = t / hz; r = r1 - r0
    printf "%s: idle CPU %.2f %% of one core over %d s; %d reconciles (%.2f ms CPU each); %d Redis commands; RSS %.1f MiB\n",
      l, 100 * cpu / m, m, r, (r > 0 ? 1000 * cpu / r : 0), c1 - c0, rss / 1024 }' | tee "$OUT/summary"
if [ -f "$OUT/perf.data" ]; then
  perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
    grep -v '^#' | grep -v '^$' | sed 's/  *- *- *$//' | head -40 >"$OUT/top.txt"
fi
