// SPDX-License-Identifier: Apache-2.0
// The CLI's connection to twill-agent over its unix socket, and the CLI's
// error type with its exit code (see cli/README.md).
//
// API: AgentConnection (per-service clients, call(), close()), CliError,
// EXIT, DEFAULT_SOCKET.
import * as net from "node:net";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { AgentClient } from "../agent/generated/proto/twill/v1/Agent.js";
import type { DatapathClient } from "../agent/generated/proto/twill/v1/Datapath.js";
import type { EndpointsClient } from "../agent/generated/proto/twill/v1/Endpoints.js";
import type { IdentitiesClient } from "../agent/generated/proto/twill/v1/Identities.js";
import type { ObserverClient } from "../agent/generated/proto/twill/v1/Observer.js";
import type { PoliciesClient } from "../agent/generated/proto/twill/v1/Policies.js";
import { loadTwillProto } from "../agent/api/proto.js";

/** Where the agent listens unless --socket or TWILL_SOCKET says otherwise. */
export const DEFAULT_SOCKET = "/var/run/twill/agent.sock";

/** Process exit codes; documented in cli/README.md. */
export const EXIT = Object.freeze({
  OK: 0,
  /** The agent answered with an error (or a manifest is invalid). */
  AGENT_ERROR: 1,
  /** Bad flags or arguments. */
  USAGE: 2,
  /** No agent at the socket. */
  UNREACHABLE: 3,
  /** `policy trace` verdict is DENIED. */
  DENIED: 4,
});

/** An error the CLI reports on stderr and turns into an exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = "CliError";
  }
}

/** Unary calls fail after this long (observe streams have no deadline). */
const CALL_TIMEOUT_MS = 30_000;

function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && "code" in e && typeof e.code === "number" && "details" in e;
}

// grpc-js reports a socket it could not connect to as UNAVAILABLE with
// these details; the agent's own UnavailableError ("datapath not loaded")
// carries a message of ours instead and is an agent error (exit 1).
const TRANSPORT_FAILURE = /No connection established|Connection dropped|Failed to connect|connect E[A-Z]+/;

/** Clients for every twill.v1 service on one socket. */
export class AgentConnection {
  readonly socketPath: string;
  readonly agent: AgentClient;
  readonly endpoints: EndpointsClient;
  readonly identities: IdentitiesClient;
  readonly policies: PoliciesClient;
  readonly datapath: DatapathClient;
  readonly observer: ObserverClient;
  private reachable = false;

  constructor(socketPath: string) {
    this.socketPath = path.resolve(socketPath);
    const v1 = loadTwillProto().twill.v1;
    const address = `unix:${this.socketPath}`;
    const creds = grpc.credentials.createInsecure();
    this.agent = new v1.Agent(address, creds);
    // The other clients share the first one's channel: one connection.
    const channelOverride = this.agent.getChannel();
    this.endpoints = new v1.Endpoints(address, creds, { channelOverride });
    this.identities = new v1.Identities(address, creds, { channelOverride });
    this.policies = new v1.Policies(address, creds, { channelOverride });
    this.datapath = new v1.Datapath(address, creds, { channelOverride });
    this.observer = new v1.Observer(address, creds, { channelOverride });
  }

  /**
   * Fail fast with exit 3 when nothing listens on the socket; grpc-js would
   * otherwise retry until the deadline and then report a vaguer error.
   */
  async ensureReachable(): Promise<void> {
    if (this.reachable) return;
    await new Promise<void>((resolve, reject) => {
      const s = net.createConnection(this.socketPath);
      s.once("connect", () => { s.destroy(); resolve(); });
      s.once("error", (e: NodeJS.ErrnoException) => reject(this.unreachable(`connect ${e.code ?? e.message}`)));
    });
    this.reachable = true;
  }

  /** The exit-3 error, naming the socket tried. */
  unreachable(detail: string): CliError {
    return new CliError(`cannot reach twill-agent at ${this.socketPath}: ${detail}; is the agent running?`, EXIT.UNREACHABLE);
  }

  /** Turn an RPC failure into a CliError with the right exit code. */
  toCliError(e: unknown): CliError {
    if (e instanceof CliError) return e;
    if (isServiceError(e)) {
      if (e.code === grpc.status.UNAVAILABLE && TRANSPORT_FAILURE.test(e.details)) return this.unreachable(e.details);
      if (e.code === grpc.status.INVALID_ARGUMENT) return new CliError(e.details, EXIT.USAGE);
      return new CliError(e.details, EXIT.AGENT_ERROR);
    }
    return new CliError(e instanceof Error ? e.message : String(e), EXIT.AGENT_ERROR);
  }

  /** Call options for a unary RPC (deadline). */
  options(): grpc.CallOptions {
    return { deadline: Date.now() + CALL_TIMEOUT_MS };
  }

  /**
   * Run one unary call: `await conn.call((cb) => conn.agent.Status({}, conn.options(), cb))`.
   * Checks the socket first; errors come back as CliError.
   */
  async call<Res>(start: (cb: grpc.requestCallback<Res>) => void): Promise<Res> {
    await this.ensureReachable();
    try {
      return await new Promise<Res>((resolve, reject) => {
        start((err, res) => {
          if (err !== null) reject(err);
          else if (res === undefined) reject(new Error("call agent: empty response"));
          else resolve(res);
        });
      });
    } catch (e: unknown) {
      throw this.toCliError(e);
    }
  }

  close(): void {
    for (const c of [this.endpoints, this.identities, this.policies, this.datapath, this.observer]) c.close();
    this.agent.close();
  }
}
