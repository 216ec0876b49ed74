#!/usr/bin/env bash
# `make test`: the Sysdig-style check that scangate works in the current kubectl context. Creates two
# Deployments and reports what happened to them:
#   nginx           a clean, pinned image: its ReplicaSet must create a pod
#   apache-struts2  kaizheh/apache-struts2-cve-2017-5638 (CVE-2017-5638): no pod, and `kubectl get
#                   events` shows FailedCreate ... denied the request: Image failed policy check: ...
#                   The reference carries a tag: without one it means `latest`, which scangate refuses
#                   by its local rule before any scan (DENY_LATEST_TAG), so the event would show the
#                   latest-tag message instead of the scanner's verdict.
# Exits non-zero when the outcome differs. The Deployments are left in place for inspection
# (SAMPLES_CLEANUP=true removes them).
#
# Environment: SAMPLES_NAMESPACE=default  NGINX_IMAGE=nginx:1.25.3
#              STRUTS_IMAGE=kaizheh/apache-struts2-cve-2017-5638:2.3.12  SAMPLES_TIMEOUT=120 (seconds)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require "$KUBECTL"

NS="${SAMPLES_NAMESPACE:-default}"
NGINX_IMAGE="${NGINX_IMAGE:-nginx:1.25.3}"
STRUTS_IMAGE="${STRUTS_IMAGE:-kaizheh/apache-struts2-cve-2017-5638:2.3.12}"
TIMEOUT_S="${SAMPLES_TIMEOUT:-120}"
k() { "$KUBECTL" -n "$NS" "$@"; }

# Events outlive Deployments, and a re-created Deployment gets a ReplicaSet of the same name: events are
# therefore matched on the current ReplicaSet's uid, never on its name.
rs_uid() { k get replicaset -l "app=$1" -o jsonpath='{.items[0].metadata.uid}' 2>/dev/null; }
events_of() { k get events --field-selector "involvedObject.uid=$1" 2>/dev/null; }
pod_count() { k get pods -l "app=$1" --no-headers 2>/dev/null | grep -c . || true; }

log "namespace $NS: (re)creating deployments nginx ($NGINX_IMAGE) and apache-struts2 ($STRUTS_IMAGE)"
# Foreground deletion returns once the old ReplicaSets and pods are gone, so none of them is counted.
k delete deployment nginx apache-struts2 --ignore-not-found --cascade=foreground --wait=true >/dev/null
k create deployment nginx --image="$NGINX_IMAGE" >&2
k create deployment apache-struts2 --image="$STRUTS_IMAGE" >&2

expected_denial="denied the request: Image failed policy check: $STRUTS_IMAGE"
struts_denied() {
  local uid
  uid=$(rs_uid apache-struts2)
  [[ -n "$uid" ]] && events_of "$uid" | grep FailedCreate | grep -qF "$expected_denial"
}
nginx_created() { (($(pod_count nginx) >= 1)); }

deadline=$((SECONDS + TIMEOUT_S))
until nginx_created && struts_denied; do
  ((SECONDS < deadline)) || break
  sleep 1
done

echo
echo "== kubectl get deployments,replicasets,pods (namespace $NS)"
k get deployments,replicasets,pods -l 'app in (nginx,apache-struts2)' || true
echo
echo "== kubectl get events (namespace $NS, sample ReplicaSets)"
header=true
for app in nginx apache-struts2; do
  uid=$(rs_uid "$app")
  [[ -n "$uid" ]] || continue
  if [[ "$header" == true ]]; then events_of "$uid"; header=false; else events_of "$uid" | tail -n +2; fi
done
echo

failures=0
if nginx_created; then
  echo "PASS nginx: its ReplicaSet created $(pod_count nginx) pod(s)"
else
  echo "FAIL nginx: no pod after ${TIMEOUT_S}s; its events:"
  uid=$(rs_uid nginx)
  if [[ -n "$uid" ]]; then events_of "$uid" | grep FailedCreate | tail -n 3 || true; fi
  failures=$((failures + 1))
fi
struts_pods=$(pod_count apache-struts2)
if struts_denied && ((struts_pods == 0)); then
  echo "PASS apache-struts2: no pod; FailedCreate event:"
  events_of "$(rs_uid apache-struts2)" | grep FailedCreate | grep -F "$expected_denial" | tail -n 1
else
  if ((struts_pods > 0)); then
    echo "FAIL apache-struts2: $struts_pods pod(s) were admitted"
  else
    echo "FAIL apache-struts2: no FailedCreate event containing '$expected_denial' after ${TIMEOUT_S}s"
  fi
  failures=$((failures + 1))
fi

if [[ "${SAMPLES_CLEANUP:-false}" == true ]]; then
  k delete deployment nginx apache-struts2 --ignore-not-found --wait=false >/dev/null
fi
exit $((failures > 0))
