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
#   PIN_DIGESTS=true          digest pinning: the MutatingWebhookConfiguration (always registered, for
#                             break-glass proofs of workload templates) also pins templates and gets
#                             the pods entry (manifests/mutating-webhook*.yaml out-of-cluster, the
#                             chart's pinning.enabled in-cluster), timeoutSeconds PIN_WEBHOOK_TIMEOUT_SECONDS=15
#   VERIFY_WEBHOOK=true       out-of-cluster: first check that WEBHOOK_URL answers /readyz over TLS
#                             verified with that CA (failurePolicy is Fail: a dead URL blocks all pods)
#   In-cluster, the settings in CONFIG_KEYS below are passed to the chart when set (README.md,
#   "Settings", describes each; CONFIG_KEYS and SETTING_VALUE are generated from src/settings.ts)
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
# settings:begin (generated from src/settings.ts by `make settings`)
CONFIG_KEYS=(CERT_RELOAD_INTERVAL_MS MAX_BODY_BYTES MAX_INFLIGHT_BODY_BYTES MAX_CONNECTIONS SHUTDOWN_DELAY_MS
  SHUTDOWN_TIMEOUT_MS ANCHORE_CLI_URL ANCHORE_API_VERSION ANCHORE_POLICY_ID ANCHORE_ACCOUNT
  ANCHORE_INSECURE_SKIP_TLS_VERIFY SCANNER_REQUEST_TIMEOUT_MS SCANNER_POLL_INITIAL_MS SCANNER_POLL_MAX_MS
  SCANNER_RETRY_BACKOFF_MS SCANNER_RETRY_BUDGET_MS SCANNER_BREAKER_FAILURES SCANNER_BREAKER_PROBE_INTERVAL_MS
  SCAN_MAX_DURATION_MS MAX_CONCURRENT_SCANS MAX_SCANS_PER_NAMESPACE MAX_NEW_SCANS_PER_REQUEST
  MAX_IMAGES_PER_REVIEW REJECT_IF_TIMEOUT DENY_LATEST_TAG REGISTRY_ALLOWLIST EXEMPT_NAMESPACES MODE
  NAMESPACE_MODES WORKLOAD_MODE PIN_DIGESTS BREAK_GLASS_USERS BREAK_GLASS_GROUPS BREAK_GLASS_PROOF_TTL_S
  CACHE_MAX_ENTRIES CACHE_MAX_BYTES CACHE_PASS_TTL_MS CACHE_FAIL_TTL_MS DEFAULT_TIMEOUT_MS DEADLINE_MARGIN_MS
  RECHECK_ENABLED RECHECK_INTERVAL_S RECHECK_RATE RECHECK_MAX_IN_FLIGHT RECHECK_METRIC_NAMESPACES LEASE_NAME
  LEASE_DURATION_S EVENTS_ENABLED EVENTS_QPS EVENTS_BURST EVENTS_QUEUE_MAX EVENTS_QUEUE_MAX_BYTES LOG_LEVEL)
