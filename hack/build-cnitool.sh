#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build cnitool (containernetworking/cni's reference runtime client) into
# /var/cache/twill/bin, once: later runs reuse the binary and the caches.
# Tests and the demo use it to drive twill-cni exactly as libcni-based runtimes
# (containerd, CRI-O, podman) do, including conflist chaining and GC.
set -euo pipefail
CNI_VERSION="${CNITOOL_VERSION:-v1.3.0}"
cache=/var/cache/twill
bin="$cache/bin/cnitool"
if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$CNI_VERSION" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache/bin" "$cache/gomod" "$cache/gocache"
export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOBIN="$cache/bin" GOFLAGS=-mod=mod CGO_ENABLED=0
# `go install pkg@version` builds outside any module, pinned to that release.
go install "github.com/containernetworking/cni/cnitool@${CNI_VERSION}" >&2
echo "$CNI_VERSION" > "$bin.version"
echo "$bin"
