#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the single-file CNI plugin: build/twill-cni (bun --compile, bytecode,
# minified). The binary runs without the repository, so the gRPC descriptor
# of proto/twill/v1 (endpoint + agent services) is embedded as a string
# constant (--define TWILL_PROTO_JSON, read by cni/client.ts); koffi's native
# module is embedded by bun itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/twill-cni}"
mkdir -p "$(dirname "$out")"

# protobufjs parses with camelCase field names, as proto-loader's loadSync
# would with keepCase=false (cni/client.ts PROTO_OPTIONS).
proto_json="$(node --input-type=module -e '
import { createRequire } from "node:module";
import * as path from "node:path";
const require = createRequire(path.resolve("node_modules/@grpc/proto-loader/package.json"));
const protobuf = require("protobufjs");
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => path.resolve("proto", target);
root.loadSync(["twill/v1/endpoint.proto", "twill/v1/agent.proto"], { keepCase: false });
root.resolveAll();
process.stdout.write(JSON.stringify(JSON.stringify(root.toJSON())));
')"

npx bun build --compile --bytecode --minify --target=bun \
  --define "TWILL_PROTO_JSON=${proto_json}" \
  cni/main.ts --outfile "$out"
echo "built $out ($(du -h "$out" | cut -f1))"
