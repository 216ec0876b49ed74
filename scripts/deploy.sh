#!/usr/bin/env bash
# Deploys scangate to the current kubectl context (KUBECONFIG / kubectl config current-context).
#
# In-cluster (default): `helm upgrade --install` of charts/scangate (helm from build-helm.sh, built once
#   and cached) into NAMESPACE, after creating the namespace (Pod Security "restricted") and the
#   scangate-scanner Secret with the credentials; the chart makes the serving certificate, the
#   Deployment, Service, PodDisruptionBudget and the ValidatingWebhookConfiguration. `make undeploy`
#   is `helm uninstall` then.
# Out-of-cluster (WEBHOOK_URL=https://127.0.0.1:PORT): only the namespace and the webhook configuration
#   (manifests/validating-webhook.yaml), with clientConfig.url pointing at a scangate you run yourself
#   (how the local control plane, which has no kubelet, is used by the demo and the e2e suite).
#
# Environment:
#   NAMESPACE=scangate  RELEASE=scangate (helm release)  IMAGE=scangate:0.1.0 (repository:tag)
#   ANCHORE_CLI_URL, ANCHORE_CLI_USER, ANCHORE_CLI_PASS   scanner endpoint and credentials (in-cluster,
#       required); the credentials are stored only in the scangate-scanner Secret, passed to kubectl
#       through private files, never to helm
#   ANCHORE_CA_FILE           CA of the scanner's certificate (chart value scanner.caCert)
#   WEBHOOK_TIMEOUT_SECONDS=30  EXEMPT_NAMESPACES=kube-system (scangate's namespace is always added)
#   ROLLOUT_TIMEOUT=180s      in-cluster: helm --wait --timeout for the pods; 0 = do not wait
#   HELM_VALUES=FILE, HELM_ARGS="--set k=v ..."   in-cluster: more chart values (charts/scangate/values.yaml)
#   HELM                      the helm binary (default: scripts/build-helm.sh's)
#   WORKLOAD_WEBHOOK_TIMEOUT_SECONDS=min(10, WEBHOOK_TIMEOUT_SECONDS)   how long `kubectl apply` of a
#                             workload may wait for a verdict (past it: admitted with a warning)
#   NAMESPACE_MODES=enforce,warn,off   the scangate.io/mode label values namespaces may choose (also
#                             passed to scangate); without off, a namespace labelled off is judged
#   WEBHOOK_URL               out-of-cluster mode; "/validate" is appended when the URL has no path
#   CERT_DIR=.run/certs       out-of-cluster: gen-certs.sh runs if needed
#   CA_BUNDLE_FILE=$CERT_DIR/ca.crt   out-of-cluster: the CA injected as caBundle
#   PIN_DIGESTS=true          also register the MutatingWebhookConfiguration (digest pinning, /mutate;
#                             manifests/mutating-webhook.yaml out-of-cluster, the chart's
#                             pinning.enabled in-cluster), timeoutSeconds PIN_WEBHOOK_TIMEOUT_SECONDS=15;
#                             otherwise it is removed
#   VERIFY_WEBHOOK=true       out-of-cluster: first check that WEBHOOK_URL answers /readyz over TLS
#                             verified with that CA (failurePolicy is Fail: a dead URL blocks all pods)
#   In-cluster, the settings in CONFIG_KEYS below are passed to the chart when set (README.md,
#   "Settings", describes each)
# shellcheck disable=SC2034  # CLIENT_CONFIG, ... are read by render() through RENDER_VARS
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require "$KUBECTL" openssl base64

NAMESPACE="${NAMESPACE:-scangate}"
RELEASE="${RELEASE:-scangate}"
IMAGE="${IMAGE:-scangate:0.1.0}"
WEBHOOK_TIMEOUT_SECONDS="${WEBHOOK_TIMEOUT_SECONDS:-30}"
EXEMPT_NAMESPACES="${EXEMPT_NAMESPACES:-kube-system}"
ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-180s}"
VERIFY_WEBHOOK="${VERIFY_WEBHOOK:-true}"
MANIFESTS="$SCANGATE_ROOT/manifests"
NAMESPACE_MODES="${NAMESPACE_MODES:-enforce,warn,off}"
CONFIG_KEYS=(REJECT_IF_TIMEOUT DENY_LATEST_TAG REGISTRY_ALLOWLIST EXEMPT_NAMESPACES MODE WORKLOAD_MODE NAMESPACE_MODES ANCHORE_POLICY_ID
  ANCHORE_ACCOUNT ANCHORE_INSECURE_SKIP_TLS_VERIFY LOG_LEVEL DEADLINE_MARGIN_MS DEFAULT_TIMEOUT_MS
  SCANNER_REQUEST_TIMEOUT_MS MAX_CONCURRENT_SCANS CACHE_MAX_ENTRIES CACHE_PASS_TTL_MS CACHE_FAIL_TTL_MS
  BREAK_GLASS_USERS BREAK_GLASS_GROUPS BREAK_GLASS_CONTROLLERS PIN_DIGESTS PIN_WEBHOOK_TIMEOUT_SECONDS ANCHORE_API_VERSION
  EVENTS_ENABLED EVENTS_QPS EVENTS_BURST EVENTS_QUEUE_MAX EVENTS_QUEUE_MAX_BYTES)

