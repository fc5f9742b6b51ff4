// SPDX-License-Identifier: Apache-2.0
// to_pod (traffic entering a pod from the host stack or another node) under
// BPF_PROG_TEST_RUN. The program runs with skb->ifindex 1, so the receiving
// pod's endpoint and policy are keyed by 1.
import { afterEach, describe, expect, it } from "vitest";
import { CtFlags, Datapath, Dir, EventType, Identity, Reason, Verdict, type PolicySpec } from "../helpers/datapath.js";
import { IpProto, TcpFlags, buildArp, buildPacket, type L4Spec } from "../helpers/packet.js";

const POD = { ifindex: 1, identity: 300, ipv4: "10.244.0.2", ipv6: "fd00:10:244::2", mac: "02:00:00:00:00:02", nodeMac: "02:00:00:00:01:02" };
const REMOTE_POD = { ipv4: "10.244.7.9", ipv6: "fd00:10:244:7::9", identity: 400 };
const WORLD4 = "198.18.0.10";
const WORLD6 = "2001:db8::10";

let dp: Datapath | null = null;
afterEach(() => {
  dp?.close();
  dp = null;
});

function setup(ingress: PolicySpec[] | null, opts: { endpoint?: boolean } = {}): Datapath {
  const d = Datapath.open();
  dp = d;
  if (opts.endpoint !== false) d.setEndpoint(POD);
  d.setIpcache(`${REMOTE_POD.ipv4}/32`, REMOTE_POD.identity);
  d.setIpcache(`${REMOTE_POD.ipv6}/128`, REMOTE_POD.identity);
  d.setIpcache("10.244.7.0/24", 500); // a less specific prefix must not win
  if (ingress !== null) d.setPolicy(POD.ifindex, ingress);
  return d;
}

function toPodFrame(src: string, l4: L4Spec): Uint8Array {
  const v6 = src.includes(":");
  return buildPacket({ srcMac: POD.nodeMac, dstMac: POD.mac, src, dst: v6 ? POD.ipv6 : POD.ipv4, l4, ttl: 63 });
}

const SYN = (dport: number): L4Spec => ({ proto: "tcp", sport: 50000, dport, flags: TcpFlags.SYN });
const ALLOW_INGRESS: PolicySpec[] = [{ identity: Identity.ANY, direction: Dir.TO_POD }];
const WEB_FROM_400: PolicySpec[] = [
  { identity: 400, direction: Dir.TO_POD, protocol: IpProto.TCP, port: 80, ruleRef: 31 },
  { identity: Identity.ANY, direction: Dir.TO_POD, protocol: IpProto.ICMP, ruleRef: 32 },
  { identity: Identity.ANY, direction: Dir.TO_POD, protocol: IpProto.ICMPV6, ruleRef: 33 },
  // egress entries must not allow ingress
  { identity: Identity.ANY, direction: Dir.FROM_POD },
];

interface Row {
  name: string;
  ingress: PolicySpec[] | null;
  src: string;
  l4: L4Spec;
  verdict: number;
  reason: number;
  srcIdentity: number;
  ruleRef: number;
  ctPorts?: [number, number];
}

