#!/usr/bin/env bash
# End-to-end check of a running devcluster: the S3 store answers (smoke-s3.sh), a 2-replica Redis StatefulSet
# with persistent volumes becomes ready, serves SET/GET on its pod addresses, rolls on an image change, keeps its
# data across a pod deletion, grows its volume, and everything goes away with the namespace.
#
# Usage: devcluster/smoke.sh        (after `devcluster/cluster.sh up`; honours DEVCLUSTER_DIR)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
eval "$(bash "$REPO/devcluster/cluster.sh" env)"
export KUBECONFIG
NS=devcluster-smoke
TIMEOUT=${SMOKE_TIMEOUT:-180}

step() { echo "[smoke] $*"; }
fail() { echo "[smoke] FAILED: $*" >&2; kubectl -n "$NS" get pods -o wide >&2 || true; exit 1; }

# until_true <description> <command...>: polls (no fixed sleeps) until the command succeeds.
until_true() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    sleep 0.5
  done
}

jp() { kubectl -n "$NS" get "$1" -o "jsonpath=$2"; }
equals() { [ "$(jp "$1" "$2")" = "$3" ]; }
redis() { redis-cli -h "$(jp pod/"$1" '{.status.podIP}')" -p 6379 "${@:2}"; }
data_is() { [ "$(redis "$1" GET smoke)" = "$2" ]; }
rolled_out() {
  local sts=statefulset/redis
  [ "$(jp $sts '{.status.currentRevision}')" = "$(jp $sts '{.status.updateRevision}')" ] &&
    equals $sts '{.status.updatedReplicas}' 2 && equals $sts '{.status.readyReplicas}' 2 &&
    [ "$(kubectl -n "$NS" get pods -l app=redis -o 'jsonpath={.items[*].spec.containers[0].image}')" = "redis:7.2 redis:7.2" ]
}
namespace_gone() { ! kubectl get namespace "$NS" >/dev/null 2>&1; }

if ! namespace_gone; then
  step "removing a namespace left by an earlier run"
  kubectl delete namespace "$NS" --wait=false >/dev/null
  until_true "the old namespace to go" namespace_gone
fi

step "readyz: $(kubectl get --raw /readyz)"
step "the S3 store"
bash "$REPO/devcluster/smoke-s3.sh" || fail "the S3 store's check failed"
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: redis-config
data:
  redis.conf: |
    port 6379
    dir /data
    appendonly yes
---
apiVersion: v1
kind: Service
metadata:
  name: redis
spec:
  clusterIP: None
  selector:
    app: redis
  ports:
    - port: 6379
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: redis
spec:
  serviceName: redis
  replicas: 2
  selector:
    matchLabels:
      app: redis
  template:
    metadata:
      labels:
        app: redis
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: redis
          image: redis:7.0
          command: ["redis-server", "/etc/redis/redis.conf", "--bind", "$(POD_IP)"]
          env:
            - name: POD_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
          ports:
            - containerPort: 6379
          volumeMounts:
            - name: config
              mountPath: /etc/redis
            - name: data
              mountPath: /data
      volumes:
        - name: config
          configMap:
            name: redis-config
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: ["ReadWriteOnce"]
        storageClassName: devcluster-expandable
        resources:
          requests:
            storage: 1Gi
YAML

step "waiting for 2 ready replicas"
until_true "readyReplicas=2" equals statefulset/redis '{.status.readyReplicas}' 2
for pod in redis-0 redis-1; do
  step "$pod: $(jp pod/$pod '{.status.podIP}'), container $(jp pod/$pod '{.status.containerStatuses[0].containerID}')"
done
[ "$(jp pod/redis-0 '{.status.podIP}')" != "$(jp pod/redis-1 '{.status.podIP}')" ] || fail "pods share an address"

step "SET/GET on redis-0"
[ "$(redis redis-0 SET smoke hello)" = OK ] || fail "SET failed"
data_is redis-0 hello || fail "GET did not return the value"
[ "$(redis redis-0 CONFIG GET appendonly | tail -n 1)" = yes ] || fail "redis.conf from the ConfigMap not in use"

step "changing the image rolls the pods"
old_uid=$(jp pod/redis-0 '{.metadata.uid}')
kubectl -n "$NS" patch statefulset redis --type=json \
  -p '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"redis:7.2"}]' >/dev/null
until_true "the rollout to converge" rolled_out
[ "$(jp pod/redis-0 '{.metadata.uid}')" != "$old_uid" ] || fail "redis-0 was not replaced"
until_true "redis-0 to keep its data across the roll" data_is redis-0 hello

step "a deleted pod comes back with its data"
old_uid=$(jp pod/redis-0 '{.metadata.uid}')
kubectl -n "$NS" delete pod redis-0 --wait=false >/dev/null
new_pod_ready() {
  [ "$(jp pod/redis-0 '{.metadata.uid}')" != "$old_uid" ] && equals pod/redis-0 '{.status.conditions[?(@.type=="Ready")].status}' True
}
until_true "redis-0 to be recreated and ready" new_pod_ready
until_true "the data to survive" data_is redis-0 hello

step "expanding the claim of redis-0"
kubectl -n "$NS" patch pvc data-redis-0 -p '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}' >/dev/null
until_true "the claim capacity to grow" equals pvc/data-redis-0 '{.status.capacity.storage}' 2Gi
pv=$(jp pvc/data-redis-0 '{.spec.volumeName}')
[ "$(kubectl get pv "$pv" -o 'jsonpath={.spec.capacity.storage}')" = 2Gi ] || fail "the volume did not grow"

step "a claim of devcluster-fixed cannot grow"
kubectl -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: fixed
spec:
  accessModes: ["ReadWriteOnce"]
  storageClassName: devcluster-fixed
  resources:
    requests:
      storage: 1Gi
YAML
until_true "the fixed claim to bind" equals pvc/fixed '{.status.phase}' Bound
if kubectl -n "$NS" patch pvc fixed -p '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}' >/dev/null 2>&1; then
  fail "expanding a devcluster-fixed claim was accepted"
fi

ips=$(kubectl -n "$NS" get pods -o 'jsonpath={.items[*].status.podIP}')
step "deleting the namespace"
kubectl delete namespace "$NS" --wait=false >/dev/null
until_true "the namespace to go" namespace_gone
for ip in $ips; do
  ! redis-cli -h "$ip" -p 6379 PING >/dev/null 2>&1 || fail "a server still answers on $ip"
done

echo "1 passed, 0 failed"
