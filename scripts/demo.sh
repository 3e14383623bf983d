#!/usr/bin/env bash
# The live demo: brings the local cluster up, installs the CRD, starts the operator, applies an example
# RedisInstance and shows its phase changing live; then changes its configuration (applied at runtime, no
# restart) and shows Updating -> Running, and that Redis really runs the new value; then shows the replication (one primary, the
# other pods replicating from it), a failover after the primary's server is killed, and a primary-last rolling
# update of the image. Authentication is on by default: the demo reads the generated password from demo-auth.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
STATE=${DEVCLUSTER_DIR:-$REPO/.devcluster}

bash devcluster/cluster.sh up
eval "$(bash devcluster/cluster.sh env)"
cargo build --quiet --bin redis-operator

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing the CRDs"
kubectl apply -f crds/redisinstance.yaml -f crds/redisbackup.yaml
kubectl wait --for=condition=Established --timeout=60s crd/redisinstances.redis-operator.github.io crd/redisbackups.redis-operator.github.io

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
# An earlier run's claims are kept (whenDeleted: Retain); the demo starts from empty volumes.
kubectl -n demo delete pvc -l app.kubernetes.io/instance=demo --ignore-not-found --wait=true >/dev/null

step "applying examples/redisinstance.yaml; every status change is printed as it happens"
kubectl -n demo get ri --watch \
  -o custom-columns='NAME:.metadata.name,PHASE:.status.status,READY:.status.ready,REASON:.status.reason,MESSAGE:.status.lastConditionMessage' &
WATCH=$!
kubectl -n demo apply -f examples/redisinstance.yaml >/dev/null
kubectl -n demo wait --for=condition=Ready --timeout=180s ri/demo

step "changing the configuration (maxmemory 100mb -> 200mb): set live with CONFIG SET on every pod, no restart"
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
step "authentication is on: a password was generated into the Secret demo-auth"
FIRST_IP=$(kubectl -n demo get pod demo-0 -o jsonpath='{.status.podIP}')
printf 'PING without a password: '; redis-cli -h "$FIRST_IP" PING
REDISCLI_AUTH=$(kubectl -n demo get secret demo-auth -o jsonpath='{.data.password}' | base64 -d)
export REDISCLI_AUTH
printf 'PING with it (REDISCLI_AUTH): '; redis-cli -h "$FIRST_IP" PING
printf 'CONFIG SET as the application user: '; redis-cli -h "$FIRST_IP" CONFIG SET maxmemory 1mb
echo "status.auth: $(kubectl -n demo get ri demo -o jsonpath='{.status.auth.message}')"

step "Redis itself runs the new value (INFO memory)"
for ip in $(kubectl -n demo get pods -l app.kubernetes.io/instance=demo -o jsonpath='{.items[*].status.podIP}'); do
  printf '%s: ' "$ip"; redis-cli -h "$ip" INFO memory | grep '^maxmemory:' | tr -d '\r'
done