const rows: Row[] = [
  { name: "v4 tcp from world, ingress not isolated", ingress: ALLOW_INGRESS, src: WORLD4, l4: SYN(80), verdict: Verdict.OK, reason: Reason.FORWARDED, srcIdentity: Identity.WORLD, ruleRef: 0, ctPorts: [50000, 80] },
  { name: "v4 tcp from the allowed remote pod", ingress: WEB_FROM_400, src: REMOTE_POD.ipv4, l4: SYN(80), verdict: Verdict.OK, reason: Reason.FORWARDED, srcIdentity: 400, ruleRef: 31, ctPorts: [50000, 80] },
  { name: "v4 tcp to a port the rule does not cover", ingress: WEB_FROM_400, src: REMOTE_POD.ipv4, l4: SYN(81), verdict: Verdict.SHOT, reason: Reason.POLICY, srcIdentity: 400, ruleRef: 0 },
  { name: "v4 tcp from world to the remote pod's port", ingress: WEB_FROM_400, src: WORLD4, l4: SYN(80), verdict: Verdict.SHOT, reason: Reason.POLICY, srcIdentity: Identity.WORLD, ruleRef: 0 },
  { name: "v4 udp from world denied", ingress: WEB_FROM_400, src: WORLD4, l4: { proto: "udp", sport: 1, dport: 53 }, verdict: Verdict.SHOT, reason: Reason.POLICY, srcIdentity: Identity.WORLD, ruleRef: 0 },
  { name: "v4 icmp echo allowed by protocol rule", ingress: WEB_FROM_400, src: WORLD4, l4: { proto: "icmp", type: 8, id: 9 }, verdict: Verdict.OK, reason: Reason.FORWARDED, srcIdentity: Identity.WORLD, ruleRef: 32, ctPorts: [9, 9] },
  { name: "v6 tcp from the allowed remote pod", ingress: WEB_FROM_400, src: REMOTE_POD.ipv6, l4: SYN(80), verdict: Verdict.OK, reason: Reason.FORWARDED, srcIdentity: 400, ruleRef: 31, ctPorts: [50000, 80] },
  { name: "v6 udp from world, ingress not isolated", ingress: ALLOW_INGRESS, src: WORLD6, l4: { proto: "udp", sport: 2, dport: 53 }, verdict: Verdict.OK, reason: Reason.FORWARDED, srcIdentity: Identity.WORLD, ruleRef: 0, ctPorts: [2, 53] },
  { name: "v6 icmpv6 echo allowed by protocol rule", ingress: WEB_FROM_400, src: WORLD6, l4: { proto: "icmpv6", type: 128, id: 4 }, verdict: Verdict.OK, reason: Reason.FORWARDED, srcIdentity: Identity.WORLD, ruleRef: 33, ctPorts: [4, 4] },
  { name: "v6 tcp from world denied", ingress: WEB_FROM_400, src: WORLD6, l4: SYN(80), verdict: Verdict.SHOT, reason: Reason.POLICY, srcIdentity: Identity.WORLD, ruleRef: 0 },
  { name: "endpoint without a policy map", ingress: null, src: WORLD4, l4: SYN(80), verdict: Verdict.SHOT, reason: Reason.NO_POLICY_MAP, srcIdentity: Identity.WORLD, ruleRef: 0 },
];

describe("to_pod new connections", () => {
  it.each(rows)("$name", (row) => {
    const d = setup(row.ingress);
    const frame = toPodFrame(row.src, row.l4);
    const r = d.toPod(frame);
    expect(r.verdict).toBe(row.verdict);
    expect(d.metric(Dir.TO_POD, row.reason)).toBe(1);
    const type = row.verdict === Verdict.OK ? EventType.NEW_CONN : EventType.DROP;
    const reason = row.verdict === Verdict.OK ? 0 : row.reason;
    expect(d.drainEvents()).toEqual([
      expect.objectContaining({ type, reason, direction: Dir.TO_POD, ifindex: POD.ifindex, dstIdentity: POD.identity, ruleRef: row.ruleRef, pktLen: frame.length }),
    ]);
    const protocol = row.l4.proto === "tcp" ? IpProto.TCP : row.l4.proto === "udp" ? IpProto.UDP : row.l4.proto === "icmp" ? IpProto.ICMP : IpProto.ICMPV6;
    const dst = row.src.includes(":") ? POD.ipv6 : POD.ipv4;
    const sport = "sport" in row.l4 ? row.l4.sport : 0;
    const dport = "dport" in row.l4 ? row.l4.dport : 0;
    const [cs, cd] = row.ctPorts ?? [sport, dport];
    const ct = d.ctLookup({ src: row.src, dst, sport: cs, dport: cd, protocol });
    if (row.verdict === Verdict.OK) {
      expect(ct).toMatchObject({ srcIdentity: row.srcIdentity, dstIdentity: POD.identity, ruleRef: row.ruleRef });
    } else {
      expect(ct).toBeNull();
    }
  });
});

