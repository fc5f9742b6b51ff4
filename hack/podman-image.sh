#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build a tiny busybox image for podman tests and benchmarks without any
# registry: a rootfs tarball holding Debian's static /bin/busybox
# (busybox-static) plus one symlink per applet, imported with `podman import`.
# Idempotent: an existing image of that name is kept. Prints the image name.
#   hack/podman-image.sh [image]   (default localhost/twill-busybox:latest)
set -euo pipefail
image="${1:-localhost/twill-busybox:latest}"
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
busybox="$(command -v busybox)"
# Debian's busybox-static installs /bin/busybox; a dynamic one would need libc
# in the image (ldd fails on a static binary).
if ldd "$busybox" >/dev/null 2>&1; then
  echo "podman-image: $busybox is dynamically linked (install busybox-static)" >&2
  exit 1
fi
root="$(mktemp -d /tmp/twt-rootfs-XXXXXX)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root}
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
tar -C "$root" -cf "$root.tar" .
podman import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$root.tar" "$image" >/dev/null
rm -f "$root.tar"
echo "$image"
