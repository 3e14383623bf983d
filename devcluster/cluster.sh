#!/usr/bin/env bash
# The local development/test cluster: etcd, kube-apiserver, kube-controller-manager (a current Kubernetes
# release and its etcd, built from Go modules by build-control-plane.sh) and a node, all as plain background
# processes with their state in one directory. The node is a real one by default: containerd, kubelet,
# kube-proxy, kube-scheduler and CoreDNS on a bridge of the cluster's own (real-node.sh); or, with
# DEVCLUSTER_NODE=agent, the devcluster node agent (pods as host processes on loopback addresses: fast, and what
# the scale benchmark's simulated pods need). Beside them an S3-compatible object store: SeaweedFS (`weed server`:
# master, volume server, filer and S3 gateway in one process, built by build-s3.sh), with authentication on.
#
# Usage: devcluster/cluster.sh up|down [--purge]|stop COMPONENT|env|status
#
# Env (defaults in brackets):
#   DEVCLUSTER_DIR               state directory [<repo>/.devcluster]
#   DEVCLUSTER_ETCD_PORT         etcd client port [2379]
#   DEVCLUSTER_ETCD_PEER_PORT    etcd peer port [2380]
#   DEVCLUSTER_APISERVER_PORT    kube-apiserver secure port [6443]
#   DEVCLUSTER_CM_PORT           kube-controller-manager secure port [10257]
#   DEVCLUSTER_NODE              real | agent: a real kubelet with containerd, or the node agent [real]
#   DEVCLUSTER_NODE_NAME         the node's name [devcluster]
#   DEVCLUSTER_POD_CIDR_PREFIX   pods get 127.N.x.y addresses from this /16 [127.1]
#   DEVCLUSTER_SERVICE_CIDR      service cluster IP range [agent: 10.0.0.0/24, never routed; real: 10.96.0.0/16,
#                                routed to the cluster's bridge only]
#   DEVCLUSTER_POD_MODE          process | simulated [process]
#   DEVCLUSTER_RESTART_BACKOFF   first crash-loop restart delay, seconds [10]
#   DEVCLUSTER_VOLUME_REFRESH    seconds between the node agent's refreshes of a running pod's ConfigMap and Secret
#                                volumes, one GET per source each time [2; the kubelet takes about a minute]
#   DEVCLUSTER_READINESS         exec | ping: the node agent runs each pod's exec readiness probe, or PINGs the pod
#                                at the probe's period instead (the large-N benchmark) [exec]
#   DEVCLUSTER_K8S               newest | oldest supported Kubernetes release [newest]
#   DEVCLUSTER_K8S_VERSION       an exact release instead, e.g. v1.36.3
#   DEVCLUSTER_CACHE             control plane and SeaweedFS build cache [/var/cache/redis-operator-devcluster]
#   DEVCLUSTER_S3_PORT           the S3 endpoint's port [the API server port + 1100, 7543 by default]; SeaweedFS takes
#                                the seven after it too: PORT+1..+3 its master, volume server and filer, PORT+4..+7
#                                the gRPC ports of the S3 gateway, master, volume server and filer. The S3 port and
#                                its gRPC port listen on the API server's address (the node's bridge address with a
#                                real node, so pods reach it; 127.0.0.1 with the agent), the rest on 127.0.0.1.
# A second cluster side by side needs its own DEVCLUSTER_DIR, all four ports and a pod CIDR prefix (a real
# node also its own bridge, pod and Service ranges and kubelet port: see real-node.sh); its own API server port
# moves its S3 ports along unless DEVCLUSTER_S3_PORT is set.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${DEVCLUSTER_DIR:-$REPO/.devcluster}
ETCD_PORT=${DEVCLUSTER_ETCD_PORT:-2379}
ETCD_PEER_PORT=${DEVCLUSTER_ETCD_PEER_PORT:-2380}
APISERVER_PORT=${DEVCLUSTER_APISERVER_PORT:-6443}
CM_PORT=${DEVCLUSTER_CM_PORT:-10257}
NODE_NAME=${DEVCLUSTER_NODE_NAME:-devcluster}
POD_CIDR_PREFIX=${DEVCLUSTER_POD_CIDR_PREFIX:-127.1}
# The node kind a cluster was created with is kept, so `down` and `status` need no setting.
NODE_MODE=${DEVCLUSTER_NODE:-$(cat "$DIR/node-mode" 2>/dev/null || echo real)}
case "$NODE_MODE" in
  agent) SERVICE_CIDR=${DEVCLUSTER_SERVICE_CIDR:-10.0.0.0/24} ;;
  real) SERVICE_CIDR=${DEVCLUSTER_SERVICE_CIDR:-10.96.0.0/16} ;;
  *) echo "DEVCLUSTER_NODE must be agent or real" >&2; exit 2 ;;
