# shellcheck shell=bash
# The real node of the devcluster (DEVCLUSTER_NODE=real), sourced by cluster.sh: containerd with runc, the CNI
# bridge, kubelet, kube-proxy and kube-scheduler of the control plane's release, CoreDNS as the cluster DNS, and
# the images built by images.sh. The node agent stays only as the storage provisioner (--pod-mode storage-only).
#
# The network lives on this machine only:
# - pods get addresses from POD_CIDR on the bridge BRIDGE, whose first address is the node's IP (the kubelet
#   refuses a loopback node IP); the API server listens there too, so pods reach it through the `kubernetes`
#   Service;
# - the Service range is routed to the bridge before anything starts, so a packet sent to a ClusterIP before
#   kube-proxy's rules exist goes nowhere instead of out of the machine;
# - no masquerading, and a mangle-table rule drops every forwarded packet that enters or leaves the bridge
#   through another interface: pods reach each other, the node and Services, nothing else;
# - containerd reaches no registry (its proxy is a closed loopback port): every image is imported;
# - CoreDNS answers for cluster.local only and forwards nothing.
#
# Settings (cluster.sh documents the rest):
#   DEVCLUSTER_BRIDGE        the cluster's bridge [dcbr0]
#   DEVCLUSTER_POD_CIDR      pod range on the bridge; its first address is the node IP [10.244.0.0/16]
#   DEVCLUSTER_KUBELET_PORT  kubelet API port on the node IP [10250]; healthz, kube-proxy and scheduler ports
#                            are derived from it (+1, +2, +3, +4; kube-router's health port +5)
#   DEVCLUSTER_NETWORK_POLICY  kube-router | none: whether NetworkPolicies are enforced, by kube-router's network
#                            policy controller alone (iptables and ipset; no routing, no service proxy) [kube-router]

