// SPDX-License-Identifier: Apache-2.0
// The compiled twill-cni against the agent's real gRPC server (agent/api,
// over a unix socket, with the descriptor embedded in the binary) backed by
// the real host-scope IPAM. The backend's endpoint store is a small in-test
// map: the datapath side (BPF attach, map fill) belongs to the agent's own
// tests, and the full agent-backed ADD is run against agent/main.ts there.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AgentBackend, CreateEndpointParams, EndpointInfo } from "../../agent/api/agent-state.js";
import { NotFoundError } from "../../agent/api/agent-state.js";
import { startApiServer, type ApiServer } from "../../agent/api/server.js";
import { IpAllocator } from "../../agent/ipam/allocator.js";
import { parseCidr } from "../../agent/ipam/cidr.js";
import { hostVethName } from "../../cni/config.js";
import { drainDeletionQueue } from "../../cni/deletion-queue.js";
import { Cleanup, createNetns, ip, ipJson, randomName } from "../helpers/netns.js";

let workDir = "";
let plugin = "";

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "twt-cniapi-"));
  plugin = path.join(workDir, "twill-cni");
  execFileSync("bash", ["hack/build-cni.sh", plugin], { stdio: "ignore" });
}, 120_000);

afterAll(() => {
  if (workDir !== "") fs.rmSync(workDir, { recursive: true, force: true });
});

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** Endpoint half of AgentBackend over the real IpAllocator; records calls. */
function testBackend(ipam: IpAllocator): { backend: AgentBackend; created: CreateEndpointParams[]; endpoints: Map<string, EndpointInfo>; failCreate: { on: boolean } } {
  const endpoints = new Map<string, EndpointInfo>();
  const created: CreateEndpointParams[] = [];
  const failCreate = { on: false };
  const part: Partial<AgentBackend> = {
    health: () => [{ name: "test", healthy: true, message: "" }],
    createEndpoint: (p) => {
      created.push(p);
      if (failCreate.on) throw new Error("program datapath: injected failure");
      const allocs = ipam.allocate(p.containerId, p.ifname);
      const v4 = allocs.find((a) => a.family === 4);
      const v6 = allocs.find((a) => a.family === 6);
      const info: EndpointInfo = {
        ...p, identity: 0, labels: {}, state: "ready", createdAt: new Date().toISOString(),
        ipv4: v4 ? { address: v4.ip, prefixLength: 32, gateway: "169.254.1.1", pool: "" } : null,
        ipv6: v6 ? { address: v6.ip, prefixLength: 128, gateway: "fe80::1", pool: "" } : null,
      };
      endpoints.set(p.containerId, info);
      return info;
    },
    deleteEndpoint: (id) => {
      ipam.release(id);
      return endpoints.delete(id);
    },
    getEndpoint: (id) => {
      const e = endpoints.get(id);
      if (e === undefined) throw new NotFoundError("endpoint", id);
      return e;
    },
    gcEndpoints: (valid) => {
      const removed = [...endpoints.keys()].filter((id) => !valid.has(id));
      for (const id of removed) {
        endpoints.delete(id);
        ipam.release(id);
      }
      return removed;
    },
  };
  // Only the Endpoints and Agent.Health handlers are called by the plugin.
  return { backend: part as AgentBackend, created, endpoints, failCreate };
}

