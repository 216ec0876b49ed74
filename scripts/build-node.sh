#!/usr/bin/env bash
# Builds what a node needs from the official Go modules, once per version, into a cache outside the
# repository: kubelet and kube-scheduler (the k8s.io/kubernetes module trick of build-control-plane.sh),
# containerd + ctr + the runc v2 shim, runc (cgo; with seccomp when libseccomp-dev is installed), the
# CNI plugins bridge, host-local and loopback, and our own static pause program. Prints the bin
# directory on stdout.
#
# usage: build-node.sh                 build what is missing, print the bin directory
#        build-node.sh --check         exit 0 if everything is cached or can be built, else exit 3
#        build-node.sh COMPONENT...    build only these (k8s containerd runc cni pause)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.3}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.10.0}"
CACHE_ROOT="${SCANGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scangate}"
BIN_DIR="$CACHE_ROOT/node/k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-cni-$CNI_PLUGINS_VERSION/bin"

source "$(dirname "$0")/lib.sh"  # log, die (the script's name as the prefix)

declare -A FILES=(
  [k8s]="kubelet kube-scheduler"
  [containerd]="containerd ctr containerd-shim-runc-v2"
  [runc]="runc"
  [cni]="cni/bridge cni/host-local cni/loopback"
  [pause]="pause"
)
ALL=(runc cni pause containerd k8s)

check_only=false
wanted=()
for a in "$@"; do
  case "$a" in
    --check) check_only=true ;;
    k8s | containerd | runc | cni | pause) wanted+=("$a") ;;
    *) log "unknown component $a"; exit 2 ;;
  esac
