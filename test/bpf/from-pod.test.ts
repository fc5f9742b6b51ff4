// SPDX-License-Identifier: Apache-2.0
// from_pod (traffic leaving a pod) under BPF_PROG_TEST_RUN: one row per
// behaviour of docs/architecture.md "Packet walk", each on a freshly loaded
// object with its own bpf root. The program always runs with skb->ifindex 1
// (test runs use loopback), so the sending pod's endpoint is keyed by 1.
import { afterEach, describe, expect, it } from "vitest";
import { CtFlags, Datapath, Dir, EventType, Identity, Reason, Verdict, type PolicySpec } from "../helpers/datapath.js";
import { IpProto, TcpFlags, buildArp, buildPacket, parsePacket, type L4Spec } from "../helpers/packet.js";

const A = { ifindex: 1, identity: 300, ipv4: "10.244.0.2", ipv6: "fd00:10:244::2", mac: "02:00:00:00:00:02", nodeMac: "02:00:00:00:01:02" };
const B = { ifindex: 42, identity: 301, ipv4: "10.244.0.3", ipv6: "fd00:10:244::3", mac: "02:00:00:00:00:03", nodeMac: "02:00:00:00:01:03" };
const REMOTE_POD = { ipv4: "10.244.7.9", ipv6: "fd00:10:244:7::9", identity: 400 };
const WORLD4 = "198.18.0.10";
const WORLD6 = "2001:db8::10";

const ALLOW_ALL_EGRESS: PolicySpec[] = [{ identity: Identity.ANY, direction: Dir.FROM_POD }];
const ALLOW_ALL_INGRESS: PolicySpec[] = [{ identity: Identity.ANY, direction: Dir.TO_POD }];

let dp: Datapath | null = null;
afterEach(() => {
  dp?.close();
  dp = null;
});

/** A with its endpoint, B local, the remote pod in the ipcache; policies per row. */
function setup(opts: { egress?: PolicySpec[] | null; bIngress?: PolicySpec[] | null; endpoint?: boolean; redirectPeer?: boolean } = {}): Datapath {
  const d = Datapath.open({ redirectPeer: opts.redirectPeer ?? true });
  dp = d;
  if (opts.endpoint !== false) d.setEndpoint(A);
  d.setLxc(A);
  d.setLxc(B);
  d.setIpcache(`${A.ipv4}/32`, A.identity);
  d.setIpcache(`${B.ipv4}/32`, B.identity);
  d.setIpcache(`${B.ipv6}/128`, B.identity);
  d.setIpcache(`${REMOTE_POD.ipv4}/32`, REMOTE_POD.identity);
  d.setIpcache(`${REMOTE_POD.ipv6}/128`, REMOTE_POD.identity);
  const egress = opts.egress === undefined ? ALLOW_ALL_EGRESS : opts.egress;
  if (egress !== null) d.setPolicy(A.ifindex, egress);
  const bIngress = opts.bIngress === undefined ? ALLOW_ALL_INGRESS : opts.bIngress;
  if (bIngress !== null) d.setPolicy(B.ifindex, bIngress);
  return d;
}

function fromA(dst: string, l4: L4Spec, extra: { ttl?: number; srcMac?: string; src?: string } = {}): Uint8Array {
  const v6 = dst.includes(":");
  return buildPacket({
    srcMac: extra.srcMac ?? A.mac,
    dstMac: A.nodeMac,
    src: extra.src ?? (v6 ? A.ipv6 : A.ipv4),
    dst,
    l4,
    ...(extra.ttl !== undefined ? { ttl: extra.ttl } : {}),
  });
}

const SYN = (dport: number): L4Spec => ({ proto: "tcp", sport: 40000, dport, flags: TcpFlags.SYN });

interface NewConnRow {
  name: string;
  dst: string;
  l4: L4Spec;
  egress: PolicySpec[];
  protocol: number;
  ctPorts: [number, number];
  dstIdentity: number;
  ruleRef: number;
  ctFlags: number;
}

