#!/usr/bin/env bash
# `make test`: the Sysdig-style check that scangate works in the current kubectl context. Applies two
# Deployments and reports what happened to them:
#   nginx           a clean, pinned image: created, and its ReplicaSet creates a pod
#   apache-struts2  kaizheh/apache-struts2-cve-2017-5638 (CVE-2017-5638): `kubectl apply` itself is
#                   refused with "denied the request: Image failed policy check: ..." (the workload's pod
#                   template is judged at apply time). Should the scan not finish within the webhook's
#                   timeout, the Deployment is admitted with a warning instead, and then its pods are
#                   refused: no pod, and `kubectl get events` shows FailedCreate ... Image failed policy check.
#                   The reference carries a tag: without one it means `latest`, which scangate refuses
#                   by its local rule before any scan (DENY_LATEST_TAG), with the latest-tag message
#                   instead of the scanner's verdict.
#   set image       `kubectl set image deployment/nginx` to the struts image: refused, nginx unchanged
#   events          `kubectl get events` shows scangate's own Warning events (reason ImageDenied, from
#                   reportingController scangate.io/scangate) with the denial message, the struts2 one too:
#                   refused at apply, the Deployment never existed and no ReplicaSet could report it.
# Exits non-zero when the outcome differs. The Deployments are left in place for inspection
# (SAMPLES_CLEANUP=true removes them).
#
# Environment: SAMPLES_NAMESPACE=default  NGINX_IMAGE=nginx:1.25.3
#              STRUTS_IMAGE=kaizheh/apache-struts2-cve-2017-5638:2.3.12  SAMPLES_TIMEOUT=120 (seconds)
#              SAMPLES_EXPECT_EVENTS=true (false: scangate runs with EVENTS_ENABLED=false; no event check)
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
rs_uid() { k get replicaset -l "app=$1" -o jsonpath='{.items[*].metadata.uid}' 2>/dev/null | awk '{print $1}' || true; }
events_of() { k get events --field-selector "involvedObject.uid=$1" 2>/dev/null; }
# scangate's events (events.k8s.io, shown by `kubectl get events` like any other). A repeat of the same
# denial (this script run again) updates the event's count and last-seen time instead of adding one.
scangate_events() { k get events --field-selector "reportingComponent=scangate.io/scangate,reason=$1" 2>/dev/null; }
pod_count() { k get pods -l "app=$1" --no-headers 2>/dev/null | grep -c . || true; }
# `kubectl apply` of a Deployment as `kubectl create deployment NAME --image=IMAGE` would write it.
apply_deployment() { k create deployment "$1" --image="$2" --dry-run=client -o yaml | k apply -f - 2>&1; }

log "namespace $NS: (re)applying deployments nginx ($NGINX_IMAGE) and apache-struts2 ($STRUTS_IMAGE)"
# Foreground deletion returns once the old ReplicaSets and pods are gone, so none of them is counted.
k delete deployment nginx apache-struts2 --ignore-not-found --cascade=foreground --wait=true >/dev/null

policy_denial="denied the request: Image failed policy check: $STRUTS_IMAGE"
echo "\$ kubectl apply -f nginx.yaml"
nginx_out=$(apply_deployment nginx "$NGINX_IMAGE") || true
echo "$nginx_out"
echo "\$ kubectl apply -f apache-struts2.yaml"
struts_rc=0
struts_out=$(apply_deployment apache-struts2 "$STRUTS_IMAGE") || struts_rc=$?
echo "$struts_out"

# Refused at apply time, or (scan still running) admitted with a warning and refused pod by pod.
struts_refused_at_apply() { ((struts_rc != 0)) && grep -qF "$policy_denial (deployment \"apache-struts2\" container " <<<"$struts_out"; }
struts_denied_later() {
  local uid
  uid=$(rs_uid apache-struts2)
  [[ -n "$uid" ]] && events_of "$uid" | grep FailedCreate | grep -qF "$policy_denial"
}
struts_done() { struts_refused_at_apply || struts_denied_later; }
nginx_created() { (($(pod_count nginx) >= 1)); }

