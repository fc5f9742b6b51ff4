// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from "vitest";
import { CidrIdentityAllocator } from "../../agent/identity/allocator.js";
import { ipPrefixOf, ipcacheEntriesForIpBlock, ipcacheLookup, mergeIpcache } from "../../agent/policy/ipcache.js";
import { SelectorCache, peerSelector } from "../../agent/policy/selector.js";

describe("ipcache for ipBlocks", () => {
  const cidrs = new CidrIdentityAllocator();
  const block = { cidr: "198.18.0.0/16", except: ["198.18.1.0/24", "198.18.2.128/25"] };
  for (const c of [block.cidr, ...block.except, "198.18.1.64/26"]) cidrs.allocate(c);
  const id = (c: string): number => cidrs.identityOf(c) ?? -1;
  const entries = mergeIpcache(
    [{ prefix: "198.18.5.5/32", identity: 300 }, { prefix: "198.18.1.64/26", identity: id("198.18.1.64/26") }],
    ipcacheEntriesForIpBlock(block.cidr, block.except, id),
  );
  const cache = new SelectorCache();
  const key = cache.add(peerSelector({ ipBlock: block }, "default"));
  for (const e of cidrs.entries()) cache.upsertIdentity(e.identity, { kind: "cidr", cidr: e.cidr });
  const selected = cache.selections(key);

  it("maps the cidr and every except to their own identities", () => {
    expect(ipcacheEntriesForIpBlock(block.cidr, block.except, id).map((e) => e.prefix)).toEqual(["198.18.0.0/16", "198.18.1.0/24", "198.18.2.128/25"]);
  });

  it.each([
    { name: "inside cidr", ip: "198.18.3.1", inBlock: true, identity: "198.18.0.0/16" },
    { name: "in the first except", ip: "198.18.1.1", inBlock: false, identity: "198.18.1.0/24" },
    { name: "in a prefix nested inside an except", ip: "198.18.1.65", inBlock: false, identity: "198.18.1.64/26" },
    { name: "just below the second except", ip: "198.18.2.127", inBlock: true, identity: "198.18.0.0/16" },
    { name: "in the second except", ip: "198.18.2.128", inBlock: false, identity: "198.18.2.128/25" },
    { name: "outside", ip: "198.19.0.1", inBlock: false, identity: "world" },
  ])("$name: $ip", ({ ip, inBlock, identity }) => {
    const got = ipcacheLookup(entries, ip);
    expect(got).toBe(identity === "world" ? 2 : id(identity));
    expect(selected.has(got)).toBe(inBlock);
  });

  it("a pod /32 beats every CIDR and is never selected by the ipBlock", () => {
    expect(ipcacheLookup(entries, "198.18.5.5")).toBe(300);
    expect(selected.has(300)).toBe(false);
  });

  it("keeps families apart", () => {
    const v6 = mergeIpcache([], [{ prefix: "::/0", identity: 7 }]);
    expect(ipcacheLookup(v6, "10.0.0.1")).toBe(2);
    expect(ipcacheLookup(v6, "fd00::1")).toBe(7);
  });

  it("gives address bytes and length for the map layer", () => {
    expect(ipPrefixOf("198.18.1.0/24")).toEqual({ addr: new Uint8Array([198, 18, 1, 0]), prefixLen: 24 });
    expect(ipPrefixOf("fd00::/8").addr).toHaveLength(16);
  });
});
