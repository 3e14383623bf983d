#!/usr/bin/env bash
# The live demo: brings the local cluster up, installs the CRD, starts the operator, applies an example
# RedisInstance and shows its phase changing live; then changes its configuration and shows
# Updating -> Running, and that Redis really runs the new value.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
STATE=${DEVCLUSTER_DIR:-$REPO/.devcluster}

bash devcluster/cluster.sh up
eval "$(bash devcluster/cluster.sh env)"
cargo build --quiet --bin redis-operator

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing the CRD"
kubectl apply -f crds/redisinstance.yaml
kubectl wait --for=condition=Established --timeout=60s crd/redisinstances.redis.github.com

step "starting the operator (log: $STATE/logs/operator-demo.log)"
./target/debug/redis-operator run --metrics-address 127.0.0.1:0 --context redis-operator --leader-election=false \
  >"$STATE/logs/operator-demo.log" 2>&1 &
OPERATOR=$!
WATCH=""
cleanup() {
  [ -n "$WATCH" ] && kill "$WATCH" 2>/dev/null || true
  kill "$OPERATOR" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n demo delete ri demo --ignore-not-found --wait=true >/dev/null

step "applying examples/redisinstance.yaml; every status change is printed as it happens"
kubectl -n demo get ri --watch \
  -o custom-columns='NAME:.metadata.name,PHASE:.status.status,READY:.status.ready,REASON:.status.reason,MESSAGE:.status.lastConditionMessage' &
WATCH=$!
kubectl -n demo apply -f examples/redisinstance.yaml >/dev/null
kubectl -n demo wait --for=condition=Ready --timeout=180s ri/demo

step "changing the configuration (maxmemory 100mb -> 200mb): a restart rollout"
kubectl -n demo patch ri demo --type merge -p '{"spec":{"config":{"maxmemory":"200mb"}}}' >/dev/null
GEN=$(kubectl -n demo get ri demo -o jsonpath='{.metadata.generation}')
kubectl -n demo wait --for=jsonpath='{.status.observedGeneration}'="$GEN" --timeout=60s ri/demo >/dev/null
kubectl -n demo wait --for=condition=Ready --timeout=180s ri/demo
kill "$WATCH" 2>/dev/null || true
WATCH=""

step "the instance"
kubectl -n demo get ri demo
step "its phase history (status.history)"
kubectl -n demo get ri demo -o jsonpath='{range .status.history[*]}{.time}  {.from} -> {.to}  {.reason}: {.message}{"\n"}{end}'
step "Redis itself runs the new value"
for ip in $(kubectl -n demo get pods -l app.kubernetes.io/instance=demo -o jsonpath='{.items[*].status.podIP}'); do
  printf '%s: ' "$ip"; redis-cli -h "$ip" CONFIG GET maxmemory | tr '\n' ' '; echo
done
echo
echo "The cluster stays up: export KUBECONFIG=$STATE/kubeconfig; stop it with: bash devcluster/cluster.sh down"