describe("to_pod passes without policy", () => {
  const passRows = [
    { name: "arp request for the pod", frame: () => buildArp({ srcMac: POD.nodeMac, senderMac: POD.nodeMac, senderIp: "10.244.0.1", targetIp: POD.ipv4 }) },
    { name: "icmpv6 neighbour solicitation", frame: () => buildPacket({ srcMac: POD.nodeMac, dstMac: "33:33:ff:00:00:02", src: "fe80::1", dst: "ff02::1:ff00:2", ttl: 255, l4: { proto: "icmpv6", type: 135 } }) },
    { name: "icmpv6 neighbour advertisement", frame: () => buildPacket({ srcMac: POD.nodeMac, dstMac: POD.mac, src: "fe80::1", dst: "fe80::2", ttl: 255, l4: { proto: "icmpv6", type: 136 } }) },
  ];
  it.each(passRows)("$name", (row) => {
    const d = setup(null); // no policy map: a policy lookup would drop
    const frame = row.frame();
    const r = d.toPod(frame);
    expect(r.verdict).toBe(Verdict.OK);
    expect(r.data).toEqual(frame);
    expect(d.metric(Dir.TO_POD, Reason.FORWARDED)).toBe(1);
    expect(d.drainEvents()).toEqual([]);
  });
});

describe("to_pod drops", () => {
  it("a veth without an endpoint", () => {
    const d = setup(ALLOW_INGRESS, { endpoint: false });
    expect(d.toPod(toPodFrame(WORLD4, SYN(80))).verdict).toBe(Verdict.SHOT);
    expect(d.metric(Dir.TO_POD, Reason.NO_ENDPOINT)).toBe(1);
    expect(d.drainEvents()).toEqual([expect.objectContaining({ type: EventType.DROP, reason: Reason.NO_ENDPOINT, direction: Dir.TO_POD })]);
  });

  it("an ipv6 non-first fragment", () => {
    const d = setup(ALLOW_INGRESS);
    // UDP frame with its next header rewritten into a fragment header at offset 1448
    const f = toPodFrame(WORLD6, { proto: "udp", sport: 1, dport: 2 });
    const frag = new Uint8Array(f.length + 8);
    frag.set(f.subarray(0, 54), 0);
    frag[20] = 44; // next header: fragment
    frag.set([17, 0, 0x05, 0xa8, 0, 0, 0, 1], 54); // UDP follows, offset 181*8
    frag.set(f.subarray(54), 62);
    expect(d.toPod(frag).verdict).toBe(Verdict.SHOT);
    expect(d.metric(Dir.TO_POD, Reason.FRAGMENT)).toBe(1);
  });
});

