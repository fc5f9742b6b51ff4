// SPDX-License-Identifier: Apache-2.0
// Writes desired state into the pinned maps, touching only what differs.
//
// Order matters for the "no wrong verdict in between" guarantee:
//   1. ipcache additions and changes, then endpoint entries (a new pod is
//      known to its peers before it is attached);
//   2. each endpoint's policy is replaced as a whole (PolicyMap writes the
//      trie not in force and flips twill_policy_slot), so a packet sees
//      either the old or the new policy of its endpoint. The flip is in
//      force when syncEndpoints returns and waits for no RCU grace period,
//      unless the same endpoint changed a moment before (then it waits for
//      one first: its other trie may still be in use);
//   3. stale ipcache prefixes are deleted last.
// An incremental caller keeps that order with the deltas: upsertIpcache,
// then syncEndpoints, then deleteIpcache.
// API: `new DatapathSync(maps)`, `syncEndpoint(record, identity, entries)`,
// `syncEndpoints(items)` (many endpoints, one batch of flips and at most one
// outer-map batch for new endpoints: prefer it, see policy-map.ts),
// `syncIpcache(entries, local)`, `upsertIpcache(entries)`,
// `deleteIpcache(prefixes)`, `ipcachePrefixes()`, `removeEndpoint(record)`.
//
// The ipcache is diffed against an in-memory copy of what was written (read
// from the map once, so a restarted agent starts from the pinned contents),
// not against a dump of the 100k+ entry trie on every change; changed
// prefixes go out in batch updates.
import type { DatapathMaps } from "../maps/datapath-maps.js";
import { TwillEndpointFlags, TwillIpcacheFlags, type EndpointInfo } from "../generated/bpf-types.js";
import { formatIpBytes, isCanonicalIpv4, parseIp, ipBytes } from "../ipam/cidr.js";
import { ipPrefixOf, type IpcacheEntry } from "../policy/ipcache.js";
import { toBpfPolicyEntry, policyKeyText, type PolicyEntry } from "../policy/policy-key.js";
import { encodeIpv4HostKeyInto, ipcacheKey } from "../maps/ipcache-map.js";
import { PolicyTooLargeError } from "../maps/policy-map.js";
import { MAP_SPECS, MapName, IpcacheEntry as IpcacheEntryCodec, IpcacheKey as IpcacheKeyCodec } from "../generated/bpf-types.js";
import type { EndpointRecord } from "../endpoint/endpoint-store.js";

function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(":").map((h) => parseInt(h, 16)));
}

/** The endpoint_info value of a record with the given identity. */
export function endpointInfoOf(r: EndpointRecord, identity: number): EndpointInfo {
  let flags = 0;
  let ipv4 = 0;
  let ipv6: Uint8Array = new Uint8Array(16);
  if (r.ipv4) {
    flags |= TwillEndpointFlags.IPV4;
    ipv4 = Number(parseIp(r.ipv4).value);
  }
  if (r.ipv6) {
    flags |= TwillEndpointFlags.IPV6;
    ipv6 = ipBytes(6, parseIp(r.ipv6).value);
  }
  return { ifindex: r.hostIfindex, identity, ipv4, flags, ipv6, mac: macBytes(r.podMac), nodeMac: macBytes(r.hostMac) };
}

function addrOf(ip: string): Uint8Array {
  const { family, value } = parseIp(ip);
  return ipBytes(family, value);
}

function entriesText(entries: readonly PolicyEntry[]): string {
  return entries.map((e) => `${policyKeyText(e.key)}=${e.ruleRef}`).sort().join(";");
}

/** Keeps the maps equal to the desired state with minimal writes. */
export class DatapathSync {
  /** ifindex -> text of the policy last written (skip identical rewrites). */
  private readonly appliedPolicy = new Map<number, string>();
  private readonly appliedEndpoint = new Map<number, string>();
  /** Prefix text -> what twill_ipcache holds; null until read from the map once. */
  /** Values packed as identity * 256 + flags: one number per prefix, not one object (150k+ of them). */
  private appliedIpcache: Map<string, number> | null = null;
  /** Prefix text as given -> canonical text (what appliedIpcache is keyed by). */
  private readonly canonical = new Map<string, string>();

