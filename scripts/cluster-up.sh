#!/usr/bin/env bash
# Starts a local control plane on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager, built from
# the official modules by build-control-plane.sh. There is no kubelet and no scheduler, so pods stay
# Pending; that is all an admission webhook needs. --endpoint-reconciler-type=none: the "kubernetes"
# Service gets no Endpoints, because Endpoints may not hold the loopback address the apiserver binds to.
# --feature-gates=ImageVolume=true: image volumes (volumes[].image, beta and off by default in 1.34)
# are kept in pod specs, so that the suites can check that scangate judges them like containers.
# --enable-aggregator-routing=true: a webhook behind a Service (the Helm chart's) is called at one of
# the Service's endpoint addresses, never at its ClusterIP: with no kube-proxy a ClusterIP leads off
# this machine, and with no endpoint (no kubelet, no Ready pod) the call fails right here, unsent.
#
# usage: cluster-up.sh                      start everything (a no-op when already running)
#        cluster-up.sh --restart-apiserver  restart kube-apiserver only (same port and etcd), e.g. with
#                                           IMAGE_POLICY_CONFIG set
#
# Environment:
#   SCANGATE_RUN_DIR     state directory (default .run/); the cluster lives in $SCANGATE_RUN_DIR/cluster
#   IMAGE_POLICY_CONFIG  an AdmissionConfiguration file (gen-image-policy-config.sh): enables the
#                        ImagePolicyWebhook admission plugin with it
#   AUDIT_LOG=true       also write an audit log of pod and workload writes ($SCANGATE_RUN_DIR/cluster/logs/audit.log)
#   SCANGATE_WATCH_PID   tear the cluster down when this process exits (used by the e2e suite, so a
#                        killed test run leaves nothing behind)
#
# Writes $SCANGATE_RUN_DIR/cluster/kubeconfig and prints its path on stdout. Authorization is RBAC; the
# kubeconfig's client certificate is in system:masters. On any failure it tears down what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require openssl curl "$KUBECTL" node

PKI="$CLUSTER_DIR/pki"
LOGS="$CLUSTER_DIR/logs"
KUBECONFIG_FILE="$CLUSTER_DIR/kubeconfig"
STATE="$CLUSTER_DIR/state.env"
SERVICE_CIDR="${SERVICE_CIDR:-10.0.0.0/24}"

gen_pki() {
  [[ -f "$PKI/admin.crt" ]] || log "generating cluster CA, apiserver, admin and service-account keys in $PKI"
  gen_cluster_pki "$PKI" scangate-local-cluster-ca "IP:127.0.0.1,IP:10.0.0.1,$KUBERNETES_DNS_NAMES"
}

write_kubeconfig() {
  write_admin_kubeconfig "$KUBECONFIG_FILE" scangate-local "https://127.0.0.1:$APISERVER_PORT" "$PKI"
}

start_etcd() {
  mkdir -p "$CLUSTER_DIR/etcd"
  chmod 700 "$CLUSTER_DIR/etcd"
  # --unsafe-no-fsync: throwaway test data; fsync on a small VM disk is what makes etcd slow.
  start_daemon etcd "$LOGS/etcd.log" "$CLUSTER_DIR/etcd.pid" "$BIN_DIR/etcd" \
    --name=scangate --data-dir="$CLUSTER_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="scangate=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level=warn
  wait_until 60 "etcd on 127.0.0.1:$ETCD_PORT" curl -fsS "http://127.0.0.1:$ETCD_PORT/health" ||
    { tail -n 20 "$LOGS/etcd.log" >&2; return 1; }
}

start_apiserver() {
  local plugins="NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
  local extra=()
  if [[ -n "${IMAGE_POLICY_CONFIG:-}" ]]; then
    [[ -f "$IMAGE_POLICY_CONFIG" ]] || die "IMAGE_POLICY_CONFIG=$IMAGE_POLICY_CONFIG does not exist"
    plugins+=",ImagePolicyWebhook"
    extra+=("--admission-control-config-file=$(cd "$(dirname "$IMAGE_POLICY_CONFIG")" && pwd)/$(basename "$IMAGE_POLICY_CONFIG")")
    log "ImagePolicyWebhook enabled with $IMAGE_POLICY_CONFIG"
  fi
  if [[ "${AUDIT_LOG:-false}" == true ]]; then
    # An audit log of pod and workload writes at Metadata level: enough to carry the admission
    # webhooks' auditAnnotations (test/e2e/break-glass-pinning.test.ts reads them from it).
    cat >"$CLUSTER_DIR/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch"]
    resources:
      - group: ""
        resources: ["pods"]
      - group: "apps"
        resources: ["deployments", "replicasets"]
  - level: None
