// SPDX-License-Identifier: Apache-2.0
// FlowBuffer: bounded history, --last N, filters, follow, slow-reader loss
// accounting; decodeFlowEvent: naming of both sides, reasons, addresses.
import { describe, expect, it } from "vitest";
import {
  decodeFlowEvent,
  formatFlowTime,
  MATCH_ALL,
  type Flow,
  type FlowEventFields,
  type FlowFilter,
  type FlowLookups,
} from "../../agent/monitor/flow.js";
import { FlowEvent } from "../../agent/generated/bpf-types.js";
import { FlowBuffer, type FlowStreamItem, type FlowSubscription } from "../../agent/monitor/flow-buffer.js";
import { makeFlow } from "./api-fake-backend.js";

function numbered(n: number, over: Partial<Parameters<typeof makeFlow>[0]> = {}): Flow {
  return makeFlow({ ...over, lengthBytes: n });
}

async function take(sub: FlowSubscription, n: number): Promise<FlowStreamItem[]> {
  const out: FlowStreamItem[] = [];
  for (let i = 0; i < n; i++) {
    const r = await sub.next();
    if (r.done === true) break;
    out.push(r.value);
  }
  return out;
}

function lengths(items: FlowStreamItem[]): (number | string)[] {
  return items.map((i) => (i.kind === "flow" ? i.flow.lengthBytes : `lost ${i.count} ${i.source}`));
}

describe("FlowBuffer history", () => {
  it("keeps only the newest `capacity` flows, oldest first", () => {
    const b = new FlowBuffer(4);
    for (let i = 1; i <= 10; i++) b.push(numbered(i));
    expect(b.length).toBe(4);
    expect(b.snapshot(MATCH_ALL, null).map((f) => f.lengthBytes)).toEqual([7, 8, 9, 10]);
  });

  it.each([
    { name: "last 2", last: 2, want: [4, 5] },
    { name: "last larger than kept", last: 50, want: [1, 2, 3, 4, 5] },
    { name: "all (null)", last: null, want: [1, 2, 3, 4, 5] },
  ])("snapshot $name", ({ last, want }) => {
    const b = new FlowBuffer(8);
    for (let i = 1; i <= 5; i++) b.push(numbered(i));
    expect(b.snapshot(MATCH_ALL, last).map((f) => f.lengthBytes)).toEqual(want);
  });

  it("--last N counts matching flows, not all flows", () => {
    const b = new FlowBuffer(16);
    for (let i = 1; i <= 8; i++) b.push(numbered(i, { verdict: i % 2 === 0 ? "dropped" : "forwarded" }));
    const dropped: FlowFilter = { ...MATCH_ALL, verdict: "dropped" };
    expect(b.snapshot(dropped, 2).map((f) => f.lengthBytes)).toEqual([6, 8]);
  });

  it("rejects a zero capacity", () => {
    expect(() => new FlowBuffer(0)).toThrow(/capacity 0/);
  });
});

describe("filters", () => {
  const flow = makeFlow({
    src: { namespace: "shop", pod: "client", identity: 300, port: 41000 },
    dst: { namespace: "db", pod: "pg", identity: 301, port: 5432 },
    protocol: 6,
  });
  it.each([
    { name: "match all", filter: {}, match: true },
    { name: "namespace of source", filter: { namespace: "shop" }, match: true },
    { name: "namespace of destination", filter: { namespace: "db" }, match: true },
    { name: "other namespace", filter: { namespace: "kube-system" }, match: false },
    { name: "pod by name", filter: { pod: "pg" }, match: true },
    { name: "pod by namespace/name", filter: { pod: "db/pg" }, match: true },
    { name: "pod in wrong namespace", filter: { pod: "shop/pg" }, match: false },
    { name: "identity of either side", filter: { identity: 301 }, match: true },
    { name: "other identity", filter: { identity: 2 }, match: false },
    { name: "verdict", filter: { verdict: "forwarded" as const }, match: true },
    { name: "other verdict", filter: { verdict: "dropped" as const }, match: false },
    { name: "protocol", filter: { protocol: 6 }, match: true },
    { name: "other protocol", filter: { protocol: 17 }, match: false },
    { name: "destination port", filter: { port: 5432 }, match: true },
    { name: "source port", filter: { port: 41000 }, match: true },
    { name: "other port", filter: { port: 80 }, match: false },
    { name: "all fields must match", filter: { namespace: "db", protocol: 17 }, match: false },
  ])("$name", ({ filter, match }) => {
    const b = new FlowBuffer(4);
    b.push(flow);
    expect(b.snapshot({ ...MATCH_ALL, ...filter }, null)).toHaveLength(match ? 1 : 0);
  });
});