esac
CACHE_ROOT=${DEVCLUSTER_CACHE:-/var/cache/redis-operator-devcluster}
POD_MODE=${DEVCLUSTER_POD_MODE:-process}
RESTART_BACKOFF=${DEVCLUSTER_RESTART_BACKOFF:-10}
READINESS=${DEVCLUSTER_READINESS:-exec}
VOLUME_REFRESH=${DEVCLUSTER_VOLUME_REFRESH:-2}

PKI=$DIR/pki
LOGS=$DIR/logs
RUN=$DIR/run
KUBECONFIG_FILE=$DIR/kubeconfig
COMPONENTS=(etcd kube-apiserver kube-controller-manager node-agent)
API_HOST=127.0.0.1
if [ "$NODE_MODE" = real ]; then
  # shellcheck source=devcluster/real-node.sh
  source "$REPO/devcluster/real-node.sh"
  read -r -a COMPONENTS <<<"$(real_components)"
  # Pods reach the API server through the `kubernetes` Service: it listens on the node's bridge address.
  API_HOST=$NODE_IP
fi
# The S3 endpoint: where the API server listens, which host processes and pods both reach.
COMPONENTS+=(s3)
S3_HOST=$API_HOST
S3_PORT=${DEVCLUSTER_S3_PORT:-$((APISERVER_PORT + 1100))}
S3_REGION=us-east-1
S3_DIR=$DIR/s3
case "$S3_PORT" in '' | *[!0-9]*) echo "DEVCLUSTER_S3_PORT must be a port number" >&2; exit 2 ;; esac
if [ "$S3_PORT" -lt 1024 ] || [ $((S3_PORT + 7)) -gt 65535 ]; then
  echo "the S3 ports $S3_PORT..$((S3_PORT + 7)) must lie within 1024..65535: set DEVCLUSTER_S3_PORT" >&2; exit 2
fi