const newConnRows: NewConnRow[] = [
  { name: "v4 tcp syn to world, egress not isolated", dst: WORLD4, l4: SYN(443), egress: ALLOW_ALL_EGRESS, protocol: IpProto.TCP, ctPorts: [40000, 443], dstIdentity: Identity.WORLD, ruleRef: 0, ctFlags: CtFlags.TCP_SYN },
  { name: "v4 udp to remote pod allowed by rule", dst: REMOTE_POD.ipv4, l4: { proto: "udp", sport: 5353, dport: 53 }, egress: [{ identity: 400, direction: Dir.FROM_POD, protocol: IpProto.UDP, port: 53, ruleRef: 9 }], protocol: IpProto.UDP, ctPorts: [5353, 53], dstIdentity: 400, ruleRef: 9, ctFlags: 0 },
  { name: "v4 icmp echo allowed by protocol rule", dst: WORLD4, l4: { proto: "icmp", type: 8, id: 77, seq: 1 }, egress: [{ identity: Identity.WORLD, direction: Dir.FROM_POD, protocol: IpProto.ICMP, ruleRef: 3 }], protocol: IpProto.ICMP, ctPorts: [77, 77], dstIdentity: Identity.WORLD, ruleRef: 3, ctFlags: 0 },
  { name: "v6 tcp syn to remote pod allowed by port rule", dst: REMOTE_POD.ipv6, l4: SYN(8443), egress: [{ identity: 400, direction: Dir.FROM_POD, protocol: IpProto.TCP, port: 8443, ruleRef: 11 }], protocol: IpProto.TCP, ctPorts: [40000, 8443], dstIdentity: 400, ruleRef: 11, ctFlags: CtFlags.TCP_SYN },
  { name: "v6 udp to world, egress not isolated", dst: WORLD6, l4: { proto: "udp", sport: 7000, dport: 123 }, egress: ALLOW_ALL_EGRESS, protocol: IpProto.UDP, ctPorts: [7000, 123], dstIdentity: Identity.WORLD, ruleRef: 0, ctFlags: 0 },
  { name: "v6 icmpv6 echo to world allowed by any-identity rule", dst: WORLD6, l4: { proto: "icmpv6", type: 128, id: 5, seq: 1 }, egress: [{ identity: Identity.ANY, direction: Dir.FROM_POD, protocol: IpProto.ICMPV6, ruleRef: 4 }], protocol: IpProto.ICMPV6, ctPorts: [5, 5], dstIdentity: Identity.WORLD, ruleRef: 4, ctFlags: 0 },
];

describe("from_pod new connections", () => {
  it.each(newConnRows)("$name: forwarded, ct entry and NEW_CONN event", (row) => {
    const d = setup({ egress: row.egress });
    const frame = fromA(row.dst, row.l4);
    const r = d.fromPod(frame);
    expect(r.verdict).toBe(Verdict.OK);
    expect(r.data).toEqual(frame); // the host stack routes it untouched
    expect(d.metric(Dir.FROM_POD, Reason.FORWARDED)).toBe(1);
    const src = row.dst.includes(":") ? A.ipv6 : A.ipv4;
    const ct = d.ctLookup({ src, dst: row.dst, sport: row.ctPorts[0], dport: row.ctPorts[1], protocol: row.protocol });
    expect(ct).toMatchObject({ packets: 1n, bytes: BigInt(frame.length), srcIdentity: A.identity, dstIdentity: row.dstIdentity, flags: row.ctFlags, ruleRef: row.ruleRef });
    expect(d.drainEvents()).toEqual([
      expect.objectContaining({ type: EventType.NEW_CONN, reason: Reason.FORWARDED, direction: Dir.FROM_POD, ifindex: A.ifindex, srcIdentity: A.identity, dstIdentity: row.dstIdentity, ruleRef: row.ruleRef, protocol: row.protocol, family: src.includes(":") ? 10 : 2, pktLen: frame.length }),
    ]);
  });
});

describe("from_pod ipv6 extension headers", () => {
  it("finds the udp ports behind a hop-by-hop header", () => {
    const d = setup({ egress: [{ identity: Identity.WORLD, direction: Dir.FROM_POD, protocol: IpProto.UDP, port: 53 }] });
    const plain = fromA(WORLD6, { proto: "udp", sport: 6000, dport: 53 });
    const frame = new Uint8Array(plain.length + 8);
    frame.set(plain.subarray(0, 54), 0);
    frame[20] = 0; // next header: hop-by-hop
    new DataView(frame.buffer).setUint16(18, plain.length - 54 + 8);
    frame.set([IpProto.UDP, 0, 1, 4, 0, 0, 0, 0], 54); // PadN option fills the 8 bytes
    frame.set(plain.subarray(54), 62);
    expect(d.fromPod(frame).verdict).toBe(Verdict.OK);
    expect(d.ctLookup({ src: A.ipv6, dst: WORLD6, sport: 6000, dport: 53, protocol: IpProto.UDP })).not.toBeNull();
  });
});

