#!/usr/bin/env bash
# Tears down the node started by node-up.sh, and whatever a killed run left behind: stops the daemons
# (by their recorded pids), every container process (the pids in the node's cgroups and the shims' pid
# files), unmounts everything under the node's directories, deletes the network namespace and the
# cgroups, then removes the state. Safe to run at any time, any number of times.
#
# usage: node-down.sh [--keep-logs] [--quiet]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

keep_logs=false quiet=false
for arg in "$@"; do
  case "$arg" in
    --keep-logs) keep_logs=true ;;
    --quiet) quiet=true ;;
    *) die "unknown argument $arg" ;;
  esac
done

NODE_DIR="$RUN_DIR/node"
[[ -f "$NODE_DIR/ids.env" ]] || { [[ "$quiet" == true ]] || log "no node state in $NODE_DIR"; exit 0; }
# shellcheck source=/dev/null
source "$NODE_DIR/ids.env"
[[ "$NETNS" =~ ^scangate-[0-9a-f]{8}$ && "$CGROUP_ROOT" =~ ^/scangate-[0-9a-f]{8}$ && "$STATE_DIR" =~ ^/run/scangate-node-[0-9a-f]{8}$ ]] ||
  die "unexpected ids in $NODE_DIR/ids.env"

stopped=0
stop() {
  if daemon_alive "$1"; then stopped=$((stopped + 1)); fi
  stop_daemon "$@"
}

# The pids in the node's cgroup tree (containers and pause processes) and the shims' recorded pids.
container_pids() {
  local d
  for d in /sys/fs/cgroup/pids"$CGROUP_ROOT" /sys/fs/cgroup/memory"$CGROUP_ROOT"; do
    [[ -d "$d" ]] && find "$d" -name cgroup.procs -exec awk 1 {} + 2>/dev/null
  done
  [[ -d "$STATE_DIR" ]] && find "$STATE_DIR" -maxdepth 4 \( -name shim.pid -o -name init.pid \) -exec awk 1 {} + 2>/dev/null
  # (awk 1: a pid file has no final newline.) The shims run in their task's bundle directory, under the
  # state directory (also after it is gone).
  local p cwd
  for p in /proc/[0-9]*; do
    cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
    [[ "$cwd" == "$STATE_DIR/"* ]] && echo "${p#/proc/}"
  done
  true
}

kill_containers() {
  local pids i
  for i in 1 2 3 4 5; do
    mapfile -t pids < <(container_pids | sort -u | grep -E '^[0-9]+$' || true)
    ((${#pids[@]} > 0)) || return 0
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  done
}

# Reverse start order. The kubelet first, so it restarts nothing; then containerd.
stop "$NODE_DIR/kubelet.pid" 5
stop "$NODE_DIR/containerd.pid" 5
kill_containers
stop "$NODE_DIR/kube-scheduler.pid"
stop "$NODE_DIR/kube-controller-manager.pid"
stop "$NODE_DIR/kube-apiserver.pid" "$APISERVER_GRACE_S"
stop "$NODE_DIR/etcd.pid"
for p in "$NODE_DIR"/*.pid; do
  [[ -f "$p" ]] || continue
  [[ "$p" == "$NODE_DIR/watchdog.pid" ]] && continue
  stop "$p"
done
if [[ -f "$NODE_DIR/watchdog.pid" && "$(<"$NODE_DIR/watchdog.pid")" != "$$" ]]; then
  stop "$NODE_DIR/watchdog.pid"
fi

# Mounts under the node's directories (overlay root filesystems, secret tmpfs, pod netns), deepest first.
unmount_under() {
  local prefix=$1 m
  [[ -n "$prefix" ]] || return 0
  mapfile -t mounts < <(awk -v p="$prefix/" 'index($5, p) == 1 || $5 == substr(p, 1, length(p) - 1) { print $5 }' /proc/self/mountinfo | sort -r)
  for m in "${mounts[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
}
node_dir_abs=$(cd "$NODE_DIR" && pwd)
unmount_under "$STATE_DIR"
unmount_under "$node_dir_abs"

if ip netns list 2>/dev/null | grep -qx "$NETNS\( (id: [0-9]*)\)\?"; then
  ip netns delete "$NETNS" || log "could not delete network namespace $NETNS"
fi

# cgroups: children before parents; a cgroup with a live process cannot go (kill_containers ran).
for d in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
  [[ -d "$d" ]] || continue
  find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  [[ -d "$d" ]] && log "could not remove cgroup $d"
done

rm -rf "$STATE_DIR"
if [[ "$keep_logs" == true ]]; then
  find "$NODE_DIR" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
else
  rm -rf "$NODE_DIR"
fi
[[ "$quiet" == true ]] || log "stopped $stopped process(es); network namespace $NETNS, cgroups and state removed"