deadline=$((SECONDS + TIMEOUT_S))
until nginx_created && struts_done; do
  ((SECONDS < deadline)) || break
  sleep 1
done

echo "\$ kubectl set image deployment/nginx nginx=$STRUTS_IMAGE"
set_rc=0
set_out=$(k set image deployment/nginx "nginx=$STRUTS_IMAGE" 2>&1) || set_rc=$?
echo "$set_out"
nginx_image=$(k get deployment nginx -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true)

echo
echo "== kubectl get deployments,replicasets,pods (namespace $NS)"
k get deployments,replicasets,pods -l 'app in (nginx,apache-struts2)' || true
# Events are written in the background, a moment after the answer.
struts_event() { scangate_events ImageDenied | grep -F "Image failed policy check: $STRUTS_IMAGE"; }
if [[ "${SAMPLES_EXPECT_EVENTS:-true}" == true ]]; then
  event_deadline=$((SECONDS + 30))
  until struts_event >/dev/null; do
    ((SECONDS < event_deadline)) || break
    sleep 1
  done
fi

echo
echo "== kubectl get events --field-selector reportingComponent=scangate.io/scangate,reason=ImageDenied (namespace $NS)"
scangate_events ImageDenied || true
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
  echo "PASS nginx: created; its ReplicaSet created $(pod_count nginx) pod(s)"
else
  echo "FAIL nginx: no pod after ${TIMEOUT_S}s; kubectl apply said: $nginx_out"
  uid=$(rs_uid nginx)
  if [[ -n "$uid" ]]; then events_of "$uid" | grep FailedCreate | tail -n 3 || true; fi
  failures=$((failures + 1))
fi
struts_pods=$(pod_count apache-struts2)
if struts_refused_at_apply; then
  echo "PASS apache-struts2: refused at kubectl apply"
elif struts_denied_later && ((struts_pods == 0)); then
  echo "PASS apache-struts2: admitted before its scan finished (warning above); no pod; FailedCreate event:"
  events_of "$(rs_uid apache-struts2)" | grep FailedCreate | grep -F "$policy_denial" | tail -n 1
else
  if ((struts_pods > 0)); then
    echo "FAIL apache-struts2: $struts_pods pod(s) were admitted"
  else
    echo "FAIL apache-struts2: neither refused at kubectl apply nor a FailedCreate event containing '$policy_denial' after ${TIMEOUT_S}s"
  fi
  failures=$((failures + 1))
fi
if ((set_rc != 0)) && grep -qF "$policy_denial (deployment \"nginx\" container \"nginx\")" <<<"$set_out" && [[ "$nginx_image" == "$NGINX_IMAGE" ]]; then
  echo "PASS set image deployment/nginx to $STRUTS_IMAGE: refused; nginx still runs $nginx_image"
else
  echo "FAIL set image deployment/nginx to $STRUTS_IMAGE: exit $set_rc, image now '$nginx_image'"
  failures=$((failures + 1))
fi

if [[ "${SAMPLES_EXPECT_EVENTS:-true}" == true ]]; then
  if struts_event >/dev/null; then
    echo "PASS kubectl get events: scangate's ImageDenied event for apache-struts2:"
    struts_event | tail -n 1
  else
    echo "FAIL kubectl get events: no ImageDenied event from scangate.io/scangate holding 'Image failed policy check: $STRUTS_IMAGE' (is scangate running with EVENTS_ENABLED=false or without credentials? SAMPLES_EXPECT_EVENTS=false skips this)"
    failures=$((failures + 1))
  fi
fi

if [[ "${SAMPLES_CLEANUP:-false}" == true ]]; then
  k delete deployment nginx apache-struts2 --ignore-not-found --wait=false >/dev/null
fi
exit $((failures > 0))
