// SPDX-License-Identifier: Apache-2.0
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IpAllocator, IpamConflictError, IpamExhaustedError } from "../../agent/ipam/allocator.js";
import { encodeIpv4HostKeyInto, ipcacheKey } from "../../agent/maps/ipcache-map.js";
import { ipPrefixOf } from "../../agent/policy/ipcache.js";
import { IpcacheKey } from "../../agent/generated/bpf-types.js";
import { canonicalIpv4Bytes, formatIp, formatIpBytes, ipBytes, isCanonicalIpv4, parseCidr, parseIp } from "../../agent/ipam/cidr.js";

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "twill-ipam-"));
  dirs.push(d);
  return d;
}
afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }); });

describe("cidr", () => {
  it.each([
    { name: "v4", text: "10.244.1.7" },
    { name: "v6 compressed", text: "fd00:10:244::5" },
    { name: "v6 full", text: "2001:db8:1:2:3:4:5:6" },
    { name: "v6 zero", text: "::" },
    { name: "v6 leading run", text: "::1" },
  ])("round-trips $name", ({ text }) => {
    const { family, value } = parseIp(text);
    expect(formatIp(family, value)).toBe(text);
  });
  it.each([
    { name: "host bits set", text: "10.244.0.1/24", err: /host bits/ },
    { name: "prefix too long", text: "10.0.0.0/33", err: /exceeds 32/ },
    { name: "not a cidr", text: "banana", err: /not a CIDR/ },
  ])("rejects $name", ({ text, err }) => {
    expect(() => parseCidr(text)).toThrow(err);
  });
});

describe("IpAllocator", () => {
  const pools = [parseCidr("10.244.0.0/29"), parseCidr("fd00:10:244::/125")];

  it("gives one address per family, never twice, and is idempotent per container", () => {
    const a = IpAllocator.open(tmp(), pools);
    const first = a.allocate("c1", "eth0");
    expect(first.map((x) => x.ip)).toEqual(["10.244.0.1", "fd00:10:244::1"]);
    expect(a.allocate("c1", "eth0").map((x) => x.ip)).toEqual(["10.244.0.1", "fd00:10:244::1"]);
    expect(a.allocate("c2", "eth0").map((x) => x.ip)).toEqual(["10.244.0.2", "fd00:10:244::2"]);
  });

  it("survives a restart without reusing held addresses", () => {
    const d = tmp();
    const a = IpAllocator.open(d, pools);
    const held = new Set(["c1", "c2", "c3"].flatMap((c) => a.allocate(c, "eth0").map((x) => x.ip)));
    const b = IpAllocator.open(d, pools); // as after kill -9: only the files remain
    const next = b.allocate("c4", "eth0").map((x) => x.ip);
    for (const ip of next) expect(held.has(ip)).toBe(false);
    expect(b.byContainer("c2").length).toBe(2);
  });

  it("reports exhaustion naming the pool and rolls back the other family", () => {
    const a = IpAllocator.open(tmp(), [parseCidr("fd00:10:244::/126"), parseCidr("10.244.0.0/30")]);
    a.allocate("c1", "eth0"); // v4 /30 has exactly 2 usable, v6 /126 has 3
    a.allocate("c2", "eth0");
    expect(() => a.allocate("c3", "eth0")).toThrow(IpamExhaustedError);
    expect(() => a.allocate("c3", "eth0")).toThrow("pool 10.244.0.0/30 is exhausted");
    expect(a.byContainer("c3")).toEqual([]); // the v6 address taken first was given back
  });

  it("release and gc give addresses back", () => {
    const a = IpAllocator.open(tmp(), pools);
    a.allocate("c1", "eth0");
    a.allocate("c2", "eth0");
    expect(a.release("c1").length).toBe(2);
    expect(a.gc(new Set(["c9"])).map((x) => x.containerId)).toEqual(["c2", "c2"]);
    expect(a.list()).toEqual([]);
  });

  it("refuses a requested address that another container holds", () => {
    const a = IpAllocator.open(tmp(), pools);
    a.allocate("c1", "eth0", ["10.244.0.5"]);
    expect(() => a.allocate("c2", "eth0", ["10.244.0.5"])).toThrow(IpamConflictError);
    expect(() => a.allocate("c2", "eth0", ["10.244.0.5"])).toThrow("already in use by container c1");
    expect(() => a.allocate("c3", "eth0", ["192.168.0.1"])).toThrow(/not inside any pod CIDR/);
    expect(a.byContainer("c2")).toEqual([]);
  });
});

describe("canonical IPv4 fast path", () => {
  it("accepts exactly the dotted quads parseIp formats back unchanged", () => {
    for (const t of ["0.0.0.0", "10.244.1.2", "255.255.255.255", "192.0.2.10"]) {
      expect(isCanonicalIpv4(t)).toBe(true);
      expect(canonicalIpv4Bytes(t)).toEqual(ipBytes(4, parseIp(t).value));
      expect(formatIpBytes(canonicalIpv4Bytes(t) as Uint8Array)).toBe(t);
    }
    for (const t of ["010.1.1.1", "256.1.1.1", "1.2.3", "1.2.3.4.5", "::1", "1.2.3.4 ", "a.b.c.d", ""]) {
      expect(isCanonicalIpv4(t)).toBe(false);
      expect(canonicalIpv4Bytes(t)).toBeNull();
    }
  });
});

describe("allocation-free IPv4 ipcache key encoding", () => {
  it("writes exactly what ipcacheKey + the codec write, and refuses everything else", () => {
    const a = new DataView(new ArrayBuffer(24));
    const b = new DataView(new ArrayBuffer(24));
    for (const ip of ["0.0.0.0", "10.244.1.2", "255.255.255.255", "192.0.2.10", "1.22.100.9"]) {
      new Uint8Array(a.buffer).fill(0xaa);
      expect(encodeIpv4HostKeyInto(`${ip}/32`, a, 0)).toBe(true);
      IpcacheKey.encodeInto(ipcacheKey(ipPrefixOf(`${ip}/32`)), b, 0);
      expect(new Uint8Array(a.buffer)).toEqual(new Uint8Array(b.buffer));
    }
    for (const t of ["10.0.0.0/24", "010.1.1.1/32", "256.1.1.1/32", "1.2.3/32", "1.2.3.4.5/32", "::1/128", "1.2.3.4/3", "a.b.c.d/32", "1..2.3/32", "/32", "1.2.3.4/320"]) {
      new Uint8Array(a.buffer).fill(0xaa);
      expect(encodeIpv4HostKeyInto(t, a, 0), t).toBe(false);
      expect(new Uint8Array(a.buffer).every((x) => x === 0xaa)).toBe(true);
    }
  });
});
