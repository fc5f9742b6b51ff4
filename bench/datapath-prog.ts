// SPDX-License-Identifier: Apache-2.0
// Per-packet cost of from_pod under BPF_PROG_TEST_RUN, for the two targets of
// the datapath: an established TCP packet to a local pod (<= 150 ns) and the
// first SYN of a connection with a few hundred policy entries (<= 500 ns).
//
// Established: one run with repeat=N. The program rewrites the frame it is
// given (MACs, TTL) and the kernel reuses the skb across repeats, so the
// destination's node_mac is set to the sender's MAC (the rewritten frame
// passes the source check again) and the TTL starts at 255 (N < 250).
// First SYN: every packet must be a new tuple, so each is one repeat=1 run;
// the fixed cost of a run (measured as repeat=1 minus repeat=N on an
// idempotent path) is subtracted from the median.
//
// Usage: npx tsx bench/datapath-prog.ts [--policy-entries 300] [--samples 5000]
import { Datapath, Dir, Identity, type PolicySpec } from "../test/helpers/datapath.js";
import { TcpFlags, buildPacket } from "../test/helpers/packet.js";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const quantile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * q)] ?? NaN;
const median = (xs: number[]): number => quantile(xs, 0.5);

const policyEntries = arg("--policy-entries", 300);
const samples = arg("--samples", 5000);

const A = { ifindex: 1, identity: 300, ipv4: "10.244.0.2", mac: "02:00:00:00:00:02", nodeMac: "02:00:00:00:01:02" };
const B = { ifindex: 42, identity: 301, ipv4: "10.244.0.3", mac: "02:00:00:00:00:03", nodeMac: A.mac };
const WORLD = "198.18.0.10";

function policy(dir: number, peer: number): PolicySpec[] {
  const p: PolicySpec[] = [];
  for (let i = 0; i < policyEntries; i++) {
    p.push({ identity: 1000 + (i % 50), direction: dir, protocol: 6, port: 1000 + i, ruleRef: i + 1 });
  }
  p.push({ identity: peer, direction: dir, protocol: 6, port: 80, ruleRef: 9999 });
  return p;
}

const dp = Datapath.open();
try {
  dp.setEndpoint(A);
  dp.setLxc(A);
  dp.setLxc(B);
  for (let i = 0; i < 256; i++) dp.setIpcache(`10.${i}.0.0/16`, 5000 + i);
  dp.setIpcache(`${B.ipv4}/32`, B.identity);
  dp.setPolicy(A.ifindex, [...policy(Dir.FROM_POD, B.identity), { identity: Identity.WORLD, direction: Dir.FROM_POD, protocol: 6, port: 80 }]);
  dp.setPolicy(B.ifindex, policy(Dir.TO_POD, A.identity));

  const frame = (dst: string, sport: number, flags: number): Uint8Array =>
    buildPacket({ srcMac: A.mac, dstMac: A.nodeMac, src: A.ipv4, dst, ttl: 255, l4: { proto: "tcp", sport, dport: 80, flags } });

  // fixed cost of one test run: established to world does not modify the frame
  dp.fromPod(frame(WORLD, 1, TcpFlags.SYN));
  const idem = frame(WORLD, 1, TcpFlags.ACK);
  const amortized = dp.fromPod(idem, 1_000_000).durationNs;
  const single: number[] = [];
  for (let i = 0; i < samples; i++) single.push(dp.fromPod(idem).durationNs);
  const overhead = median(single) - amortized;

  const syn: number[] = [];
  for (let i = 0; i < samples; i++) {
    const r = dp.fromPod(frame(B.ipv4, 2000 + i, TcpFlags.SYN));
    if (r.verdict !== 7) throw new Error(`first syn: verdict ${r.verdict}`);
    syn.push(r.durationNs);
  }
  const est: number[] = [];
  const ack = frame(B.ipv4, 2000, TcpFlags.ACK);
  for (let i = 0; i < 200; i++) {
    const r = dp.fromPod(ack, 240);
    if (r.verdict !== 7) throw new Error(`established: verdict ${r.verdict}`);
    est.push(r.durationNs);
  }
  dp.drainEvents();
  console.log(`policy entries per endpoint: ${policyEntries + 1}`);
  console.log(`established tcp to local pod: ${median(est)} ns/packet (repeat=240, median of 200 runs)`);
  console.log(`established tcp to world:     ${amortized} ns/packet (repeat=1e6)`);
  console.log(`first syn to local pod:       ${median(syn) - overhead} ns/packet (median ${median(syn)} of ${samples} single runs minus ${overhead} ns run overhead; p10 ${quantile(syn, 0.1) - overhead})`);
} finally {
  dp.close();
}
