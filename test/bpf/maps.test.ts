// SPDX-License-Identifier: Apache-2.0
// agent/maps against real kernel maps (root, no netns), loaded from
// test/fixtures/loader-mini.bpf.c under a temporary bpf root: typed get/set
// with batch and non-batch (LPM) map types, atomic policy swap with BTF inner
// maps, conntrack GC by state, per-CPU metric sums, and ring buffer events.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { compileDatapath } from "../../agent/loader/compile-cache.js";
import { loadDatapath, type Datapath } from "../../agent/loader/datapath-loader.js";
import { CtEntry, CtKey4, FlowEvent, MapName, TwillCtFlags, TwillDirection, TwillReason, type EndpointInfo } from "../../agent/generated/bpf-types.js";
import { openEndpointMap } from "../../agent/maps/endpoint-map.js";
import { LxcMap } from "../../agent/maps/lxc-map.js";
import { IpcacheMap } from "../../agent/maps/ipcache-map.js";
import { PolicyMap, PolicyTooLargeError, type PolicyMapEntry } from "../../agent/maps/policy-map.js";
import { openCt4 } from "../../agent/maps/conntrack-map.js";
import { MetricsMap } from "../../agent/maps/metrics-map.js";
import { EventsReader } from "../../agent/maps/events-reader.js";
import { openDatapathMaps } from "../../agent/maps/datapath-maps.js";
import { progTestRun } from "../../agent/native/libbpf.js";

const REPO = resolve(import.meta.dirname, "../..");
let cacheDir: string;
let objectPath: string;
let root: string;
let dp: Datapath;

beforeAll(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), "twill-maps-test-"));
  objectPath = (
    await compileDatapath({ source: join(REPO, "test/fixtures/loader-mini.bpf.c"), includeDir: join(REPO, "bpf"), cacheDir })
  ).objectPath;
});

afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

// A fresh root per test: every map starts empty.
function fresh(): void {
  root = `/sys/fs/bpf/twill-test-${randomBytes(5).toString("hex")}`;
  dp = loadDatapath({ objectPath, bpfRoot: root, settings: { hostIdentity: 1, redirectPeer: true } });
}

afterEach(() => {
  dp.close();
  rmSync(root, { recursive: true, force: true });
});

const ep = (ifindex: number, identity: number): EndpointInfo => ({
  ifindex, identity, ipv4: 0x0af40000 + ifindex, flags: 1, ipv6: new Uint8Array(16),
  mac: new Uint8Array([2, 0, 0, 0, 0, ifindex]), nodeMac: new Uint8Array([2, 0, 0, 0, 1, ifindex]),
});

