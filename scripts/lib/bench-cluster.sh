# Shared by the benchmark scripts (bench.sh, bench-failover.sh, bench-rollout.sh); sourced, not run. The caller
# sets LOG_TAG and REPO (the repository root, its working directory) first, then calls private_cluster.

TARGET=${CARGO_TARGET_DIR:-$REPO/target}

log() { echo "[$LOG_TAG] $*" >&2; }

# Exports the private cluster's DEVCLUSTER_* settings: the environment's where set, else the script's defaults
# (the node agent, unless DEVCLUSTER_NODE says otherwise).
# Usage: private_cluster DIR ETCD_PORT ETCD_PEER_PORT APISERVER_PORT CM_PORT POD_CIDR_PREFIX POD_MODE
private_cluster() {
  export DEVCLUSTER_NODE=${DEVCLUSTER_NODE:-agent}
  export DEVCLUSTER_DIR=${DEVCLUSTER_DIR:-$1}
  export DEVCLUSTER_ETCD_PORT=${DEVCLUSTER_ETCD_PORT:-$2}
  export DEVCLUSTER_ETCD_PEER_PORT=${DEVCLUSTER_ETCD_PEER_PORT:-$3}
  export DEVCLUSTER_APISERVER_PORT=${DEVCLUSTER_APISERVER_PORT:-$4}
  export DEVCLUSTER_CM_PORT=${DEVCLUSTER_CM_PORT:-$5}
  export DEVCLUSTER_POD_CIDR_PREFIX=${DEVCLUSTER_POD_CIDR_PREFIX:-$6}
  export DEVCLUSTER_POD_MODE=$7
}

# Waits while /tmp/heavy.lock exists (someone runs a heavy job on this machine); $1 says before what.
wait_heavy_lock() {
  while [ -e /tmp/heavy.lock ]; do
    log "/tmp/heavy.lock exists: waiting (before $1)"
    sleep 30
  done
}

# Builds the operator and the benchmark with --release.
build_release() {
  wait_heavy_lock "the release build"
  log "building the operator and the benchmark (release)"
  cargo build --release --quiet -p redis-operator -p redis-operator-bench --bin redis-operator --bin redis-operator-bench
}

# Stops the cluster, or keeps it with BENCH_KEEP_CLUSTER set.
stop_cluster() {
  if [ -n "${BENCH_KEEP_CLUSTER:-}" ]; then
    log "keeping the cluster: DEVCLUSTER_DIR=$DEVCLUSTER_DIR (stop: bash devcluster/cluster.sh down --purge with the same env)"
  else
    bash devcluster/cluster.sh down --purge
  fi
}

# Starts a fresh private cluster (the audit log and etcd start empty), copies the binaries into it (so a concurrent rebuild never swaps one under
# the run) and installs the CRD. Sets KUBECONFIG_FILE and SERVER_VERSION and puts the cluster's bin on PATH.
# The caller sets its EXIT trap (which should call stop_cluster) before.
start_cluster() {
  wait_heavy_lock "starting the cluster"
  bash devcluster/cluster.sh down --purge >/dev/null 2>&1 || true
  bash devcluster/cluster.sh up >/dev/null
  KUBECONFIG_FILE=$DEVCLUSTER_DIR/kubeconfig
  export PATH=$DEVCLUSTER_DIR/bin:$PATH
  SERVER_VERSION=$(kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin version -o json |
    sed -n '/serverVersion/,/}/s/.*"gitVersion": "\(.*\)".*/\1/p')
  log "Kubernetes server $SERVER_VERSION"

  mkdir -p "$DEVCLUSTER_DIR/bin"
  cp "$TARGET/release/redis-operator" "$DEVCLUSTER_DIR/bin/redis-operator"
  cp "$TARGET/release/redis-operator-bench" "$DEVCLUSTER_DIR/bin/redis-operator-bench"

  log "installing the CRDs"
  kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin apply -f crds/redisinstance.yaml \
    -f crds/redisbackup.yaml >/dev/null
  kubectl --kubeconfig "$KUBECONFIG_FILE" --context admin wait --for=condition=Established --timeout=60s \
    crd/redisinstances.redis-operator.github.io crd/redisbackups.redis-operator.github.io >/dev/null
}

# Sets NODE_DESCRIBE, the report's --describe lines for the node, its pods and the writer's path (BENCH_VIA);
# after start_cluster (SERVER_VERSION).
node_describe() {
  if [ "$DEVCLUSTER_NODE" = real ]; then
    NODE_DESCRIBE=(--describe "node=real: kubelet, kube-proxy (iptables) and kube-scheduler $SERVER_VERSION, containerd $(containerd --version | cut -d' ' -f3), runc; pods are containers of the locally built image (Debian's redis-server $(dpkg-query -W -f='${Version}' redis-server)); the kubelet's exec readiness probe every 5 s"
      --describe "control plane=Kubernetes $SERVER_VERSION (etcd, kube-apiserver, kube-controller-manager from devcluster/)")
  else
    NODE_DESCRIBE=(--describe "pod mode=process (each pod is a real redis-server, $(redis-server --version | cut -d' ' -f1-3), whatever the image tag)"
      --describe "control plane=Kubernetes $SERVER_VERSION (etcd, kube-apiserver, kube-controller-manager from devcluster/) on loopback"
      --describe "node agent=readiness: the exec probe every 1 s; first restart of a killed server after ${DEVCLUSTER_RESTART_BACKOFF} s (DEVCLUSTER_RESTART_BACKOFF)")
  fi
  NODE_DESCRIBE+=(--describe "writer=${BENCH_VIA:-pod-ip}: SET + WAIT 1 1000 to the pod carrying the primary label$([ "${BENCH_VIA:-pod-ip}" = service ] && echo ", through the instance's Service (ClusterIP, kube-proxy)" || echo ", by its IP")")
}