  constructor(private readonly maps: DatapathMaps) {}

  private syncEndpointInfo(r: EndpointRecord, identity: number): void {
    const info = endpointInfoOf(r, identity);
    const infoText = JSON.stringify({ ...info, ipv6: [...info.ipv6], mac: [...info.mac], nodeMac: [...info.nodeMac] });
    if (this.appliedEndpoint.get(r.hostIfindex) !== infoText) {
      this.maps.endpoints.set(r.hostIfindex, info);
      for (const ip of [r.ipv4, r.ipv6]) if (ip) this.maps.lxc.set(addrOf(ip), info);
      this.appliedEndpoint.set(r.hostIfindex, infoText);
    }
  }

  /** Write endpoint + lxc entries and (if changed) the policy trie of one endpoint. */
  syncEndpoint(r: EndpointRecord, identity: number, entries: readonly PolicyEntry[]): boolean {
    this.syncEndpointInfo(r, identity);
    const text = entriesText(entries);
    if (this.appliedPolicy.get(r.hostIfindex) === text) return false;
    this.maps.policy.replace(r.hostIfindex, entries.map(toBpfPolicyEntry));
    this.appliedPolicy.set(r.hostIfindex, text);
    return true;
  }

  /**
   * syncEndpoint for many endpoints, with every changed trie swapped in by
   * one PolicyMap.replaceMany. An endpoint whose policy does not fit keeps
   * its previous trie and is reported in `failed` (never "allow all").
   */
  syncEndpoints(items: readonly { readonly record: EndpointRecord; readonly identity: number; readonly entries: readonly PolicyEntry[] }[]): { changed: number; failed: { record: EndpointRecord; error: Error }[] } {
    const failed: { record: EndpointRecord; error: Error }[] = [];
    const todo = new Map<number, { text: string; entries: ReturnType<typeof toBpfPolicyEntry>[] }>();
    const maxEntries = MAP_SPECS[`${MapName.policy}.inner`]?.maxEntries ?? 0;
    for (const { record: r, identity, entries } of items) {
      this.syncEndpointInfo(r, identity);
      const text = entriesText(entries);
      if (this.appliedPolicy.get(r.hostIfindex) === text) continue;
      if (entries.length > maxEntries) {
        failed.push({ record: r, error: new PolicyTooLargeError(r.hostIfindex, entries.length, maxEntries) });
        continue;
      }
      todo.set(r.hostIfindex, { text, entries: entries.map(toBpfPolicyEntry) });
    }
    this.maps.policy.replaceMany(new Map([...todo].map(([ifindex, t]) => [ifindex, t.entries])));
    for (const [ifindex, t] of todo) this.appliedPolicy.set(ifindex, t.text);
    return { changed: todo.size, failed };
  }

  /** Remove every map entry of an endpoint. */
  removeEndpoint(r: EndpointRecord): void {
    this.maps.policy.delete(r.hostIfindex);
    this.maps.endpoints.delete(r.hostIfindex);
    for (const ip of [r.ipv4, r.ipv6]) {
      if (!ip) continue;
      const cur = this.maps.lxc.get(addrOf(ip));
      // Only our own entry: the address may already belong to a new pod.
      if (cur && cur.ifindex === r.hostIfindex) this.maps.lxc.delete(addrOf(ip));
    }
    this.appliedPolicy.delete(r.hostIfindex);
    this.appliedEndpoint.delete(r.hostIfindex);
  }