interface DropRow {
  name: string;
  opts: Parameters<typeof setup>[0];
  frame: () => Uint8Array;
  reason: number;
  dir?: number;
  ifindex?: number;
}

const nsFromLinkLocal = (src: string, srcMac = A.mac): Uint8Array =>
  buildPacket({ srcMac, dstMac: "33:33:ff:00:00:01", src, dst: "ff02::1:ff00:1", ttl: 255, l4: { proto: "icmpv6", type: 135 } });

const dropRows: DropRow[] = [
  { name: "v4 tcp denied by egress policy", opts: { egress: [{ identity: 400, direction: Dir.FROM_POD, protocol: IpProto.TCP, port: 443 }] }, frame: () => fromA(REMOTE_POD.ipv4, SYN(80)), reason: Reason.POLICY },
  { name: "v6 udp denied: rule is for another identity", opts: { egress: [{ identity: 999, direction: Dir.FROM_POD, protocol: IpProto.UDP }] }, frame: () => fromA(REMOTE_POD.ipv6, { proto: "udp", sport: 1, dport: 53 }), reason: Reason.POLICY },
  { name: "v4 icmp denied: only ingress entries", opts: { egress: ALLOW_ALL_INGRESS }, frame: () => fromA(WORLD4, { proto: "icmp", type: 8, id: 1 }), reason: Reason.POLICY },
  { name: "endpoint without a policy map", opts: { egress: null }, frame: () => fromA(WORLD4, SYN(80)), reason: Reason.NO_POLICY_MAP },
  { name: "veth without an endpoint", opts: { endpoint: false }, frame: () => fromA(WORLD4, SYN(80)), reason: Reason.NO_ENDPOINT },
  { name: "v4 spoofed source ip", opts: {}, frame: () => fromA(WORLD4, SYN(80), { src: "10.244.0.99" }), reason: Reason.SPOOFED_IP },
  { name: "v6 spoofed source ip", opts: {}, frame: () => fromA(WORLD6, SYN(80), { src: "fd00:10:244::99" }), reason: Reason.SPOOFED_IP },
  { name: "spoofed source mac", opts: {}, frame: () => fromA(WORLD4, SYN(80), { srcMac: "02:00:00:00:00:99" }), reason: Reason.SPOOFED_MAC },
  { name: "arp with a spoofed sender ip", opts: {}, frame: () => buildArp({ srcMac: A.mac, senderMac: A.mac, senderIp: "10.244.0.3", targetIp: "10.244.0.1" }), reason: Reason.SPOOFED_IP },
  { name: "arp with a spoofed sender mac", opts: {}, frame: () => buildArp({ srcMac: A.mac, senderMac: B.mac, senderIp: A.ipv4, targetIp: "10.244.0.1" }), reason: Reason.SPOOFED_MAC },
  { name: "icmpv6 ns from link-local with a spoofed mac", opts: {}, frame: () => nsFromLinkLocal("fe80::2", B.mac), reason: Reason.SPOOFED_MAC },
  { name: "icmpv6 ns from someone else's global address", opts: {}, frame: () => nsFromLinkLocal("fd00:10:244::99"), reason: Reason.SPOOFED_IP },
  { name: "icmpv6 echo from link-local is not link control", opts: {}, frame: () => buildPacket({ srcMac: A.mac, dstMac: A.nodeMac, src: "fe80::2", dst: WORLD6, l4: { proto: "icmpv6", type: 128, id: 1 } }), reason: Reason.SPOOFED_IP },
  { name: "ipv4 non-first fragment", opts: {}, frame: () => buildPacket({ srcMac: A.mac, dstMac: A.nodeMac, src: A.ipv4, dst: WORLD4, fragment: { offsetBytes: 1480, more: false }, l4: { proto: "udp", sport: 1, dport: 2 } }), reason: Reason.FRAGMENT },
  { name: "unsupported ethertype (lldp)", opts: {}, frame: () => { const f = buildArp({ srcMac: A.mac, senderMac: A.mac, senderIp: A.ipv4, targetIp: A.ipv4 }); f[12] = 0x88; f[13] = 0xcc; return f; }, reason: Reason.UNSUPPORTED_L3 },
  { name: "truncated tcp header", opts: {}, frame: () => fromA(WORLD4, SYN(80)).subarray(0, 14 + 20 + 10), reason: Reason.MALFORMED },
  { name: "local destination denied by its ingress policy", opts: { bIngress: [{ identity: 999, direction: Dir.TO_POD }] }, frame: () => fromA(B.ipv4, SYN(80)), reason: Reason.POLICY, dir: Dir.TO_POD, ifindex: B.ifindex },
  { name: "local destination without a policy map", opts: { bIngress: null }, frame: () => fromA(B.ipv6, SYN(80)), reason: Reason.NO_POLICY_MAP, dir: Dir.TO_POD, ifindex: B.ifindex },
  { name: "local destination with ttl 1", opts: {}, frame: () => fromA(B.ipv4, SYN(80), { ttl: 1 }), reason: Reason.TTL_EXCEEDED },
];

