#!/usr/bin/env bash
# Generates the files kube-apiserver needs for the ImagePolicyWebhook admission plugin, from the
# templates in manifests/image-policy/: an AdmissionConfiguration and the kubeconfig it points at.
#
# Environment:
#   IMAGE_POLICY_URL  scangate's ImageReview endpoint (default: $WEBHOOK_URL/image_policy)
#   WEBHOOK_URL       e.g. https://127.0.0.1:8443 (used when IMAGE_POLICY_URL is unset)
#   CA_FILE           CA of scangate's serving certificate (default: $CERT_DIR/ca.crt)
#   OUT_DIR           where to write (default: .run/image-policy)
#   ALLOW_TTL=50 DENY_TTL=50 (seconds)  RETRY_BACKOFF=500 (ms)  DEFAULT_ALLOW=false
# Prints the AdmissionConfiguration's path; start kube-apiserver with
#   --enable-admission-plugins=...,ImagePolicyWebhook --admission-control-config-file=<that path>
# (cluster-up.sh does this when IMAGE_POLICY_CONFIG=<that path>).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [[ -z "${IMAGE_POLICY_URL:-}" ]]; then
  [[ -n "${WEBHOOK_URL:-}" ]] || die "set IMAGE_POLICY_URL or WEBHOOK_URL (e.g. https://127.0.0.1:8443)"
  IMAGE_POLICY_URL="${WEBHOOK_URL%/}"
  IMAGE_POLICY_URL="${IMAGE_POLICY_URL%/validate}/image_policy"
fi
[[ "$IMAGE_POLICY_URL" == https://* ]] || die "IMAGE_POLICY_URL must be https:// (got $IMAGE_POLICY_URL)"
CA_FILE="${CA_FILE:-$CERT_DIR/ca.crt}"
[[ -f "$CA_FILE" ]] || die "CA_FILE $CA_FILE does not exist (run scripts/gen-certs.sh)"
CA_FILE="$(cd "$(dirname "$CA_FILE")" && pwd)/$(basename "$CA_FILE")"
OUT_DIR="${OUT_DIR:-$RUN_DIR/image-policy}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
ALLOW_TTL="${ALLOW_TTL:-50}" DENY_TTL="${DENY_TTL:-50}" RETRY_BACKOFF="${RETRY_BACKOFF:-500}"
DEFAULT_ALLOW="${DEFAULT_ALLOW:-false}"
for n in ALLOW_TTL DENY_TTL RETRY_BACKOFF; do
  [[ "${!n}" =~ ^[0-9]+$ ]] || die "$n must be a whole number (got ${!n})"
done
[[ "$DEFAULT_ALLOW" == true || "$DEFAULT_ALLOW" == false ]] || die "DEFAULT_ALLOW must be true or false"
IMAGE_POLICY_KUBECONFIG="$OUT_DIR/image-policy.kubeconfig"

RENDER_VARS=(IMAGE_POLICY_URL CA_FILE)
render "$SCANGATE_ROOT/manifests/image-policy/kubeconfig.yaml" >"$IMAGE_POLICY_KUBECONFIG"
RENDER_VARS=(IMAGE_POLICY_KUBECONFIG ALLOW_TTL DENY_TTL RETRY_BACKOFF DEFAULT_ALLOW)
render "$SCANGATE_ROOT/manifests/image-policy/admission-config.yaml" >"$OUT_DIR/admission-config.yaml"
log "ImagePolicyWebhook -> $IMAGE_POLICY_URL (allowTTL=$ALLOW_TTL denyTTL=$DENY_TTL retryBackoff=$RETRY_BACKOFF defaultAllow=$DEFAULT_ALLOW)"
echo "$OUT_DIR/admission-config.yaml"