if ! [[ "$WEBHOOK_TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || ((WEBHOOK_TIMEOUT_SECONDS < 1 || WEBHOOK_TIMEOUT_SECONDS > 30)); then
  die "WEBHOOK_TIMEOUT_SECONDS must be 1..30 (the API server's limit), got $WEBHOOK_TIMEOUT_SECONDS"
fi
[[ "$NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "NAMESPACE '$NAMESPACE' is not a valid namespace name"
[[ "$RELEASE" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "RELEASE '$RELEASE' is not a valid release name"
WORKLOAD_WEBHOOK_TIMEOUT_SECONDS="${WORKLOAD_WEBHOOK_TIMEOUT_SECONDS:-$((WEBHOOK_TIMEOUT_SECONDS < 10 ? WEBHOOK_TIMEOUT_SECONDS : 10))}"
if ! [[ "$WORKLOAD_WEBHOOK_TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || ((WORKLOAD_WEBHOOK_TIMEOUT_SECONDS < 1 || WORKLOAD_WEBHOOK_TIMEOUT_SECONDS > 30)); then
  die "WORKLOAD_WEBHOOK_TIMEOUT_SECONDS must be 1..30, got $WORKLOAD_WEBHOOK_TIMEOUT_SECONDS"
fi
# The namespace label values that the default entries (/validate, MODE) leave to others: enforce and
# warn have entries of their own; off is left to nobody when NAMESPACE_MODES lists it.
NAMESPACE_MODE_LIST='["enforce", "warn"]'
for m in ${NAMESPACE_MODES//,/ }; do
  case "$m" in
    enforce | warn) ;;
    off) NAMESPACE_MODE_LIST='["enforce", "warn", "off"]' ;;
    *) die "NAMESPACE_MODES: '$m' is not one of enforce, warn, off" ;;
  esac
done

apply() { "$KUBECTL" apply --server-side --force-conflicts --field-manager=scangate-deploy -f - >&2; }

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
  "$SCANGATE_ROOT/scripts/gen-certs.sh"
  CA_BUNDLE_FILE="${CA_BUNDLE_FILE:-$CERT_DIR/ca.crt}"
  [[ -f "$CA_BUNDLE_FILE" ]] || die "CA_BUNDLE_FILE $CA_BUNDLE_FILE does not exist"
  CA_BUNDLE=$(base64 -w0 <"$CA_BUNDLE_FILE")
  base="${WEBHOOK_URL%/}"
  if [[ "$base" =~ ^https://[^/]+$ ]]; then url="$base/validate"; else url="$base"; fi
  if [[ "$VERIFY_WEBHOOK" == true ]]; then
    origin=$(sed -E 's#^(https://[^/]+).*#\1#' <<<"$url")
    curl -fsS --max-time 5 --cacert "$CA_BUNDLE_FILE" "$origin/readyz" >/dev/null ||
      die "scangate at $origin does not answer /readyz over TLS verified with $CA_BUNDLE_FILE; start it first (or VERIFY_WEBHOOK=false)"
  fi
  client_config() { echo "{url: \"$url$1\", caBundle: \"$CA_BUNDLE\"}"; }
  MUTATE_CLIENT_CONFIG="{url: \"$(sed -E 's#^(https://[^/]+).*#\1#' <<<"$url")/mutate\", caBundle: \"$CA_BUNDLE\"}"
  log "registering out-of-cluster scangate at $url"
else
  # --- in-cluster: helm upgrade --install of charts/scangate ---------------------------------------
  missing=()
  for v in ANCHORE_CLI_URL ANCHORE_CLI_USER; do [[ -n "${!v:-}" ]] || missing+=("$v"); done
  # Sysdig Secure takes the API token as the user and an empty password: set but empty is fine.
  [[ -n "${ANCHORE_CLI_PASS+set}" ]] || missing+=(ANCHORE_CLI_PASS)
  ((${#missing[@]} == 0)) || die "in-cluster deploy needs ${missing[*]} (or set WEBHOOK_URL for an out-of-cluster scangate)"
  HELM="${HELM:-$("$SCANGATE_ROOT/scripts/build-helm.sh")}"

  # The credentials go into a Secret of our own, through files in a private directory (never on a
  # command line, never in helm's values or release history); the chart is told its name only.
  printf '%s' "$ANCHORE_CLI_USER" >"$tmp/user"
  printf '%s' "$ANCHORE_CLI_PASS" >"$tmp/pass"
  "$KUBECTL" -n "$NAMESPACE" create secret generic scangate-scanner --from-file=user="$tmp/user" \
    --from-file=pass="$tmp/pass" --dry-run=client -o yaml | apply
  rm -f "$tmp/user" "$tmp/pass"

  # Values: the settings in CONFIG_KEYS that are set, each mapped to its chart value.
  image_repo="${IMAGE%:*}" image_tag="${IMAGE##*:}"
  if [[ "$IMAGE" != *:* || "$image_tag" == */* ]]; then image_repo="$IMAGE" image_tag=latest; fi
  json_list() { tr ',' '\n' <<<"$1" | sed 's/^ *//; s/ *$//' | grep -v '^$' | sed 's/.*/"&"/' | paste -sd, | sed 's/.*/[&]/'; }
  args=(--namespace "$NAMESPACE" --set-string "scanner.url=$ANCHORE_CLI_URL" --set-string scanner.existingSecret=scangate-scanner
    --set-string "image.repository=$image_repo" --set-string "image.tag=$image_tag"
    --set "webhook.timeoutSeconds=$WEBHOOK_TIMEOUT_SECONDS" --set "webhook.workloads.timeoutSeconds=$WORKLOAD_WEBHOOK_TIMEOUT_SECONDS" --set-json "exemptNamespaces=$(json_list "$EXEMPT_NAMESPACES")")
  [[ -z "${ANCHORE_CA_FILE:-}" ]] || { [[ -f "$ANCHORE_CA_FILE" ]] || die "ANCHORE_CA_FILE $ANCHORE_CA_FILE does not exist"; args+=(--set-file "scanner.caCert=$ANCHORE_CA_FILE"); }
  declare -A VALUE_OF=([REJECT_IF_TIMEOUT]=rejectIfTimeout [DENY_LATEST_TAG]=denyLatestTag [MODE]=mode
    [ANCHORE_POLICY_ID]=scanner.policyId [ANCHORE_ACCOUNT]=scanner.account [ANCHORE_INSECURE_SKIP_TLS_VERIFY]=scanner.insecureSkipTLSVerify
    [LOG_LEVEL]=logLevel [DEADLINE_MARGIN_MS]=deadline.marginMs [DEFAULT_TIMEOUT_MS]=deadline.defaultTimeoutMs
    [SCANNER_REQUEST_TIMEOUT_MS]=scanner.requestTimeoutMs [MAX_CONCURRENT_SCANS]=scanner.maxConcurrentScans
    [CACHE_MAX_ENTRIES]=cache.maxEntries [CACHE_PASS_TTL_MS]=cache.passTtlMs [CACHE_FAIL_TTL_MS]=cache.failTtlMs
    [BREAK_GLASS_USERS]=breakGlass.users [BREAK_GLASS_GROUPS]=breakGlass.groups [BREAK_GLASS_CONTROLLERS]=breakGlass.controllers
    [PIN_DIGESTS]=pinning.enabled [PIN_WEBHOOK_TIMEOUT_SECONDS]=pinning.timeoutSeconds [ANCHORE_API_VERSION]=scanner.apiVersion
    [WORKLOAD_MODE]=workloadMode [NAMESPACE_MODES]=namespaceModes
    [EVENTS_QPS]=events.qps [EVENTS_BURST]=events.burst [EVENTS_QUEUE_MAX]=events.queueMax [EVENTS_QUEUE_MAX_BYTES]=events.queueMaxBytes)
  for k in "${CONFIG_KEYS[@]}"; do
    [[ -n "${!k:-}" ]] || continue
    case "$k" in
      EXEMPT_NAMESPACES) ;; # above
      REGISTRY_ALLOWLIST) args+=(--set-json "registryAllowlist=$(json_list "$REGISTRY_ALLOWLIST")") ;;
      BREAK_GLASS_USERS | BREAK_GLASS_GROUPS | BREAK_GLASS_CONTROLLERS) args+=(--set-json "${VALUE_OF[$k]}=$(json_list "${!k}")") ;;
      PIN_DIGESTS) args+=(--set "pinning.enabled=$([[ "$PIN_DIGESTS" =~ ^(true|1|yes)$ ]] && echo true || echo false)") ;;
      NAMESPACE_MODES) args+=(--set-json "namespaceModes=$(json_list "$NAMESPACE_MODES")") ;;
      # In a cluster the service account is always there: auto means on.
      EVENTS_ENABLED) args+=(--set "events.enabled=$([[ "$EVENTS_ENABLED" =~ ^(false|0|no)$ ]] && echo false || echo true)") ;;
      MODE | WORKLOAD_MODE | LOG_LEVEL | ANCHORE_POLICY_ID | ANCHORE_ACCOUNT | ANCHORE_API_VERSION) args+=(--set-string "${VALUE_OF[$k]}=${!k}") ;;
      *) args+=(--set "${VALUE_OF[$k]}=${!k}") ;;
    esac
  done
  # Whatever else the caller wants: HELM_VALUES=file.yaml (extra -f), HELM_ARGS="--set a=b ..."
  [[ -z "${HELM_VALUES:-}" ]] || args+=(-f "$HELM_VALUES")
  # shellcheck disable=SC2206  # word splitting of HELM_ARGS is the point
  [[ -z "${HELM_ARGS:-}" ]] || args+=(${HELM_ARGS})
  # A webhook configuration left by an out-of-cluster registration (make demo) has the release's name
  # and is not helm's: helm would refuse to take it over. Removing it here would open admission for a
  # moment, which is the operator's call, not a script's.
  for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
    owner=$("$KUBECTL" get "$kind" "$RELEASE" --ignore-not-found -o jsonpath='{.metadata.labels.app\.kubernetes\.io/part-of}/{.metadata.annotations.meta\.helm\.sh/release-name}')
    [[ "$owner" != scangate/ ]] ||
      die "$kind $RELEASE is an out-of-cluster registration (WEBHOOK_URL): remove it first with make undeploy"
  done
  if [[ "$ROLLOUT_TIMEOUT" != 0 ]]; then
    # A failed roll-out is undone (an install uninstalled, an upgrade rolled back): never a Fail
    # webhook left pointing at pods that do not come up.
    args+=(--wait --timeout "$ROLLOUT_TIMEOUT" --rollback-on-failure)
    log "helm upgrade --install $RELEASE, waiting up to $ROLLOUT_TIMEOUT for the pods (ROLLOUT_TIMEOUT=0 skips)"
  fi
  "$HELM" upgrade --install "$RELEASE" "$SCANGATE_ROOT/charts/scangate" "${args[@]}" >&2 ||
    die "helm upgrade --install failed; see: $KUBECTL -n $NAMESPACE describe pods -l app.kubernetes.io/instance=$RELEASE"
  log "done: release $RELEASE in namespace $NAMESPACE (helm -n $NAMESPACE status $RELEASE)"
  exit 0
fi

# One path per namespace mode (see manifests/validating-webhook.yaml): /validate, /validate/enforce, ...
CLIENT_CONFIG=$(client_config "")
CLIENT_CONFIG_ENFORCE=$(client_config /enforce)
CLIENT_CONFIG_WARN=$(client_config /warn)
RENDER_VARS=(WEBHOOK_TIMEOUT_SECONDS WORKLOAD_WEBHOOK_TIMEOUT_SECONDS CLIENT_CONFIG CLIENT_CONFIG_ENFORCE CLIENT_CONFIG_WARN
  EXEMPT_NAMESPACE_LIST NAMESPACE_MODE_LIST)
render "$MANIFESTS/validating-webhook.yaml" | apply
log "done: ValidatingWebhookConfiguration scangate (timeoutSeconds=$WEBHOOK_TIMEOUT_SECONDS, workloads $WORKLOAD_WEBHOOK_TIMEOUT_SECONDS, exempt namespaces $EXEMPT_NAMESPACE_LIST, label scangate.io/mode: $NAMESPACE_MODES)"

# --- digest pinning (MutatingWebhookConfiguration), out-of-cluster ------------------------------------
PIN_WEBHOOK_TIMEOUT_SECONDS="${PIN_WEBHOOK_TIMEOUT_SECONDS:-15}"
if [[ "${PIN_DIGESTS:-false}" =~ ^(true|1|yes)$ ]]; then
  if ! [[ "$PIN_WEBHOOK_TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || ((PIN_WEBHOOK_TIMEOUT_SECONDS < 1 || PIN_WEBHOOK_TIMEOUT_SECONDS > 30)); then
    die "PIN_WEBHOOK_TIMEOUT_SECONDS must be 1..30, got $PIN_WEBHOOK_TIMEOUT_SECONDS"
  fi
  CLIENT_CONFIG="$MUTATE_CLIENT_CONFIG"
  RENDER_VARS=(PIN_WEBHOOK_TIMEOUT_SECONDS CLIENT_CONFIG EXEMPT_NAMESPACE_LIST)
  render "$MANIFESTS/mutating-webhook.yaml" | apply
  log "done: MutatingWebhookConfiguration scangate (digest pinning, timeoutSeconds=$PIN_WEBHOOK_TIMEOUT_SECONDS)"
else
  "$KUBECTL" delete mutatingwebhookconfiguration scangate --ignore-not-found >&2
fi
