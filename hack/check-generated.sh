#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerate agent/generated/ and fail if the committed files differ (CI drift
# check for bpf-types.ts: the C headers are the source of truth).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsx hack/gen-bpf-types.ts
if [ -x hack/gen-proto.sh ]; then bash hack/gen-proto.sh; fi
git diff --exit-code agent/generated