describe("from_pod drops", () => {
  it.each(dropRows)("$name", (row) => {
    const d = setup(row.opts);
    const r = d.fromPod(row.frame());
    const dir = row.dir ?? Dir.FROM_POD;
    expect(r.verdict).toBe(Verdict.SHOT);
    expect(d.metric(dir, row.reason)).toBe(1);
    expect(d.metric(Dir.FROM_POD, Reason.FORWARDED) + d.metric(Dir.FROM_POD, Reason.REDIRECTED)).toBe(0);
    expect(d.drainEvents()).toEqual([expect.objectContaining({ type: EventType.DROP, reason: row.reason, direction: dir, ifindex: row.ifindex ?? A.ifindex })]);
  });
});

describe("from_pod passes without policy", () => {
  const rows = [
    { name: "arp request from the pod's own mac and ip", frame: () => buildArp({ srcMac: A.mac, senderMac: A.mac, senderIp: A.ipv4, targetIp: "10.244.0.1" }) },
    { name: "icmpv6 neighbour solicitation from link-local", frame: () => nsFromLinkLocal("fe80::2") },
    { name: "icmpv6 router solicitation from the unspecified address", frame: () => buildPacket({ srcMac: A.mac, dstMac: "33:33:00:00:00:02", src: "::", dst: "ff02::2", ttl: 255, l4: { proto: "icmpv6", type: 133 } }) },
    { name: "icmpv6 neighbour advertisement from the pod's own global address", frame: () => buildPacket({ srcMac: A.mac, dstMac: A.nodeMac, src: A.ipv6, dst: "fe80::1", ttl: 255, l4: { proto: "icmpv6", type: 136 } }) },
    { name: "mldv2 report from the unspecified address (interface coming up)", frame: () => buildPacket({ srcMac: A.mac, dstMac: "33:33:00:00:00:16", src: "::", dst: "ff02::16", ttl: 1, l4: { proto: "icmpv6", type: 143 } }) },
  ];
  it.each(rows)("$name", (row) => {
    // no policy map at all: a policy lookup would drop with NO_POLICY_MAP
    const d = setup({ egress: null });
    const frame = row.frame();
    const r = d.fromPod(frame);
    expect(r.verdict).toBe(Verdict.OK);
    expect(r.data).toEqual(frame);
    expect(d.metric(Dir.FROM_POD, Reason.FORWARDED)).toBe(1);
    expect(d.drainEvents()).toEqual([]);
  });
});

