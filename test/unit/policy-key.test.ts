// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from "vitest";
import { PolicyKey as BpfPolicyKey } from "../../agent/generated/bpf-types.js";
import { IpProto, PolicyDirection, policyLookup, portRangePrefixes, toBpfPolicyEntry, type PolicyEntry } from "../../agent/policy/policy-key.js";

function covered(prefixes: { port: number; bits: number }[]): Set<number> {
  const out = new Set<number>();
  for (const p of prefixes) {
    const size = 2 ** (16 - p.bits);
    for (let i = 0; i < size; i++) out.add(p.port + i);
  }
  return out;
}

describe("portRangePrefixes", () => {
  it.each([
    { name: "1-65535", lo: 1, hi: 65535, count: 16 },
    { name: "0-65535 is one /0 prefix", lo: 0, hi: 65535, count: 1 },
    { name: "80-80", lo: 80, hi: 80, count: 1 },
    { name: "80-81 (aligned pair)", lo: 80, hi: 81, count: 1 },
    { name: "81-82 (unaligned pair)", lo: 81, hi: 82, count: 2 },
    { name: "1024-65535", lo: 1024, hi: 65535, count: 6 },
    { name: "0x7fff-0x8000 across the top bit", lo: 0x7fff, hi: 0x8000, count: 2 },
    { name: "65535-65535", lo: 65535, hi: 65535, count: 1 },
  ])("covers exactly $name with $count prefixes", ({ lo, hi, count }) => {
    const p = portRangePrefixes(lo, hi);
    expect(p).toHaveLength(count);
    const c = covered(p);
    expect(c.size).toBe(hi - lo + 1);
    expect(c.has(lo)).toBe(true);
    expect(c.has(hi)).toBe(true);
    expect(c.has(lo - 1)).toBe(false);
    expect(c.has(hi + 1)).toBe(false);
    for (const x of p) expect(x.port % 2 ** (16 - x.bits)).toBe(0);
  });

  it("gives the exact prefixes for 0x7fff-0x8000", () => {
    expect(portRangePrefixes(0x7fff, 0x8000)).toEqual([{ port: 0x7fff, bits: 16 }, { port: 0x8000, bits: 16 }]);
  });

  it.each([
    { name: "reversed", lo: 81, hi: 80 },
    { name: "above 65535", lo: 1, hi: 65536 },
    { name: "negative", lo: -1, hi: 5 },
  ])("rejects $name", ({ lo, hi }) => {
    expect(() => portRangePrefixes(lo, hi)).toThrow(/expand port range/);
  });
});

describe("policyLookup", () => {
  const e = (identity: number, direction: 0 | 1, protocol: number, port: number, prefixLen: number, ruleRef: number): PolicyEntry => ({
    key: { identity, direction, protocol, port, prefixLen },
    ruleRef,
  });
  const entries = [
    e(300, PolicyDirection.TO_POD, IpProto.TCP, 80, 64, 1),
    e(300, PolicyDirection.TO_POD, IpProto.TCP, 0x1000, 52, 2), // 0x1000-0x1fff
    e(0, PolicyDirection.TO_POD, IpProto.UDP, 0, 48, 3),
    e(301, PolicyDirection.FROM_POD, 0, 0, 40, 4),
    e(300, PolicyDirection.TO_POD, 0, 0, 40, 5),
  ];
  it.each([
    { name: "exact port wins over identity /40", id: 300, dir: 1 as const, proto: IpProto.TCP, port: 80, ref: 1 },
    { name: "port prefix", id: 300, dir: 1 as const, proto: IpProto.TCP, port: 0x1abc, ref: 2 },
    { name: "identity /40 for other ports", id: 300, dir: 1 as const, proto: IpProto.TCP, port: 81, ref: 5 },
    { name: "remote miss falls back to ANY", id: 999, dir: 1 as const, proto: IpProto.UDP, port: 53, ref: 3 },
    { name: "remote hit shadows ANY (longest within remote only)", id: 300, dir: 1 as const, proto: IpProto.UDP, port: 53, ref: 5 },
    { name: "direction is part of the key", id: 301, dir: 1 as const, proto: IpProto.TCP, port: 80, ref: null },
    { name: "egress /40 matches any protocol", id: 301, dir: 0 as const, proto: IpProto.ICMP, port: 0, ref: 4 },
    { name: "nothing matches", id: 999, dir: 1 as const, proto: IpProto.TCP, port: 80, ref: null },
  ])("$name", ({ id, dir, proto, port, ref }) => {
    expect(policyLookup(entries, id, dir, proto, port)?.ruleRef ?? null).toBe(ref);
  });
});

describe("toBpfPolicyEntry", () => {
  it("encodes to the policy_key layout: identity and port big endian", () => {
    const { key, value } = toBpfPolicyEntry({ key: { identity: 0x01020304, direction: 1, protocol: 6, port: 0x1f90, prefixLen: 64 }, ruleRef: 9 });
    expect([...BpfPolicyKey.encode(key)]).toEqual([64, 0, 0, 0, 1, 2, 3, 4, 1, 6, 0x1f, 0x90]);
    expect(value).toEqual({ ruleRef: 9, flags: 0 });
  });
});
