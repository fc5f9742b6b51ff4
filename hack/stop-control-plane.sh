#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Stop a control plane started by hack/start-control-plane.sh DIR and delete
# DIR. Pids come from DIR/pids, which the start script writes as each process
# starts, so this also cleans up after a start that failed or was killed half
# way. Safe to run twice. Only processes whose command line names DIR are
# killed (a recorded pid may have been reused), and only a DIR carrying the
# start script's marker file is deleted.
set -euo pipefail
dir="${1:?usage: stop-control-plane.sh DIR}"
[ -d "$dir" ] || exit 0
dir="$(cd "$dir" && pwd)"
if [ ! -f "$dir/.twill-control-plane" ]; then
  echo "stop-control-plane: $dir was not made by start-control-plane.sh; not touching it" >&2
  exit 1
fi

ours() { # ours PID: the process is alive and was started for this DIR
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$dir/"
}

pids=()
if [ -f "$dir/pids" ]; then
  for key in APISERVER_PID ETCD_PID; do
    pid="$(sed -n "s/^$key=//p" "$dir/pids")"
    if ours "$pid"; then pids+=("$pid"); fi
  done
fi
# The apiserver first, so it does not log etcd errors while going down.
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do
  for _ in $(seq 1 50); do
    ours "$pid" || break
    sleep 0.2
  done
  if ours "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
done
rm -rf -- "$dir"
