// SPDX-License-Identifier: Apache-2.0
// gRPC client from the plugin to the agent's Endpoints and Agent services over
// the agent's unix socket. Every call has a deadline; failures become
// CniErrors: "agent unreachable" is TryAgainLater (11, the runtime may retry
// ADD) and is also what DEL checks to decide to queue the deletion instead.
//
// The .proto files are the source of truth. Under tsx/node they are read from
// proto/ in the repository; the bun-compiled binary has no repository, so
// hack/build-cni.sh embeds their JSON descriptor with
// --define TWILL_PROTO_JSON=... and this module prefers it when defined.
//
// API: AgentClient (createEndpoint, deleteEndpoint, getEndpoint, gcEndpoints,
// health, close), AgentUnreachableError, isAgentUnreachable, loadProto.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ProtoGrpcType as AgentProto } from "../agent/generated/proto/agent.js";
import type { ProtoGrpcType as EndpointProto } from "../agent/generated/proto/endpoint.js";
import type { CreateEndpointRequest } from "../agent/generated/proto/twill/v1/CreateEndpointRequest.js";
import type { Endpoint__Output } from "../agent/generated/proto/twill/v1/Endpoint.js";
import type { EndpointsClient } from "../agent/generated/proto/twill/v1/Endpoints.js";
import type { AgentClient as AgentServiceClient } from "../agent/generated/proto/twill/v1/Agent.js";
import type { HealthResponse__Output } from "../agent/generated/proto/twill/v1/HealthResponse.js";
import type { HealthRequest } from "../agent/generated/proto/twill/v1/HealthRequest.js";
import type { CreateEndpointResponse__Output } from "../agent/generated/proto/twill/v1/CreateEndpointResponse.js";
import type { DeleteEndpointRequest } from "../agent/generated/proto/twill/v1/DeleteEndpointRequest.js";
import type { DeleteEndpointResponse__Output } from "../agent/generated/proto/twill/v1/DeleteEndpointResponse.js";
import type { GetEndpointRequest } from "../agent/generated/proto/twill/v1/GetEndpointRequest.js";
import type { GcEndpointsRequest } from "../agent/generated/proto/twill/v1/GcEndpointsRequest.js";
import type { GcEndpointsResponse__Output } from "../agent/generated/proto/twill/v1/GcEndpointsResponse.js";
import { CniError, CniErrorCode } from "./errors.js";

// Set by `bun build --define` (hack/build-cni.sh); undeclared under node.
declare const TWILL_PROTO_JSON: string | undefined;

/** Must match hack/gen-proto.sh, or the generated types lie. */
const PROTO_OPTIONS: protoLoader.Options = {
  keepCase: false, longs: String, enums: String, defaults: true, oneofs: true,
};

const PROTO_FILES = ["twill/v1/endpoint.proto", "twill/v1/agent.proto"];

/** Default deadline of one call. */
export const DEFAULT_DEADLINE_MS = 10_000;

/** Load the agent's services (embedded descriptor first, then proto/ on disk). */
export function loadProto(): AgentProto & EndpointProto {
  let def: protoLoader.PackageDefinition;
  if (typeof TWILL_PROTO_JSON === "string") {
    def = protoLoader.fromJSON(JSON.parse(TWILL_PROTO_JSON) as Parameters<typeof protoLoader.fromJSON>[0], PROTO_OPTIONS);
  } else {
    // cni/ under tsx, dist/cni/ after tsc (which does not copy .proto files).
    const here = path.dirname(fileURLToPath(import.meta.url));
    const candidates = [process.env["TWILL_PROTO_DIR"], path.resolve(here, "..", "proto"), path.resolve(here, "..", "..", "proto")];
    const protoDir = candidates.find((d): d is string => d !== undefined && fs.existsSync(path.join(d, "twill", "v1", "endpoint.proto")));
    if (protoDir === undefined) {
      throw new CniError(CniErrorCode.IoFailure, "load agent api: proto/twill/v1 not found", `looked in ${candidates.filter(Boolean).join(", ")}`);
    }
    def = protoLoader.loadSync(PROTO_FILES, { ...PROTO_OPTIONS, includeDirs: [protoDir] });
  }
  return grpc.loadPackageDefinition(def) as unknown as AgentProto & EndpointProto;
}

