// SPDX-License-Identifier: Apache-2.0
// `npm run bench:datapath`: the datapath benchmark of issue 2 (not a test).
//   (a) per-packet cost of from_pod under BPF_PROG_TEST_RUN (established TCP
//       to a local pod, first SYN with ~300 policy entries) next to a program
//       that only returns TC_ACT_OK (bench/lib/prog-cost.ts);
//   (b) same-node pod-to-pod TCP throughput (iperf3, one stream) and
//       request/response latency (bench/rr.c) through Twill, a bare veth
//       pair and a Linux bridge, interleaved, medians of --runs
//       (bench/lib/topologies.ts).
// Prints a table, then as its last line one JSON object:
// {"floor_ns","established_ns","new_conn_ns","tcp_ratio_vs_veth","tcp_ratio_vs_bridge","rr_latency_ratio_vs_veth"}.
//
// Usage: npm run bench:datapath -- [--runs 5] [--seconds 3] [--rounds 2000]
import { Cleanup } from "../test/helpers/netns.js";
import type { TestAgent } from "../test/helpers/agent.js";
import { measureFloor, measureFromPod } from "./lib/prog-cost.js";
import { type Topology, buildRr, rrLatencyNs, setupBridge, setupTwill, setupVeth, tcpGbps } from "./lib/topologies.js";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const round = (x: number, digits: number): number => Number(x.toFixed(digits));

const runs = arg("--runs", 5);
const seconds = arg("--seconds", 3);
const rounds = arg("--rounds", 2000);

// (a) per-packet cost
console.error("measuring per-packet cost (BPF_PROG_TEST_RUN)...");
const floorBefore = measureFloor();
const prog = measureFromPod();
const floorNs = Math.min(floorBefore, measureFloor());

// (b) same-node paths
const cleanup = new Cleanup();
let agent: TestAgent | null = null;
const gbps = new Map<string, number[]>();
const rrNs = new Map<string, number[]>();
try {
  const rr = buildRr(cleanup);
  const twill = await setupTwill(rr);
  agent = twill.agent;
  const topologies: Topology[] = [twill.topology, setupVeth(cleanup, rr), setupBridge(cleanup, rr)];
  await new Promise((r) => setTimeout(r, 500)); // servers listening
  for (const t of topologies) rrLatencyNs(t, 200); // warm-up: ARP/ND, conntrack, page cache
  for (let i = 0; i < runs; i++) {
    // rotate the order so no path always runs first (or right after the heaviest)
    const order = topologies.map((_, k) => topologies[(i + k) % topologies.length] as Topology);
    for (const t of order) {
      console.error(`run ${i + 1}/${runs}: ${t.name}`);
      gbps.set(t.name, [...(gbps.get(t.name) ?? []), tcpGbps(t, seconds)]);
      rrNs.set(t.name, [...(rrNs.get(t.name) ?? []), rrLatencyNs(t, rounds)]);
    }
  }
} finally {
  let err: unknown = null;
  try { cleanup.run(); } catch (e: unknown) { err = e; }
  await agent?.stop();
  if (err) throw err;
}

const tcp = (n: string): number => median(gbps.get(n) ?? []);
const lat = (n: string): number => median(rrNs.get(n) ?? []);

console.log(prog.report.split("\n").map((l) => `  ${l}`).join("\n"));
console.log("");
console.log("per packet (BPF_PROG_TEST_RUN)            ns");
console.log(`  floor (tc_ok, repeat 240, median 200)  ${floorNs.toFixed(0).padStart(6)}`);
console.log(`  from_pod established, local pod        ${prog.establishedNs.toFixed(0).padStart(6)}   target <= 150`);
console.log(`  from_pod first SYN, ~300 policy rules  ${prog.newConnNs.toFixed(0).padStart(6)}   target <= 500`);
console.log("");
console.log(`same-node TCP, median of ${runs} interleaved runs`);
console.log("  path     throughput Gbit/s   all runs                          RR median us   all runs");
for (const n of ["twill", "veth", "bridge"]) {
  const g = gbps.get(n) ?? [];
  const r = rrNs.get(n) ?? [];
  console.log(`  ${n.padEnd(8)} ${tcp(n).toFixed(2).padStart(10)}          ${g.map((x) => x.toFixed(1)).join(" ").padEnd(33)} ${(lat(n) / 1000).toFixed(2).padStart(8)}       ${r.map((x) => (x / 1000).toFixed(1)).join(" ")}`);
}
const result = {
  floor_ns: round(floorNs, 1),
  established_ns: round(prog.establishedNs, 1),
  new_conn_ns: round(prog.newConnNs, 1),
  tcp_ratio_vs_veth: round(tcp("twill") / tcp("veth"), 3),
  tcp_ratio_vs_bridge: round(tcp("twill") / tcp("bridge"), 3),
  rr_latency_ratio_vs_veth: round(lat("twill") / lat("veth"), 3),
};
console.log("");
console.log(`targets: throughput >= 0.95x veth (${result.tcp_ratio_vs_veth}) and > bridge (${result.tcp_ratio_vs_bridge}); latency <= 1.05x veth (${result.rr_latency_ratio_vs_veth})`);
console.log(JSON.stringify(result));
