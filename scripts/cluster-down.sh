#!/usr/bin/env bash
# Stops the local control plane started by cluster-up.sh and the local scangate and scanner simulator
# started by demo.sh, then deletes their state (etcd data, keys, kubeconfig). Safe to run at any time,
# any number of times, including after a failed start. Only processes recorded in pid files are signalled.
#
# usage: cluster-down.sh [--keep-logs] [--quiet] [--cluster-only]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

keep_logs=false quiet=false cluster_only=false
for arg in "$@"; do
  case "$arg" in
    --keep-logs) keep_logs=true ;;
    --quiet) quiet=true ;;
    --cluster-only) cluster_only=true ;;
    *) die "unknown argument $arg" ;;
  esac
done

stopped=0
stop() {
  if [[ -f "$1" ]]; then
    if daemon_alive "$1"; then stopped=$((stopped + 1)); fi
    stop_daemon "$@"
  fi
}

if [[ "$cluster_only" == false ]]; then
  stop "$LOCAL_DIR/scangate.pid"
  stop "$LOCAL_DIR/scanner-sim.pid"
  rm -rf "$LOCAL_DIR"
fi
# Reverse start order: nothing should outlive what it talks to.
stop "$CLUSTER_DIR/kube-controller-manager.pid"
stop "$CLUSTER_DIR/kube-apiserver.pid" "$APISERVER_GRACE_S"
stop "$CLUSTER_DIR/etcd.pid"
# When the watchdog itself runs this script (it execs it), it must not signal itself.
if [[ -f "$CLUSTER_DIR/watchdog.pid" && "$(<"$CLUSTER_DIR/watchdog.pid")" != "$$" ]]; then
  stop "$CLUSTER_DIR/watchdog.pid"
fi

if [[ -d "$CLUSTER_DIR" ]]; then
  if [[ "$keep_logs" == true ]]; then
    find "$CLUSTER_DIR" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  else
    rm -rf "$CLUSTER_DIR"
  fi
fi
[[ "$quiet" == true ]] || log "stopped $stopped process(es); state removed from $RUN_DIR"