BRIDGE=${DEVCLUSTER_BRIDGE:-dcbr0}
POD_CIDR=${DEVCLUSTER_POD_CIDR:-10.244.0.0/16}
KUBELET_PORT=${DEVCLUSTER_KUBELET_PORT:-10250}
NODE_IP=$(
  base=${POD_CIDR%/*}
  echo "${base%.*}.$((${base##*.} + 1))"
)
POD_PREFIX_LEN=${POD_CIDR#*/}
DNS_IP=$(
  network=${SERVICE_CIDR%/*}
  echo "${network%.*}.$((${network##*.} + 10))"
)
# Sockets live under /run: unix socket paths are limited to 108 bytes and a clone may sit deep.
RUNTIME_DIR=/run/redis-operator-devcluster/$(echo "$DIR" | sha256sum | cut -c1-12)
CONTAINERD_SOCKET=$RUNTIME_DIR/containerd.sock

NETWORK_POLICY=${DEVCLUSTER_NETWORK_POLICY:-$(cat "$DIR/network-policy" 2>/dev/null || echo kube-router)}
case "$NETWORK_POLICY" in none | kube-router) ;; *) echo "DEVCLUSTER_NETWORK_POLICY must be none or kube-router" >&2; exit 2 ;; esac
# kube-router's release that the Go module proxy serves; v2.1.0 has reported security flaws, accepted here
# because it runs only on this isolated test machine, as root beside the rest of the node, and enforces
# policies for the tests (kube-network-policies needs the nfnetlink_queue module this kernel lacks).
KUBE_ROUTER_VERSION=v2.1.0

real_components() {
  echo etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy node-agent
  [ "$NETWORK_POLICY" = kube-router ] && echo kube-router
  true
}

ctr_() { ctr --address "$CONTAINERD_SOCKET" "$@"; }
crictl_() { "$DIR/bin/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCKET" --timeout 30s "$@"; }

real_prerequisites() {
  install_packages containerd runc containernetworking-plugins iptables conntrack busybox-static gcc libc6-dev \
    iproute2 kmod
  # containerd's package starts its own system service where systemd runs; ours is separate, but the package's
  # would hold /run/containerd and compete for nothing we need: leave it alone if present.
  local p
  for p in /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/lib/cni/portmap /usr/sbin/runc; do
    [ -x "$p" ] || die "$p is missing after installing containerd, runc and containernetworking-plugins"
  done
  [ -d /proc/sys/net/bridge ] || modprobe br_netfilter 2>/dev/null || true
  [ -f /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
    die "bridge netfilter (br_netfilter) is not available: kube-proxy's Service rules cannot see bridged replies"
  # The host uses the cgroup v1 hierarchy (see kubelet_config); nothing here remounts or changes it.
  [ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || die "no cgroup hierarchy under /sys/fs/cgroup"
}

# Builds a Go command from the module proxy into the cache, once; copies it into the state directory.
# Usage: install_go_command NAME MODULE@VERSION PACKAGE CACHE_SUBDIR
install_go_command() {
  local name=$1 module=$2 package=$3 cache=$CACHE_ROOT/$4/$1 work
  [ -x "$DIR/bin/$name" ] && return 0
  if [ ! -x "$cache" ]; then
    log "building $name from Go modules"
    work=$(mktemp -d)
    (cd "$work" && go mod init "devcluster/$name" >/dev/null 2>&1 &&
      GOFLAGS=-mod=mod go get "$module" >&2 &&
      mkdir -p "$(dirname "$cache")" &&
      CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$cache.tmp" "$package" >&2) ||
      die "building $name failed"
    mv "$cache.tmp" "$cache"
    rm -rf "$work"
  fi
  cp "$cache" "$DIR/bin/$name"
}

install_kube_router() {
  [ "$NETWORK_POLICY" = kube-router ] || return 0
  install_packages ipset
  install_go_command kube-router "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "kube-router-$KUBE_ROUTER_VERSION"
}

# kube-router leaves its chains and sets behind when it stops (its --cleanup-config needs IPVS, which this
# kernel lacks): remove them, so a node without policies forwards everything again.
clean_kube_router_rules() {
  local table rule chain set
  for table in filter nat mangle; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) .*KUBE-(ROUTER|NWPLCY|POD-FW)' |
      sed 's/^-A/-D/' | while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done || true
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N KUBE-(ROUTER|NWPLCY|POD-FW|SRC|DST)/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N KUBE-(ROUTER|NWPLCY|POD-FW|SRC|DST)/ {print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
  if command -v ipset >/dev/null; then
    for set in $(ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST|ROUTER)|^kube-router'); do ipset destroy "$set" 2>/dev/null || true; done
  fi
}

install_crictl() {
  install_go_command crictl sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0 sigs.k8s.io/cri-tools/cmd/crictl cri-tools-v1.37.0
}

# ---------------------------------------------------------------------------------------------------------------
# Network.

real_network_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($NODE_IP/$POD_PREFIX_LEN)"
    ip link add "$BRIDGE" type bridge
  fi
  # (grep reads all of its input: with pipefail, `grep -q` stopping early would fail the pipeline.)
  ip -4 addr show dev "$BRIDGE" | grep -F " $NODE_IP/$POD_PREFIX_LEN " >/dev/null ||
    ip addr add "$NODE_IP/$POD_PREFIX_LEN" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # The Service range exists on no interface: to the bridge, before anything can send to a ClusterIP.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE"
  # Nothing forwarded leaves or enters the bridge by another interface (mangle FORWARD runs before filter, where
  # kube-proxy keeps its rules).
  iptables -t mangle -N DEVCLUSTER-FORWARD 2>/dev/null || true
  iptables -t mangle -C FORWARD -j DEVCLUSTER-FORWARD 2>/dev/null || iptables -t mangle -I FORWARD 1 -j DEVCLUSTER-FORWARD
  iptables -t mangle -C DEVCLUSTER-FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null ||
    iptables -t mangle -A DEVCLUSTER-FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -t mangle -C DEVCLUSTER-FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP 2>/dev/null ||
    iptables -t mangle -A DEVCLUSTER-FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
  # Pod to ClusterIP to pod on the same bridge is routed by the host; replies are bridged and must pass netfilter.
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
}

real_network_down() {
  iptables -t mangle -D DEVCLUSTER-FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null || true
  iptables -t mangle -D DEVCLUSTER-FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP 2>/dev/null || true
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------------------
# Configuration.

generate_real_pki() {
  [ -f "$PKI/kubelet.crt" ] || sign_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth"
  [ -f "$PKI/kubelet-serving.crt" ] ||
    sign_cert kubelet-serving "/CN=$NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME
extendedKeyUsage=serverAuth"
  [ -f "$PKI/kube-proxy.crt" ] || sign_cert kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
  [ -f "$PKI/kube-scheduler.crt" ] || sign_cert kube-scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  # The API server's client certificate towards kubelets (logs, exec, port-forward).
  [ -f "$PKI/apiserver-kubelet-client.crt" ] ||
    sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  chmod 600 "$PKI"/*.key
}

generate_real_config() {
  generate_real_pki
  # For tests and scripts that import images or inspect containers.
  echo "$CONTAINERD_SOCKET" >"$DIR/containerd-socket"
  local user
  for user in kubelet kube-proxy kube-scheduler; do
    write_kubeconfig "$DIR/$user.kubeconfig" "$user" "$user"
  done
  mkdir -p "$DIR/containerd" "$DIR/cni/net.d" "$DIR/cni/ipam" "$DIR/kubelet" "$RUNTIME_DIR" "$DIR/containerd/certs.d"
  cat >"$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$RUNTIME_DIR/state"
[grpc]
  address = "$CONTAINERD_SOCKET"
[ttrpc]
  address = "$RUNTIME_DIR/ttrpc.sock"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "devcluster.local/pause:1"
  # This machine refuses to lower oom_score_adj; without this every sandbox fails to start.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$DIR/containerd/certs.d"
EOF
  cat >"$DIR/cni/net.d/10-devcluster.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "devcluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # Pods with dnsPolicy Default get no upstream resolver: no name lookup leaves the machine.
  : >"$DIR/resolv.conf"
  cat >"$DIR/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The host uses the cgroup v1 hierarchy (the v2 mount carries no controllers) and PID 1 is not systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((KUBELET_PORT + 1))
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $DIR/resolv.conf
# Volumes of running pods (Secrets, ConfigMaps) are refreshed within about this period.
syncFrequency: 10s
# Images cannot be pulled again here: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
maxPods: 250
serializeImagePulls: false
EOF
}

write_coredns_manifest() {
  cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # cluster.local only; nothing is forwarded off the machine.
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 5
        }
        cache 5
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: coredns
          image: devcluster.local/coredns:v1.14.7
          imagePullPolicy: IfNotPresent
          args: ["-conf", "/etc/coredns/Corefile"]
          ports:
            - {name: dns, containerPort: 1053, protocol: UDP}
            - {name: dns-tcp, containerPort: 1053, protocol: TCP}
          readinessProbe:
            httpGet: {path: /ready, port: 8181}
            periodSeconds: 2
          livenessProbe:
            httpGet: {path: /health, port: 8080}
            initialDelaySeconds: 10
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
    - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
EOF
}

# ---------------------------------------------------------------------------------------------------------------
# Readiness.

containerd_ready() { ctr_ version; }
kube_proxy_ready() {
  # kube-proxy's healthz answers 200 once it has programmed the rules for what it has seen.
  curl -sf --max-time 2 "http://127.0.0.1:$((KUBELET_PORT + 2))/healthz"
}
# The `kubernetes` Service's ClusterIP reaches the API server through kube-proxy's rules.
service_routed() {
  curl -s --max-time 2 -o /dev/null --cacert "$PKI/ca.crt" "https://$(first_service_ip):443/readyz"
}
dns_ready() {
  [ "$(kubectl_admin -n kube-system get deployment coredns -o 'jsonpath={.status.readyReplicas}')" = 1 ]
}

# ---------------------------------------------------------------------------------------------------------------
# Start and stop.

# Writes stdin to FILE unless FILE already holds exactly that.
write_if_changed() {
  cat >"$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv "$1.new" "$1"; fi
}

start_real_node() {
  local bin=$DIR/bin
  # containerd: no registry is reachable by design; its proxy is a closed port, so a pull of an image that was
  # not imported fails at once on this machine instead of looking for a registry elsewhere.
  start containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
    /usr/bin/containerd --config "$DIR/containerd/config.toml"
  wait_for containerd 60 containerd_ready
  "$REPO/devcluster/images.sh" import "$CONTAINERD_SOCKET" >&2

  start kube-scheduler "$bin/kube-scheduler" --kubeconfig="$DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$DIR/kube-scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=$((KUBELET_PORT + 4))

  start kubelet "$bin/kubelet" --config="$DIR/kubelet-config.yaml" --kubeconfig="$DIR/kubelet.kubeconfig" \
    --root-dir="$DIR/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"

  # Written only when it changes: kube-proxy exits when its configuration file is touched (e.g. by an `up`
  # that starts a stopped kubelet again).
  write_if_changed "$DIR/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$((KUBELET_PORT + 2))
metricsBindAddress: 127.0.0.1:$((KUBELET_PORT + 3))
# NodePorts open on the bridge's address only.
nodePortAddresses: ["$POD_CIDR"]
# Leave the machine's conntrack table settings alone.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$bin/kube-proxy" --config="$DIR/kube-proxy-config.yaml"
}

# kube-router, once the node is registered (it exits when it cannot find its Node): only its network policy
# controller; the bridge plugin stays the CNI, kube-proxy the service proxy, and nothing is masqueraded.
start_network_policy() {
  [ "$NETWORK_POLICY" = kube-router ] || return 0
  start kube-router "$DIR/bin/kube-router" --kubeconfig="$DIR/node-agent.kubeconfig" --hostname-override="$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-pod-egress=false --service-cluster-ip-range="$SERVICE_CIDR" --health-port=$((KUBELET_PORT + 5)) \
    --iptables-sync-period=1m
  wait_for "kube-router to enforce network policies" 60 kube_router_ready
}

kube_router_ready() { curl -sf "http://127.0.0.1:$((KUBELET_PORT + 5))/healthz" >/dev/null; }

real_addons() {
  wait_for "kube-proxy's Service rules" 120 kube_proxy_ready
  wait_for "the kubernetes Service to route to the API server" 120 service_routed
  write_coredns_manifest | kubectl_admin apply -f - >/dev/null
  wait_for "CoreDNS to be ready" 180 dns_ready
}

# Every pod sandbox goes through the CRI (containers stopped, CNI teardown, addresses released); then what the
# kubelet and containerd mounted under the state directory is unmounted.
stop_real_node() {
  stop kubelet
  if running_pid containerd >/dev/null && [ -x "$DIR/bin/crictl" ]; then
    crictl_ rmp --all --force >/dev/null 2>&1 || log "removing pod sandboxes failed; containerd's log: $LOGS/containerd.log"
  fi
  stop kube-proxy
  if running_pid kube-router >/dev/null || [ "$NETWORK_POLICY" = kube-router ]; then
    stop kube-router
    clean_kube_router_rules
  fi
  stop kube-scheduler
  stop containerd
  # Shims of containers that outlived containerd (an earlier crash).
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCKET" 2>/dev/null || true
  local m
  awk -v d="$DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}
