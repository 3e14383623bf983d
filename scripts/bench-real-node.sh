#!/usr/bin/env bash
# The failover and rolling-update write gaps on the node agent and on a real node, on the same machine in one
# run (docs/benchmarks.md, "On a real node"): bench-failover.sh and bench-rollout.sh once on the node agent with
# the writer reaching the primary by pod IP, and once on a real node (containers, kubelet, kube-proxy) with the
# writer going through the instance's Service (ClusterIP). Each run brings up and tears down its own private
# cluster, one after the other: a real node needs the machine's cluster bridge to itself, so no other real-node
# cluster may run meanwhile. Reports: target/bench-real-node/{agent,real}-{failover,rollout}.md.
#
# Usage: scripts/bench-real-node.sh
#
# Env (defaults in brackets):
#   BENCH_FAILOVER_TRIALS   kills per node kind [10]
#   BENCH_ROLLOUT_TRIALS    rolling updates per node kind [5]
#   BENCH_DELAYS            failoverDelaySeconds [10]
#   DEVCLUSTER_*            the private clusters' ports [42379/42380/46443/50257, pods 127.9 on the agent]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=$PWD/target/bench-real-node
mkdir -p "$OUT"
export DEVCLUSTER_ETCD_PORT=${DEVCLUSTER_ETCD_PORT:-42379} DEVCLUSTER_ETCD_PEER_PORT=${DEVCLUSTER_ETCD_PEER_PORT:-42380}
export DEVCLUSTER_APISERVER_PORT=${DEVCLUSTER_APISERVER_PORT:-46443} DEVCLUSTER_CM_PORT=${DEVCLUSTER_CM_PORT:-50257}
export DEVCLUSTER_POD_CIDR_PREFIX=${DEVCLUSTER_POD_CIDR_PREFIX:-127.9}
FAILOVER_TRIALS=${BENCH_FAILOVER_TRIALS:-10}
ROLLOUT_TRIALS=${BENCH_ROLLOUT_TRIALS:-5}

for node in agent real; do
  via=pod-ip
  [ "$node" = real ] && via=service
  echo "[bench-real-node.sh] $node node, writer by $via: failover ($FAILOVER_TRIALS kills)" >&2
  DEVCLUSTER_NODE=$node DEVCLUSTER_DIR=/tmp/redis-operator-bench-$node BENCH_VIA=$via BENCH_TRIALS=$FAILOVER_TRIALS \
    BENCH_EXTRA_ARGS=--no-sentinel BENCH_REPORT=$OUT/$node-failover.md bash scripts/bench-failover.sh
  echo "[bench-real-node.sh] $node node, writer by $via: primary-last rolling update ($ROLLOUT_TRIALS trials)" >&2
  DEVCLUSTER_NODE=$node DEVCLUSTER_DIR=/tmp/redis-operator-bench-$node BENCH_VIA=$via BENCH_TRIALS=$ROLLOUT_TRIALS \
    BENCH_ROLLOUTS=primary-last BENCH_UPDATE_DOCS=0 BENCH_REPORT=$OUT/$node-rollout.md bash scripts/bench-rollout.sh
done
echo "[bench-real-node.sh] reports in $OUT" >&2