describe("BpfMap and per-map views", () => {
  it("endpoints: setMany/entries/get/delete (batch ops)", () => {
    fresh();
    const m = openEndpointMap(dp.mapFd(MapName.endpoints));
    m.setMany([[3, ep(3, 300)], [4, ep(4, 301)]]);
    expect(new Map(m.entries())).toEqual(new Map([[3, ep(3, 300)], [4, ep(4, 301)]]));
    expect(m.get(4)).toEqual(ep(4, 301));
    expect(m.delete(4)).toBe(true);
    expect(m.get(4)).toBeNull();
    expect(m.deleteMany([3, 4])).toBe(1);
    expect(m.entries()).toEqual([]);
  });

  it("lxc: IPv4 and IPv6 keys by address bytes", () => {
    fresh();
    const m = new LxcMap(dp.mapFd(MapName.lxc));
    const v4 = new Uint8Array([10, 244, 0, 5]);
    const v6 = Uint8Array.from([0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    m.set(v4, ep(5, 300));
    m.set(v6, ep(5, 300));
    expect(m.get(v4)?.identity).toBe(300);
    expect(m.entries().map(([a]) => a.length).sort()).toEqual([16, 4]);
    expect(m.get(new Uint8Array([10, 244, 0, 6]))).toBeNull();
  });

  it("ipcache: LPM trie entries without batch support, host bits cleared", () => {
    fresh();
    const m = new IpcacheMap(dp.mapFd(MapName.ipcache));
    m.set({ addr: new Uint8Array([198, 18, 7, 9]), prefixLen: 16 }, { identity: 16777217, flags: 0 });
    m.set({ addr: new Uint8Array([10, 244, 0, 5]), prefixLen: 32 }, { identity: 300, flags: 1 });
    const got = m.entries().map(([p, e]) => [Array.from(p.addr).join("."), p.prefixLen, e.identity]).sort();
    expect(got).toEqual([["10.244.0.5", 32, 300], ["198.18.0.0", 16, 16777217]]);
    expect(m.delete({ addr: new Uint8Array([198, 18, 0, 0]), prefixLen: 16 })).toBe(true);
  });
});

describe("PolicyMap", () => {
  const entry = (identity: number, dport: number, ruleRef: number): PolicyMapEntry => ({
    key: { prefixlen: 64, identity, direction: TwillDirection.TO_POD, protocol: 6, dport },
    value: { ruleRef, flags: 0 },
  });

  it("swaps a whole new inner trie in, and bpftool shows it with field names", () => {
    fresh();
    const pm = new PolicyMap(dp.mapFd(MapName.policy), dp.mapFd(MapName.policySlot), dp.btfTypeIds("policy_key", "policy_entry"));
    pm.replace(7, [entry(300, 80, 1), entry(301, 443, 2)]);
    expect(pm.get(7)?.map((e) => e.value.ruleRef).sort()).toEqual([1, 2]);

    pm.replace(7, [entry(302, 8080, 3)]);
    expect(pm.get(7)).toEqual([entry(302, 8080, 3)]);
    expect(pm.ifindexes()).toEqual([7]);

    // The outer map's value is the inner map's id (u32, little endian).
    // Two tries per endpoint (outer keys ifindex * 2 + slot); the second replace went to slot 1.
    const outer = JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", "pinned", join(root, MapName.policy)], { encoding: "utf8" })) as Array<{ key: string[]; value: string[] }>;
    const le = (bytes: string[]): number => bytes.reduceRight((acc, b) => acc * 256 + parseInt(b, 16), 0);
    expect(outer.map((e) => le(e.key)).sort((a, b) => a - b)).toEqual([14, 15]);
    const slot = JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", "pinned", join(root, MapName.policySlot)], { encoding: "utf8" })) as Array<{ formatted?: { value: { slot: number } } }>;
    expect(slot[0]?.formatted?.value.slot).toBe(1);
    const innerId = le(outer.find((e) => le(e.key) === 15)?.value ?? []);
    expect(innerId).toBeGreaterThan(0);
    const inner = execFileSync("bpftool", ["map", "dump", "id", String(innerId)], { encoding: "utf8" });
    expect(inner).toMatch(/"dport": 36895/); // 8080 as __be16, which bpftool prints as a host u16
    expect(inner).toMatch(/"rule_ref": 3/);

    expect(pm.delete(7)).toBe(true);
    expect(pm.get(7)).toBeNull();
  });

  it("makes a change without a map-in-map update: a flip returns in well under the grace-period wait a new endpoint pays", async () => {
    fresh();
    const pm = new PolicyMap(dp.mapFd(MapName.policy), dp.mapFd(MapName.policySlot), dp.btfTypeIds("policy_key", "policy_entry"));
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    const inserts: number[] = [];
    const flips: number[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        pm.replace(100 + i, [entry(300, 80, 1)]);
        inserts.push(performance.now() - t);
      }
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 40)); // room for the asynchronous grace period
        const t = performance.now();
        pm.replace(100, [entry(300, 80 + (i % 2), 2 + i)]);
        flips.push(performance.now() - t);
        expect(pm.get(100)).toEqual([entry(300, 80 + (i % 2), 2 + i)]);
      }
      // Back to back: the second write waits for a grace period instead of touching a trie in use.
      pm.replace(100, [entry(301, 90, 50)]);
      pm.replace(100, [entry(302, 91, 51)]);
      expect(pm.get(100)).toEqual([entry(302, 91, 51)]);
    } finally {
      pm.close();
    }
    console.log(`policy change: new endpoint median ${median(inserts).toFixed(2)} ms, flip median ${median(flips).toFixed(2)} ms`);
    expect(median(inserts)).toBeGreaterThan(1); // the map-in-map wait is real on this kernel
    expect(median(flips)).toBeLessThan(median(inserts) / 3);
  });

  it("refuses a policy larger than the inner map template", () => {
    fresh();
    const pm = new PolicyMap(dp.mapFd(MapName.policy), dp.mapFd(MapName.policySlot), null);
    const many = Array.from({ length: 16385 }, (_, i) => entry(i, 80, 1));
    expect(() => pm.replace(8, many)).toThrow(PolicyTooLargeError);
    expect(pm.get(8)).toBeNull();
  });
});