declare -A SETTING_VALUE=(
  [CERT_RELOAD_INTERVAL_MS]=server.certReloadIntervalMs:int
  [MAX_BODY_BYTES]=server.maxBodyBytes:int
  [MAX_INFLIGHT_BODY_BYTES]=server.maxInflightBodyBytes:int
  [MAX_CONNECTIONS]=server.maxConnections:int
  [SHUTDOWN_DELAY_MS]=server.shutdownDelayMs:int
  [SHUTDOWN_TIMEOUT_MS]=server.shutdownTimeoutMs:int
  [ANCHORE_CLI_URL]=scanner.url:string
  [ANCHORE_API_VERSION]=scanner.apiVersion:string
  [ANCHORE_POLICY_ID]=scanner.policyId:string
  [ANCHORE_ACCOUNT]=scanner.account:string
  [ANCHORE_INSECURE_SKIP_TLS_VERIFY]=scanner.insecureSkipTLSVerify:bool
  [SCANNER_REQUEST_TIMEOUT_MS]=scanner.requestTimeoutMs:int
  [SCANNER_POLL_INITIAL_MS]=scanner.pollInitialMs:int
  [SCANNER_POLL_MAX_MS]=scanner.pollMaxMs:int
  [SCANNER_RETRY_BACKOFF_MS]=scanner.retryBackoffMs:int
  [SCANNER_RETRY_BUDGET_MS]=scanner.retryBudgetMs:int
  [SCANNER_BREAKER_FAILURES]=scanner.breakerFailures:int
  [SCANNER_BREAKER_PROBE_INTERVAL_MS]=scanner.breakerProbeIntervalMs:int
  [SCAN_MAX_DURATION_MS]=scanner.maxScanDurationMs:int
  [MAX_CONCURRENT_SCANS]=scanner.maxConcurrentScans:int
  [MAX_SCANS_PER_NAMESPACE]=scanner.maxScansPerNamespace:int
  [MAX_NEW_SCANS_PER_REQUEST]=scanner.maxNewScansPerRequest:int
  [MAX_IMAGES_PER_REVIEW]=maxImagesPerReview:int
  [REJECT_IF_TIMEOUT]=rejectIfTimeout:bool
  [DENY_LATEST_TAG]=denyLatestTag:bool
  [REGISTRY_ALLOWLIST]=registryAllowlist:list
  [EXEMPT_NAMESPACES]=exemptNamespaces:list
  [MODE]=mode:string
  [NAMESPACE_MODES]=namespaceModes:list
  [WORKLOAD_MODE]=workloadMode:string
  [PIN_DIGESTS]=pinning.enabled:bool
  [BREAK_GLASS_USERS]=breakGlass.users:list
  [BREAK_GLASS_GROUPS]=breakGlass.groups:list
  [BREAK_GLASS_PROOF_TTL_S]=breakGlass.proofTtlSeconds:int
  [CACHE_MAX_ENTRIES]=cache.maxEntries:int
  [CACHE_MAX_BYTES]=cache.maxBytes:int
  [CACHE_PASS_TTL_MS]=cache.passTtlMs:int
  [CACHE_FAIL_TTL_MS]=cache.failTtlMs:int
  [DEFAULT_TIMEOUT_MS]=deadline.defaultTimeoutMs:int
  [DEADLINE_MARGIN_MS]=deadline.marginMs:int
  [RECHECK_ENABLED]=recheck.enabled:bool
  [RECHECK_INTERVAL_S]=recheck.intervalSeconds:int
  [RECHECK_RATE]=recheck.rate:string
  [RECHECK_MAX_IN_FLIGHT]=recheck.maxInFlight:int
  [RECHECK_METRIC_NAMESPACES]=recheck.metricNamespaces:int
  [LEASE_NAME]=recheck.leaseName:string
  [LEASE_DURATION_S]=recheck.leaseDurationSeconds:int
  [EVENTS_ENABLED]=events.enabled:string
  [EVENTS_QPS]=events.qps:string
  [EVENTS_BURST]=events.burst:int
  [EVENTS_QUEUE_MAX]=events.queueMax:int
  [EVENTS_QUEUE_MAX_BYTES]=events.queueMaxBytes:int
  [LOG_LEVEL]=logLevel:string
)
# settings:end
# Not a scangate setting: the timeout of the mutating entry.
CONFIG_KEYS+=(PIN_WEBHOOK_TIMEOUT_SECONDS)
SETTING_VALUE[PIN_WEBHOOK_TIMEOUT_SECONDS]=pinning.timeoutSeconds:int

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
# The mutating entries leave out the namespaces labelled off too (no scan, no pin, no proof there).
MUTATE_OFF_EXPRESSION='        # NAMESPACE_MODES lists no off: no namespace is left out by its label'
for m in ${NAMESPACE_MODES//,/ }; do
  case "$m" in
    enforce | warn) ;;
    off)
      NAMESPACE_MODE_LIST='["enforce", "warn", "off"]'
      MUTATE_OFF_EXPRESSION='        - {key: scangate.io/mode, operator: NotIn, values: ["off"]}'
      ;;
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
  for k in "${CONFIG_KEYS[@]}"; do
    [[ -n "${!k:-}" ]] || continue
    value="${SETTING_VALUE[$k]%:*}" kind="${SETTING_VALUE[$k]##*:}"
    case "$k:$kind" in
      ANCHORE_CLI_URL:* | EXEMPT_NAMESPACES:*) ;; # above
      *:list) args+=(--set-json "$value=$(json_list "${!k}")") ;;
      *:string) args+=(--set-string "$value=${!k}") ;;
      *:bool) case "${!k}" in true | 1 | yes) args+=(--set "$value=true") ;; false | 0 | no) args+=(--set "$value=false") ;; *) args+=(--set "$value=${!k}") ;; esac ;;
      *) args+=(--set "$value=${!k}") ;;
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

# --- the mutating entries (MutatingWebhookConfiguration), out-of-cluster -------------------------------
# Always: workload templates (break-glass proofs, and pinning with PIN_DIGESTS=true); pods only with
# PIN_DIGESTS=true (manifests/mutating-webhook-pods.yaml).
PIN_WEBHOOK_TIMEOUT_SECONDS="${PIN_WEBHOOK_TIMEOUT_SECONDS:-15}"
if ! [[ "$PIN_WEBHOOK_TIMEOUT_SECONDS" =~ ^[0-9]+$ ]] || ((PIN_WEBHOOK_TIMEOUT_SECONDS < 1 || PIN_WEBHOOK_TIMEOUT_SECONDS > 30)); then
  die "PIN_WEBHOOK_TIMEOUT_SECONDS must be 1..30, got $PIN_WEBHOOK_TIMEOUT_SECONDS"
fi
CLIENT_CONFIG="$MUTATE_CLIENT_CONFIG"
RENDER_VARS=(PIN_WEBHOOK_TIMEOUT_SECONDS CLIENT_CONFIG EXEMPT_NAMESPACE_LIST MUTATE_OFF_EXPRESSION)
if [[ "${PIN_DIGESTS:-false}" =~ ^(true|1|yes)$ ]]; then
  { render "$MANIFESTS/mutating-webhook.yaml"; render "$MANIFESTS/mutating-webhook-pods.yaml"; } | apply
  log "done: MutatingWebhookConfiguration scangate (break-glass proofs, digest pinning of templates and pods, timeoutSeconds=$PIN_WEBHOOK_TIMEOUT_SECONDS)"
else
  render "$MANIFESTS/mutating-webhook.yaml" | apply
  log "done: MutatingWebhookConfiguration scangate (break-glass proofs of templates, timeoutSeconds=$PIN_WEBHOOK_TIMEOUT_SECONDS)"
fi