  /** Make twill_ipcache equal to `entries`; prefixes in `local` (as written in entries) get the LOCAL flag. */
  syncIpcache(entries: readonly IpcacheEntry[], local: ReadonlySet<string>): { written: number; deleted: number } {
    // The same two writes a delta makes: upserts (batched), then what the map holds beyond `entries`.
    const written = this.upsertIpcache(entries.map((e) => ({ prefix: e.prefix, identity: e.identity, local: local.has(e.prefix) })));
    const want = new Set(entries.map((e) => this.canonicalPrefix(e.prefix)));
    const deleted = this.deleteIpcache(this.ipcachePrefixes().filter((p) => !want.has(p)));
    return { written, deleted };
  }

  /** The ipcache mirror, read from the map once (a restarted agent starts from the pinned contents). */
  private ipcacheMirror(): Map<string, number> {
    if (!this.appliedIpcache) {
      const current = new Map<string, number>();
      for (const [p, v] of this.maps.ipcache.entries()) current.set(prefixText(p.addr, p.prefixLen), v.identity * 256 + v.flags);
      this.appliedIpcache = current;
    }
    return this.appliedIpcache;
  }

  /** Prefixes twill_ipcache holds (canonical texts), as last written or read. */
  ipcachePrefixes(): string[] {
    return [...this.ipcacheMirror().keys()];
  }

  /**
   * Write ipcache entries (one batch); returns how many differed from the
   * map. Keys and values are encoded straight into the batch buffers: a full
   * sync passes 100k+ entries through here.
   */
  upsertIpcache(entries: readonly { prefix: string; identity: number; local: boolean }[]): number {
    const current = this.ipcacheMirror();
    const keys = new Uint8Array(IpcacheKeyCodec.SIZE * entries.length);
    const values = new Uint8Array(IpcacheEntryCodec.SIZE * entries.length);
    const kv = new DataView(keys.buffer);
    const vv = new DataView(values.buffer);
    let n = 0;
    for (const e of entries) {
      const flags = e.local ? TwillIpcacheFlags.LOCAL : 0;
      const packed = e.identity * 256 + flags;
      const at = n * IpcacheKeyCodec.SIZE;
      // A canonical IPv4 host prefix is its own canonical text.
      let text = e.prefix;
      if (!encodeIpv4HostKeyInto(text, kv, at)) {
        text = this.canonicalPrefix(e.prefix);
        if (current.get(text) === packed) continue;
        IpcacheKeyCodec.encodeInto(ipcacheKey(ipPrefixOf(text)), kv, at);
      } else if (current.get(text) === packed) continue;
      vv.setUint32(n * IpcacheEntryCodec.SIZE, e.identity, true);
      vv.setUint32(n * IpcacheEntryCodec.SIZE + 4, flags, true);
      current.set(text, packed);
      n++;
    }
    try {
      this.maps.ipcache.map.setEncoded(keys, values, n);
    } catch (e: unknown) {
      this.appliedIpcache = null; // unknown how far it got: re-read next time
      throw e;
    }
    if (this.canonical.size > 2 * current.size + 1024) this.canonical.clear();
    return n;
  }

  /** Delete ipcache prefixes; returns how many were there. */
  deleteIpcache(prefixes: readonly string[]): number {
    const current = this.ipcacheMirror();
    let deleted = 0;
    for (const prefix of prefixes) {
      const text = this.canonicalPrefix(prefix);
      if (!current.has(text)) continue;
      this.maps.ipcache.delete(ipPrefixOf(text));
      current.delete(text);
      deleted++;
    }
    return deleted;
  }

  /** Prefix text as read back from the map; memoised, so an unchanged ipcache costs no parsing. */
  private canonicalPrefix(prefix: string): string {
    // Host prefixes of canonical IPv4 addresses are canonical already (the common case by far).
    if (prefix.endsWith("/32") && isCanonicalIpv4(prefix.slice(0, -3))) return prefix;
    let t = this.canonical.get(prefix);
    if (t === undefined) {
      const p = ipPrefixOf(prefix);
      t = prefixText(p.addr, p.prefixLen);
      this.canonical.set(prefix, t);
    }
    return t;
  }
}

function prefixText(addr: Uint8Array, prefixLen: number): string {
  return `${formatIpBytes(addr)}/${prefixLen}`;
}
