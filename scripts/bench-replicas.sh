#!/usr/bin/env bash
# Benchmark on the local node (node-up.sh): the time from `kubectl apply` of a 20-replica Deployment of
# a never-scanned image to all 20 pods created, for a scan shorter and one longer than the webhook's
# timeout, with REJECT_IF_TIMEOUT true and false. scangate runs in-cluster (helm install of
# charts/scangate, 2 replicas), the scanner simulator's analysis delay sets the scan time. Prints a
# Markdown table (docs/BENCHMARKS.md, "20-replica Deployment").
#
# The pods are not scheduled (schedulerName names no scheduler): admission is what is measured, not
# 2 CPUs starting 20 sandboxes. Each case uses an image tag never seen before.
#
# usage: bench-replicas.sh          (starts a node of its own in a temporary state directory and tears it
#                                    down afterwards)
# Environment: REPLICAS=20 WEBHOOK_TIMEOUT_SECONDS=10 SHORT_SCAN_MS=3000 LONG_SCAN_MS=20000
#              CASE_TIMEOUT_S=300
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require curl
require_node

REPLICAS="${REPLICAS:-20}"
WEBHOOK_TIMEOUT_SECONDS="${WEBHOOK_TIMEOUT_SECONDS:-10}"
SHORT_SCAN_MS="${SHORT_SCAN_MS:-3000}"
LONG_SCAN_MS="${LONG_SCAN_MS:-20000}"
CASE_TIMEOUT_S="${CASE_TIMEOUT_S:-300}"
SIM_PORT=8228

export SCANGATE_RUN_DIR="${SCANGATE_RUN_DIR:-$(mktemp -d /tmp/sg-bench-XXXXXX)}"
RUN_DIR="$SCANGATE_RUN_DIR"
NODE_DIR="$RUN_DIR/node"
cleanup() { "$SCANGATE_ROOT/scripts/node-down.sh" --quiet || true; }
trap cleanup EXIT

[[ -f "$SCANGATE_ROOT/dist/src/main.js" ]] || die "run 'make build' first"
HELM=$("$SCANGATE_ROOT/scripts/build-helm.sh")
env_file=$(SCANGATE_WATCH_PID=$$ "$SCANGATE_ROOT/scripts/node-up.sh")
# shellcheck source=/dev/null
source "$env_file"
K=("$NODE_KUBECTL")
X=("$NETNS_EXEC")

pass_file="$NODE_DIR/scanner-pass"
head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$pass_file"
chmod 600 "$pass_file"
# The simulator on the node's address; node-down.sh stops it through its pid file.
setsid nsenter --net="/run/netns/$NETNS" "$NODE" "$SCANGATE_ROOT/dist/src/main.js" scanner-sim \
  --host "$NODE_IP" --port "$SIM_PORT" --data "$SCANGATE_ROOT/samples/scanner-data.json" --user admin \
  --pass-file "$pass_file" </dev/null >>"$NODE_DIR/logs/scanner-sim.log" 2>&1 &
echo $! >"$NODE_DIR/scanner-sim.pid"
echo "$NODE" >"$NODE_DIR/scanner-sim.pid.cmd"
wait_until 30 "the scanner simulator" "${X[@]}" curl -fsS "http://$NODE_IP:$SIM_PORT/_sim/stats"

sim_delay() { "${X[@]}" curl -fsS -X PUT -H 'content-type: application/json' --data "{\"ms\":$1}" "http://$NODE_IP:$SIM_PORT/_sim/analysis-delay" >/dev/null; }

helm_release() { # install|upgrade REJECT_IF_TIMEOUT
  "${X[@]}" "$HELM" "$1" scangate "$SCANGATE_ROOT/charts/scangate" --namespace scangate --create-namespace \
    --set image.repository=scangate --set image.tag=0.1.0 --set image.pullPolicy=Never \
    --set "scanner.url=http://$NODE_IP:$SIM_PORT/v1" --set scanner.user=admin --set-file "scanner.password=$pass_file" \
    --set "webhook.timeoutSeconds=$WEBHOOK_TIMEOUT_SECONDS" --set "rejectIfTimeout=$2" \
    --wait --timeout 5m >/dev/null
}

now_ms() { date +%s%3N; }

# run_case LABEL SCAN_MS: prints "seconds-to-first seconds-to-all denials created".
run_case() {
  local label=$1 scan_ms=$2 tag name t0 t1 tfirst="" n deadline
  tag="bench-$label-$(date +%s%N | tail -c 9)"
  name="bench-$label"
  sim_delay "$scan_ms"
  t0=$(now_ms)
  "${K[@]}" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name, namespace: bench}
spec:
  replicas: $REPLICAS
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      schedulerName: scangate-bench-unscheduled
      containers: [{name: app, image: "nginx:$tag"}]
EOF
  deadline=$((SECONDS + CASE_TIMEOUT_S))
  while :; do
    n=$("${K[@]}" -n bench get pods -l "app=$name" --no-headers 2>/dev/null | wc -l)
    [[ -z "$tfirst" ]] && ((n > 0)) && tfirst=$(now_ms)
    ((n >= REPLICAS)) && break
    ((SECONDS < deadline)) || { log "$label: only $n of $REPLICAS pods after ${CASE_TIMEOUT_S}s"; break; }
    sleep 0.2
  done
  t1=$(now_ms)
  local rs denials
  rs=$("${K[@]}" -n bench get replicaset -l "app=$name" -o jsonpath='{.items[0].metadata.name}')
  denials=$("${K[@]}" -n bench get events --field-selector "involvedObject.name=$rs,reason=FailedCreate" \
    -o jsonpath='{range .items[*]}{.count}{"\n"}{end}' | awk '{s += $1} END {print s + 0}')
  "${K[@]}" -n bench delete deployment "$name" --wait=false >/dev/null
  secs() { awk -v ms="$1" 'BEGIN {printf "%.1f", ms / 1000}'; }
  echo "$(secs $((${tfirst:-$t1} - t0))) $(secs $((t1 - t0))) $denials $n"
}

"${K[@]}" create namespace bench >/dev/null
wait_until 60 "the bench/default ServiceAccount" "${K[@]}" -n bench get serviceaccount default
helm_release install true

rows=()
for reject in true false; do
  if [[ "$reject" == false ]]; then helm_release upgrade false; fi
  # Wait until the API server only reaches replicas with the new setting.
  wait_until 120 "scangate rolled out" "${K[@]}" -n scangate rollout status deployment/scangate --timeout=5s
  sleep 6
  for scan in short long; do
    if [[ "$scan" == short ]]; then ms=$SHORT_SCAN_MS; else ms=$LONG_SCAN_MS; fi
    log "REJECT_IF_TIMEOUT=$reject, scan ${ms} ms, webhook timeout ${WEBHOOK_TIMEOUT_SECONDS}s"
    read -r first secs denials created < <(run_case "$scan-$reject" "$ms")
    rows+=("| $((ms / 1000)) s ($scan) | $reject | $first s | $secs s | $created / $REPLICAS | $denials |")
    sleep 2
  done
done

cat <<EOF
| scan time | REJECT_IF_TIMEOUT | apply -> first pod | apply -> all $REPLICAS pods created | pods created | FailedCreate (denials) |
| --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${rows[@]}")

- webhook timeoutSeconds $WEBHOOK_TIMEOUT_SECONDS (scangate answers DEADLINE_MARGIN_MS = 1 s before it), 2 scangate
  replicas on the local node (helm install of charts/scangate), scanner simulator analysis delay = scan time
- $(nproc) CPUs, $("$NODE" --version), $(date -u +%Y-%m-%dT%H:%MZ)
EOF
