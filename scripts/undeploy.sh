#!/usr/bin/env bash
# Removes what deploy.sh created from the current kubectl context. The webhook configuration goes
# first, so pod creation is never refused by a half-removed scangate. The namespace is deleted only if
# deploy.sh created it (label app.kubernetes.io/managed-by=scangate-deploy); otherwise only scangate's
# own objects are removed from it.
#
# Environment: NAMESPACE=scangate, UNDEPLOY_WAIT=true (wait for the namespace to be gone)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require "$KUBECTL"
NAMESPACE="${NAMESPACE:-scangate}"

"$KUBECTL" delete validatingwebhookconfiguration scangate --ignore-not-found >&2
managed=$("$KUBECTL" get namespace "$NAMESPACE" --ignore-not-found \
  -o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}')
if [[ "$managed" == scangate-deploy ]]; then
  "$KUBECTL" delete namespace "$NAMESPACE" --ignore-not-found --wait="${UNDEPLOY_WAIT:-true}" >&2
else
  "$KUBECTL" -n "$NAMESPACE" delete deployment/scangate service/scangate poddisruptionbudget/scangate \
    secret/scangate-scanner secret/scangate-tls configmap/scangate-config serviceaccount/scangate \
    --ignore-not-found >&2
fi
log "scangate removed from the current context (namespace $NAMESPACE)"