describe("from_pod port ranges", () => {
  // 8080/13 covers 8080-8087; 9000/16 exactly 9000
  const egress: PolicySpec[] = [
    { identity: 400, direction: Dir.FROM_POD, protocol: IpProto.TCP, port: 8080, portBits: 13, ruleRef: 21 },
    { identity: Identity.ANY, direction: Dir.FROM_POD, protocol: IpProto.UDP, port: 9000, ruleRef: 22 },
  ];
  const rows = [
    { name: "tcp 8079 below the range", l4: SYN(8079), verdict: Verdict.SHOT },
    { name: "tcp 8080 first port of the range", l4: SYN(8080), verdict: Verdict.OK },
    { name: "tcp 8087 last port of the range", l4: SYN(8087), verdict: Verdict.OK },
    { name: "tcp 8088 above the range", l4: SYN(8088), verdict: Verdict.SHOT },
    { name: "udp 9000 exact port", l4: { proto: "udp", sport: 1, dport: 9000 } as L4Spec, verdict: Verdict.OK },
    { name: "udp 9001 next to the exact port", l4: { proto: "udp", sport: 1, dport: 9001 } as L4Spec, verdict: Verdict.SHOT },
    { name: "udp 8080 other protocol in the tcp range", l4: { proto: "udp", sport: 1, dport: 8080 } as L4Spec, verdict: Verdict.SHOT },
  ];
  it.each(rows)("$name", (row) => {
    const d = setup({ egress });
    expect(d.fromPod(fromA(REMOTE_POD.ipv4, row.l4)).verdict).toBe(row.verdict);
    expect(d.metric(Dir.FROM_POD, Reason.POLICY)).toBe(row.verdict === Verdict.SHOT ? 1 : 0);
  });
});

describe("from_pod local delivery", () => {
  const rows = [
    { name: "v4 tcp", dst: B.ipv4, l4: SYN(80), redirectPeer: true },
    { name: "v4 udp with bpf_redirect", dst: B.ipv4, l4: { proto: "udp", sport: 9, dport: 53 } as L4Spec, redirectPeer: false },
    { name: "v4 icmp echo", dst: B.ipv4, l4: { proto: "icmp", type: 8, id: 3 } as L4Spec, redirectPeer: true },
    { name: "v6 tcp", dst: B.ipv6, l4: SYN(80), redirectPeer: true },
    { name: "v6 icmpv6 echo", dst: B.ipv6, l4: { proto: "icmpv6", type: 128, id: 3 } as L4Spec, redirectPeer: true },
  ];
  it.each(rows)("$name: redirected with rewritten macs and ttl", (row) => {
    const d = setup({ redirectPeer: row.redirectPeer });
    const r = d.fromPod(fromA(row.dst, row.l4, { ttl: 64 }));
    expect(r.verdict).toBe(Verdict.REDIRECT);
    const out = parsePacket(r.data);
    expect(out).toMatchObject({ srcMac: B.nodeMac, dstMac: B.mac, ttl: 63, ipChecksumOk: true, l4ChecksumOk: true });
    expect(d.metric(Dir.FROM_POD, Reason.REDIRECTED)).toBe(1);
    expect(d.drainEvents()).toEqual([expect.objectContaining({ type: EventType.NEW_CONN, reason: Reason.REDIRECTED, srcIdentity: A.identity, dstIdentity: B.identity })]);
  });

  it("ipv4 header checksum stays valid for every ttl, end-around carry included", () => {
    const d = setup();
    let carries = 0;
    for (let ttl = 2; ttl < 256; ttl++) {
      const frame = fromA(B.ipv4, { proto: "udp", sport: 1, dport: 53 }, { ttl });
      // the incremental update adds 0x0100 to the checksum: it wraps from here on
      if (((frame[24]! << 8) | frame[25]!) >= 0xfeff) carries++;
      const out = parsePacket(d.fromPod(frame).data);
      expect(out.ttl).toBe(ttl - 1);
      expect(out.ipChecksumOk).toBe(true);
    }
    expect(carries).toBeGreaterThan(0);
  });
});

