#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's test command: every test project, as root, in order. Unit
# tests first (fast failures), then BPF_PROG_TEST_RUN tables, then the
# privileged real-packet tests one file at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "hack/test.sh: the bpf and privileged tests need root" >&2
  exit 1
fi
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
npx tsc -p tsconfig.json --noEmit
bash hack/check-generated.sh
npx vitest run --project unit
npx vitest run --project bpf
npx vitest run --project privileged
