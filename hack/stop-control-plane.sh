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

# stop PID GRACE_TICKS: TERM, then KILL after GRACE_TICKS*0.1s, then wait
# until it is gone so the caller can reuse its ports at once.
stop() {
  ours "$1" || return 0
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 "$2"); do
    ours "$1" || return 0
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do
    ours "$1" || return 0
    sleep 0.1
  done
  echo "stop-control-plane: pid $1 still running after SIGKILL" >&2
}

pid_of() { [ -f "$dir/pids" ] && sed -n "s/^$1=//p" "$dir/pids" || true; }
# The apiserver first, while etcd still answers: with etcd gone its graceful
# shutdown hangs on storage. Everything is thrown away, so grace stays short.
stop "$(pid_of APISERVER_PID)" 30
stop "$(pid_of ETCD_PID)" 30
rm -rf -- "$dir"