log() { echo "[devcluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------------------------
# Processes: pid files in $RUN, logs in $LOGS.

# Prints the pid of a running component, or fails.
running_pid() {
  local name=$1 pid
  [ -f "$RUN/$name.pid" ] || return 1
  pid=$(cat "$RUN/$name.pid")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name" || return 1
  echo "$pid"
}

start() {
  local name=$1; shift
  if running_pid "$name" >/dev/null; then return 0; fi
  log "starting $name"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# stop <component> [grace seconds]: SIGTERM, then SIGKILL after the grace period.
stop() {
  local name=$1 grace=${2:-30} pid
  pid=$(running_pid "$name") || { rm -f "$RUN/$name.pid"; return 0; }
  log "stopping $name ($pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + grace))
  while [ -d "/proc/$pid" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if [ -d "/proc/$pid" ]; then
    log "$name did not stop in time; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

# Pod processes whose pid file the agent left behind (it normally stops them itself on SIGTERM).
stop_pod_processes() {
  local pid start now_start
  for f in "$DIR"/pods/*/pid; do
    [ -f "$f" ] || continue
    read -r pid start <"$f" || continue
    now_start=$(awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$pid/stat" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$now_start" = "$start" ]; then
      log "killing leftover pod process $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

# Polls a command until it succeeds or the timeout (seconds) passes.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then die "timed out after ${timeout}s waiting for $what (logs: $LOGS)"; fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------------------------
# Installation.

apt_updated=""
install_packages() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}) and not root"
  if [ -z "$apt_updated" ]; then apt-get update -qq >&2; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  stop_package_services
}

# The packages' own services would hold 2379, 6379 and 9121 (on every address, so no pod's exporter could
# listen); the cluster runs its own processes.
# Only a service that is actually running is stopped, and through its own pid file: the init scripts stop by
# executable name and would kill every etcd on the machine, including other devclusters'.
stop_package_services() {
  local service pidfile pid
  for service in etcd redis-server prometheus-redis-exporter; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
    for pidfile in "/run/$service.pid" "/run/$service/$service.pid" "/run/redis/$service.pid"; do
      [ -f "$pidfile" ] || continue
      pid=$(cat "$pidfile" 2>/dev/null)
      [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
  done
}

# port_busy PORT [HOST, 127.0.0.1 by default]
port_busy() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# Before starting a component: its port must be free (a system service may hold it).
ensure_port_free() {
  local name=$1 port=$2
  running_pid "$name" >/dev/null && return 0
  port_busy "$port" || return 0
  log "port $port (for $name) is taken; stopping the etcd/redis system services"
  stop_package_services
  local deadline=$((SECONDS + 10))
  while port_busy "$port" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  ! port_busy "$port" || die "port $port needed by $name is in use; choose another with DEVCLUSTER_*_PORT"
}

install_prerequisites() {
  install_packages redis-server redis-tools openssl curl util-linux prometheus-redis-exporter
  # The other servers of the support matrix (Valkey 9.1, Redis 6.2), for the Valkey image, the node agent's
  # Valkey pods and the Redis-level tests.
  bash "$REPO/devcluster/servers.sh" install
}

# The control plane binaries (etcd, kube-apiserver, kube-controller-manager, kubectl) of the chosen release,
# copied next to the state so `env` can put this release's kubectl first on PATH.
install_control_plane() {
  local cache
  cache=$("$REPO/devcluster/build-control-plane.sh")
  # etcd cannot go back to an older data format: one state directory serves one release.
  local release
  release=$(basename "$(dirname "$cache")")
  if [ ! -f "$DIR/release" ] && [ -d "$DIR/etcd" ]; then
    die "$DIR holds a cluster of an earlier devcluster (Kubernetes 1.20): \`$0 down --purge\` first"
  elif [ -f "$DIR/release" ] && [ "$(cat "$DIR/release")" != "$release" ]; then
    die "$DIR holds a cluster of $(cat "$DIR/release"), not $release: use another DEVCLUSTER_DIR, or \`$0 down --purge\` first"
  fi
  echo "$release" >"$DIR/release"
  mkdir -p "$DIR/bin"
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    [ -x "$cache/$b" ] || die "build-control-plane.sh did not produce $b"
    if ! cmp -s "$cache/$b" "$DIR/bin/$b"; then
      if running_pid "$b" >/dev/null; then die "$b of another release is running; run \`$0 down\` first"; fi
      cp "$cache/$b" "$DIR/bin/$b.tmp" && mv "$DIR/bin/$b.tmp" "$DIR/bin/$b"
    fi
  done
}

# helm, for the install suite's Helm install and the chart's lint and rendering checks: built once from Go modules
# (Debian has none) into the cache, copied next to kubectl.
HELM_VERSION=v4.3.2
install_helm() {
  local cache=$CACHE_ROOT/helm-$HELM_VERSION
  if [ ! -x "$cache/helm" ]; then
    log "building helm $HELM_VERSION from Go modules"
    mkdir -p "$cache"
    GOBIN=$cache GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2 ||
      die "cannot build helm $HELM_VERSION"
  fi
  if ! cmp -s "$cache/helm" "$DIR/bin/helm"; then
    cp "$cache/helm" "$DIR/bin/helm.tmp" && mv "$DIR/bin/helm.tmp" "$DIR/bin/helm"
  fi
}

build_agent() {
  local binary=${CARGO_TARGET_DIR:-$REPO/target}/debug/node-agent
  if [ ! -x "$binary" ] || [ -n "$(find "$REPO/devcluster/node-agent" "$REPO/Cargo.lock" -newer "$binary" -type f 2>/dev/null | head -n 1)" ]; then
    log "building the node agent"
    (cd "$REPO" && cargo build -p node-agent >&2)
  fi
  mkdir -p "$DIR/bin"
  # A private copy, so a rebuild in the shared target dir never swaps the binary under a running agent.
  if ! cmp -s "$binary" "$DIR/bin/node-agent"; then
    cp "$binary" "$DIR/bin/node-agent.tmp" && mv "$DIR/bin/node-agent.tmp" "$DIR/bin/node-agent"
  fi
}

# ---------------------------------------------------------------------------------------------------------------
# Generated configuration (each file only when absent, so `up` is idempotent and restarts keep the identity).

first_service_ip() {
  local network=${SERVICE_CIDR%/*}
  echo "${network%.*}.$((${network##*.} + 1))"
}

generate_pki() {
  mkdir -p "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    log "generating certificates"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=devcluster-ca" \
      -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  fi
  if [ ! -f "$PKI/apiserver.crt" ]; then
    local sans="IP:127.0.0.1,DNS:localhost,IP:$(first_service_ip),DNS:kubernetes,DNS:kubernetes.default"
    [ "$API_HOST" = 127.0.0.1 ] || sans="$sans,IP:$API_HOST"
    sans="$sans,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign_cert apiserver "/CN=kube-apiserver" "subjectAltName=$sans
extendedKeyUsage=serverAuth"
  fi
  if [ ! -f "$PKI/controller-manager.crt" ]; then
    # The controller-manager authenticates with a client certificate; system:masters because it runs every
    # controller under its own identity (--use-service-account-credentials=false).
    sign_cert controller-manager "/O=system:masters/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  fi
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  chmod 600 "$PKI"/*.key
}

sign_cert() {
  local name=$1 subject=$2 extensions=$3
  openssl req -new -newkey rsa:2048 -nodes -subj "$subject" -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
    -extfile <(echo "$extensions") -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

generate_tokens() {
  [ -f "$PKI/tokens.csv" ] && return 0
  {
    echo "$(openssl rand -hex 24),admin,admin,\"system:masters\""
    echo "$(openssl rand -hex 24),node-agent,node-agent,\"system:masters\""
    echo "$(openssl rand -hex 24),redis-operator,redis-operator,\"system:masters\""
  } >"$PKI/tokens.csv"
  chmod 600 "$PKI/tokens.csv"
}

token_of() { awk -F, -v user="$1" '$2 == user { print $1 }' "$PKI/tokens.csv"; }

generate_audit_policy() {
  # Only what tests count stays: requests of `redis-operator`, of ServiceAccounts and of people (`admin`).
  cat >"$DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy", "system:apiserver",
            "system:anonymous"]
  - level: None
    userGroups: ["system:nodes"]
  - level: None
    users: ["node-agent"]
    verbs: ["get", "list", "watch"]
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version"]
  - level: Metadata
EOF
}

# kubeconfig <file> <default context> <user>...
write_kubeconfig() {
  local file=$1 current=$2; shift 2
  local ca user
  ca=$(base64 -w0 <"$PKI/ca.crt")
  {
    echo "apiVersion: v1"
    echo "kind: Config"
    echo "clusters:"
    echo "- name: devcluster"
    echo "  cluster:"
    echo "    server: https://$API_HOST:$APISERVER_PORT"
    echo "    certificate-authority-data: $ca"
    echo "users:"
    for user in "$@"; do
      echo "- name: $user"
      echo "  user:"
      if [ -f "$PKI/$user.crt" ]; then
        echo "    client-certificate: $PKI/$user.crt"
        echo "    client-key: $PKI/$user.key"
      else
        echo "    token: $(token_of "$user")"
      fi
    done
    echo "contexts:"
    for user in "$@"; do
      echo "- name: $user"
      echo "  context:"
      echo "    cluster: devcluster"
      echo "    user: $user"
      echo "    namespace: default"
    done
    echo "current-context: $current"
  } >"$file.tmp"
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

generate_config() {
  mkdir -p "$DIR" "$LOGS" "$RUN"
  generate_pki
  generate_tokens
  generate_audit_policy
  # Rewritten every time: the port may differ from the previous run.
  write_kubeconfig "$KUBECONFIG_FILE" admin admin redis-operator
  write_kubeconfig "$DIR/node-agent.kubeconfig" node-agent node-agent
  write_kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager controller-manager
  [ -f "$DIR/cluster-id" ] || openssl rand -hex 6 >"$DIR/cluster-id"
  generate_s3_config
  if [ "$NODE_MODE" = real ]; then generate_real_config; fi
  echo "$NODE_MODE" >"$DIR/node-mode"
  if [ "$NODE_MODE" = real ]; then echo "$NETWORK_POLICY" >"$DIR/network-policy"; fi
}

# ---------------------------------------------------------------------------------------------------------------
# Readiness checks.

apiserver_ready() {
  [ "$(curl -sf --max-time 2 --cacert "$PKI/ca.crt" "https://$API_HOST:$APISERVER_PORT/readyz" 2>/dev/null)" = ok ]
}

etcd_ready() {
  curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}

kubectl_admin() { "$DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE" --context admin "$@"; }

# An API server that got SIGTERM keeps its pid for up to a minute while it drains and then exits; `up` must not
# mistake it for a running one. One that is alive but not ready is stopped and started anew (etcd holds all
# state, so nothing is lost).
apiserver_unready_for() {
  local seconds=$1 deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    apiserver_ready && return 1
    sleep 0.5
  done
  return 0
}

# Pods get their token from the TokenRequest API; the ServiceAccount and the root CA ConfigMap they mount must exist.
default_service_account_ready() {
  kubectl_admin -n default get serviceaccount default -o name &&
    kubectl_admin -n default get configmap kube-root-ca.crt -o name
}

node_ready() {
  [ "$(kubectl_admin get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# The agent writes its pid into node-agent.ready once registered and rid of earlier pod processes.
agent_ready() {
  local pid
  pid=$(running_pid node-agent) && [ "$(cat "$DIR/node-agent.ready" 2>/dev/null)" = "$pid" ]
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do running_pid "$c" >/dev/null || return 1; done
}

# ---------------------------------------------------------------------------------------------------------------
# The S3 store: SeaweedFS's `weed server` with its master, one volume server, the filer (its metadata in LevelDB)
# and the S3 gateway in one process, data under $S3_DIR, one admin identity whose keys are generated once.

# Writes stdin to FILE, readable by its owner only, in one rename.
write_private() {
  (umask 077 && cat >"$1.tmp") && chmod 600 "$1.tmp" && mv "$1.tmp" "$1"
}

generate_s3_config() {
  mkdir -p "$S3_DIR/data"
  chmod 700 "$S3_DIR"
  if [ ! -f "$S3_DIR/credentials" ]; then
    log "generating S3 credentials"
    echo "$(openssl rand -hex 10 | tr a-f A-F) $(openssl rand -hex 20)" | write_private "$S3_DIR/credentials"
  fi
  local key secret
  read -r key secret <"$S3_DIR/credentials"
  # SeaweedFS's static identities (-s3.config): with one configured, every request must be signed by it.
  [ -f "$S3_DIR/identities.json" ] || write_private "$S3_DIR/identities.json" <<EOF
{
  "identities": [
    {
      "name": "devcluster-admin",
      "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
  # One volume per new collection (each bucket is one) instead of seven.
  printf '[master.volume_growth]\ncopy_1 = 1\n' >"$S3_DIR/master.toml"
  # Rewritten every time: the address or port may differ from the previous run. `env` prints it.
  write_private "$S3_DIR/env" <<EOF
DEVCLUSTER_S3_ENDPOINT=http://$S3_HOST:$S3_PORT
DEVCLUSTER_S3_ACCESS_KEY_ID=$key
DEVCLUSTER_S3_SECRET_ACCESS_KEY=$secret
DEVCLUSTER_S3_REGION=$S3_REGION
EOF
}

# The S3 port and the S3 gateway's gRPC port (PORT+4) listen on $S3_HOST, the others on 127.0.0.1.
s3_port_host() { case $1 in 0 | 4) echo "$S3_HOST" ;; *) echo 127.0.0.1 ;; esac; }

ensure_s3_ports_free() {
  running_pid s3 >/dev/null && return 0
  local i
  for i in 0 1 2 3 4 5 6 7; do
    ! port_busy $((S3_PORT + i)) "$(s3_port_host $i)" ||
      die "port $((S3_PORT + i)) on $(s3_port_host $i), needed by s3 (it takes DEVCLUSTER_S3_PORT..+7, now $S3_PORT..$((S3_PORT + 7))), is in use; choose others with DEVCLUSTER_S3_PORT"
  done
}

# Small and quiet: no preallocation, 64 MB volumes, one volume server, no telemetry, no Iceberg or Lance
# endpoints; GOMEMLIMIT keeps the Go heap near 64 MiB (idle RSS otherwise doubles after a few uploads).
start_s3() {
  local weed=$1
  ensure_s3_ports_free
  start s3 env GOMEMLIMIT=64MiB "$weed" -config_dir="$S3_DIR" server -dir="$S3_DIR/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.ip.bind="$S3_HOST" \
    -master.port=$((S3_PORT + 1)) -master.port.grpc=$((S3_PORT + 5)) \
    -volume.port=$((S3_PORT + 2)) -volume.port.grpc=$((S3_PORT + 6)) \
    -filer.port=$((S3_PORT + 3)) -filer.port.grpc=$((S3_PORT + 7)) \
    -s3 -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 4)) -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$S3_DIR/identities.json" \
    -master.volumeSizeLimitMB=64 -master.volumePreallocate=false -volume.max=0 -volume.preStopSeconds=0 \
    -master.telemetry=false -metricsPort=0
}

# The HTTP status of a ListBuckets request signed with the admin keys (handed to curl on stdin, not on its
# command line).
s3_status() {
  local key secret
  read -r key secret <"$S3_DIR/credentials" || return 1
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 --aws-sigv4 "aws:amz:$S3_REGION:s3" -K - \
    "http://$S3_HOST:$S3_PORT/" <<<"user = \"$key:$secret\"" || true
}
s3_ready() { [ "$(s3_status)" = 200 ]; }

s3_failed() {
  log "s3 $1; the end of $LOGS/s3.log:"
  tail -n 30 "$LOGS/s3.log" >&2 || true
  die "the S3 store is not ready (http://$S3_HOST:$S3_PORT)"
}

# Until a signed request is answered (the gateway starts a few seconds after the process, once the filer runs),
# and an unsigned one refused.
wait_s3_ready() {
  local deadline=$((SECONDS + 60))
  until s3_ready; do
    running_pid s3 >/dev/null || s3_failed "exited"
    [ $SECONDS -lt $deadline ] || s3_failed "answered no signed request within 60 s (last status: $(s3_status))"
    sleep 0.2
  done
  local anonymous
  anonymous=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$S3_HOST:$S3_PORT/" || true)
  [ "$anonymous" = 403 ] || s3_failed "answered an unsigned request with $anonymous, not 403"
}

# weed's shutdown stops its volume server first; a filer with metadata-log entries not yet flushed (it flushes
# once a minute) then retries for 15 s before it gives up. Objects and metadata are on disk already (LevelDB's
# journal), so the wait is cut short. The unix sockets it keeps in /tmp (named by its ports) go with it.
stop_s3() {
  stop s3 5
  local name
  for name in s3-$S3_PORT filer-$((S3_PORT + 3)) s3-grpc-$((S3_PORT + 4)) master-grpc-$((S3_PORT + 5)) \
    volume-grpc-$((S3_PORT + 6)) filer-grpc-$((S3_PORT + 7)); do
    rm -f "/tmp/seaweedfs-$name.sock"
  done
}

# ---------------------------------------------------------------------------------------------------------------
# Commands.

cmd_up() {
  if [ -f "$KUBECONFIG_FILE" ] && all_running && apiserver_ready && node_ready 2>/dev/null; then
    # Images whose inputs changed since (a new tag, a newer package) are built and imported again.
    if [ "$NODE_MODE" = real ]; then "$REPO/devcluster/images.sh" import "$CONTAINERD_SOCKET" >&2; fi
    cmd_env
    return 0
  fi
  # A half-started cluster is torn down, not left running.
  trap 'status=$?; if [ $status -ne 0 ]; then log "up failed: stopping what was started"; cmd_down; fi' EXIT
  install_prerequisites
  if [ "$NODE_MODE" = real ]; then
    [ -f "$DIR/node-mode" ] && [ "$(cat "$DIR/node-mode")" != real ] &&
      die "$DIR holds a cluster with the node agent: use another DEVCLUSTER_DIR, or \`$0 down --purge\` first"
    real_prerequisites
    # The bridge (and with it the node IP the API server listens on) and the Service route come first.
    real_network_up
  fi
  generate_config
  if running_pid kube-apiserver >/dev/null && apiserver_unready_for 3; then
    log "the API server runs but is not ready (shutting down?); stopping it before starting a new one"
    stop kube-apiserver 5
  fi
  install_control_plane
  install_helm
  local bin=$DIR/bin
  build_agent
  if [ "$NODE_MODE" = real ]; then install_crictl; install_kube_router; fi
  local weed
  weed=$("$REPO/devcluster/build-s3.sh")
  local cluster_id
  cluster_id=$(cat "$DIR/cluster-id")

  ensure_port_free etcd "$ETCD_PORT"
  ensure_port_free etcd "$ETCD_PEER_PORT"
  ensure_port_free kube-apiserver "$APISERVER_PORT"
  ensure_port_free kube-controller-manager "$CM_PORT"
  start etcd "$bin/etcd" --name devcluster --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "devcluster=http://127.0.0.1:$ETCD_PEER_PORT" \
    --quota-backend-bytes 4294967296 --auto-compaction-retention 1h
  wait_for etcd 60 etcd_ready

  local node_flags=(--endpoint-reconciler-type=none)
  if [ "$NODE_MODE" = real ]; then
    # The `kubernetes` Service's endpoint is the bridge address; the API server reaches kubelets for logs/exec.
    node_flags=(--endpoint-reconciler-type=lease --kubelet-preferred-address-types=InternalIP
      --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt"
      --kubelet-client-key="$PKI/apiserver-kubelet-client.key" --kubelet-certificate-authority="$PKI/ca.crt")
  fi
  start kube-apiserver "$bin/kube-apiserver" \
    --bind-address="$API_HOST" --advertise-address="$API_HOST" --secure-port="$APISERVER_PORT" \
    "${node_flags[@]}" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" --etcd-prefix="/registry-$cluster_id" \
    --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --audit-log-path="$DIR/audit.log" --audit-policy-file="$DIR/audit-policy.yaml" \
    --audit-log-maxsize=200 --audit-log-maxbackup=2 \
    --profiling=false
  wait_for kube-apiserver 120 apiserver_ready
  # Independent of the rest; it is waited for at the end.
  start_s3 "$weed"

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$DIR/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$CM_PORT" \
    --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-name=devcluster \
    --controllers='*,-persistentvolume-expander-controller,-persistentvolume-attach-detach-controller,-certificatesigningrequest-signing-controller,-certificatesigningrequest-approving-controller,-certificatesigningrequest-cleaner-controller,-horizontal-pod-autoscaler-controller,-node-ipam-controller'

  local agent_mode=$POD_MODE
  if [ "$NODE_MODE" = real ]; then
    start_real_node
    # The agent only provisions and expands volumes beside the real kubelet.
    agent_mode=storage-only
  fi
  if ! running_pid node-agent >/dev/null; then
    rm -f "$DIR/node-agent.ready"
    start node-agent env KUBECONFIG="$DIR/node-agent.kubeconfig" "$DIR/bin/node-agent" \
      --node-name "$NODE_NAME" --state-dir "$DIR" --pod-cidr-prefix "$POD_CIDR_PREFIX" \
      --restart-backoff-seconds "$RESTART_BACKOFF" --pod-mode "$agent_mode" --readiness "$READINESS" \
      --volume-refresh-seconds "$VOLUME_REFRESH"
    # Registered, and pod processes of an earlier run are gone, before `up` returns.
    wait_for "the node agent to serve the node" 60 agent_ready
  fi
  wait_for "the default ServiceAccount and its token" 120 default_service_account_ready
  wait_for "node $NODE_NAME to be Ready" 120 node_ready
  if [ "$NODE_MODE" = real ]; then start_network_policy; real_addons; fi
  wait_s3_ready
  trap - EXIT
  log "cluster is up"
  cmd_env
}

cmd_down() {
  local purge=${1:-}
  stop node-agent
  if [ "$NODE_MODE" = real ]; then stop_real_node; else stop_pod_processes; fi
  # Beside the control plane: its stop can take its whole grace period.
  stop_s3 &
  local s3_stopping=$!
  stop kube-controller-manager
  # Its graceful shutdown waits up to a minute for open watches; etcd holds all state, so cut it short.
  stop kube-apiserver 5
  stop etcd
  wait "$s3_stopping" || true
  if [ "$purge" = --purge ]; then
    if [ "$NODE_MODE" = real ]; then real_network_down; fi
    log "deleting $DIR"
    rm -rf "$DIR"
  fi
}

cmd_env() {
  # kubectl's discovery cache is the cluster's own (kept in its state directory, gone with `down`): the one under
  # ~/.kube/cache outlives a cluster and is keyed by the API server's address, which every lab cluster shares.
  echo "export KUBECONFIG=$KUBECONFIG_FILE PATH=$DIR/bin:\$PATH KUBECACHEDIR=$DIR/kube-cache"
  # The S3 store's endpoint and keys, as `up` last wrote them.
  if [ -f "$S3_DIR/env" ]; then sed 's/^/export /' "$S3_DIR/env"; fi
}

cmd_status() {
  local c pid state=0
  for c in "${COMPONENTS[@]}"; do
    if pid=$(running_pid "$c"); then
      printf '%-24s running (pid %s, log %s)\n' "$c" "$pid" "$LOGS/$c.log"
    else
      printf '%-24s stopped\n' "$c"
      state=1
    fi
  done
  if apiserver_ready; then echo "apiserver: https://$API_HOST:$APISERVER_PORT ready"; fi
  if [ -f "$S3_DIR/credentials" ] && s3_ready; then echo "s3: http://$S3_HOST:$S3_PORT ready (keys: $S3_DIR/env)"; fi
  echo "state dir: $DIR"
  return $state
}

# stop COMPONENT: stops one component (e.g. the kubelet, a node failure for a test); `up` starts it again.
cmd_stop() {
  local c
  for c in "${COMPONENTS[@]}"; do
    if [ "$c" = "${1:-}" ]; then
      if [ "$c" = s3 ]; then stop_s3; else stop "$c"; fi
      return 0
    fi
  done
  die "no component ${1:-} (one of: ${COMPONENTS[*]})"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down [--purge]|stop COMPONENT|env|status" >&2; exit 2 ;;
esac