describe("subscriptions", () => {
  it("without follow replays and ends", async () => {
    const b = new FlowBuffer(8);
    for (let i = 1; i <= 3; i++) b.push(numbered(i));
    const sub = b.open(MATCH_ALL, { last: 2, follow: false });
    expect(lengths(await take(sub, 10))).toEqual([2, 3]);
    expect(b.subscriberCount).toBe(0);
  });

  it("follow replays the last N then delivers new matching flows only", async () => {
    const b = new FlowBuffer(8);
    for (let i = 1; i <= 3; i++) b.push(numbered(i));
    const sub = b.open({ ...MATCH_ALL, verdict: "dropped" }, { last: 10, follow: true });
    const pending = take(sub, 2);
    b.push(numbered(4, { verdict: "dropped" }));
    b.push(numbered(5)); // forwarded: filtered out
    b.push(numbered(6, { verdict: "dropped" }));
    expect(lengths(await pending)).toEqual([4, 6]);
    sub.close();
    expect(b.subscriberCount).toBe(0);
    expect((await sub.next()).done).toBe(true);
  });

  it("a slow follower loses its oldest flows, is told how many, and never blocks push", async () => {
    const b = new FlowBuffer(64);
    const slow = b.open(MATCH_ALL, { last: 0, follow: true, queueSize: 3 });
    const fast = b.open(MATCH_ALL, { last: 0, follow: true, queueSize: 100 });
    for (let i = 1; i <= 10; i++) b.push(numbered(i)); // synchronous: nobody reads meanwhile
    expect(lengths(await take(slow, 4))).toEqual(["lost 7 client", 8, 9, 10]);
    expect(lengths(await take(fast, 10))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    slow.close();
    fast.close();
  });

  it("kernel ring-buffer losses reach every follower", async () => {
    const b = new FlowBuffer(8);
    const sub = b.open(MATCH_ALL, { last: 0, follow: true });
    b.reportLost(12);
    b.push(numbered(1));
    expect(lengths(await take(sub, 2))).toEqual(["lost 12 ring-buffer", 1]);
    expect(b.ringLostTotal).toBe(12);
    sub.close();
  });

  it("close() wakes a reader waiting for flows", async () => {
    const b = new FlowBuffer(8);
    const sub = b.open(MATCH_ALL, { last: 0, follow: true });
    const waiting = sub.next();
    sub.close();
    expect((await waiting).done).toBe(true);
  });
});

describe("decodeFlowEvent", () => {
  const v4 = (a: number, b: number, c: number, d: number): Uint8Array => {
    const x = new Uint8Array(16);
    x.set([a, b, c, d]);
    return x;
  };
  const lookups: FlowLookups = {
    endpointByIfindex: (i) => (i === 12 ? { namespace: "default", pod: "web" } : null),
    endpointByIp: (ip) => (ip === "10.244.0.5" ? { namespace: "default", pod: "client" } : null),
    identityLabels: (id) => (id === 500 ? { "k8s:io.kubernetes.pod.namespace": "remote", app: "x" } : null),
    monotonicToUnixNs: 1_000_000_000n,
  };
  const base: FlowEventFields = {
    tsNs: 5n,
    ifindex: 12,
    srcIdentity: 256,
    dstIdentity: 257,
    pktLen: 74,
    ruleRef: 0,
    type: 1,
    direction: 1,
    reason: 12,
    protocol: 6,
    family: 2,
    sport: 40000,
    dport: 80,
    saddr: v4(10, 244, 0, 5),
    daddr: v4(10, 244, 0, 6),
  };

  it("names both local pods of an ingress policy drop", () => {
    const f = decodeFlowEvent(base, lookups);
    expect(f).toMatchObject({
      timeNs: 1_000_000_005n,
      type: "drop",
      verdict: "dropped",
      dropReason: "POLICY",
      direction: "ingress",
      family: 4,
      source: { ip: "10.244.0.5", port: 40000, namespace: "default", pod: "client", identity: 256 },
      destination: { ip: "10.244.0.6", port: 80, namespace: "default", pod: "web", identity: 257 },
    });
  });

  it("egress new connection to a remote IPv6 peer takes the namespace from identity labels", () => {
    const daddr = new Uint8Array(16);
    daddr.set([0x20, 0x01, 0x0d, 0xb8]);
    daddr[15] = 1;
    const saddr = new Uint8Array(16);
    saddr.set([0xfd, 0x00, 0x00, 0x10, 0x02, 0x44]);
    saddr[15] = 6;
    const f = decodeFlowEvent(
      { ...base, type: 2, reason: 0, direction: 0, family: 10, saddr, daddr, dstIdentity: 500, ruleRef: 9 },
      lookups,
    );
    expect(f.verdict).toBe("forwarded");
    expect(f.dropReason).toBeNull();
    expect(f.direction).toBe("egress");
    expect(f.source).toMatchObject({ ip: "fd00:10:244::6", pod: "web", namespace: "default" });
    expect(f.destination).toMatchObject({ ip: "2001:db8::1", pod: "", namespace: "remote", labels: { app: "x" } });
    expect(f.ruleRef).toBe(9);
  });

  it.each([
    { name: "spoofed source", reason: 10, want: "SPOOFED_IP" },
    { name: "no policy map yet", reason: 13, want: "NO_POLICY_MAP" },
    { name: "a reason this agent does not know", reason: 29, want: "unknown(29)" },
  ])("drop reason name: $name", ({ reason, want }) => {
    expect(decodeFlowEvent({ ...base, reason }, lookups).dropReason).toBe(want);
  });

  it("takes the generated codec's FlowEvent as it is (ports in host order)", () => {
    const bytes = FlowEvent.encode({ ...base, pad: new Uint8Array(1), pad2: new Uint8Array(2) });
    expect(bytes[34]).toBe(40000 >> 8); // big endian on the wire
    const f = decodeFlowEvent(FlowEvent.decode(bytes), lookups);
    expect(f.source.port).toBe(40000);
    expect(f.destination).toMatchObject({ ip: "10.244.0.6", port: 80 });
  });

  it("formats time as RFC 3339 with nanoseconds", () => {
    expect(formatFlowTime(1_767_225_600_123_456_789n)).toBe("2026-01-01T00:00:00.123456789Z");
  });
});