describe("to_pod conntrack", () => {
  it("replies to the pod's own connections pass an isolated ingress", () => {
    const d = setup([]); // ingress isolated, nothing allowed
    d.setPolicy(POD.ifindex, [{ identity: Identity.ANY, direction: Dir.FROM_POD }]);
    const out = buildPacket({ srcMac: POD.mac, dstMac: POD.nodeMac, src: POD.ipv6, dst: WORLD6, l4: { proto: "udp", sport: 3000, dport: 53 } });
    expect(d.fromPod(out).verdict).toBe(Verdict.OK);
    const reply = toPodFrame(WORLD6, { proto: "udp", sport: 53, dport: 3000 });
    expect(d.toPod(reply).verdict).toBe(Verdict.OK);
    expect(d.ctLookup({ src: POD.ipv6, dst: WORLD6, sport: 3000, dport: 53, protocol: IpProto.UDP })).toMatchObject({ packets: 2n, flags: CtFlags.SEEN_REPLY });
    // a new flow from the same peer is still denied
    expect(d.toPod(toPodFrame(WORLD6, { proto: "udp", sport: 53, dport: 3001 })).verdict).toBe(Verdict.SHOT);
  });

  it("established inbound traffic passes after the policy is withdrawn", () => {
    const d = setup(WEB_FROM_400);
    expect(d.toPod(toPodFrame(REMOTE_POD.ipv4, SYN(80))).verdict).toBe(Verdict.OK);
    d.setPolicy(POD.ifindex, []);
    d.drainEvents();
    const ack = toPodFrame(REMOTE_POD.ipv4, { proto: "tcp", sport: 50000, dport: 80, flags: TcpFlags.ACK });
    expect(d.toPod(ack).verdict).toBe(Verdict.OK);
    expect(d.drainEvents()).toEqual([]);
    expect(d.toPod(toPodFrame(REMOTE_POD.ipv4, SYN(81))).verdict).toBe(Verdict.SHOT);
  });

  const icmpErrorRows = [
    { name: "v4 port unreachable for the pod's udp flow", v6: false, type: 3, code: 3, related: true },
    { name: "v4 fragmentation needed for the pod's udp flow", v6: false, type: 3, code: 4, related: true },
    { name: "v4 time exceeded quoting an untracked flow", v6: false, type: 11, code: 0, related: false },
    { name: "v6 packet too big for the pod's udp flow", v6: true, type: 2, code: 0, related: true },
    { name: "v6 destination unreachable quoting an untracked flow", v6: true, type: 1, code: 4, related: false },
  ];
  it.each(icmpErrorRows)("icmp error: $name", (row) => {
    const d = setup([{ identity: Identity.ANY, direction: Dir.FROM_POD }]); // ingress isolated
    const [src, dst] = row.v6 ? [POD.ipv6, WORLD6] : [POD.ipv4, WORLD4];
    const out = buildPacket({ srcMac: POD.mac, dstMac: POD.nodeMac, src, dst, l4: { proto: "udp", sport: 3000, dport: 53 } });
    expect(d.fromPod(out).verdict).toBe(Verdict.OK);
    // the quoted datagram is what the pod sent (or, if unrelated, another port)
    const quoted = row.related ? out : buildPacket({ srcMac: POD.mac, dstMac: POD.nodeMac, src, dst, l4: { proto: "udp", sport: 3001, dport: 53 } });
    const err = buildPacket({ srcMac: POD.nodeMac, dstMac: POD.mac, src: dst, dst: src, l4: { proto: row.v6 ? "icmpv6" : "icmp", type: row.type, code: row.code }, payload: quoted.subarray(14) });
    d.drainEvents();
    const r = d.toPod(err);
    expect(r.verdict).toBe(row.related ? Verdict.OK : Verdict.SHOT);
    expect(d.metric(Dir.TO_POD, Reason.POLICY)).toBe(row.related ? 0 : 1);
    // a related error opens nothing
    expect(d.drainEvents().filter((e) => e.type === EventType.NEW_CONN)).toEqual([]);
  });
});

