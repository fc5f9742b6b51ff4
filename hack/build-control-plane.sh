#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the test control plane (kube-apiserver, kubectl, etcd) from Go modules
# pinned in hack/k8s/go.mod, into /var/cache/twill/bin. No other download: the
# only source is the Go module proxy. The cache directory is fixed so that every
# checkout, session and CI run on a machine shares one build.
#
# Idempotent: when the binaries exist and the stamp file records the same
# pinned versions (and the same go.mod/go.sum), it exits in well under a second.
# A cold build takes tens of minutes on 2 cores; it runs under `nice` because
# other work shares the machine.
#
# Prints the bin directory on stdout as its last line; progress goes to stderr.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod_dir="$root/hack/k8s"
cache=/var/cache/twill
bin="$cache/bin"
stamp="$bin/.stamp"

export PATH="/usr/local/go/bin:$PATH"
export GOPATH="$cache/gomod" GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

# The versions the build is pinned to, read from the committed go.mod (no Go
# command needed, so the warm path stays fast).
k8s_version="$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$mod_dir/go.mod" | head -1)"
etcd_version="$(sed -n 's/^[[:space:]]*go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\).*/\1/p' "$mod_dir/go.mod" | head -1)"
if [ -z "$k8s_version" ] || [ -z "$etcd_version" ]; then
  echo "build-control-plane: read pinned versions from $mod_dir/go.mod failed" >&2
  exit 1
fi
sum="$(cat "$mod_dir/go.mod" "$mod_dir/go.sum" | sha256sum | cut -d' ' -f1)"
want="kubernetes=$k8s_version etcd=$etcd_version gomod=$sum"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/etcd" ]; then
  echo "build-control-plane: up to date ($want)" >&2
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build-control-plane: go not found (want /usr/local/go/bin/go)" >&2; exit 1; }
mkdir -p "$bin" "$GOMODCACHE" "$GOCACHE"
# One build at a time per machine: parallel test runs would otherwise each
# start a 2-core, multi-GiB compile of the same thing.
exec 9>"$cache/.build.lock"
flock 9
# Another process may have finished the build while we waited for the lock.
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/etcd" ]; then
  echo "$bin"
  exit 0
fi
rm -f "$stamp"

minor="$(echo "$k8s_version" | cut -d. -f2)"
kver="k8s.io/component-base/version"
k8s_ldflags="-s -w -X $kver.gitVersion=$k8s_version -X $kver.gitMajor=1 -X $kver.gitMinor=$minor"
k8s_ldflags+=" -X $kver.gitTreeState=clean -X $kver.buildDate=1970-01-01T00:00:00Z"
# kubectl reads its own version from client-go's copy of the same variables.
cver="k8s.io/client-go/pkg/version"
k8s_ldflags+=" -X $cver.gitVersion=$k8s_version -X $cver.gitMajor=1 -X $cver.gitMinor=$minor"
k8s_ldflags+=" -X $cver.gitTreeState=clean -X $cver.buildDate=1970-01-01T00:00:00Z"

cd "$mod_dir"
start=$SECONDS
echo "build-control-plane: go mod download (kubernetes $k8s_version, etcd $etcd_version)" >&2
go mod download
build() { # build <output> <ldflags> <package>
  local t=$SECONDS
  echo "build-control-plane: building $1" >&2
  nice -n 10 go build -trimpath -ldflags="$2" -o "$bin/$1.tmp" "$3"
  mv -f "$bin/$1.tmp" "$bin/$1"
  echo "build-control-plane: built $1 in $((SECONDS - t))s" >&2
}
build etcd "-s -w" go.etcd.io/etcd/server/v3
build kube-apiserver "$k8s_ldflags" k8s.io/kubernetes/cmd/kube-apiserver
build kubectl "$k8s_ldflags" k8s.io/kubernetes/cmd/kubectl
echo "$want" >"$stamp"
echo "build-control-plane: done in $((SECONDS - start))s" >&2
echo "$bin"
