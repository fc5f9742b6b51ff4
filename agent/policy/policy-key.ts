// SPDX-License-Identifier: Apache-2.0
// The policy map's LPM keys (bpf/lib/policy_types.h) in TypeScript, the port
// range -> prefix expansion, and a lookup that behaves like the datapath.
//
// API: `PolicyDirection` (FROM_POD 0 = egress, TO_POD 1 = ingress),
// `IpProto`, `PolicyPrefix` (40 / 48 / 64), `PolicyKey`, `PolicyEntry`,
// `policyKeyText`, `toBpfPolicyEntry`, `portRangePrefixes(lo, hi)`, `policyLookup(entries,
// remoteIdentity, direction, protocol, port)`.
//
// Key bits, most significant first: identity (32), direction (8), protocol
// (8), port (16). prefixLen 40 = identity + direction, 48 = + protocol,
// 48 + n = + top n bits of the port. Bits past prefixLen are zero in the
// keys built here, as an LPM trie ignores them anyway.
// `toBpfPolicyEntry` turns an entry into the generated codec's key/value
// (PolicyMap.replace takes those).
import type { PolicyEntry as BpfPolicyEntry, PolicyKey as BpfPolicyKey } from "../generated/bpf-types.js";
import { TwillDirection, TwillPolicyLpm } from "../generated/bpf-types.js";
import { ReservedIdentity } from "../identity/reserved.js";

/** enum twill_direction. */
export const PolicyDirection = { FROM_POD: TwillDirection.FROM_POD, TO_POD: TwillDirection.TO_POD } as const;
/** 0 = pod egress (from_pod), 1 = pod ingress (to_pod). */
export type PolicyDirectionValue = (typeof PolicyDirection)[keyof typeof PolicyDirection];

/** IP protocol numbers used in keys. */
export const IpProto = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;

/** enum twill_policy_lpm. */
export const PolicyPrefix = { DIR: TwillPolicyLpm.DIR, PROTO: TwillPolicyLpm.PROTO, FULL: TwillPolicyLpm.FULL } as const;

/** One policy map key, host byte order (the codec converts identity and port). */
export interface PolicyKey {
  readonly identity: number;
  readonly direction: PolicyDirectionValue;
  readonly protocol: number;
  readonly port: number;
  /** 40..64. */
  readonly prefixLen: number;
}

/** One desired policy map entry (policy_entry.flags is always 0). */
export interface PolicyEntry {
  readonly key: PolicyKey;
  readonly ruleRef: number;
}

/** Stable text of a key, for diffing desired against actual entries: "identity/dir/proto/port/len". */
export function policyKeyText(k: PolicyKey): string {
  return `${k.identity}/${k.direction}/${k.protocol}/${k.port}/${k.prefixLen}`;
}

/** The generated codec's key and value of an entry (field names of struct policy_key / policy_entry). */
export function toBpfPolicyEntry(e: PolicyEntry): { key: BpfPolicyKey; value: BpfPolicyEntry } {
  return {
    key: { prefixlen: e.key.prefixLen, identity: e.key.identity, direction: e.key.direction, protocol: e.key.protocol, dport: e.key.port },
    value: { ruleRef: e.ruleRef, flags: 0 },
  };
}

/** A port prefix: the top `bits` bits of `port` (0 bits = every port). */
export interface PortPrefix {
  readonly port: number;
  readonly bits: number;
}

/**
 * The minimal set of port prefixes whose union is exactly lo..hi (inclusive,
 * 0 <= lo <= hi <= 65535): greedily take, from lo up, the largest aligned
 * block that does not pass hi.
 */
export function portRangePrefixes(lo: number, hi: number): PortPrefix[] {
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > 0xffff || lo > hi) {
    throw new RangeError(`expand port range: ${lo}-${hi} is not within 0-65535`);
  }
  const out: PortPrefix[] = [];
  let p = lo;
  while (p <= hi) {
    let size = 1;
    // Grow while p stays aligned to the block and the block stays inside the range.
    while (size < 0x10000 && p % (size * 2) === 0 && p + size * 2 - 1 <= hi) size *= 2;
    out.push({ port: p, bits: 16 - Math.log2(size) });
    p += size;
  }
  return out;
}

function portMask(bits: number): number {
  return bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff;
}

function keyMatches(k: PolicyKey, identity: number, direction: number, protocol: number, port: number): boolean {
  if (k.identity !== identity || k.direction !== direction) return false;
  if (k.prefixLen <= PolicyPrefix.DIR) return true;
  if (k.protocol !== protocol) return false;
  const m = portMask(k.prefixLen - PolicyPrefix.PROTO);
  return (k.port & m) === (port & m);
}

function longest(entries: Iterable<PolicyEntry>, identity: number, direction: number, protocol: number, port: number): PolicyEntry | null {
  let best: PolicyEntry | null = null;
  for (const e of entries) {
    if (keyMatches(e.key, identity, direction, protocol, port) && (best === null || e.key.prefixLen > best.key.prefixLen)) best = e;
  }
  return best;
}

/**
 * What the datapath finds in an endpoint's policy trie: the longest match
 * for (remote identity, dir, proto, port), else the longest for (ANY, ...).
 * null means DROP_POLICY.
 */
export function policyLookup(entries: Iterable<PolicyEntry>, remoteIdentity: number, direction: PolicyDirectionValue, protocol: number, port: number): PolicyEntry | null {
  const list = Array.isArray(entries) ? (entries as PolicyEntry[]) : [...entries];
  return longest(list, remoteIdentity, direction, protocol, port) ?? longest(list, ReservedIdentity.ANY, direction, protocol, port);
}
