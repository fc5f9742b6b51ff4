// SPDX-License-Identifier: Apache-2.0
// Runtime loading of proto/twill/v1 with @grpc/proto-loader, shared by the
// agent's server, the CLI and the CNI plugin.
//
// API: loadTwillProto() -> TwillGrpc (service constructors + definitions),
// PROTO_LOADER_OPTIONS, findProtoDir(). The options must match the flags
// hack/gen-proto.sh passes to proto-loader-gen-types, or the generated types
// in agent/generated/proto/ would not describe what the loader produces.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ProtoGrpcType as AgentProto } from "../generated/proto/agent.js";
import type { ProtoGrpcType as DatapathProto } from "../generated/proto/datapath.js";
import type { ProtoGrpcType as EndpointProto } from "../generated/proto/endpoint.js";
import type { ProtoGrpcType as IdentityProto } from "../generated/proto/identity.js";
import type { ProtoGrpcType as ObserveProto } from "../generated/proto/observe.js";
import type { ProtoGrpcType as PolicyProto } from "../generated/proto/policy.js";

/** Every twill.v1 type, merged from the per-file generated declarations. */
export type TwillV1 = AgentProto["twill"]["v1"] &
  DatapathProto["twill"]["v1"] &
  EndpointProto["twill"]["v1"] &
  IdentityProto["twill"]["v1"] &
  ObserveProto["twill"]["v1"] &
  PolicyProto["twill"]["v1"];

/** The loaded package: `loadTwillProto().twill.v1.Endpoints` etc. */
export interface TwillGrpc {
  readonly twill: { readonly v1: TwillV1 };
}

/** camelCase fields, enum names as strings, 64-bit as decimal strings. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

const PROTO_FILES = [
  "agent.proto",
  "common.proto",
  "datapath.proto",
  "endpoint.proto",
  "identity.proto",
  "observe.proto",
  "policy.proto",
].map((f) => `twill/v1/${f}`);

/**
 * The directory holding twill/v1/*.proto. Found by walking up from this
 * module, so it works from the source tree (tsx) and from dist/.
 */
export function findProtoDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, "proto");
    if (fs.existsSync(path.join(candidate, "twill", "v1", "agent.proto"))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("load proto: proto/twill/v1/agent.proto not found above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

let cached: TwillGrpc | null = null;

/** Load (once) and return the twill.v1 package. */
export function loadTwillProto(): TwillGrpc {
  if (cached !== null) return cached;
  const def = protoLoader.loadSync(PROTO_FILES, { ...PROTO_LOADER_OPTIONS, includeDirs: [findProtoDir()] });
  cached = grpc.loadPackageDefinition(def) as unknown as TwillGrpc;
  return cached;
}