/** The agent did not answer at all (socket missing, refused, or deadline). */
export class AgentUnreachableError extends CniError {
  constructor(readonly socket: string, readonly op: string, cause: unknown) {
    super(CniErrorCode.TryAgainLater, `${op}: agent unreachable at ${socket}`, null, { cause });
    this.name = "AgentUnreachableError";
  }
}

/** True when `e` means "nobody answered" (queue the DEL, retry the ADD). */
export function isAgentUnreachable(e: unknown): e is AgentUnreachableError {
  return e instanceof AgentUnreachableError;
}

function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === "number";
}

const UNREACHABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);

/** Client for one plugin invocation; call close() when done. */
export class AgentClient {
  private readonly endpoints: EndpointsClient;
  private readonly agent: AgentServiceClient;

  constructor(readonly socket: string, private readonly deadlineMs = DEFAULT_DEADLINE_MS) {
    const proto = loadProto();
    const target = `unix:${socket}`;
    const creds = grpc.credentials.createInsecure();
    // One channel for both services; no retries here, the runtime retries.
    const opts: grpc.ChannelOptions = { "grpc.enable_retries": 0 };
    this.endpoints = new proto.twill.v1.Endpoints(target, creds, opts);
    this.agent = new proto.twill.v1.Agent(target, creds, { ...opts, channelOverride: this.endpoints.getChannel() });
  }

  private call<Req, Res>(
    op: string,
    fn: (req: Req, opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => grpc.ClientUnaryCall,
    req: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      fn(req, { deadline: Date.now() + this.deadlineMs }, (err, res) => {
        if (err) {
          if (isServiceError(err) && UNREACHABLE.has(err.code)) reject(new AgentUnreachableError(this.socket, op, err));
          else reject(new CniError(CniErrorCode.AgentFailure, `${op}: ${isServiceError(err) ? err.details || err.message : String(err)}`, null, { cause: err }));
          return;
        }
        if (res === undefined) reject(new CniError(CniErrorCode.AgentFailure, `${op}: empty response`));
        else resolve(res);
      });
    });
  }

  /** Register an endpoint; the agent allocates addresses and programs the datapath. */
  async createEndpoint(req: CreateEndpointRequest): Promise<Endpoint__Output> {
    const res = await this.call("create endpoint", (r: CreateEndpointRequest, o, cb: grpc.requestCallback<CreateEndpointResponse__Output>) => this.endpoints.create(r, o, cb), req);
    if (res.endpoint === null) throw new CniError(CniErrorCode.AgentFailure, "create endpoint: response has no endpoint");
    return res.endpoint;
  }

  /** Delete an endpoint and free its addresses; true if it existed. */
  async deleteEndpoint(containerId: string, ifname: string): Promise<boolean> {
    const res = await this.call("delete endpoint", (r: DeleteEndpointRequest, o, cb: grpc.requestCallback<DeleteEndpointResponse__Output>) => this.endpoints.delete(r, o, cb), { containerId, ifname });
    return res.existed;
  }

  /** The endpoint of a container, or null when the agent has none. */
  async getEndpoint(containerId: string): Promise<Endpoint__Output | null> {
    try {
      return await this.call("get endpoint", (r: GetEndpointRequest, o, cb: grpc.requestCallback<Endpoint__Output>) => this.endpoints.get(r, o, cb), { id: containerId });
    } catch (e: unknown) {
      if (e instanceof CniError && isServiceError(e.cause) && e.cause.code === grpc.status.NOT_FOUND) return null;
      throw e;
    }
  }

  /** Delete every endpoint whose container is not listed; returns removed IDs. */
  async gcEndpoints(validContainerIds: readonly string[]): Promise<string[]> {
    const res = await this.call("gc endpoints", (r: GcEndpointsRequest, o, cb: grpc.requestCallback<GcEndpointsResponse__Output>) => this.endpoints.gc(r, o, cb), { validContainerIds: [...validContainerIds] });
    return res.removedContainerIds;
  }

  /** The agent's health (STATUS). */
  async health(): Promise<HealthResponse__Output> {
    return this.call("check agent health", (r: HealthRequest, o, cb: grpc.requestCallback<HealthResponse__Output>) => this.agent.health(r, o, cb), {});
  }

  close(): void {
    this.agent.close();
    this.endpoints.close();
  }
}
