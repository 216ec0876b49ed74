#!/usr/bin/env bash
# Starts a one-node Kubernetes cluster with a real kubelet, inside a network namespace of its own:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (runc, CNI bridge) and the
# kubelet, all built from the official Go modules (build-control-plane.sh, build-node.sh).
#
# Why a network namespace: the kubelet refuses a loopback node IP, and this workplace's network rule
# allows traffic only to 127.0.0.0/8 or to addresses inside network namespaces we create. The namespace
# gets a loopback, an interface with the node IP ($NODE_IP) and, once the first pod starts, the CNI
# bridge cni0 ($POD_SUBNET). It has NO default route and no link to the host's network: nothing started
# here can send a packet to any other address (checked at start-up). Processes enter only the network
# namespace (nsenter --net), not a mount namespace, so kubelet, containerd and runc share mounts.
#
# The API server reaches webhooks behind a Service with --enable-aggregator-routing=true: it resolves
# clientConfig.service to a ready endpoint of the Service's EndpointSlices (a pod IP on cni0) and checks
# the serving certificate against the Service's DNS name <name>.<namespace>.svc. No kube-proxy and no
# iptables are needed (docs/cluster.md, "The node").
#
# usage: node-up.sh        start (a no-op when already running); prints the path of the env file
#
# Environment:
#   SCANGATE_RUN_DIR    state directory (default .run/); the node lives in $SCANGATE_RUN_DIR/node
#   SCANGATE_WATCH_PID  tear the node down when this process exits (the e2e suite: a killed test run
#                       leaves nothing behind)
#
# Writes $SCANGATE_RUN_DIR/node/node.env (NETNS, NODE_IP, KUBECONFIG, BIN wrappers) and the wrappers
# $SCANGATE_RUN_DIR/node/bin/{kubectl,netns-exec} that run inside the namespace. On any failure it tears
# down what it started (node-down.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require openssl curl "$KUBECTL" ip nsenter node

NODE_DIR="$RUN_DIR/node"
PKI="$NODE_DIR/pki"
LOGS="$NODE_DIR/logs"
ENV_FILE="$NODE_DIR/node.env"
KUBECONFIG_FILE="$NODE_DIR/kubeconfig"
# A name per state directory: two checkouts (or two test runs) each get their own namespace, cgroup and
# containerd; inside its namespace each has the same addresses and ports without any clash.
ID=$(printf '%s' "$(cd "$RUN_DIR" 2>/dev/null && pwd || echo "$RUN_DIR")" | sha256sum | cut -c1-8)
NETNS="scangate-$ID"
CGROUP_ROOT="/scangate-$ID"
NODE_NAME="scangate-node"
NODE_IP="${NODE_IP:-10.213.0.2}"
POD_SUBNET="${POD_SUBNET:-10.213.128.0/24}"
SERVICE_CIDR="${SERVICE_CIDR:-10.213.64.0/24}"
# containerd's state (task bundles, rootfs mounts, pod netns mounts) lives under /run: short socket
# paths, tmpfs, and it is what node-down.sh unmounts.
STATE_DIR="/run/scangate-node-$ID"
ETCD_PORT=2379 ETCD_PEER_PORT=2380 APISERVER_PORT=6443 KCM_PORT=10257 SCHEDULER_PORT=10259
PAUSE_IMAGE="scangate.local/pause:1"

in_ns() { nsenter --net="/run/netns/$NETNS" "$@"; }

# start_in_ns NAME COMMAND...: start_daemon inside the namespace. nsenter execs COMMAND in place, so the
# recorded executable is COMMAND's, not nsenter's.
start_in_ns() {
  local name=$1
  shift
  start_daemon "$name" "$LOGS/$name.log" "$NODE_DIR/$name.pid" nsenter --net="/run/netns/$NETNS" "$@"
  echo "$1" >"$NODE_DIR/$name.pid.cmd"
}

setup_netns() {
  log "network namespace $NETNS: lo + node0 $NODE_IP/24, no default route"
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  # The node's interface: a veth pair with BOTH ends inside the namespace (this kernel has no dummy
  # driver), so it has a carrier and leads nowhere.
  ip -n "$NETNS" link add node0 type veth peer name node0-peer
  ip -n "$NETNS" addr add "$NODE_IP/24" dev node0
  ip -n "$NETNS" link set node0-peer up
  ip -n "$NETNS" link set node0 up
  # The guarantee the network rule needs: the namespace has no interface but lo, node0 (and later cni0
  # with the pods' veths), and no route beyond its own subnets.
  local routes
  routes=$(ip -n "$NETNS" route show default; ip -n "$NETNS" -6 route show default)
  [[ -z "$routes" ]] || die "namespace $NETNS has a default route: $routes"
}