describe("to_pod follows the policy slot in force", () => {
  const key = (identity: number, port: number) => ({ prefixlen: 64, identity, direction: Dir.TO_POD, protocol: IpProto.TCP, dport: port });
  const allow = (port: number, ruleRef: number) => [{ key: key(REMOTE_POD.identity, port), value: { ruleRef, flags: 0 } }];
  // A fresh source port per probe: a repeated tuple would be conntrack's business, not policy's.
  let sport = 40000;
  const verdictFor = (d: Datapath, port: number): number => d.toPod(toPodFrame(REMOTE_POD.ipv4, { ...SYN(port), sport: sport++ })).verdict;

  it("sees each new policy right after replace returns, through both slots, and never the one before", () => {
    const d = setup(null);
    const pm = d.policyMap();
    try {
      pm.replace(POD.ifindex, allow(80, 1)); // a new endpoint: slot 0
      expect(verdictFor(d, 80)).toBe(Verdict.OK);
      expect(verdictFor(d, 81)).toBe(Verdict.SHOT);
      for (let i = 0; i < 6; i++) {
        const port = i % 2 === 0 ? 81 : 80;
        pm.replace(POD.ifindex, allow(port, 10 + i)); // flips to the other slot, in place
        expect(verdictFor(d, port), `change ${i}: new port`).toBe(Verdict.OK);
        expect(verdictFor(d, port === 80 ? 81 : 80), `change ${i}: old port`).toBe(Verdict.SHOT);
        expect(pm.get(POD.ifindex)?.map((e) => e.value.ruleRef)).toEqual([10 + i]);
      }
      // Outer keys ifindex * 2 + slot (policy_outer_key in policy.h).
      expect(pm.outer.keys().sort()).toEqual([POD.ifindex * 2, POD.ifindex * 2 + 1]);
      expect(pm.delete(POD.ifindex)).toBe(true);
      expect(d.toPod(toPodFrame(REMOTE_POD.ipv4, SYN(80))).verdict).toBe(Verdict.SHOT);
      expect(pm.outer.keys()).toEqual([]);
    } finally {
      pm.close();
    }
  });

  it("a restarted agent adopts the pinned tries and slot and keeps flipping", () => {
    const d = setup(null);
    const first = d.policyMap();
    first.replace(POD.ifindex, allow(80, 1));
    first.replace(POD.ifindex, allow(81, 2)); // slot 1 in force
    first.close();
    const second = d.policyMap();
    try {
      expect(second.get(POD.ifindex)?.map((e) => e.value.ruleRef)).toEqual([2]);
      second.replace(POD.ifindex, allow(82, 3));
      // Unknown when the first agent flipped last: the first write waited for a grace period.
      expect(second.stats.syncGraceWaits).toBe(1);
      expect(verdictFor(d, 82)).toBe(Verdict.OK);
      expect(verdictFor(d, 81)).toBe(Verdict.SHOT);
      expect(second.get(POD.ifindex)?.map((e) => e.value.ruleRef)).toEqual([3]);
    } finally {
      second.close();
    }
  });

  it("drops with NO_POLICY_MAP while the slot entry is missing or out of range, even with both tries there", () => {
    const d = setup(null);
    const pm = d.policyMap();
    try {
      pm.replace(POD.ifindex, allow(80, 1));
      pm.replace(POD.ifindex, allow(80, 2)); // slot 1 in force, both tries allow port 80 now or before
      expect(verdictFor(d, 80)).toBe(Verdict.OK);
      pm.slots.delete(POD.ifindex);
      expect(verdictFor(d, 80)).toBe(Verdict.SHOT);
      expect(pm.get(POD.ifindex)).toBeNull();
      // 2 would be ifindex * 2 + 2: the next endpoint's slot 0, never to be used.
      pm.slots.set(POD.ifindex, { slot: 2 });
      expect(verdictFor(d, 80)).toBe(Verdict.SHOT);
      expect(d.metric(Dir.TO_POD, Reason.NO_POLICY_MAP)).toBe(2);
      pm.slots.set(POD.ifindex, { slot: 0 });
      expect(verdictFor(d, 80)).toBe(Verdict.OK);
    } finally {
      pm.close();
    }
  });

  it("waits by a map-in-map rewrite where membarrier is no grace period, with the same verdicts", () => {
    const d = setup(null);
    const pm = d.policyMap({ graceWait: "map-update" });
    try {
      for (let i = 0; i < 4; i++) {
        const port = 80 + i;
        pm.replace(POD.ifindex, allow(port, 1 + i));
        expect(verdictFor(d, port), `change ${i}: new port`).toBe(Verdict.OK);
        if (i > 0) expect(verdictFor(d, port - 1), `change ${i}: old port`).toBe(Verdict.SHOT);
      }
      // Changes 0 (new endpoint) and 1 (slot 1, never in force) need no wait; 2 and 3 rewrite a retired trie.
      expect(pm.stats.syncGraceWaits).toBe(2);
      expect(pm.get(POD.ifindex)?.map((e) => e.value.ruleRef)).toEqual([4]);
    } finally {
      pm.close();
    }
  });
});