# The host pid of a container: the node agent reports process://PID; for a container on the real node, the
# process that is pid 1 in the container's pid namespace (redis-server), found by the container id in its cgroup.
container_pid() {
  local id=$1 f pid
  case "$id" in
    process://*) echo "${id#process://}" ;;
    containerd://*)
      id=${id#containerd://}
      for f in /proc/[0-9]*/cgroup; do
        grep -qs "$id" "$f" || continue
        pid=${f#/proc/}
        pid=${pid%/cgroup}
        [ "$(awk '/^NSpid:/ {print $NF}' "/proc/$pid/status" 2>/dev/null)" = 1 ] && { echo "$pid"; return 0; }
      done
      ;;
  esac
  echo "no process for container $1" >&2
  return 1
}
roles() {
  for pod in $(kubectl -n demo get pods -l app.kubernetes.io/instance=demo -o jsonpath='{.items[*].metadata.name}'); do
    ip=$(kubectl -n demo get pod "$pod" -o jsonpath='{.status.podIP}')
    label=$(kubectl -n demo get pod "$pod" -o jsonpath='{.metadata.labels.redis\.github\.com/role}')
    printf '%-8s label=%-8s %s\n' "$pod" "${label:-none}" "$(redis-cli -h "$ip" INFO replication | grep '^role:' | tr -d '\r')"
  done
}
step "replication: one primary, the other pods replicate from it (status.currentPrimary, role labels, INFO role)"
PRIMARY=$(kubectl -n demo get ri demo -o jsonpath='{.status.currentPrimary}')
echo "currentPrimary: $PRIMARY"
roles
PRIMARY_IP=$(kubectl -n demo get pod "$PRIMARY" -o jsonpath='{.status.podIP}')
printf 'SET greeting hello on %s, then WAIT for a replica: ' "$PRIMARY"
redis-cli -h "$PRIMARY_IP" SET greeting hello >/dev/null
redis-cli -h "$PRIMARY_IP" WAIT 1 1000

step "kill -9 the primary's redis-server: the operator fails over to the most advanced replica"
kill -9 "$(container_pid "$(kubectl -n demo get pod "$PRIMARY" \
  -o jsonpath='{.status.containerStatuses[?(@.name=="redis")].containerID}')")"
NEW=$PRIMARY
for _ in $(seq 600); do
  NEW=$(kubectl -n demo get ri demo -o jsonpath='{.status.currentPrimary}')
  [ "$NEW" != "$PRIMARY" ] && break
  sleep 0.2
done
[ "$NEW" != "$PRIMARY" ] || { echo "no failover within 120 s" >&2; exit 1; }
kubectl -n demo wait --for=condition=Ready --timeout=180s ri/demo >/dev/null
echo "currentPrimary: $PRIMARY -> $NEW"
kubectl -n demo get ri demo -o jsonpath='{range .status.history[*]}{.time}  {.from} -> {.to}  {.reason}: {.message}{"\n"}{end}' |
  grep '^[0-9]' | tail -n 4 | cut -c1-160
roles
NEW_IP=$(kubectl -n demo get pod "$NEW" -o jsonpath='{.status.podIP}')
printf 'GET greeting on the new primary %s: ' "$NEW"
redis-cli -h "$NEW_IP" GET greeting

step "changing the image: replicas are replaced one at a time, then a switchover, the old primary last"
kubectl -n demo get ri demo --watch -o custom-columns='PHASE:.status.status,REASON:.status.reason,PRIMARY:.status.currentPrimary,MESSAGE:.status.lastConditionMessage' &
WATCH=$!
# Another tag of the same locally built image (nothing can be pulled here): every pod is replaced all the same.
kubectl -n demo patch ri demo --type merge -p '{"spec":{"image":"redis:7.2-rolled"}}' >/dev/null
GEN=$(kubectl -n demo get ri demo -o jsonpath='{.metadata.generation}')
kubectl -n demo wait --for=jsonpath='{.status.observedGeneration}'="$GEN" --timeout=60s ri/demo >/dev/null
kubectl -n demo wait --for=condition=Ready --timeout=300s ri/demo >/dev/null
kill "$WATCH" 2>/dev/null || true
WATCH=""
echo "the switchover: $(kubectl -n demo get ri demo -o jsonpath='{.status.switchover}')"
kubectl -n demo get events --field-selector involvedObject.name=demo -o custom-columns='REASON:.reason,MESSAGE:.message' |
  grep -E 'RollingUpdate|Switchover' | cut -c1-160
roles
FINAL_IP=$(kubectl -n demo get pod "$(kubectl -n demo get ri demo -o jsonpath='{.status.currentPrimary}')" -o jsonpath='{.status.podIP}')
printf 'GET greeting on the primary after the rolling update: '
redis-cli -h "$FINAL_IP" GET greeting
echo
echo "The cluster stays up: export KUBECONFIG=$STATE/kubeconfig; stop it with: bash devcluster/cluster.sh down"
