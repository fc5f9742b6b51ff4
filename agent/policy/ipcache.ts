// SPDX-License-Identifier: Apache-2.0
// ipcache entries for ipBlock peers, and an LPM lookup that behaves like the
// datapath's (for tests and policy traces).
//
// API: `IpcacheEntry`, `ipcacheEntriesForIpBlock(cidr, except, identityOf)`,
// `mergeIpcache(podEntries, cidrEntries)`, `ipcacheLookup(entries, ip)`,
// `ipPrefixOf(prefix)` (address bytes + length, what IpcacheMap takes).
//
// How excepts work. The ipcache trie holds pod /32 (/128) entries and, for
// every ipBlock of every policy, its cidr AND each of its except prefixes,
// each with its own CIDR identity. An address then resolves to the identity
// of the longest prefix p that contains it. Prefixes are either nested or
// disjoint, so for an ipBlock B: a is in B.cidr minus B.except exactly when
// p lies inside B.cidr and inside none of B.except (if a is in an except e,
// e is in the trie so p is inside e; if a is in B.cidr, p is inside it). The
// CIDR selector of B therefore selects every CIDR identity whose prefix lies
// within cidr and outside the excepts (selector.ts); the except prefix itself
// maps to its own identity, never to B's. Pod entries win an exact-prefix
// tie: ipBlocks do not match pod IPs (see evaluator.ts).
import { canonicalIpv4Bytes, cidrContains, ipBytes, parseCidr, parseIp } from "../ipam/cidr.js";
import { ReservedIdentity } from "../identity/reserved.js";

/** One ipcache trie entry: canonical prefix text -> identity. */
export interface IpcacheEntry {
  readonly prefix: string;
  readonly identity: number;
}

/**
 * Entries for one ipBlock: its cidr and every except prefix, each mapped to
 * its own CIDR identity (`identityOf` is usually CidrIdentityAllocator.identityOf
 * after allocate()).
 */
export function ipcacheEntriesForIpBlock(cidr: string, except: readonly string[], identityOf: (cidr: string) => number): IpcacheEntry[] {
  const out = new Map<string, number>();
  for (const c of [cidr, ...except]) {
    const text = parseCidr(c).text;
    out.set(text, identityOf(text));
  }
  return [...out].map(([prefix, identity]) => ({ prefix, identity }));
}

/** One trie from pod entries and CIDR entries; a pod entry wins an exact-prefix tie. */
export function mergeIpcache(podEntries: Iterable<IpcacheEntry>, cidrEntries: Iterable<IpcacheEntry>): IpcacheEntry[] {
  const out = new Map<string, number>();
  for (const e of cidrEntries) out.set(parseCidr(e.prefix).text, e.identity);
  for (const e of podEntries) out.set(parseCidr(e.prefix).text, e.identity);
  return [...out].map(([prefix, identity]) => ({ prefix, identity }));
}

/** The identity the datapath gives `ip`: longest matching prefix, WORLD on a miss. */
export function ipcacheLookup(entries: Iterable<IpcacheEntry>, ip: string): number {
  const { family, value } = parseIp(ip);
  let best = -1;
  let identity: number = ReservedIdentity.WORLD;
  for (const e of entries) {
    const c = parseCidr(e.prefix);
    if (c.prefixLen > best && cidrContains(c, family, value)) {
      best = c.prefixLen;
      identity = e.identity;
    }
  }
  return identity;
}

/** Network-order address bytes (4 or 16) and prefix length of a prefix text, e.g. for IpcacheMap. */
export function ipPrefixOf(prefix: string): { addr: Uint8Array; prefixLen: number } {
  if (prefix.endsWith("/32")) {
    const addr = canonicalIpv4Bytes(prefix.slice(0, -3));
    if (addr) return { addr, prefixLen: 32 };
  }
  const c = parseCidr(prefix);
  return { addr: ipBytes(c.family, c.base), prefixLen: c.prefixLen };
}
