// SPDX-License-Identifier: Apache-2.0
// twill_ct4 / twill_ct6 (LRU hashes) and their garbage collection. The
// datapath only creates and refreshes entries; the agent deletes those whose
// last_seen_ns (bpf_ktime_get_ns, CLOCK_MONOTONIC) is older than the timeout
// of their state. An entry is re-read right before deletion so a connection
// refreshed meanwhile survives.
//
// API: ConntrackMap<K> (entries/gc), openCt4/openCt6, CtTimeouts,
// DEFAULT_CT_TIMEOUTS, ctTimeoutNs(key protocol, entry, timeouts), monotonicNowNs().
import { CtEntry, CtKey4, CtKey6, MapName, TwillCtFlags, type Codec } from "../generated/bpf-types.js";
import { BpfMap } from "./bpf-map.js";

const IPPROTO_TCP = 6;
const SECOND_NS = 1_000_000_000n;

/** Idle timeouts per connection state, in nanoseconds. */
export interface CtTimeouts {
  /** TCP with a reply seen and no FIN/RST. */
  readonly tcpEstablishedNs: bigint;
  /** FIN or RST seen. */
  readonly closingNs: bigint;
  /** TCP SYN without reply, UDP, ICMP and everything else. */
  readonly otherNs: bigint;
}

/** 6 h established TCP, 10 s closing, 60 s otherwise. */
export const DEFAULT_CT_TIMEOUTS: CtTimeouts = {
  tcpEstablishedNs: 6n * 3600n * SECOND_NS,
  closingNs: 10n * SECOND_NS,
  otherNs: 60n * SECOND_NS,
};

/** The idle timeout that applies to an entry. */
export function ctTimeoutNs(protocol: number, e: CtEntry, t: CtTimeouts): bigint {
  if (e.flags & TwillCtFlags.CLOSING) return t.closingNs;
  if (protocol === IPPROTO_TCP && e.flags & TwillCtFlags.SEEN_REPLY) return t.tcpEstablishedNs;
  return t.otherNs;
}

/** Now on the clock bpf_ktime_get_ns uses (CLOCK_MONOTONIC; libuv's hrtime is the same clock on Linux). */
export function monotonicNowNs(): bigint {
  return process.hrtime.bigint();
}

/** Result of one GC pass. */
export interface GcResult {
  readonly scanned: number;
  readonly deleted: number;
}

/** A conntrack table. */
export class ConntrackMap<K extends { protocol: number }> {
  readonly map: BpfMap<K, CtEntry>;

  constructor(name: string, fd: number, key: Codec<K>) {
    this.map = new BpfMap(name, fd, key, CtEntry);
  }

  entries(): Array<[K, CtEntry]> {
    return this.map.entries();
  }

  /** Delete every entry idle for longer than its timeout at nowNs. */
  gc(nowNs: bigint, timeouts: CtTimeouts = DEFAULT_CT_TIMEOUTS): GcResult {
    const all = this.map.entries();
    let deleted = 0;
    for (const [key, entry] of all) {
      if (!expired(key, entry, nowNs, timeouts)) continue;
      const fresh = this.map.get(key);
      if (fresh === null || !expired(key, fresh, nowNs, timeouts)) continue;
      if (this.map.delete(key)) deleted++;
    }
    return { scanned: all.length, deleted };
  }
}

function expired(key: { protocol: number }, e: CtEntry, nowNs: bigint, t: CtTimeouts): boolean {
  return nowNs - e.lastSeenNs > ctTimeoutNs(key.protocol, e, t);
}

/** twill_ct4 through fd (not owned). */
export function openCt4(fd: number): ConntrackMap<CtKey4> {
  return new ConntrackMap(MapName.ct4, fd, CtKey4);
}

/** twill_ct6 through fd (not owned). */
export function openCt6(fd: number): ConntrackMap<CtKey6> {
  return new ConntrackMap(MapName.ct6, fd, CtKey6);
}
