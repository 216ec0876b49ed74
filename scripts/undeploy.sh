#!/usr/bin/env bash
# Removes what deploy.sh created from the current kubectl context. The webhook configuration always goes
# first, so pod creation is never refused by a half-removed scangate:
#   - installed by helm (in-cluster): `helm uninstall`, which deletes the webhook configurations before
#     any other kind (helm's uninstall order) and waits for the objects to be gone; then the
#     scangate-scanner Secret that deploy.sh made beside the release;
#   - registered out-of-cluster: the ValidatingWebhookConfiguration, then whatever objects of an older
#     kubectl-applied deployment are left.
# The namespace is deleted only if deploy.sh created it (label app.kubernetes.io/managed-by=scangate-deploy).
#
# Environment: NAMESPACE=scangate, RELEASE=scangate, UNDEPLOY_WAIT=true (wait for the namespace to be
#              gone), HELM (default: scripts/build-helm.sh's binary, only looked for when a release exists)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require "$KUBECTL"
NAMESPACE="${NAMESPACE:-scangate}"
RELEASE="${RELEASE:-scangate}"

# A helm release is stored as Secrets labelled owner=helm,name=RELEASE in its namespace: looking for
# them needs no helm binary (and so no helm build on a machine that never installed with helm).
release_secrets=$("$KUBECTL" -n "$NAMESPACE" get secrets -l "owner=helm,name=$RELEASE" -o name 2>/dev/null || true)
if [[ -n "$release_secrets" ]]; then
  HELM="${HELM:-$("$SCANGATE_ROOT/scripts/build-helm.sh")}"
  "$HELM" uninstall "$RELEASE" --namespace "$NAMESPACE" --wait --timeout "${UNDEPLOY_TIMEOUT:-120s}" >&2
  "$KUBECTL" -n "$NAMESPACE" delete secret scangate-scanner --ignore-not-found >&2
fi
"$KUBECTL" delete validatingwebhookconfiguration scangate --ignore-not-found >&2
"$KUBECTL" delete mutatingwebhookconfiguration scangate --ignore-not-found >&2
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