describe("ConntrackMap.gc", () => {
  const S = 1_000_000_000n;
  const now = 100_000n * S;
  const cases = [
    { name: "tcp established, idle 5 h", protocol: 6, flags: TwillCtFlags.SEEN_REPLY | TwillCtFlags.TCP_SYN, idleS: 5n * 3600n, deleted: false },
    { name: "tcp established, idle 7 h", protocol: 6, flags: TwillCtFlags.SEEN_REPLY | TwillCtFlags.TCP_SYN, idleS: 7n * 3600n, deleted: true },
    { name: "tcp closing, idle 5 s", protocol: 6, flags: TwillCtFlags.SEEN_REPLY | TwillCtFlags.CLOSING, idleS: 5n, deleted: false },
    { name: "tcp closing, idle 11 s", protocol: 6, flags: TwillCtFlags.SEEN_REPLY | TwillCtFlags.CLOSING, idleS: 11n, deleted: true },
    { name: "tcp syn only, idle 30 s", protocol: 6, flags: TwillCtFlags.TCP_SYN, idleS: 30n, deleted: false },
    { name: "tcp syn only, idle 61 s", protocol: 6, flags: TwillCtFlags.TCP_SYN, idleS: 61n, deleted: true },
    { name: "udp with reply, idle 61 s", protocol: 17, flags: TwillCtFlags.SEEN_REPLY, idleS: 61n, deleted: true },
    { name: "icmp, idle 59 s", protocol: 1, flags: 0, idleS: 59n, deleted: false },
  ];

  it("deletes exactly the entries idle past their state's timeout", () => {
    fresh();
    const ct = openCt4(dp.mapFd(MapName.ct4));
    const key = (i: number): CtKey4 => ({ saddr: 0x0af40005, daddr: 0x0af40006, sport: 1000 + i, dport: 80, protocol: cases[i]!.protocol, pad: new Uint8Array(3) });
    cases.forEach((c, i) => {
      const e: CtEntry = { createdNs: 0n, lastSeenNs: now - c.idleS * S, packets: 1n, bytes: 60n, srcIdentity: 300, dstIdentity: 301, flags: c.flags, ruleRef: 0 };
      ct.map.set(key(i), e);
    });
    const result = ct.gc(now);
    expect(result).toEqual({ scanned: cases.length, deleted: cases.filter((c) => c.deleted).length });
    const left = new Set(ct.entries().map(([k]) => k.sport - 1000));
    for (const [i, c] of cases.entries()) expect(left.has(i), c.name).toBe(!c.deleted);
  });
});

describe("openDatapathMaps", () => {
  it("wires every view to the datapath's maps", () => {
    fresh();
    const maps = openDatapathMaps(dp);
    maps.endpoints.set(9, ep(9, 900));
    maps.lxc.set(new Uint8Array([10, 244, 0, 9]), ep(9, 900));
    expect(openEndpointMap(dp.mapFd(MapName.endpoints)).get(9)?.identity).toBe(900);
    expect(new LxcMap(dp.mapFd(MapName.lxc)).get(new Uint8Array([10, 244, 0, 9]))?.identity).toBe(900);
    expect(maps.eventsFd).toBe(dp.mapFd(MapName.events));
  });
});

describe("metrics and events", () => {
  it("sums per-CPU counters and delivers ring buffer events", () => {
    fresh();
    const events: FlowEvent[] = [];
    const reader = new EventsReader(dp.mapFd(MapName.events), (e) => events.push(e));
    try {
      const packet = new Uint8Array(60);
      progTestRun(dp.progFd("from_pod"), { data: packet, repeat: 5 });
      const metrics = new MetricsMap(dp.mapFd(MapName.metrics), dp.mapFd(MapName.evLost));
      expect(metrics.read()).toEqual([{ direction: 0, reason: TwillReason.REASON_FORWARDED, packets: 5n, bytes: 300n }]);
      expect(metrics.get(TwillDirection.FROM_POD, TwillReason.REASON_FORWARDED)).toEqual({ packets: 5n, bytes: 300n });
      expect(metrics.eventsLost()).toBe(0n);

      expect(reader.drain()).toBe(5);
      expect(events).toHaveLength(5);
      expect(events[0]).toMatchObject({ pktLen: 60, sport: 1234, type: 1, reason: TwillReason.DROP_POLICY });
      expect(reader.drain()).toBe(0);
    } finally {
      reader.close();
    }
  });
});