describe("from_pod conntrack", () => {
  it("established and reply traffic pass after the policy stops allowing new flows", () => {
    const d = setup({ egress: [{ identity: Identity.WORLD, direction: Dir.FROM_POD, protocol: IpProto.TCP, port: 443 }] });
    expect(d.fromPod(fromA(WORLD4, SYN(443))).verdict).toBe(Verdict.OK);
    d.setPolicy(A.ifindex, []); // isolated, nothing allowed any more
    d.drainEvents();

    const ack = fromA(WORLD4, { proto: "tcp", sport: 40000, dport: 443, flags: TcpFlags.ACK });
    expect(d.fromPod(ack).verdict).toBe(Verdict.OK);
    const reply = buildPacket({ srcMac: "02:00:00:00:00:fe", dstMac: A.mac, src: WORLD4, dst: A.ipv4, l4: { proto: "tcp", sport: 443, dport: 40000, flags: TcpFlags.SYN | TcpFlags.ACK } });
    expect(d.toPod(reply).verdict).toBe(Verdict.OK);
    const tuple = { src: A.ipv4, dst: WORLD4, sport: 40000, dport: 443, protocol: IpProto.TCP };
    expect(d.ctLookup(tuple)).toMatchObject({ packets: 3n, flags: CtFlags.TCP_SYN | CtFlags.SEEN_REPLY });

    const fin = fromA(WORLD4, { proto: "tcp", sport: 40000, dport: 443, flags: TcpFlags.FIN | TcpFlags.ACK });
    expect(d.fromPod(fin).verdict).toBe(Verdict.OK);
    expect(d.ctLookup(tuple)?.flags).toBe(CtFlags.TCP_SYN | CtFlags.SEEN_REPLY | CtFlags.CLOSING);
    expect(d.drainEvents()).toEqual([]); // established traffic emits nothing

    expect(d.fromPod(fromA(WORLD4, SYN(444))).verdict).toBe(Verdict.SHOT);
    expect(d.metric(Dir.FROM_POD, Reason.FORWARDED)).toBe(3);
    expect(d.metric(Dir.TO_POD, Reason.FORWARDED)).toBe(1);
  });

  it("a new syn on a closing entry re-evaluates policy", () => {
    const d = setup({ egress: [{ identity: Identity.WORLD, direction: Dir.FROM_POD, protocol: IpProto.TCP, port: 443 }] });
    d.fromPod(fromA(WORLD4, SYN(443)));
    d.fromPod(fromA(WORLD4, { proto: "tcp", sport: 40000, dport: 443, flags: TcpFlags.RST }));
    d.setPolicy(A.ifindex, []);
    expect(d.fromPod(fromA(WORLD4, SYN(443))).verdict).toBe(Verdict.SHOT);
  });

  it("same-node reply from the destination pod is redirected back without policy", () => {
    const d = setup({ bIngress: ALLOW_ALL_INGRESS });
    expect(d.fromPod(fromA(B.ipv4, SYN(80))).verdict).toBe(Verdict.REDIRECT);
    // B now sends from "its" veth: test runs always use ifindex 1, so key B there.
    d.setEndpoint({ ...B }, 1);
    d.setPolicy(1, []); // B's egress allows nothing new
    const reply = buildPacket({ srcMac: B.mac, dstMac: B.nodeMac, src: B.ipv4, dst: A.ipv4, l4: { proto: "tcp", sport: 80, dport: 40000, flags: TcpFlags.SYN | TcpFlags.ACK } });
    const r = d.fromPod(reply);
    expect(r.verdict).toBe(Verdict.REDIRECT);
    expect(parsePacket(r.data)).toMatchObject({ srcMac: A.nodeMac, dstMac: A.mac, ttl: 63 });
    expect(d.ctLookup({ src: A.ipv4, dst: B.ipv4, sport: 40000, dport: 80, protocol: IpProto.TCP })?.flags).toBe(CtFlags.TCP_SYN | CtFlags.SEEN_REPLY);
  });

  it("an icmp port unreachable from the pod for an inbound flow passes an isolated egress", () => {
    const d = setup({ egress: [] });
    d.setPolicy(A.ifindex, [{ identity: Identity.ANY, direction: Dir.TO_POD }]);
    const inbound = buildPacket({ srcMac: A.nodeMac, dstMac: A.mac, src: WORLD4, dst: A.ipv4, l4: { proto: "udp", sport: 5000, dport: 9999 } });
    expect(d.toPod(inbound).verdict).toBe(Verdict.OK);
    const unreach = fromA(WORLD4, { proto: "icmp", type: 3, code: 3 });
    const err = buildPacket({ srcMac: A.mac, dstMac: A.nodeMac, src: A.ipv4, dst: WORLD4, l4: { proto: "icmp", type: 3, code: 3 }, payload: inbound.subarray(14) });
    expect(d.fromPod(err).verdict).toBe(Verdict.OK);
    // the same error quoting nothing we track is policy's business
    expect(d.fromPod(unreach).verdict).toBe(Verdict.SHOT);
    expect(d.metric(Dir.FROM_POD, Reason.POLICY)).toBe(1);
  });
});
