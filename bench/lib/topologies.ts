// SPDX-License-Identifier: Apache-2.0
// Part (b) of bench:datapath: the three same-node paths compared, each a
// client netns and a server netns running iperf3 and bench/rr.c servers:
//   twill:  two pods of a real twill-agent (twill-cni wiring, redirect_peer)
//   veth:   two netns joined by one bare veth pair (the physical limit)
//   bridge: two netns, each with a veth into a Linux bridge (in its own netns)
// Everything made is registered in one Cleanup.
//
// API: buildRr(cleanup) -> path, setupTwill(rr) -> { topology, agent },
// setupVeth/setupBridge(cleanup, rr) -> Topology,
// tcpGbps(topo, seconds), rrLatencyNs(topo, rounds).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startAgent, type TestAgent } from "../../test/helpers/agent.js";
import { type Cleanup, createNetns, createVeth, ip, nsExec, type TestNetns } from "../../test/helpers/netns.js";

const ROOT = resolve(import.meta.dirname, "../..");
const IPERF_PORT = 5201;
const RR_PORT = 7070;

/** A client/server pair of netns and the server's address. */
export interface Topology {
  readonly name: string;
  readonly client: string;
  readonly serverIp: string;
  readonly rr: string;
}

/** Compile bench/rr.c into a temp dir removed by cleanup. */
export function buildRr(cleanup: Cleanup): string {
  const dir = mkdtempSync(join(tmpdir(), "twill-bench-"));
  cleanup.add(`dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, "rr");
  execFileSync("clang", ["-O2", "-o", bin, join(ROOT, "bench/rr.c")]);
  return bin;
}

function startServers(cleanup: Cleanup, netns: string, rr: string): void {
  for (const cmd of [["iperf3", "-s", "-p", String(IPERF_PORT)], [rr, "serve", String(RR_PORT)]]) {
    const p = spawn("ip", ["netns", "exec", netns, ...cmd], { stdio: "ignore" });
    cleanup.add(`${cmd[0]} in ${netns}`, () => { p.kill("SIGKILL"); });
  }
}

/**
 * Two pods of a fresh twill-agent on pod CIDR 10.244.12.0/24 (no policy: all
 * allowed). The caller awaits `agent.stop()` (it also stops the servers).
 */
export async function setupTwill(rr: string): Promise<{ topology: Topology; agent: TestAgent }> {
  const agent = await startAgent({
    podCidrs: ["10.244.12.0/24", "fd00:10:244:12::/64"],
    manifests: {
      "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n",
      "pods.yaml": ["a", "b"].map((n) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${n}, namespace: bench, labels: {app: ${n}}}\nspec: {containers: [{name: c}]}\n`).join("---\n"),
    },
  });
  try {
    const a = agent.addPod("bench", "a");
    const b = agent.addPod("bench", "b");
    startServers(agent.cleanup, b.netns.name, rr);
    return { topology: { name: "twill", client: a.netns.name, serverIp: b.ipv4, rr }, agent };
  } catch (e: unknown) {
    await agent.stop();
    throw e;
  }
}

/** Two netns joined by one veth pair, 10.244.13.1 <-> 10.244.13.2. */
export function setupVeth(cleanup: Cleanup, rr: string): Topology {
  const c = createNetns(cleanup);
  const s = createNetns(cleanup);
  const v = createVeth(cleanup, { netns: c, peerNetns: s });
  ip(["addr", "add", "10.244.13.1/24", "dev", v.name], c.name);
  ip(["link", "set", v.name, "up"], c.name);
  ip(["addr", "add", "10.244.13.2/24", "dev", v.peerName], s.name);
  ip(["link", "set", v.peerName, "up"], s.name);
  startServers(cleanup, s.name, rr);
  return { name: "veth", client: c.name, serverIp: "10.244.13.2", rr };
}

/** Two netns with a veth each into a bridge that lives in a third netns, 10.244.14.1 <-> .2. */
export function setupBridge(cleanup: Cleanup, rr: string): Topology {
  const sw = createNetns(cleanup);
  ip(["link", "add", "br0", "type", "bridge"], sw.name);
  ip(["link", "set", "br0", "up"], sw.name);
  const leg = (ns: TestNetns, addr: string): void => {
    const v = createVeth(cleanup, { netns: sw, peerNetns: ns });
    ip(["link", "set", v.name, "master", "br0", "up"], sw.name);
    ip(["addr", "add", addr, "dev", v.peerName], ns.name);
    ip(["link", "set", v.peerName, "up"], ns.name);
  };
  const c = createNetns(cleanup);
  const s = createNetns(cleanup);
  leg(c, "10.244.14.1/24");
  leg(s, "10.244.14.2/24");
  startServers(cleanup, s.name, rr);
  return { name: "bridge", client: c.name, serverIp: "10.244.14.2", rr };
}

/** Single-stream iperf3 throughput, Gbit/s at the receiver. */
export function tcpGbps(t: Topology, seconds: number): number {
  const out = nsExec(t.client, "iperf3", ["-c", t.serverIp, "-p", String(IPERF_PORT), "-t", String(seconds), "-J"], (seconds + 30) * 1000);
  return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9;
}

/** Median request/response round trip over `rounds` 1-byte exchanges, ns. */
export function rrLatencyNs(t: Topology, rounds: number): number {
  const out = nsExec(t.client, t.rr, ["client", t.serverIp, String(RR_PORT), String(rounds)], 60_000);
  return (JSON.parse(out) as { median_ns: number }).median_ns;
}
