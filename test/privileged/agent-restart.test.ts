// SPDX-License-Identifier: Apache-2.0
// The agent crashes (SIGKILL) while two pods talk: the pinned maps and tcx
// links keep the datapath running, and the restarted agent adopts them (same
// map and link ids), restores its endpoints, wires new pods, and never hands
// out an address twice.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { startAgent, type TestAgent, type TestPod } from "../helpers/agent.js";

// This file's pod CIDRs (host routes are global: no other file uses them).
const CIDR4 = "10.244.11.0/24";
const CIDR6 = "fd00:10:244:11::/64";

const MANIFESTS = {
  "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: restart}\n",
  "pods.yaml": ["a", "b", "c", "d"].map((n) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${n}, namespace: restart, labels: {app: ${n}}}\nspec: {containers: [{name: c}]}\n`).join("---\n"),
  // Policy in force across the crash: b accepts TCP 80 only, from a.
  "pol.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b-from-a, namespace: restart}\nspec:\n  podSelector: {matchLabels: {app: b}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]\n",
};

const MAPS = ["twill_endpoints", "twill_lxc", "twill_ipcache", "twill_policy", "twill_policy_slot", "twill_ct4", "twill_ct6", "twill_metrics", "twill_events"];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function bpftoolId(args: readonly string[]): number {
  const r = spawnSync("bpftool", ["-j", ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`bpftool ${args.join(" ")}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { id: number }).id;
}

/** Map ids of the pinned maps and link ids of the pods' pinned tcx links. */
function kernelObjects(agent: TestAgent, pods: readonly TestPod[]): Record<string, number> {
  const ids: Record<string, number> = {};
  for (const m of MAPS) ids[m] = bpftoolId(["map", "show", "pinned", `${agent.bpfRoot}/${m}`]);
  for (const p of pods) {
    const ifindex = endpointIfindex(agent, p);
    for (const dir of ["ingress", "egress"]) ids[`${p.name} ${dir} link`] = bpftoolId(["link", "show", "pinned", `${agent.bpfRoot}/links/${ifindex}_${dir}`]);
  }
  return ids;
}

function endpoints(agent: TestAgent): Array<{ containerId: string; hostIfindex: number; ipv4?: { address: string }; ipv6?: { address: string }; state: string }> {
  const r = agent.twill(["endpoint", "list", "-o", "json"]);
  if (r.code !== 0) throw new Error(`twill endpoint list: ${r.stderr}`);
  return JSON.parse(r.stdout) as ReturnType<typeof endpoints>;
}

function endpointIfindex(agent: TestAgent, p: TestPod): number {
  const ep = endpoints(agent).find((e) => e.containerId === p.containerId);
  if (!ep) throw new Error(`endpoint of ${p.name} not listed`);
  return ep.hostIfindex;
}

/** A ping every 50 ms from a pod, counting echo replies until stopped. */
function pingFlood(from: TestPod, to: string): { proc: ChildProcess; output: () => string } {
  let out = "";
  const proc = spawn("ip", ["netns", "exec", from.netns.name, "busybox", "ping", "-i", "0.05", "-W", "1", to], { stdio: ["ignore", "pipe", "ignore"] });
  proc.stdout?.on("data", (d: Buffer) => { out += d.toString(); });
  return { proc, output: () => out };
}

/** icmp_seq numbers answered so far. */
const answered = (pingOutput: string): Set<number> => new Set([...pingOutput.matchAll(/seq=(\d+)/g)].map((m) => Number(m[1])));

describe("agent restart", () => {
  let agent: TestAgent | undefined;
  let flood: ChildProcess | undefined;
  afterEach(async () => {
    flood?.kill("SIGKILL");
    await agent?.stop();
  });

  it("keeps forwarding through a SIGKILL and adopts maps, links, endpoints and IPAM on restart", async () => {
    agent = await startAgent({ podCidrs: [CIDR4, CIDR6], manifests: MANIFESTS });
    const a = agent.addPod("restart", "a");
    const b = agent.addPod("restart", "b");
    agent.serve(b, [80, 81]);
    await sleep(300);
    expect(agent.probe(a, "tcp", b.ipv4, 80)).toBe("ok");
    expect(agent.probe(a, "tcp", b.ipv4, 81)).toBe("timeout");
    const before = kernelObjects(agent, [a, b]);
    const epsBefore = endpoints(agent);

    // b is isolated (TCP 80 from a only), a is not: the flood runs b -> a.
    const f = pingFlood(b, a.ipv4);
    flood = f.proc;
    await sleep(500);
    await agent.kill("SIGKILL");
    const seqAtKill = Math.max(...answered(f.output()));

    // While the agent is down: the datapath still forwards, filters, and answers.
    await sleep(1500);
    expect(agent.probe(a, "tcp", b.ipv4, 80)).toBe("ok");
    expect(agent.probe(a, "tcp", b.ipv6, 80)).toBe("ok");
    expect(agent.probe(a, "tcp", b.ipv4, 81)).toBe("timeout");
    const seqWhileDown = Math.max(...answered(f.output()));
    expect(seqWhileDown - seqAtKill, "echo replies while the agent was down").toBeGreaterThan(20);

    await agent.start();
    await sleep(500);
    f.proc.kill("SIGINT");
    await new Promise((r) => f.proc.once("exit", r));
    flood = undefined;
    // Every echo sent while the agent was down or restarting was answered (the last one may still be in flight).
    const seqs = answered(f.output());
    const last = Math.max(...seqs);
    const missing = Array.from({ length: last + 1 }, (_, i) => i).filter((i) => !seqs.has(i));
    expect(missing, "unanswered echo requests").toEqual([]);

    // Adopted, not recreated: same kernel objects.
    expect(kernelObjects(agent, [a, b])).toEqual(before);
    // Endpoints restored.
    const epsAfter = endpoints(agent);
    expect(epsAfter.map((e) => [e.containerId, e.hostIfindex, e.ipv4?.address, e.ipv6?.address]).sort())
      .toEqual(epsBefore.map((e) => [e.containerId, e.hostIfindex, e.ipv4?.address, e.ipv6?.address]).sort());

    // New pods after the restart: fresh addresses, reachable, and policy still enforced.
    const c = agent.addPod("restart", "c");
    const d = agent.addPod("restart", "d");
    agent.serve(c, [80]);
    await sleep(300);
    const v4s = [a, b, c, d].map((p) => p.ipv4);
    const v6s = [a, b, c, d].map((p) => p.ipv6);
    expect(new Set(v4s).size, `IPv4 addresses ${v4s.join(" ")}`).toBe(4);
    expect(new Set(v6s).size, `IPv6 addresses ${v6s.join(" ")}`).toBe(4);
    expect(agent.probe(d, "tcp", c.ipv4, 80)).toBe("ok");
    expect(agent.probe(d, "tcp", c.ipv6, 80)).toBe("ok");
    expect(agent.probe(c, "tcp", b.ipv4, 80)).toBe("timeout");
    expect(agent.probe(a, "tcp", b.ipv4, 80)).toBe("ok");
  });
});