gen_pki() {
  [[ -f "$PKI/admin.crt" ]] || log "generating the node cluster's CA, apiserver, admin, kubelet-client and service-account keys"
  # kubelet-client: the API server's client certificate towards the kubelet (logs, exec).
  gen_cluster_pki "$PKI" scangate-node-ca "IP:127.0.0.1,IP:$NODE_IP,IP:${SERVICE_CIDR%.*}.1,$KUBERNETES_DNS_NAMES" \
    "kubelet-client=/O=system:masters/CN=kube-apiserver-kubelet-client"
}

write_kubeconfig() {
  write_admin_kubeconfig "$KUBECONFIG_FILE" scangate-node "https://127.0.0.1:$APISERVER_PORT" "$PKI"
}

write_wrappers() {
  mkdir -p "$NODE_DIR/bin"
  # Any command inside the namespace (helm, curl, node ...), with KUBECONFIG set.
  cat >"$NODE_DIR/bin/netns-exec" <<EOF
#!/usr/bin/env bash
export KUBECONFIG="$KUBECONFIG_FILE"
exec nsenter --net="/run/netns/$NETNS" "\$@"
EOF
  cat >"$NODE_DIR/bin/kubectl" <<EOF
#!/usr/bin/env bash
exec nsenter --net="/run/netns/$NETNS" "$(command -v "$KUBECTL")" --kubeconfig="$KUBECONFIG_FILE" "\$@"
EOF
  chmod +x "$NODE_DIR/bin/netns-exec" "$NODE_DIR/bin/kubectl"
}

kubectl_ns() { "$NODE_DIR/bin/kubectl" "$@"; }

start_etcd() {
  mkdir -p "$NODE_DIR/etcd"
  chmod 700 "$NODE_DIR/etcd"
  start_in_ns etcd "$CP_BIN/etcd" \
    --name=scangate-node --data-dir="$NODE_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="scangate-node=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level=warn
  wait_until 60 "etcd" in_ns curl -fsS "http://127.0.0.1:$ETCD_PORT/health" ||
    { tail -n 20 "$LOGS/etcd.log" >&2; return 1; }
}

start_apiserver() {
  start_in_ns kube-apiserver "$CP_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/kubelet-client.crt" --kubelet-client-key="$PKI/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=RBAC \
    --enable-admission-plugins="NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook" \
    --enable-aggregator-routing=true \
    --endpoint-reconciler-type=none \
    --allow-privileged=true --profiling=false --v=1
  wait_until 120 "kube-apiserver /readyz" kubectl_ns get --raw /readyz ||
    { tail -n 30 "$LOGS/kube-apiserver.log" >&2; return 1; }
}

start_controller_manager() {
  local controllers="deployment-controller,replicaset-controller,serviceaccount-controller"
  controllers+=",serviceaccount-token-controller,namespace-controller,garbage-collector-controller"
  controllers+=",root-ca-certificate-publisher-controller,disruption-controller"
  controllers+=",endpoints-controller,endpointslice-controller,pod-garbage-collector-controller"
  # Removes the not-ready taint (added at registration by the TaintNodesByCondition admission plugin)
  # once the kubelet reports Ready.
  controllers+=",node-lifecycle-controller"
  start_in_ns kube-controller-manager "$CP_BIN/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$NODE_DIR/kcm-certs" \
    --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --controllers="$controllers" --v=1
  wait_until 90 "the default/default ServiceAccount" kubectl_ns -n default get serviceaccount default ||
    { tail -n 30 "$LOGS/kube-controller-manager.log" >&2; return 1; }
}

start_scheduler() {
  start_in_ns kube-scheduler "$NODE_BIN/kube-scheduler" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false --v=1
}

# The kubelet's cgroupfs driver puts pods under $CGROUP_ROOT/kubepods in every v1 hierarchy; the root
# must exist (cpuset's needs the parent's cpus and mems) and node-down.sh removes it.
setup_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/; do
    [[ -d "$d" && ! -L "${d%/}" ]] || continue
    mkdir -p "$d${CGROUP_ROOT#/}"
    if [[ -f "${d}cpuset.cpus" ]]; then
      cat "${d}cpuset.cpus" >"$d${CGROUP_ROOT#/}/cpuset.cpus"
      cat "${d}cpuset.mems" >"$d${CGROUP_ROOT#/}/cpuset.mems"
    fi
  done
}

start_containerd() {
  local cfg="$NODE_DIR/containerd.toml" cni_conf="$NODE_DIR/cni/net.d"
  mkdir -p "$NODE_DIR/containerd" "$STATE_DIR" "$cni_conf"
  cat >"$cni_conf/10-scangate.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "scangate-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{ "subnet": "$POD_SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "loopback" }
  ]
}
EOF
  cat >"$cfg" <<EOF
version = 3
root = "$NODE_DIR/containerd"
state = "$STATE_DIR"

[grpc]
  address = "$STATE_DIR/containerd.sock"

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "$NODE_DIR/containerd/opt"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE_IMAGE'
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    # This machine's root lacks CAP_SYS_RESOURCE: an oom_score_adj below containerd's own (the kubelet
    # asks -998 for sandboxes) is refused, so containerd clamps it to its own.
    restrict_oom_score_adj = true
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$NODE_BIN/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$NODE_BIN/cni']
      conf_dir = '$cni_conf'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
