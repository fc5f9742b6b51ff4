#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install what a fresh Debian 12 machine lacks to build, run and test Twill.
# Idempotent: a second run installs nothing and takes a few seconds.
set -euo pipefail

PKGS=(clang llvm libbpf-dev bpftool iproute2 iperf3 podman runc containernetworking-plugins
      busybox-static openssl procps psmisc kmod)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bpffs: the datapath pins its maps there.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi

# Podman on this kind of machine: runc + cgroupfs, and ulimits the sandbox allows.
mkdir -p /etc/containers
conf=/etc/containers/containers.conf
if ! grep -q 'twill-managed' "$conf" 2>/dev/null; then
  cat >"$conf" <<'CONF'
# twill-managed: settings hack/install-deps.sh needs for the podman tests
[containers]
default_ulimits = ["nofile=4096:4096","nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "cni"
cni_plugin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
CONF
fi

# Node dependencies exactly as locked.
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
