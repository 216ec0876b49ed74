#!/usr/bin/env bash
# Checks charts/scangate: `helm lint --strict` and `helm template` with every value set in
# charts/scangate/ci/ (defaults, existing Secret, cert-manager with its own CA or a cluster issuer, warn
# mode with every knob moved, the NetworkPolicy), a values-less render that must refuse (scanner.url is
# required) and so must a NetworkPolicy without peers, and a
# server-side dry run of every rendered object (`kubectl apply --dry-run=server`) against the API server
# of the current kubectl context. For the cert-manager sets, cert-manager's CRDs (from its Go module,
# CERT_MANAGER_VERSION) are installed first, so Certificates and Issuers are checked against their real
# schema. Nothing is created in the cluster but a namespace (removed again) and those CRDs.
#
# usage: check-chart.sh [--no-cluster]    (--no-cluster: lint and template only)
#
# Environment: CHART (default charts/scangate), HELM (default: scripts/build-helm.sh's binary), KUBECONFIG, CERT_MANAGER_VERSION
#              (default v1.21.2), CHECK_NAMESPACE (default scangate-chart-check)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require "$KUBECTL"

CHART="${CHART:-$SCANGATE_ROOT/charts/scangate}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.21.2}"
CHECK_NAMESPACE="${CHECK_NAMESPACE:-scangate-chart-check}"
HELM="${HELM:-$("$SCANGATE_ROOT/scripts/build-helm.sh")}"
cluster=true
[[ "${1:-}" == --no-cluster ]] && cluster=false

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { log "FAIL: $*"; failures=$((failures + 1)); }

# --- lint and template --------------------------------------------------------------------------------
sets=("$CHART"/ci/*-values.yaml)
for values in "${sets[@]}"; do
  name=$(basename "$values" -values.yaml)
  if out=$("$HELM" lint --strict "$CHART" -f "$values" --namespace "$CHECK_NAMESPACE" 2>&1); then
    log "lint --strict $name: clean"
  else
    fail "helm lint --strict -f ci/$name-values.yaml:"$'\n'"$out"
  fi
  if "$HELM" template scangate "$CHART" -f "$values" --namespace "$CHECK_NAMESPACE" >"$tmp/$name.yaml" 2>"$tmp/$name.err"; then
    log "template $name: $(grep -c '^kind:' "$tmp/$name.yaml") objects"
  else
    fail "helm template -f ci/$name-values.yaml: $(cat "$tmp/$name.err")"
  fi
done

# Without scanner.url the chart must refuse to render, saying why.
if out=$("$HELM" template scangate "$CHART" 2>&1); then
  fail "helm template without scanner.url rendered; it must fail"
elif [[ "$out" != *"scanner.url is required"* ]]; then
  fail "helm template without scanner.url failed for another reason: $out"
else
  log "template without scanner.url: refused (scanner.url is required)"
fi

# A NetworkPolicy with no peer would admit no connection (and, with failurePolicy Fail, no pod): refused.
if out=$("$HELM" template scangate "$CHART" --set scanner.url=https://anchore.example.com/v2 --set networkPolicy.enabled=true 2>&1); then
  fail "helm template with networkPolicy.enabled and no networkPolicy.from rendered; it must fail"
elif [[ "$out" != *"networkPolicy.from is required"* ]]; then
  fail "helm template with networkPolicy.enabled and no peer failed for another reason: $out"
else
  log "template with networkPolicy.enabled and no peer: refused (networkPolicy.from is required)"
fi
if ! grep -q '^kind: NetworkPolicy' "$tmp/network-policy.yaml"; then
  fail "ci/network-policy-values.yaml renders no NetworkPolicy"
fi
if grep -q '^kind: NetworkPolicy' "$tmp/default.yaml"; then
  fail "the default values render a NetworkPolicy (it must be asked for: networkPolicy.enabled)"
fi
# Events: by default exactly create and patch of events.k8s.io events, bound to scangate's account and its
# token mounted; with events.enabled=false (ci/warn-mode) no role and no token.
rules=$(sed -n '/^kind: ClusterRole$/,/^---/p' "$tmp/default.yaml" | grep -E '^\s+- apiGroups:|^\s+(resources|verbs):' | tr '\n' ' ' | tr -s ' ')
if [[ "$rules" != ' - apiGroups: ["events.k8s.io"] resources: ["events"] verbs: ["create", "patch"] ' ]]; then
  fail "the default ClusterRole must grant exactly events.k8s.io events create/patch, got: $rules"
fi
grep -q '^kind: ClusterRoleBinding' "$tmp/default.yaml" || fail "the default values render no ClusterRoleBinding for events"
grep -q 'automountServiceAccountToken: true' "$tmp/default.yaml" || fail "the default values mount no token (events need one)"
if grep -qE '^kind: (ClusterRole|ClusterRoleBinding)$|automountServiceAccountToken: true' "$tmp/warn-mode.yaml"; then
  fail "events.enabled=false (ci/warn-mode) still renders RBAC or mounts a token"
fi

# --- server-side dry run ------------------------------------------------------------------------------
if [[ "$cluster" == true ]]; then
  "$KUBECTL" get --raw /readyz >/dev/null || die "no API server in the current context (KUBECONFIG=${KUBECONFIG:-}); use --no-cluster"
  if grep -lq 'cert-manager.io/v1' "$tmp"/*.yaml; then
    export PATH="$PATH:/usr/local/go/bin"
    command -v go >/dev/null || die "go is needed to fetch cert-manager's CRDs (module github.com/cert-manager/cert-manager)"
    moddir=$(cd "$tmp" && go mod download -json "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" |
      sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    [[ -d "$moddir/deploy/crds" ]] || die "no deploy/crds in github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION"
    for crd in certificates issuers clusterissuers certificaterequests; do
      "$KUBECTL" apply --server-side --force-conflicts --field-manager=scangate-check -f "$moddir/deploy/crds/cert-manager.io_$crd.yaml" >/dev/null
    done
    "$KUBECTL" wait --for=condition=Established --timeout=60s \
      crd/certificates.cert-manager.io crd/issuers.cert-manager.io crd/clusterissuers.cert-manager.io >/dev/null
    log "cert-manager $CERT_MANAGER_VERSION CRDs installed"
  fi
  "$KUBECTL" create namespace "$CHECK_NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  for values in "${sets[@]}"; do
    name=$(basename "$values" -values.yaml)
    [[ -s "$tmp/$name.yaml" ]] || continue
    if out=$("$KUBECTL" apply --dry-run=server --server-side --field-manager=scangate-check -f "$tmp/$name.yaml" 2>&1); then
      log "dry-run=server $name: accepted ($(grep -c 'serverside-applied' <<<"$out") objects)"
    else
      fail "kubectl apply --dry-run=server of ci/$name-values.yaml:"$'\n'"$out"
    fi
  done
  "$KUBECTL" delete namespace "$CHECK_NAMESPACE" --wait=false >/dev/null
fi

((failures == 0)) || die "$failures chart check(s) failed"
log "charts/scangate: all checks passed"
