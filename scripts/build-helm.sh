#!/usr/bin/env bash
# Builds helm from its official Go module (helm.sh/helm/v4, cmd/helm) through the Go module proxy, once
# per version, into a cache outside the repository. Prints the binary's path on stdout.
#
# `go install MODULE/cmd/helm@VERSION` builds with helm's own go.mod and go.sum as the main module, so
# every dependency is exactly the version helm released with (checked against the checksum database).
#
# usage: build-helm.sh           build if needed, print the path of the helm binary
#        build-helm.sh --check   exit 0 if helm is cached or can be built (go is installed), else print
#                                why on stderr and exit 3
#
# Environment: HELM_VERSION (default v4.3.1), SCANGATE_CACHE / XDG_CACHE_HOME (cache location)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
major="${HELM_VERSION%%.*}"
CACHE_ROOT="${SCANGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scangate}"
BIN_DIR="$CACHE_ROOT/helm/$HELM_VERSION/bin"
HELM="$BIN_DIR/helm"

source "$(dirname "$0")/lib.sh"  # log, die (the script's name as the prefix)

[[ "$HELM_VERSION" =~ ^v[34]\.[0-9]+\.[0-9]+$ ]] || { log "HELM_VERSION must look like v4.3.1 (helm v3 or v4), got $HELM_VERSION"; exit 2; }
if [[ -x "$HELM" ]]; then
  [[ "${1:-}" == --check ]] || echo "$HELM"
  exit 0
fi
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then PATH="$PATH:/usr/local/go/bin"; fi
command -v go >/dev/null || { log "go is not installed and $HELM is not cached"; exit 3; }
[[ "${1:-}" == --check ]] && exit 0

# Two callers at once would build twice on a 2-core machine; the second waits, then finds it cached.
mkdir -p "$CACHE_ROOT/helm"
exec 9>"$CACHE_ROOT/helm/.build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if [[ -x "$HELM" ]]; then
  echo "$HELM"
  exit 0
fi

log "building helm $HELM_VERSION from helm.sh/helm/$major (first run only; a few minutes)"
t0=$SECONDS
work="$CACHE_ROOT/helm/build-$HELM_VERSION"
rm -rf "$work"
mkdir -p "$work" "$BIN_DIR"
module="helm.sh/helm/$major"
ldflags="-s -w -X $module/internal/version.version=$HELM_VERSION -X $module/internal/version.gitTreeState=clean"
# Built next to the cache and moved in whole: an interrupted build never leaves a truncated binary
# that the "cached" check above would accept.
GOBIN="$work" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}" \
  go install -trimpath -ldflags "$ldflags" "$module/cmd/helm@$HELM_VERSION" >&2
"$work/helm" version --short >/dev/null
mv "$work/helm" "$HELM"
rm -rf "$work"
log "helm $HELM_VERSION built in $((SECONDS - t0))s: $HELM"
echo "$HELM"
