// SPDX-License-Identifier: Apache-2.0
// twill-cni end to end against the REAL agent (agent/main.ts in standalone
// mode, test/helpers/agent.ts): ADD/CHECK/DEL for every cniVersion, a pod that
// talks as soon as ADD returns, every bad input answered with a precise spec
// error and nothing leaked (veth, IPAM file, agent endpoint, twill_endpoints
// entry), an agent that is down, an exhausted pool, and 50 concurrent ADDs
// then DELs.
//
// Pod range of this file: 10.244.26.0/24 + fd00:10:244:26::/64 (main agent),
// 10.244.27.0/30 (exhausted-pool agent).
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { hostVethName } from "../../cni/config.js";
import { CNI_BIN, startAgent, type TestAgent, type TestPod } from "../helpers/agent.js";
import { Cleanup, createNetns, ip, randomName, type TestNetns } from "../helpers/netns.js";

const CIDR4 = "10.244.26.0/24";
const CIDR6 = "fd00:10:244:26::/64";

interface CniRun {
  code: number;
  out: Record<string, unknown>;
  stdout: string;
}

/** Run twill-cni asynchronously (the concurrency test needs many at once). */
function runCni(stdin: string, env: Record<string, string>): Promise<CniRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(CNI_BIN, [], { env: { PATH: process.env["PATH"] ?? "", CNI_PATH: "/usr/lib/cni", ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    p.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on("data", () => undefined);
    p.on("error", reject);
    p.on("close", (code) => {
      let out: Record<string, unknown> = {};
      try { out = stdout.trim() === "" ? {} : (JSON.parse(stdout) as Record<string, unknown>); } catch { out = { raw: stdout }; }
      resolve({ code: code ?? -1, out, stdout });
    });
    p.stdin.end(stdin);
  });
}

function netConf(agent: TestAgent, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: "1.1.0", name: "twt-e2e", type: "twill-cni", socket: agent.socket, deletionQueueDir: path.join(agent.dir, "dq"), ...extra };
}

function podEnv(verb: string, containerId: string, netns: string, extra: Record<string, string> = {}): Record<string, string> {
  return { CNI_COMMAND: verb, CNI_CONTAINERID: containerId, CNI_NETNS: netns, CNI_IFNAME: "eth0", CNI_ARGS: "K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=p", ...extra };
}

/** What a pod can leak: the agent's view, the IPAM files, the BPF map, the host veths. */
interface Held {
  ipamFiles: string[];
  endpoints: string[];
  mapKeys: number;
}

function held(agent: TestAgent): Held {
  const ipamDir = path.join(agent.dir, "state", "ipam");
  const ipamFiles = fs.existsSync(ipamDir) ? fs.readdirSync(ipamDir).filter((f) => !f.endsWith(".tmp")).sort() : [];
  const list = agent.twill(["endpoint", "list", "-o", "json"]);
  if (list.code !== 0) throw new Error(`twill endpoint list: ${list.stderr}`);
  const endpoints = (JSON.parse(list.stdout) as { containerId: string }[]).map((e) => e.containerId).sort();
  return { ipamFiles, endpoints, mapKeys: mapEntries(agent) };
}