POLICY
    extra+=("--audit-policy-file=$CLUSTER_DIR/audit-policy.yaml" "--audit-log-path=$LOGS/audit.log" "--audit-log-format=json")
    log "audit log: $LOGS/audit.log"
  fi
  start_daemon kube-apiserver "$LOGS/kube-apiserver.log" "$CLUSTER_DIR/kube-apiserver.pid" "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=RBAC \
    --enable-admission-plugins="$plugins" \
    --endpoint-reconciler-type=none \
    --enable-aggregator-routing=true \
    --allow-privileged=true --profiling=false --v=1 \
    --feature-gates=ImageVolume=true \
    "${extra[@]}"
  wait_until 120 "kube-apiserver /readyz on 127.0.0.1:$APISERVER_PORT" \
    "$KUBECTL" --kubeconfig="$KUBECONFIG_FILE" get --raw /readyz ||
    { tail -n 30 "$LOGS/kube-apiserver.log" >&2; return 1; }
}

start_controller_manager() {
  # Every controller that creates pods from a template (so that break-glass and template vetting are
  # tried against all of them), and clusterrole-aggregation-controller, which fills the built-in
  # admin/edit/view ClusterRoles a tenant is given.
  local controllers="deployment-controller,replicaset-controller,serviceaccount-controller"
  controllers+=",serviceaccount-token-controller,namespace-controller,garbage-collector-controller"
  controllers+=",root-ca-certificate-publisher-controller,disruption-controller"
  controllers+=",statefulset-controller,daemonset-controller,job-controller,cronjob-controller"
  controllers+=",replicationcontroller-controller,clusterrole-aggregation-controller"
  # --use-service-account-credentials=true: each controller acts as its own ServiceAccount in
  # kube-system (system:serviceaccount:kube-system:replicaset-controller, ...), as in a kubeadm cluster;
  # the tokens come from the TokenRequest API (signed with --service-account-signing-key-file above)
  # and the controllers' RBAC (system:controller:*) is bootstrapped by the API server.
  # --service-account-private-key-file signs the legacy token Secrets of serviceaccount-token-controller;
  # --root-ca-file is the CA the root-ca publisher puts into every namespace's kube-root-ca.crt.
  start_daemon kube-controller-manager "$LOGS/kube-controller-manager.log" "$CLUSTER_DIR/kube-controller-manager.pid" \
    "$BIN_DIR/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$CLUSTER_DIR/kcm-certs" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --controllers="$controllers" --v=1
  # The ServiceAccount admission plugin refuses pods until the namespace's default ServiceAccount exists.
  wait_until 90 "kube-controller-manager to create default/default ServiceAccount" \
    "$KUBECTL" --kubeconfig="$KUBECONFIG_FILE" -n default get serviceaccount default ||
    { tail -n 30 "$LOGS/kube-controller-manager.log" >&2; return 1; }
}

start_watchdog() {
  [[ -n "${SCANGATE_WATCH_PID:-}" ]] || return 0
  # exec: cluster-down.sh then runs as the watchdog's own pid and knows not to stop itself.
  # shellcheck disable=SC2016  # $1 and $2 are the inner shell's arguments
  start_daemon watchdog "$LOGS/watchdog.log" "$CLUSTER_DIR/watchdog.pid" bash -c \
    'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2"' watchdog "$SCANGATE_WATCH_PID" \
    "$SCANGATE_ROOT/scripts/cluster-down.sh"
}

on_failure() {
  local rc=$?
  if ((rc != 0)); then
    log "start-up failed (exit $rc); tearing down what was started"
    "$SCANGATE_ROOT/scripts/cluster-down.sh" --keep-logs || true
  fi
}

# --- main -------------------------------------------------------------------------------------------
if [[ "${1:-}" == "--restart-apiserver" ]]; then
  [[ -f "$STATE" ]] || die "no cluster state in $CLUSTER_DIR; run cluster-up.sh first"
  # shellcheck source=/dev/null
  source "$STATE"
  stop_daemon "$CLUSTER_DIR/kube-apiserver.pid" "$APISERVER_GRACE_S"
  start_apiserver
  log "kube-apiserver restarted on https://127.0.0.1:$APISERVER_PORT"
  echo "$KUBECONFIG_FILE"
  exit 0
fi

if daemon_alive "$CLUSTER_DIR/kube-apiserver.pid" && [[ -f "$STATE" ]]; then
  log "already running (state in $CLUSTER_DIR)"
  echo "$KUBECONFIG_FILE"
  exit 0
fi

mkdir -p "$CLUSTER_DIR" "$LOGS"
t0=$SECONDS
BIN_DIR=$("$SCANGATE_ROOT/scripts/build-control-plane.sh")
trap on_failure EXIT
# Left-over daemons of a half-dead previous run would hold the ports and the etcd data directory.
"$SCANGATE_ROOT/scripts/cluster-down.sh" --quiet --cluster-only
mkdir -p "$CLUSTER_DIR" "$LOGS"
gen_pki
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
APISERVER_PORT=$(free_port)
KCM_PORT=$(free_port)
cat >"$STATE" <<EOF
BIN_DIR=$BIN_DIR
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
EOF
write_kubeconfig
start_watchdog
start_etcd
start_apiserver
start_controller_manager
trap - EXIT
log "control plane ready in $((SECONDS - t0))s: https://127.0.0.1:$APISERVER_PORT"
log "use it with: export KUBECONFIG=$KUBECONFIG_FILE"
echo "$KUBECONFIG_FILE"
