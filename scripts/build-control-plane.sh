#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from the official Go modules, once per
# version, into a cache outside the repository. Prints the bin directory on stdout.
#
# k8s.io/kubernetes points its staging modules (k8s.io/api, client-go, ...) at ./staging paths that do
# not exist in the module zip, so a build module of our own requires it and replaces every staging
# module with the published v0.X.Y of the same release (the list is read from its go.mod).
#
# usage: build-control-plane.sh           build if needed, print the bin directory
#        build-control-plane.sh --check   exit 0 if the binaries are cached or can be built (go is
#                                         installed), else print why on stderr and exit 3
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${SCANGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scangate}"
BIN_DIR="$CACHE_ROOT/control-plane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"

source "$(dirname "$0")/lib.sh"  # log, die (the script's name as the prefix)

cached() { [[ -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/kube-controller-manager" && -x "$BIN_DIR/etcd" ]]; }
if cached; then
  [[ "${1:-}" == --check ]] || echo "$BIN_DIR"
  exit 0
fi
command -v go >/dev/null || { log "go is not installed and $BIN_DIR holds no cached binaries"; exit 3; }
[[ "${1:-}" == --check ]] && exit 0

# Two callers at once (make demo in one terminal, make e2e in another) would build twice on a 2-core
# machine; the second waits for the first and then finds the binaries cached.
mkdir -p "$CACHE_ROOT/control-plane"
exec 9>"$CACHE_ROOT/control-plane/.build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if cached; then
  echo "$BIN_DIR"
  exit 0
fi

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0
work="$CACHE_ROOT/control-plane/build-$K8S_VERSION-$ETCD_VERSION"
out="$work/out"
mkdir -p "$work/k8s" "$work/etcd" "$out" "$BIN_DIR"

# --- Kubernetes -----------------------------------------------------------------------------------
if [[ ! -x "$BIN_DIR/kube-apiserver" || ! -x "$BIN_DIR/kube-controller-manager" ]]; then
  log "building kube-apiserver and kube-controller-manager $K8S_VERSION (first run only; slow)"
  staging_version="v0.${K8S_VERSION#v1.}"
  (
    cd "$work/k8s"
    modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
    [[ -f "$modfile" ]] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
    {
      echo "module scangate.local/control-plane"
      echo
      echo "go $(sed -n 's/^go //p' "$modfile")"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$modfile"
      echo ")"
    } > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
    go mod tidy >&2
    minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    ldflags="-s -w"
    for kv in "gitVersion=$K8S_VERSION" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" "buildDate=1970-01-01T00:00:00Z"; do
      ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
    done
    # Built next to the cache and moved in whole: an interrupted build never leaves a truncated binary
    # that the "cached" check would accept.
    go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
    go build -trimpath -ldflags "$ldflags" -o "$out/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager >&2
    mv "$out/kube-apiserver" "$out/kube-controller-manager" "$BIN_DIR/"
  )
fi

# --- etcd -------------------------------------------------------------------------------------------
if [[ ! -x "$BIN_DIR/etcd" ]]; then
  log "building etcd $ETCD_VERSION"
  (
    cd "$work/etcd"
    printf 'module scangate.local/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    go mod tidy >&2
    go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3 >&2
    mv "$out/etcd" "$BIN_DIR/"
  )
fi

echo "$BIN_DIR"