/** Entries of the pinned twill_endpoints map (read with bpftool, agent-independent). */
function mapEntries(agent: TestAgent): number {
  const out = execFileSync("bpftool", ["-j", "map", "dump", "pinned", path.join(agent.bpfRoot, "twill_endpoints")], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return (JSON.parse(out) as unknown[]).length;
}

function linkExists(name: string, netns?: string): boolean {
  try {
    ip(["link", "show", name], netns);
    return true;
  } catch {
    return false;
  }
}

describe("twill-cni against the real agent", () => {
  let agent: TestAgent;
  let server: TestPod;
  const cleanup = new Cleanup();

  beforeAll(async () => {
    agent = await startAgent({ podCidrs: [CIDR4, CIDR6] });
    server = agent.addPod("e2e", "server");
    agent.serve(server, [8080]);
  }, 120_000);
  afterEach(() => cleanup.run());
  afterAll(async () => { await agent?.stop(); });

  function newNetns(): TestNetns {
    return createNetns(cleanup);
  }

  /** A container ID whose host veth and agent state are removed even if the test fails. */
  function newContainer(netns: TestNetns): string {
    const id = randomName("twtc", 16);
    cleanup.add(`del ${id}`, () => {
      agent.cni("DEL", id, netns.path);
      try { ip(["link", "del", hostVethName(id)]); } catch { /* gone */ }
    });
    return id;
  }

  it.each([
    { name: "0.3.1 (no CHECK in this version)", version: "0.3.1", check: false, ipsVersion: true },
    { name: "0.4.0", version: "0.4.0", check: true, ipsVersion: true },
    { name: "1.0.0", version: "1.0.0", check: true, ipsVersion: false },
    { name: "1.1.0", version: "1.1.0", check: true, ipsVersion: false },
  ])("cniVersion $name: ADD wires a pod that talks at once, CHECK passes, DEL twice succeeds and frees everything", async ({ version, check, ipsVersion }) => {
    const before = held(agent);
    const netns = newNetns();
    const id = newContainer(netns);
    const conf = JSON.stringify(netConf(agent, { cniVersion: version }));
    const add = await runCni(conf, podEnv("ADD", id, netns.path));
    expect(add.code, add.stdout).toBe(0);
    // Probe before anything else: the agent attached the datapath before ADD answered.
    const pod: TestPod = { namespace: "e2e", name: "p", containerId: id, netns, ipv4: "", ipv6: "", hostIfname: hostVethName(id) };
    expect(agent.probe(pod, "tcp", server.ipv4, 8080, 1000)).toBe("ok");
    expect(agent.probe(pod, "tcp", server.ipv6, 8080, 1000)).toBe("ok");

    const res = add.out as { cniVersion: string; interfaces: { name: string; sandbox?: string }[]; ips: { address: string; version?: string; interface: number }[] };
    expect(res.cniVersion).toBe(version);
    expect(res.interfaces.map((i) => i.name)).toEqual([hostVethName(id), "eth0"]);
    expect(res.ips.map((i) => i.address)).toEqual([expect.stringMatching(/^10\.244\.26\.\d+\/32$/), expect.stringMatching(/^fd00:10:244:26::[0-9a-f]+\/128$/)]);
    expect(res.ips.map((i) => i.version)).toEqual(ipsVersion ? ["4", "6"] : [undefined, undefined]);
    const during = held(agent);
    expect(during.endpoints).toEqual([...before.endpoints, id].sort());
    expect(during.mapKeys).toBe(before.mapKeys + 1);
    expect(during.ipamFiles.length).toBe(before.ipamFiles.length + 2);

    const withPrev = JSON.stringify({ ...netConf(agent, { cniVersion: version }), prevResult: res });
    if (check) {
      const c = await runCni(withPrev, podEnv("CHECK", id, netns.path));
      expect(c.code, c.stdout).toBe(0);
      expect(c.stdout).toBe("");
    } else {
      const c = await runCni(withPrev, podEnv("CHECK", id, netns.path));
      expect(c.out).toMatchObject({ code: 1, msg: expect.stringContaining("CHECK") });
    }
    for (const n of [1, 2]) {
      const del = await runCni(conf, podEnv("DEL", id, netns.path));
      expect(del.code, `DEL #${n}: ${del.stdout}`).toBe(0);
    }
    expect(held(agent)).toEqual(before);
    expect(linkExists(hostVethName(id))).toBe(false);
    expect(linkExists("eth0", netns.name)).toBe(false);
  }, 60_000);

  it("gives a requested address (CNI_ARGS IP=) and refuses it to a second pod with a precise error", async () => {
    const want = "10.244.26.200";
    const nsA = newNetns();
    const a = newContainer(nsA);
    const addA = await runCni(JSON.stringify(netConf(agent)), podEnv("ADD", a, nsA.path, { CNI_ARGS: `K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=a;IP=${want}` }));
    expect(addA.code, addA.stdout).toBe(0);
    expect((addA.out["ips"] as { address: string }[])[0]?.address).toBe(`${want}/32`);

    const before = held(agent);
    const nsB = newNetns();
    const b = newContainer(nsB);
    const addB = await runCni(JSON.stringify(netConf(agent, { runtimeConfig: { ips: [`${want}/24`] } })), podEnv("ADD", b, nsB.path));
    expect(addB.code).toBe(1);
    expect(addB.out).toMatchObject({ cniVersion: "1.1.0", code: 101, msg: expect.stringContaining(`${want}: already in use by container ${a}`) });
    expect(held(agent)).toEqual(before);
    expect(linkExists(hostVethName(b))).toBe(false);
    expect(linkExists("eth0", nsB.name)).toBe(false);
  }, 60_000);

  type BadCase = { name: string; stdin?: string; conf?: Record<string, unknown>; env?: Record<string, string | undefined>; code: number; msg: string | RegExp };
  const bad: BadCase[] = [
    { name: "malformed JSON", stdin: '{"cniVersion": "1.1.0", "name": ', code: 6, msg: "decode network config: stdin is not JSON" },
    { name: "missing type", conf: { type: undefined }, code: 7, msg: "invalid network config type: is missing" },
    { name: "missing name", conf: { name: undefined }, code: 7, msg: "invalid network config name: is missing" },
    { name: "missing cniVersion", conf: { cniVersion: undefined }, code: 7, msg: "invalid network config cniVersion: is missing" },
    { name: "unsupported cniVersion 0.2.0", conf: { cniVersion: "0.2.0" }, code: 1, msg: "incompatible CNI version 0.2.0" },
    { name: "missing CNI_NETNS", env: { CNI_NETNS: undefined }, code: 4, msg: "invalid CNI_NETNS: is not set" },
    { name: "missing CNI_IFNAME", env: { CNI_IFNAME: undefined }, code: 4, msg: "invalid CNI_IFNAME: is empty" },
    { name: "netns path that does not exist", env: { CNI_NETNS: "/var/run/netns/twt-does-not-exist" }, code: 4, msg: "invalid CNI_NETNS: /var/run/netns/twt-does-not-exist does not exist" },
    { name: "ifname over 15 bytes", env: { CNI_IFNAME: "eth0123456789abc" }, code: 4, msg: 'invalid CNI_IFNAME: "eth0123456789abc" is longer than 15 bytes' },
    { name: "requested address outside the pod CIDRs", env: { CNI_ARGS: "IP=192.0.2.9" }, code: 101, msg: /allocate address 192\.0\.2\.9: not inside any pod CIDR/ },
    { name: "requested address that is not an IP", env: { CNI_ARGS: "IP=10.244.26.999" }, code: 4, msg: "invalid CNI_ARGS: IP=10.244.26.999 is not an IP address" },
  ];
  it.each(bad)("rejects $name with code $code and leaks nothing", async ({ stdin, conf, env, code, msg }) => {
    const before = held(agent);
    const netns = newNetns();
    const id = newContainer(netns);
    const c: Record<string, unknown> = netConf(agent);
    for (const [k, v] of Object.entries(conf ?? {})) {
      if (v === undefined) delete c[k];
      else c[k] = v;
    }
    const e: Record<string, string> = podEnv("ADD", id, netns.path);
    for (const [k, v] of Object.entries(env ?? {})) {
      if (v === undefined) delete e[k];
      else e[k] = v;
    }
    const r = await runCni(stdin ?? JSON.stringify(c), e);
    expect(r.code).toBe(1);
    expect(r.out["code"]).toBe(code);
    if (typeof msg === "string") expect(r.out["msg"]).toBe(msg);
    else expect(r.out["msg"]).toMatch(msg);
    expect(held(agent)).toEqual(before);
    expect(linkExists(hostVethName(id))).toBe(false);
    expect(linkExists("eth0", netns.name)).toBe(false);
  }, 60_000);

  it("50 parallel ADDs get 50 distinct addresses; 50 parallel DELs leave nothing", async () => {
    const before = held(agent);
    const pods = Array.from({ length: 50 }, () => {
      const netns = newNetns();
      return { netns, id: newContainer(netns) };
    });
    const conf = JSON.stringify(netConf(agent));
    const adds = await Promise.all(pods.map((p, n) => runCni(conf, podEnv("ADD", p.id, p.netns.path, { CNI_ARGS: `K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=c${n}` }))));
    for (const a of adds) expect(a.code, a.stdout).toBe(0);
    const v4 = adds.map((a) => (a.out["ips"] as { address: string }[])[0]?.address);
    const v6 = adds.map((a) => (a.out["ips"] as { address: string }[])[1]?.address);
    expect(new Set(v4).size).toBe(50);
    expect(new Set(v6).size).toBe(50);
    const during = held(agent);
    expect(during.endpoints.length).toBe(before.endpoints.length + 50);
    expect(during.mapKeys).toBe(before.mapKeys + 50);
    expect(during.ipamFiles.length).toBe(before.ipamFiles.length + 100);

    const dels = await Promise.all(pods.map((p) => runCni(conf, podEnv("DEL", p.id, p.netns.path))));
    for (const d of dels) expect(d.code, d.stdout).toBe(0);
    expect(held(agent)).toEqual(before);
    expect(pods.filter((p) => linkExists(hostVethName(p.id)))).toEqual([]);
  }, 180_000);

  it("fails ADD with code 11 naming the socket when the agent is down, and leaves nothing", async () => {
    const before = held(agent);
    await agent.kill("SIGKILL");
    try {
      const netns = newNetns();
      const id = newContainer(netns);
      const r = await runCni(JSON.stringify(netConf(agent)), podEnv("ADD", id, netns.path));
      expect(r.code).toBe(1);
      expect(r.out).toMatchObject({ code: 11, msg: `create endpoint: agent unreachable at ${agent.socket}` });
      expect(linkExists(hostVethName(id))).toBe(false);
      expect(linkExists("eth0", netns.name)).toBe(false);
    } finally {
      await agent.start();
    }
    expect(held(agent)).toEqual(before);
  }, 120_000);
});

describe("twill-cni with an exhausted pool", () => {
  let agent: TestAgent;
  const cleanup = new Cleanup();
  // A /30 has two usable addresses (network and broadcast are skipped).
  beforeAll(async () => { agent = await startAgent({ podCidrs: ["10.244.27.0/30"] }); }, 120_000);
  afterAll(async () => {
    try { cleanup.run(); } finally { await agent?.stop(); }
  });

  it("fails the third ADD with a precise error and leaks nothing", async () => {
    const conf = JSON.stringify(netConf(agent));
    const ids: string[] = [];
    for (let n = 0; n < 3; n++) {
      const netns = createNetns(cleanup);
      const id = randomName("twtx", 16);
      cleanup.add(`del ${id}`, () => { agent.cni("DEL", id, netns.path); });
      ids.push(id);
      const before = n === 2 ? held(agent) : null;
      const r = await runCni(conf, podEnv("ADD", id, netns.path, { CNI_ARGS: `K8S_POD_NAMESPACE=e2e;K8S_POD_NAME=x${n}` }));
      if (n < 2) {
        expect(r.code, r.stdout).toBe(0);
        continue;
      }
      expect(r.code).toBe(1);
      expect(r.out).toMatchObject({ code: 101, msg: expect.stringContaining("allocate address: pool 10.244.27.0/30 is exhausted") });
      expect(held(agent)).toEqual(before);
      expect(linkExists(hostVethName(id))).toBe(false);
      expect(linkExists("eth0", netns.name)).toBe(false);
    }
  }, 120_000);
});
