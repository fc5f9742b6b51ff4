// SPDX-License-Identifier: Apache-2.0
// The real gRPC server (agent/api/server.ts) on a temporary unix socket,
// with the in-memory fake backend: socket handling, status codes a client
// sees, and the Observe stream.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadTwillProto } from "../../agent/api/proto.js";
import { parseTcpAddress, startApiServer, type ApiServer } from "../../agent/api/server.js";
import type { CreateEndpointRequest } from "../../agent/generated/proto/twill/v1/CreateEndpointRequest.js";
import type { CreateEndpointResponse__Output } from "../../agent/generated/proto/twill/v1/CreateEndpointResponse.js";
import type { EndpointsClient } from "../../agent/generated/proto/twill/v1/Endpoints.js";
import type { ObserveResponse__Output } from "../../agent/generated/proto/twill/v1/ObserveResponse.js";
import { FakeBackend, makeFlow } from "./api-fake-backend.js";

let dir: string;
let server: ApiServer | null;
const clients: grpc.Client[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "twill-api-"));
  server = null;
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.stop(100);
  fs.rmSync(dir, { recursive: true, force: true });
});

function call<Res>(start: (cb: grpc.requestCallback<Res>) => void): Promise<Res> {
  return new Promise((resolve, reject) => start((err, res) => (err !== null ? reject(err) : resolve(res as Res))));
}

async function startWith(backend: FakeBackend): Promise<{ endpoints: EndpointsClient; address: string }> {
  const socketPath = path.join(dir, "run", "twill", "agent.sock");
  server = await startApiServer(backend, { socketPath, tcpAddress: null });
  const address = `unix:${socketPath}`;
  const endpoints = new (loadTwillProto().twill.v1.Endpoints)(address, grpc.credentials.createInsecure());
  clients.push(endpoints);
  return { endpoints, address };
}

const createReq: CreateEndpointRequest = {
  containerId: "new1",
  ifname: "eth0",
  netns: "/var/run/netns/new1",
  hostIfname: "tw00000000001",
  hostIfindex: 40,
  hostMac: "02:00:00:00:01:01",
  podMac: "02:00:00:00:01:02",
  pod: { namespace: "default", name: "new1" },
  family: "IP_FAMILY_IPV4",
};

