#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's test command: installs what is missing (idempotent), then runs
# every test project as root, in order: typecheck and generated-code drift,
# unit tests, BPF_PROG_TEST_RUN tables, privileged real-packet tests (one
# file at a time), and the Kubernetes tests against a real kube-apiserver.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "hack/test.sh: the bpf and privileged tests need root" >&2
  exit 1
fi
bash hack/install-deps.sh
npx tsc -p tsconfig.json --noEmit
bash hack/check-generated.sh
bash hack/build-cni.sh >/dev/null
npx vitest run --project unit
npx vitest run --project bpf
npx vitest run --project privileged
if grep -q '"test:k8s"' package.json; then
  bash hack/build-control-plane.sh >/dev/null
  npm run test:k8s
fi