EOF
  # The shim is found on PATH.
  PATH="$NODE_BIN:$PATH" start_in_ns containerd "$NODE_BIN/containerd" --config "$cfg"
  wait_until 60 "containerd" "$NODE_BIN/ctr" --address "$STATE_DIR/containerd.sock" version ||
    { tail -n 30 "$LOGS/containerd.log" >&2; return 1; }
}

import_images() {
  local images="$NODE_DIR/images" ctr=("$NODE_BIN/ctr" --address "$STATE_DIR/containerd.sock" -n k8s.io)
  mkdir -p "$images"
  "$SCANGATE_ROOT/scripts/build-image.sh" pause "$images/pause.tar" "$PAUSE_IMAGE" >/dev/null
  "${ctr[@]}" images import --no-unpack=false "$images/pause.tar" >&2
  if [[ "${NODE_SCANGATE_IMAGE:-true}" == true ]]; then
    "$SCANGATE_ROOT/scripts/build-image.sh" scangate "$images/scangate.tar" "${IMAGE:-scangate:0.1.0}" >/dev/null
    "${ctr[@]}" images import "$images/scangate.tar" >&2
  fi
  "${ctr[@]}" images ls -q >&2
}

start_kubelet() {
  local cfg="$NODE_DIR/kubelet.yaml"
  mkdir -p "$NODE_DIR/kubelet"
  # Pods get no name server: nothing in them needs one and none can be reached.
  : >"$NODE_DIR/resolv.conf"
  cat >"$cfg" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$STATE_DIR/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
resolvConf: $NODE_DIR/resolv.conf
clusterDomain: cluster.local
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
makeIPTablesUtilChains: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
enforceNodeAllocatable: [pods]
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
shutdownGracePeriod: 0s
EOF
  start_in_ns kubelet "$NODE_BIN/kubelet" \
    --config="$cfg" --kubeconfig="$KUBECONFIG_FILE" --root-dir="$NODE_DIR/kubelet" \
    --cert-dir="$NODE_DIR/kubelet/pki" --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --v=1
  wait_until 120 "node $NODE_NAME Ready" bash -c \
    "[[ \$('$NODE_DIR/bin/kubectl' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}') == True ]]" ||
    { tail -n 40 "$LOGS/kubelet.log" >&2; return 1; }
}

start_watchdog() {
  [[ -n "${SCANGATE_WATCH_PID:-}" ]] || return 0
  # shellcheck disable=SC2016  # $1 and $2 are the inner shell's arguments
  start_daemon watchdog "$LOGS/watchdog.log" "$NODE_DIR/watchdog.pid" bash -c \
    'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2"' watchdog "$SCANGATE_WATCH_PID" \
    "$SCANGATE_ROOT/scripts/node-down.sh"
}

on_failure() {
  local rc=$?
  if ((rc != 0)); then
    log "start-up failed (exit $rc); tearing down what was started (logs kept in $LOGS)"
    "$SCANGATE_ROOT/scripts/node-down.sh" --keep-logs || true
  fi
}

# --- main -------------------------------------------------------------------------------------------
if [[ -f "$ENV_FILE" ]] && daemon_alive "$NODE_DIR/kubelet.pid"; then
  log "already running (state in $NODE_DIR)"
  echo "$ENV_FILE"
  exit 0
fi

t0=$SECONDS
CP_BIN=$("$SCANGATE_ROOT/scripts/build-control-plane.sh")
NODE_BIN=$("$SCANGATE_ROOT/scripts/build-node.sh")
trap on_failure EXIT
"$SCANGATE_ROOT/scripts/node-down.sh" --quiet
mkdir -p "$NODE_DIR" "$LOGS"
cat >"$NODE_DIR/ids.env" <<EOF
NETNS=$NETNS
CGROUP_ROOT=$CGROUP_ROOT
STATE_DIR=$STATE_DIR
EOF
start_watchdog
setup_netns
gen_pki
write_kubeconfig
write_wrappers
start_etcd
start_apiserver
start_controller_manager
start_scheduler
setup_cgroups
start_containerd
import_images
start_kubelet
cat >"$ENV_FILE" <<EOF
NETNS=$NETNS
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
POD_SUBNET=$POD_SUBNET
KUBECONFIG=$KUBECONFIG_FILE
NODE_BIN=$NODE_BIN
CP_BIN=$CP_BIN
CTR_ADDRESS=$STATE_DIR/containerd.sock
NETNS_EXEC=$NODE_DIR/bin/netns-exec
NODE_KUBECTL=$NODE_DIR/bin/kubectl
EOF
trap - EXIT
log "node $NODE_NAME ($NODE_IP) Ready in $((SECONDS - t0))s, in network namespace $NETNS"
log "use it with: $NODE_DIR/bin/kubectl get nodes   (or $NODE_DIR/bin/netns-exec COMMAND)"
echo "$ENV_FILE"