function runPlugin(command: string, conf: Record<string, unknown>, env: Record<string, string>): Promise<{ code: number; json: Record<string, unknown> | null; stdout: string }> {
  // Asynchronous on purpose: the gRPC server lives in this process.
  return new Promise((resolve, reject) => {
    const child = spawn(plugin, [], { env: { PATH: process.env["PATH"] ?? "", CNI_COMMAND: command, ...env } });
    let out = "";
    child.stdout.on("data", (b: Buffer) => { out += b.toString(); });
    child.on("error", reject);
    child.on("close", (code) => {
      const stdout = out.trim();
      resolve({ code: code ?? -1, stdout, json: stdout === "" ? null : (JSON.parse(stdout) as Record<string, unknown>) });
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

describe("twill-cni with the agent's gRPC API", () => {
  let server: ApiServer | null = null;
  afterEach(async () => {
    await server?.stop(100);
    server = null;
  });

  async function setup(): Promise<{ socket: string; t: ReturnType<typeof testBackend>; ipam: IpAllocator; n: number }> {
    const n = 23; // this file's share of the CNI work's pod range
    const ipam = IpAllocator.open(path.join(workDir, randomName("ipam-", 8)), [parseCidr(`10.244.${n}.0/24`), parseCidr(`fd00:10:244:${n}::/64`)]);
    const t = testBackend(ipam);
    const socket = path.join(workDir, randomName("agent-", 6) + ".sock");
    server = await startApiServer(t.backend, { socketPath: socket, tcpAddress: null });
    return { socket, t, ipam, n };
  }

  it("ADD registers the real veth with the agent and wires the agent's addresses; CHECK, GC, DEL follow", async () => {
    const { socket, t, ipam, n } = await setup();
    const netns = createNetns(cleanup);
    const containerId = randomName("twtctr", 16);
    const hostIf = hostVethName(containerId);
    cleanup.add(`link ${hostIf}`, () => { spawnSync("ip", ["link", "del", hostIf], { stdio: "ignore" }); });
    const env = { CNI_CONTAINERID: containerId, CNI_NETNS: netns.path, CNI_IFNAME: "eth0", CNI_ARGS: "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=db-0" };
    const conf = { cniVersion: "1.1.0", name: "twill", type: "twill-cni", socket };

    const add = await runPlugin("ADD", conf, env);
    expect(add.code, add.stdout).toBe(0);
    const link = ipJson<{ ifindex: number; address: string }[]>(["link", "show", hostIf])[0];
    expect(t.created).toHaveLength(1);
    expect(t.created[0]).toMatchObject({
      containerId, ifname: "eth0", netns: netns.path, hostIfname: hostIf, hostIfindex: link?.ifindex, hostMac: link?.address,
      pod: { namespace: "prod", name: "db-0" }, family: null,
    });
    const res = add.json as { ips: { address: string }[] };
    const [v4, v6] = ipam.byContainer(containerId).sort((a, b) => a.family - b.family);
    expect(v4?.ip).toMatch(new RegExp(`^10\\.244\\.${n}\\.`));
    expect(res.ips.map((i) => i.address)).toEqual([`${v4?.ip}/32`, `${v6?.ip}/128`]);
    expect(ip(["-4", "addr", "show", "eth0"], netns.name)).toContain(`${v4?.ip}/32`);
    expect(ip(["route", "show", `${v4?.ip}/32`])).toContain(`dev ${hostIf}`);

    expect((await runPlugin("CHECK", { ...conf, prevResult: add.json }, env)).code).toBe(0);
    expect((await runPlugin("STATUS", conf, {})).code).toBe(0);
    // GC with the container still valid keeps it.
    const gc = await runPlugin("GC", { ...conf, "cni.dev/valid-attachments": [{ containerID: containerId, ifname: "eth0" }] }, {});
    expect(gc.code, gc.stdout).toBe(0);
    expect(t.endpoints.has(containerId)).toBe(true);

    const del = await runPlugin("DEL", conf, env);
    expect(del.code, del.stdout).toBe(0);
    expect(t.endpoints.has(containerId)).toBe(false);
    expect(ipam.byContainer(containerId)).toEqual([]);
    expect(spawnSync("ip", ["link", "show", hostIf], { stdio: "ignore" }).status).not.toBe(0);
    expect((await runPlugin("DEL", conf, env)).code).toBe(0);
  });

  it("a repeated ADD replaces the veth and re-registers it, so the agent never keeps a dead ifindex", async () => {
    const { socket, t } = await setup();
    const netns = createNetns(cleanup);
    const containerId = randomName("twtctr", 16);
    const hostIf = hostVethName(containerId);
    cleanup.add(`link ${hostIf}`, () => { spawnSync("ip", ["link", "del", hostIf], { stdio: "ignore" }); });
    const conf = { cniVersion: "1.0.0", name: "twt-net", type: "twill-cni", socket };
    const env = { CNI_CONTAINERID: containerId, CNI_NETNS: netns.path, CNI_IFNAME: "eth0" };
    expect((await runPlugin("ADD", conf, env)).code).toBe(0);
    const first = t.endpoints.get(containerId)?.hostIfindex;
    const again = await runPlugin("ADD", conf, env);
    expect(again.code, again.stdout).toBe(0);
    const link = ipJson<{ ifindex: number }[]>(["link", "show", hostIf])[0];
    expect(link?.ifindex).not.toBe(first);
    expect(t.endpoints.get(containerId)?.hostIfindex).toBe(link?.ifindex);
  });

  it("rolls back the veth when the agent refuses the endpoint", async () => {
    const { socket, t } = await setup();
    t.failCreate.on = true;
    const netns = createNetns(cleanup);
    const containerId = randomName("twtctr", 16);
    const add = await runPlugin("ADD", { cniVersion: "1.0.0", name: "twt-net", type: "twill-cni", socket },
      { CNI_CONTAINERID: containerId, CNI_NETNS: netns.path, CNI_IFNAME: "eth0" });
    expect(add.code).toBe(1);
    expect(add.json).toMatchObject({ code: 101, msg: expect.stringContaining("create endpoint") });
    expect(spawnSync("ip", ["link", "show", hostVethName(containerId)], { stdio: "ignore" }).status).not.toBe(0);
    expect(ip(["link"], netns.name)).not.toContain("eth0");
  });

  it("DEL while the agent is down is queued, and draining the queue later frees the endpoint", async () => {
    const { socket, t, ipam } = await setup();
    const netns = createNetns(cleanup);
    const containerId = randomName("twtctr", 16);
    const hostIf = hostVethName(containerId);
    cleanup.add(`link ${hostIf}`, () => { spawnSync("ip", ["link", "del", hostIf], { stdio: "ignore" }); });
    const queue = path.join(workDir, randomName("queue-", 8));
    const conf = { cniVersion: "1.0.0", name: "twt-net", type: "twill-cni", socket, deletionQueueDir: queue };
    const env = { CNI_CONTAINERID: containerId, CNI_NETNS: netns.path, CNI_IFNAME: "eth0" };
    expect((await runPlugin("ADD", conf, env)).code).toBe(0);

    await server?.stop(100); // agent restarting
    server = null;
    const del = await runPlugin("DEL", conf, env);
    expect(del.code, del.stdout).toBe(0);
    expect(spawnSync("ip", ["link", "show", hostIf], { stdio: "ignore" }).status).not.toBe(0);
    expect(t.endpoints.has(containerId)).toBe(true); // the agent has not heard of it yet

    const report = await drainDeletionQueue(queue, async (e) => { await t.backend.deleteEndpoint(e.containerId, e.ifname); });
    expect(report.drained).toEqual([containerId]);
    expect(t.endpoints.has(containerId)).toBe(false);
    expect(ipam.byContainer(containerId)).toEqual([]);
    expect(fs.readdirSync(queue)).toEqual([]);
  });
});
