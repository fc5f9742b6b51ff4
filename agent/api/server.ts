// SPDX-License-Identifier: Apache-2.0
// The agent's gRPC server: every twill.v1 service over one AgentBackend,
// on a unix socket (always) and on TCP (only when an address is given).
//
// The unix socket is the local control channel for the CNI plugin and the
// CLI; it is made mode 0600 (root only) in a directory we create, and a
// stale socket left by a crashed agent is removed, while a live one (another
// agent running) is an error rather than silently stolen.
//
// API: startApiServer(backend, options) -> ApiServer {socketPath, tcpPort,
// stop()}, createApiServer(backend) (handlers only, not bound),
// parseTcpAddress().
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { agentHandlers } from "./agent-service.js";
import type { AgentBackend } from "./agent-state.js";
import { datapathHandlers } from "./datapath-service.js";
import { endpointsHandlers } from "./endpoints-service.js";
import { identitiesHandlers } from "./identities-service.js";
import { observerHandlers } from "./observer-service.js";
import { policiesHandlers } from "./policies-service.js";
import { loadTwillProto } from "./proto.js";

/** Where to listen. */
export interface ApiServerOptions {
  /** Unix socket path, e.g. /var/run/twill/agent.sock. */
  readonly socketPath: string;
  /** "host:port", "[v6]:port" or "port" (host defaults to 127.0.0.1); null = no TCP. */
  readonly tcpAddress: string | null;
}

/** A running server. */
export interface ApiServer {
  readonly socketPath: string;
  /** Bound TCP port, or null without TCP. */
  readonly tcpPort: number | null;
  /** Stop accepting, give in-flight calls graceMs, then cut them; removes the socket. */
  stop(graceMs?: number): Promise<void>;
}

/** The server could not listen. */
export class ApiListenError extends Error {
  constructor(readonly address: string, detail: string, options?: { cause?: unknown }) {
    super(`listen on ${address}: ${detail}`, options);
    this.name = "ApiListenError";
  }
}

/** A grpc.Server with every twill.v1 service registered, not yet bound. */
export function createApiServer(backend: AgentBackend): grpc.Server {
  const v1 = loadTwillProto().twill.v1;
  // Observe streams can be long-lived; keepalive detects vanished clients.
  const server = new grpc.Server({ "grpc.keepalive_time_ms": 30_000, "grpc.keepalive_timeout_ms": 10_000 });
  server.addService(v1.Agent.service, agentHandlers(backend));
  server.addService(v1.Endpoints.service, endpointsHandlers(backend));
  server.addService(v1.Identities.service, identitiesHandlers(backend));
  server.addService(v1.Policies.service, policiesHandlers(backend));
  server.addService(v1.Datapath.service, datapathHandlers(backend));
  server.addService(v1.Observer.service, observerHandlers(backend));
  return server;
}

/** Normalise a TCP listen address for grpc-js; bare ports bind loopback only. */
export function parseTcpAddress(address: string): string {
  if (/^\d+$/.test(address)) return `127.0.0.1:${address}`;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d+)$/.exec(address);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || !(port >= 0 && port <= 65535)) {
    throw new ApiListenError(address, 'expected "host:port", "[v6]:port" or "port"');
  }
  return address;
}

function probe(socketPath: string): Promise<"live" | "dead"> {
  return new Promise((resolve) => {
    const s = net.createConnection(socketPath);
    s.once("connect", () => { s.destroy(); resolve("live"); });
    s.once("error", () => resolve("dead"));
  });
}

async function prepareSocketPath(socketPath: string): Promise<void> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch (e: unknown) {
    if (e instanceof Error && "code" in e && e.code === "ENOENT") return;
    throw new ApiListenError(socketPath, "stat existing path", { cause: e });
  }
  if (!st.isSocket()) throw new ApiListenError(socketPath, "path exists and is not a socket; refusing to remove it");
  if ((await probe(socketPath)) === "live") throw new ApiListenError(socketPath, "another process is serving on this socket (is an agent already running?)");
  fs.rmSync(socketPath, { force: true }); // stale: its agent died without cleanup
}

function bind(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err !== null) reject(new ApiListenError(address, err.message, { cause: err }));
      else resolve(port);
    });
  });
}

/** Create, bind and start the API server. */
export async function startApiServer(backend: AgentBackend, options: ApiServerOptions): Promise<ApiServer> {
  const socketPath = path.resolve(options.socketPath);
  const tcp = options.tcpAddress === null ? null : parseTcpAddress(options.tcpAddress);
  await prepareSocketPath(socketPath);
  const server = createApiServer(backend);
  try {
    await bind(server, `unix:${socketPath}`);
    // grpc-js binds with the process umask; the socket is the control
    // channel of the node (it creates pod interfaces): root only.
    fs.chmodSync(socketPath, 0o600);
  } catch (e: unknown) {
    server.forceShutdown();
    throw e;
  }
  let tcpPort: number | null = null;
  if (tcp !== null) {
    try {
      tcpPort = await bind(server, tcp);
    } catch (e: unknown) {
      server.forceShutdown();
      fs.rmSync(socketPath, { force: true });
      throw e;
    }
  }
  return {
    socketPath,
    tcpPort,
    stop: (graceMs = 5_000) =>
      new Promise<void>((resolve) => {
        let done = false;
        const finish = (): void => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          fs.rmSync(socketPath, { force: true });
          resolve();
        };
        // Followed Observe streams never end by themselves: cut them after the grace.
        const timer = setTimeout(() => { server.forceShutdown(); finish(); }, graceMs);
        server.tryShutdown(finish);
      }),
  };
}
