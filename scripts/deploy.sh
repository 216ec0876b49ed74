#!/usr/bin/env bash
# Deploys scangate to the current kubectl context (KUBECONFIG / kubectl config current-context).
#
# In-cluster (default): namespace, ServiceAccount, scanner-credentials Secret, TLS Secret, ConfigMap,
#   Deployment, Service, PodDisruptionBudget; waits for the rollout, then registers the
#   ValidatingWebhookConfiguration with the Service as clientConfig (registering it last means no pod
#   creation is ever refused because scangate is not up yet).
# Out-of-cluster (WEBHOOK_URL=https://127.0.0.1:PORT): only the namespace and the webhook configuration,
#   with clientConfig.url pointing at a scangate you run yourself (how the local control plane, which
#   has no kubelet, is used).
#
# Environment:
#   NAMESPACE=scangate  IMAGE=scangate:0.1.0  CERT_DIR=.run/certs (gen-certs.sh runs if needed)
#   ANCHORE_CLI_URL, ANCHORE_CLI_USER, ANCHORE_CLI_PASS   scanner endpoint and credentials (in-cluster,
#       required); stored only in the scangate-scanner Secret, passed to kubectl through private files
#   ANCHORE_CA_FILE           CA of the scanner's certificate, added to that Secret when set
#   WEBHOOK_URL               out-of-cluster mode; "/validate" is appended when the URL has no path
#   WEBHOOK_TIMEOUT_SECONDS=30  EXEMPT_NAMESPACES=kube-system (scangate's namespace is always added)
#   CA_BUNDLE_FILE=$CERT_DIR/ca.crt   the CA injected as caBundle
#   VERIFY_WEBHOOK=true       out-of-cluster: first check that WEBHOOK_URL answers /readyz over TLS
#                             verified with that CA (failurePolicy is Fail: a dead URL blocks all pods)
#   ROLLOUT_TIMEOUT=180s      in-cluster: how long to wait for the Deployment; 0 = do not wait
#   Passed to scangate through the scangate-config ConfigMap when set: the settings in CONFIG_KEYS below
#   (README.md, "Configuration", describes each)
# shellcheck disable=SC2034  # CONFIG_CHECKSUM, CLIENT_CONFIG, ... are read by render() through RENDER_VARS
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require "$KUBECTL" openssl base64 sha256sum

NAMESPACE="${NAMESPACE:-scangate}"
IMAGE="${IMAGE:-scangate:0.1.0}"
WEBHOOK_TIMEOUT_SECONDS="${WEBHOOK_TIMEOUT_SECONDS:-30}"
EXEMPT_NAMESPACES="${EXEMPT_NAMESPACES:-kube-system}"
ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-180s}"
VERIFY_WEBHOOK="${VERIFY_WEBHOOK:-true}"
MANIFESTS="$SCANGATE_ROOT/manifests"
CONFIG_KEYS=(REJECT_IF_TIMEOUT DENY_LATEST_TAG REGISTRY_ALLOWLIST EXEMPT_NAMESPACES MODE ANCHORE_POLICY_ID
  ANCHORE_ACCOUNT ANCHORE_INSECURE_SKIP_TLS_VERIFY LOG_LEVEL DEADLINE_MARGIN_MS DEFAULT_TIMEOUT_MS
  SCANNER_REQUEST_TIMEOUT_MS MAX_CONCURRENT_SCANS CACHE_MAX_ENTRIES CACHE_PASS_TTL_MS CACHE_FAIL_TTL_MS)