describe("unix socket", () => {
  it("creates the directory and a root-only socket", async () => {
    await startWith(new FakeBackend());
    const st = fs.statSync(server!.socketPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it("replaces a stale socket left by a dead agent", async () => {
    const socketPath = path.join(dir, "agent.sock");
    // Python leaves the socket file behind when it exits (Node would unlink it).
    execFileSync("python3", ["-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(socketPath)})`]);
    expect(fs.statSync(socketPath).isSocket()).toBe(true);
    server = await startApiServer(new FakeBackend(), { socketPath, tcpAddress: null });
    const c = new (loadTwillProto().twill.v1.Agent)(`unix:${socketPath}`, grpc.credentials.createInsecure());
    clients.push(c);
    const s = await call<{ nodeName: string }>((cb) => c.Status({}, cb));
    expect(s.nodeName).toBe("node-a");
  });

  it("refuses to steal a socket another process serves", async () => {
    const socketPath = path.join(dir, "agent.sock");
    const other = net.createServer().listen(socketPath);
    await new Promise((r) => other.once("listening", r));
    try {
      await expect(startApiServer(new FakeBackend(), { socketPath, tcpAddress: null })).rejects.toThrow(
        /another process is serving/,
      );
    } finally {
      await new Promise((r) => other.close(r));
    }
  });

  it("refuses to remove a regular file at the socket path", async () => {
    const socketPath = path.join(dir, "agent.sock");
    fs.writeFileSync(socketPath, "precious");
    await expect(startApiServer(new FakeBackend(), { socketPath, tcpAddress: null })).rejects.toThrow(/not a socket/);
    expect(fs.readFileSync(socketPath, "utf8")).toBe("precious");
  });

  it("stop() removes the socket", async () => {
    await startWith(new FakeBackend());
    const p = server!.socketPath;
    await server!.stop(100);
    server = null;
    expect(fs.existsSync(p)).toBe(false);
  });
});

describe("TCP", () => {
  it.each([
    { name: "bare port binds loopback", input: "9090", want: "127.0.0.1:9090" },
    { name: "explicit host", input: "0.0.0.0:9090", want: "0.0.0.0:9090" },
    { name: "IPv6", input: "[::1]:9090", want: "[::1]:9090" },
  ])("$name", ({ input, want }) => {
    expect(parseTcpAddress(input)).toBe(want);
  });

  it("rejects an address without a port", () => {
    expect(() => parseTcpAddress("localhost")).toThrow('listen on localhost: expected "host:port"');
  });

  it("serves on loopback TCP only when asked", async () => {
    server = await startApiServer(new FakeBackend(), { socketPath: path.join(dir, "a.sock"), tcpAddress: "0" });
    expect(server.tcpPort).toBeGreaterThan(0);
    const c = new (loadTwillProto().twill.v1.Agent)(`127.0.0.1:${server.tcpPort}`, grpc.credentials.createInsecure());
    clients.push(c);
    const h = await call<{ healthy: boolean }>((cb) => c.Health({}, cb));
    expect(h.healthy).toBe(true);
  });
});

describe("Endpoints over gRPC", () => {
  it("Create allocates addresses, is idempotent, and reports exhaustion as RESOURCE_EXHAUSTED", async () => {
    const backend = new FakeBackend();
    backend.poolFree = 1;
    const { endpoints } = await startWith(backend);
    const first = await call<CreateEndpointResponse__Output>((cb) => endpoints.Create(createReq, cb));
    expect(first.endpoint?.ipv4).toMatchObject({ address: "10.244.0.11", gateway: "169.254.1.1" });
    const again = await call<CreateEndpointResponse__Output>((cb) => endpoints.Create(createReq, cb));
    expect(again.endpoint?.ipv4?.address).toBe("10.244.0.11");
    const err = await call((cb) => endpoints.Create({ ...createReq, containerId: "new2" }, cb)).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: "endpoint.create: allocate address: pool 10.244.0.8/30 is exhausted",
    });
  });

  it.each([
    { name: "invalid request", req: { ...createReq, containerId: "" }, code: grpc.status.INVALID_ARGUMENT, details: "endpoint.create: containerId: must be non-empty" },
    { name: "same container, other interface", req: { ...createReq, containerId: "c0ffee0000000000000000000000000000000000000000000000000000000001", ifname: "net1" }, code: grpc.status.ALREADY_EXISTS, details: "already has interface eth0" },
  ])("Create: $name", async ({ req, code, details }) => {
    const { endpoints } = await startWith(new FakeBackend());
    const err = await call((cb) => endpoints.Create(req, cb)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code });
    expect((err as grpc.ServiceError).details).toContain(details);
  });

  it("Get of an unknown endpoint is NOT_FOUND; Delete is idempotent; Gc removes the rest", async () => {
    const { endpoints } = await startWith(new FakeBackend());
    const err = await call((cb) => endpoints.Get({ id: "default/nope" }, cb)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: grpc.status.NOT_FOUND, details: "endpoint.get: find endpoint: default/nope not found" });
    const byPod = await call<{ containerId: string }>((cb) => endpoints.Get({ id: "default/web" }, cb));
    expect(byPod.containerId).toMatch(/^c0ffee/);
    await call((cb) => endpoints.Create(createReq, cb));
    expect(await call<{ existed: boolean }>((cb) => endpoints.Delete({ containerId: "new1" }, cb))).toEqual({ existed: true });
    expect(await call<{ existed: boolean }>((cb) => endpoints.Delete({ containerId: "new1" }, cb))).toEqual({ existed: false });
    const gc = await call<{ removedContainerIds: string[] }>((cb) => endpoints.Gc({ validContainerIds: [] }, cb));
    expect(gc.removedContainerIds).toEqual([byPod.containerId]);
  });
});

describe("Observe over gRPC", () => {
  it("replays, follows, and unsubscribes when the client cancels", async () => {
    const backend = new FakeBackend();
    backend.flows.push(makeFlow({ lengthBytes: 1 }));
    backend.flows.push(makeFlow({ lengthBytes: 2, verdict: "dropped", dropReason: "POLICY", type: "drop" }));
    const { address } = await startWith(backend);
    const obs = new (loadTwillProto().twill.v1.Observer)(address, grpc.credentials.createInsecure());
    clients.push(obs);
    const stream = obs.Observe({ follow: true, last: 5, verdict: "VERDICT_DROPPED" });
    const got: ObserveResponse__Output[] = [];
    const ended = new Promise<void>((resolve) => {
      stream.on("data", (m: ObserveResponse__Output) => {
        got.push(m);
        if (got.length === 1) {
          backend.flows.reportLost(3);
          backend.flows.push(makeFlow({ lengthBytes: 3 })); // forwarded: filtered out
          backend.flows.push(makeFlow({ lengthBytes: 4, verdict: "dropped", dropReason: "SPOOFED_IP", type: "drop" }));
        }
        if (got.length === 3) stream.cancel();
      });
      stream.on("error", () => resolve());
    });
    await ended;
    expect(got.map((m) => (m.flow ? m.flow.length : `lost ${m.lost?.count} ${m.lost?.source}`))).toEqual([
      2,
      "lost 3 LOST_SOURCE_RING_BUFFER",
      4,
    ]);
    expect(got[0]?.flow).toMatchObject({
      time: "2026-01-01T00:00:00.123456789Z",
      verdict: "VERDICT_DROPPED",
      dropReason: "POLICY",
      protocol: "PROTOCOL_TCP",
      source: { namespace: "default", pod: "client", port: 40000 },
    });
    await expect.poll(() => backend.flows.subscriberCount).toBe(0);
  });

  it("rejects a bad filter with INVALID_ARGUMENT", async () => {
    const { address } = await startWith(new FakeBackend());
    const obs = new (loadTwillProto().twill.v1.Observer)(address, grpc.credentials.createInsecure());
    clients.push(obs);
    const err = await new Promise<unknown>((resolve) => {
      const s = obs.Observe({ port: 70000 });
      s.on("data", () => undefined);
      s.on("error", resolve);
    });
    expect(err).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: "observe: port: 70000 is not a port (0-65535)" });
  });
});