done
((${#wanted[@]} > 0)) || wanted=("${ALL[@]}")

cached() {
  local c f
  for c in "$@"; do
    for f in ${FILES[$c]}; do [[ -x "$BIN_DIR/$f" ]] || return 1; done
  done
}
if cached "${wanted[@]}"; then
  $check_only || echo "$BIN_DIR"
  exit 0
fi
command -v go >/dev/null || { log "go is not installed and $BIN_DIR holds no cached binaries"; exit 3; }
command -v gcc >/dev/null || { log "gcc is needed to build runc (cgo)"; exit 3; }
$check_only && exit 0

mkdir -p "$CACHE_ROOT/node" "$BIN_DIR/cni"

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
work="$CACHE_ROOT/node/build"
out="$work/out"
mkdir -p "$work" "$out/cni"

# A build module of our own that requires MODULE@VERSION (plus the imports in tools.go).
new_module() {
  local dir=$1 name=$2 go_version=$3
  shift 3
  rm -rf "$dir" && mkdir -p "$dir"
  {
    printf 'module scangate.local/%s\n\ngo %s\n\nrequire (\n' "$name" "$go_version"
    local m
    for m in "$@"; do printf '\t%s\n' "$m"; done
    printf ')\n'
  } >"$dir/go.mod"
}
tools_go() {
  local dir=$1 p
  shift
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'
  } >"$dir/tools.go"
}
# Moves the built files into the cache whole: an interrupted build never leaves a truncated binary that
# the "cached" check would accept.
install_files() {
  local f
  for f in "$@"; do mv "$out/$f" "$BIN_DIR/$f"; done
}

build_k8s() {
  log "building kubelet and kube-scheduler $K8S_VERSION (first run only; slow)"
  local staging_version="v0.${K8S_VERSION#v1.}" dir="$work/k8s" modfile minor ldflags kv
  modfile=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
  [[ -f "$modfile" ]] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  rm -rf "$dir" && mkdir -p "$dir"
  {
    echo "module scangate.local/node-k8s"
    echo
    echo "go $(sed -n 's/^go //p' "$modfile")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$modfile"
    echo ")"
  } >"$dir/go.mod"
  tools_go "$dir" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for kv in "gitVersion=$K8S_VERSION" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" "buildDate=1970-01-01T00:00:00Z"; do
    ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  (
    cd "$dir"
    export CGO_ENABLED=0
    go mod tidy >&2
    go build -trimpath -ldflags "$ldflags" -o "$out/kubelet" k8s.io/kubernetes/cmd/kubelet >&2
    go build -trimpath -ldflags "$ldflags" -o "$out/kube-scheduler" k8s.io/kubernetes/cmd/kube-scheduler >&2
  )
  install_files kubelet kube-scheduler
}

build_containerd() {
  log "building containerd, ctr and containerd-shim-runc-v2 $CONTAINERD_VERSION"
  local dir="$work/containerd" pkg="github.com/containerd/containerd/v2" ldflags
  new_module "$dir" containerd 1.24 "$pkg $CONTAINERD_VERSION"
  tools_go "$dir" "$pkg/cmd/containerd" "$pkg/cmd/ctr" "$pkg/cmd/containerd-shim-runc-v2"
  ldflags="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=$pkg"
  (
    cd "$dir"
    # No btrfs or devmapper snapshotters (overlayfs is what the node uses); static, no cgo.
    export CGO_ENABLED=0
    go mod tidy >&2
    local c
    for c in containerd ctr containerd-shim-runc-v2; do
      go build -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "$ldflags" -o "$out/$c" "$pkg/cmd/$c" >&2
    done
  )
  install_files containerd ctr containerd-shim-runc-v2
}

build_runc() {
  local dir="$work/runc" tags=""
  # runc's nsenter is C: cgo is required. Seccomp needs libseccomp's headers (Debian: libseccomp-dev);
  # without them runc is built without it and pods asking for a seccomp profile fail to start.
  if pkg-config --exists libseccomp 2>/dev/null; then
    tags="seccomp"
  else
    log "libseccomp-dev is not installed: runc is built WITHOUT seccomp"
  fi
  log "building runc $RUNC_VERSION (tags: ${tags:-none})"
  new_module "$dir" runc 1.24 "github.com/opencontainers/runc $RUNC_VERSION"
  tools_go "$dir" github.com/opencontainers/runc
  (
    cd "$dir"
    export CGO_ENABLED=1
    go mod tidy >&2
    go build -trimpath -tags "$tags" -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" -o "$out/runc" github.com/opencontainers/runc >&2
  )
  install_files runc
}

build_cni() {
  log "building the CNI plugins bridge, host-local and loopback $CNI_PLUGINS_VERSION"
  local dir="$work/cni" pkg="github.com/containernetworking/plugins"
  new_module "$dir" cni 1.24 "$pkg $CNI_PLUGINS_VERSION"
  tools_go "$dir" "$pkg/plugins/main/bridge" "$pkg/plugins/ipam/host-local" "$pkg/plugins/main/loopback"
  (
    cd "$dir"
    export CGO_ENABLED=0
    go mod tidy >&2
    go build -trimpath -ldflags "-s -w" -o "$out/cni/bridge" "$pkg/plugins/main/bridge" >&2
    go build -trimpath -ldflags "-s -w" -o "$out/cni/host-local" "$pkg/plugins/ipam/host-local" >&2
    go build -trimpath -ldflags "-s -w" -o "$out/cni/loopback" "$pkg/plugins/main/loopback" >&2
  )
  install_files cni/bridge cni/host-local cni/loopback
}

# The pod sandbox's process: sleeps until SIGTERM or SIGINT, reaps zombies (it is PID 1 of the pod's
# PID namespace when the pod shares one). Ours, static, so the node needs no registry.
build_pause() {
  log "building the pause program"
  local dir="$work/pause"
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module scangate.local/pause\n\ngo 1.22\n' >"$dir/go.mod"
  cat >"$dir/main.go" <<'GO'
// pause: the process that holds a pod sandbox's namespaces open.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
GO
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/pause" . >&2)
  install_files pause
}

# One lock per component: two callers never build the same thing twice on a 2-core machine, and the
# second finds it cached.
for c in "${wanted[@]}"; do
  cached "$c" && continue
  exec 9>"$CACHE_ROOT/node/.build-$c.lock"
  if ! flock -n 9; then
    log "another build of $c is running; waiting for it"
    flock 9
  fi
  cached "$c" || "build_$c"
  exec 9>&-
done
echo "$BIN_DIR"