if ! [[ "$WEBHOOK_TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || ((WEBHOOK_TIMEOUT_SECONDS < 1 || WEBHOOK_TIMEOUT_SECONDS > 30)); then
  die "WEBHOOK_TIMEOUT_SECONDS must be 1..30 (the API server's limit), got $WEBHOOK_TIMEOUT_SECONDS"
fi
[[ "$NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "NAMESPACE '$NAMESPACE' is not a valid namespace name"

apply() { "$KUBECTL" apply --server-side --force-conflicts --field-manager=scangate-deploy -f - >&2; }

"$SCANGATE_ROOT/scripts/gen-certs.sh"
CA_BUNDLE_FILE="${CA_BUNDLE_FILE:-$CERT_DIR/ca.crt}"
[[ -f "$CA_BUNDLE_FILE" ]] || die "CA_BUNDLE_FILE $CA_BUNDLE_FILE does not exist"
CA_BUNDLE=$(base64 -w0 <"$CA_BUNDLE_FILE")

# ["kube-system", "scangate"]: the exempt namespaces as a YAML flow sequence, scangate's own included.
EXEMPT_NAMESPACE_LIST=$(tr ',' '\n' <<<"$EXEMPT_NAMESPACES,$NAMESPACE" | sed 's/^ *//; s/ *$//' | grep -v '^$' |
  sort -u | sed 's/.*/"&"/' | paste -sd, | sed 's/,/, /g; s/.*/[&]/')

tmp=$(mktemp -d)
chmod 700 "$tmp"
trap 'rm -rf "$tmp"' EXIT

RENDER_VARS=(NAMESPACE)
render "$MANIFESTS/namespace.yaml" | apply

if [[ -n "${WEBHOOK_URL:-}" ]]; then
  # --- out-of-cluster -------------------------------------------------------------------------------
  [[ "$WEBHOOK_URL" =~ ^https://[^/?#]+(/[^?#]*)?$ ]] || die "WEBHOOK_URL must look like https://HOST:PORT[/path], got $WEBHOOK_URL"
  base="${WEBHOOK_URL%/}"
  if [[ "$base" =~ ^https://[^/]+$ ]]; then url="$base/validate"; else url="$base"; fi
  if [[ "$VERIFY_WEBHOOK" == true ]]; then
    origin=$(sed -E 's#^(https://[^/]+).*#\1#' <<<"$url")
    curl -fsS --max-time 5 --cacert "$CA_BUNDLE_FILE" "$origin/readyz" >/dev/null ||
      die "scangate at $origin does not answer /readyz over TLS verified with $CA_BUNDLE_FILE; start it first (or VERIFY_WEBHOOK=false)"
  fi
  CLIENT_CONFIG="{url: \"$url\", caBundle: \"$CA_BUNDLE\"}"
  log "registering out-of-cluster scangate at $url"
else
  # --- in-cluster -----------------------------------------------------------------------------------
  missing=()
  for v in ANCHORE_CLI_URL ANCHORE_CLI_USER; do [[ -n "${!v:-}" ]] || missing+=("$v"); done
  # Sysdig Secure takes the API token as the user and an empty password: set but empty is fine.
  [[ -n "${ANCHORE_CLI_PASS+set}" ]] || missing+=(ANCHORE_CLI_PASS)
  ((${#missing[@]} == 0)) || die "in-cluster deploy needs ${missing[*]} (or set WEBHOOK_URL for an out-of-cluster scangate)"

  # Credentials go to kubectl as files in a private directory: never on a command line (ps) and never in
  # a last-applied-configuration annotation (server-side apply writes none).
  printf '%s' "$ANCHORE_CLI_URL" >"$tmp/url"
  printf '%s' "$ANCHORE_CLI_USER" >"$tmp/user"
  printf '%s' "$ANCHORE_CLI_PASS" >"$tmp/pass"
  secret_files=(--from-file=url="$tmp/url" --from-file=user="$tmp/user" --from-file=pass="$tmp/pass")
  config_literals=()
  if [[ -n "${ANCHORE_CA_FILE:-}" ]]; then
    [[ -f "$ANCHORE_CA_FILE" ]] || die "ANCHORE_CA_FILE $ANCHORE_CA_FILE does not exist"
    cp "$ANCHORE_CA_FILE" "$tmp/ca.crt"
    secret_files+=(--from-file=ca.crt="$tmp/ca.crt")
    config_literals+=(--from-literal=ANCHORE_CA_FILE=/etc/scangate/scanner/ca.crt)
  fi
  for k in "${CONFIG_KEYS[@]}"; do
    if [[ -n "${!k:-}" ]]; then config_literals+=("--from-literal=$k=${!k}"); fi
  done

  "$KUBECTL" -n "$NAMESPACE" create secret generic scangate-scanner "${secret_files[@]}" --dry-run=client -o yaml >"$tmp/scanner-secret.yaml"
  "$KUBECTL" -n "$NAMESPACE" create secret tls scangate-tls --cert="$CERT_DIR/tls.crt" --key="$CERT_DIR/tls.key" \
    --dry-run=client -o yaml >"$tmp/tls-secret.yaml"
  "$KUBECTL" -n "$NAMESPACE" create configmap scangate-config "${config_literals[@]}" --dry-run=client -o yaml >"$tmp/config.yaml"
  CONFIG_CHECKSUM=$(cat "$tmp/scanner-secret.yaml" "$tmp/tls-secret.yaml" "$tmp/config.yaml" | sha256sum | cut -c1-16)
  apply <"$tmp/scanner-secret.yaml"
  apply <"$tmp/tls-secret.yaml"
  apply <"$tmp/config.yaml"
  rm -f "$tmp/url" "$tmp/user" "$tmp/pass" "$tmp/scanner-secret.yaml"

  RENDER_VARS=(NAMESPACE IMAGE CONFIG_CHECKSUM)
  for f in serviceaccount.yaml deployment.yaml service.yaml pdb.yaml; do
    render "$MANIFESTS/$f" | apply
  done
  if [[ "$ROLLOUT_TIMEOUT" != 0 ]]; then
    log "waiting up to $ROLLOUT_TIMEOUT for deployment/scangate (ROLLOUT_TIMEOUT=0 skips)"
    "$KUBECTL" -n "$NAMESPACE" rollout status deployment/scangate --timeout="$ROLLOUT_TIMEOUT" >&2 ||
      die "scangate did not become ready; see: $KUBECTL -n $NAMESPACE describe pods -l app.kubernetes.io/name=scangate"
  fi
  CLIENT_CONFIG="{service: {namespace: \"$NAMESPACE\", name: \"scangate\", path: \"/validate\", port: 443}, caBundle: \"$CA_BUNDLE\"}"
  log "registering in-cluster scangate (service $NAMESPACE/scangate)"
fi

RENDER_VARS=(WEBHOOK_TIMEOUT_SECONDS CLIENT_CONFIG EXEMPT_NAMESPACE_LIST)
render "$MANIFESTS/validating-webhook.yaml" | apply
log "done: ValidatingWebhookConfiguration scangate (timeoutSeconds=$WEBHOOK_TIMEOUT_SECONDS, exempt namespaces $EXEMPT_NAMESPACE_LIST)"
