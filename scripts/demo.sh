#!/usr/bin/env bash
# `make demo`: the whole story in one command, on this machine, no cluster needed.
#   1. the local control plane (cluster-up.sh; the first run builds Kubernetes, later runs reuse it)
#   2. the Anchore-compatible scanner simulator with samples/scanner-data.json, on 127.0.0.1
#   3. scangate on 127.0.0.1 with TLS from gen-certs.sh
#   4. the webhook registered out-of-cluster (deploy.sh with WEBHOOK_URL, caBundle injected)
#   5. `make test`: nginx gets its pod; `kubectl apply` of apache-struts2 is refused at once, and so is
#      `kubectl set image deployment/nginx` to the struts image; then `kubectl get events`, where scangate's
#      ImageDenied events show the rejections (scangate writes them with the demo cluster's kubeconfig)
# Everything keeps running so you can try more (`kubectl run x --image=nginx`); `make cluster-down`
# stops it all.
#
# Environment: SIM_ANALYSIS_DELAY_MS=1500 (how long the simulator "analyses" a new image)
#              SCANNER_API=v1 (the simulator speaks Anchore Engine's v1 API) or v2 (Anchore Enterprise 5:
#              v2 only; scangate is then given the bare URL and finds the API itself, ANCHORE_API_VERSION=auto)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require node curl "$KUBECTL"
cd "$SCANGATE_ROOT"
[[ -f dist/src/main.js ]] || die "dist/src/main.js is missing: run 'make build' (make demo does)"

KUBECONFIG=$(scripts/cluster-up.sh)
export KUBECONFIG
scripts/gen-certs.sh

# A previous demo's scangate and simulator are replaced.
stop_daemon "$LOCAL_DIR/scangate.pid"
stop_daemon "$LOCAL_DIR/scanner-sim.pid"
mkdir -p "$LOCAL_DIR"
chmod 700 "$LOCAL_DIR"

# The scanner password is random and only ever in a private file: not on a command line, not in a log.
pass_file="$LOCAL_DIR/scanner-pass"
(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$pass_file")

SCANNER_API="${SCANNER_API:-v1}"
case "$SCANNER_API" in
  v1) sim_probe=/v1 sim_url_path=/v1 ;;
  v2) sim_probe=/v2/version sim_url_path= ;;
  *) die "SCANNER_API must be v1 or v2, got '$SCANNER_API'" ;;
esac

sim_port=$(free_port)
start_daemon scanner-sim "$LOCAL_DIR/scanner-sim.log" "$LOCAL_DIR/scanner-sim.pid" \
  node dist/src/main.js scanner-sim --host 127.0.0.1 --port "$sim_port" --data samples/scanner-data.json \
  --analysis-delay-ms "${SIM_ANALYSIS_DELAY_MS:-1500}" --user admin --pass-file "$pass_file" --api "$SCANNER_API"
# Any HTTP answer (even 401) means it is listening.
wait_until 30 "scanner simulator on 127.0.0.1:$sim_port" curl -s -o /dev/null "http://127.0.0.1:$sim_port$sim_probe" ||
  { tail -n 20 "$LOCAL_DIR/scanner-sim.log" >&2; exit 1; }

sg_port=$(free_port)
(
  export ANCHORE_CLI_URL="http://127.0.0.1:$sim_port$sim_url_path" ANCHORE_CLI_USER=admin ANCHORE_CLI_PASS_FILE="$pass_file"
  export POD_NAMESPACE=scangate EXEMPT_NAMESPACES=kube-system
  # Kubernetes Events through the demo cluster's kubeconfig (exported above): on, and a start-up error
  # should it be missing, rather than a demo without events.
  export EVENTS_ENABLED=true POD_NAME=scangate-demo
  export HOST=127.0.0.1 PORT="$sg_port" TLS_CERT_FILE="$CERT_DIR/tls.crt" TLS_KEY_FILE="$CERT_DIR/tls.key"
  start_daemon scangate "$LOCAL_DIR/scangate.log" "$LOCAL_DIR/scangate.pid" node dist/src/main.js serve
)
wait_until 30 "scangate on https://127.0.0.1:$sg_port" \
  curl -fsS --cacert "$CERT_DIR/ca.crt" "https://127.0.0.1:$sg_port/readyz" ||
  { tail -n 20 "$LOCAL_DIR/scangate.log" >&2; exit 1; }

WEBHOOK_URL="https://127.0.0.1:$sg_port" scripts/deploy.sh

rc=0
scripts/test-samples.sh || rc=$?
STRUTS_IMAGE="${STRUTS_IMAGE:-kaizheh/apache-struts2-cve-2017-5638:2.3.12}"

# Which API scangate found (ANCHORE_API_VERSION=auto asked GET /v2/version at start).
detected=$(grep -m1 '"msg":"scanner API detected"' "$LOCAL_DIR/scangate.log" | grep -o '"apiVersion":"v[12]"' | cut -d'"' -f4 || true)
if [[ "$detected" == "$SCANNER_API" ]]; then
  echo "PASS scangate speaks Anchore API $detected to the simulator (--api $SCANNER_API)"
else
  echo "FAIL scangate detected Anchore API '${detected:-none}', the simulator speaks $SCANNER_API"
  rc=1
fi

cat <<EOF

== Running: control plane, scanner simulator (Anchore API $SCANNER_API, 127.0.0.1:$sim_port), scangate (https://127.0.0.1:$sg_port)
   export KUBECONFIG=$KUBECONFIG
   kubectl get events
   kubectl run demo --image=nginx          # refused: latest tag
   kubectl run demo --image=nginx:1.25.3   # admitted (stays Pending: there is no kubelet)
   kubectl set image pod/demo demo=$STRUTS_IMAGE   # refused: an image change is judged too
   kubectl create namespace trial && kubectl label namespace trial scangate.io/mode=warn
   kubectl -n trial create deployment s --image=$STRUTS_IMAGE   # admitted, with the reasons as warnings
   tail -f $LOCAL_DIR/scangate.log         # scangate's decisions (JSON lines)
   make cluster-down                       # stop everything
EOF
exit "$rc"
