// SPDX-License-Identifier: Apache-2.0
// twill_ipcache: LPM trie prefix -> remote identity. The family byte is part
// of the matched prefix, so the LPM prefixlen is 32 + the IP prefix length
// (bpf/lib/ipcache_types.h). LPM tries have no batch ops; BpfMap falls back.
//
// API: IpcacheMap (set/get/delete/entries by {addr, prefixLen}), ipcacheKey().
import { IpcacheEntry, IpcacheKey, MapName, TwillFamily } from "../generated/bpf-types.js";
import { BpfMap } from "./bpf-map.js";

/** A prefix: address bytes (4 or 16) and its length in bits. */
export interface IpPrefix {
  readonly addr: Uint8Array;
  readonly prefixLen: number;
}

/** The LPM key of a prefix (host bits are cleared: the trie ignores them anyway). */
export function ipcacheKey(p: IpPrefix): IpcacheKey {
  const bits = p.addr.length * 8;
  if ((p.addr.length !== 4 && p.addr.length !== 16) || p.prefixLen < 0 || p.prefixLen > bits) {
    throw new RangeError(`build ipcache key: /${p.prefixLen} of a ${p.addr.length}-byte address`);
  }
  const addr = new Uint8Array(16);
  for (let i = 0; i < p.addr.length; i++) {
    const keep = Math.max(0, Math.min(8, p.prefixLen - i * 8));
    addr[i] = p.addr[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return {
    prefixlen: 32 + p.prefixLen,
    pad: new Uint8Array(3),
    family: p.addr.length === 4 ? TwillFamily.INET : TwillFamily.INET6,
    addr,
  };
}

/**
 * Encode the key of a canonical IPv4 host prefix ("10.1.2.3/32": no leading
 * zeros) straight into `view` at `offset`, allocating nothing; false (and
 * nothing written) for any other text. The path of 100k+ pod addresses.
 */
export function encodeIpv4HostKeyInto(prefix: string, view: DataView, offset: number): boolean {
  const n = prefix.length;
  if (n < 10 || n > 18 || prefix.charCodeAt(n - 3) !== 47 /* / */ || prefix.charCodeAt(n - 2) !== 51 || prefix.charCodeAt(n - 1) !== 50) return false;
  let octet = 0;
  let digits = 0;
  let part = 0;
  let word = 0;
  for (let i = 0; i < n - 3; i++) {
    const c = prefix.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || part === 3) return false;
      word = (word << 8) | octet;
      part++;
      octet = 0;
      digits = 0;
      continue;
    }
    if (c < 48 || c > 57) return false;
    if (digits > 0 && octet === 0) return false; // leading zero
    octet = octet * 10 + (c - 48);
    if (++digits > 3 || octet > 255) return false;
  }
  if (digits === 0 || part !== 3) return false;
  word = ((word << 8) | octet) >>> 0;
  view.setUint32(offset, 32 + 32, true);
  view.setUint32(offset + 4, 0, true);
  view.setUint8(offset + 7, TwillFamily.INET);
  view.setUint32(offset + 8, word, false);
  for (let i = 12; i < 24; i++) view.setUint8(offset + i, 0);
  return true;
}

function keyPrefix(k: IpcacheKey): IpPrefix {
  const len = k.family === TwillFamily.INET ? 4 : 16;
  return { addr: k.addr.slice(0, len), prefixLen: k.prefixlen - 32 };
}

/** twill_ipcache by prefix. */
export class IpcacheMap {
  readonly map: BpfMap<IpcacheKey, IpcacheEntry>;

  /** @param fd map fd (not owned) */
  constructor(fd: number) {
    this.map = new BpfMap(MapName.ipcache, fd, IpcacheKey, IpcacheEntry);
  }

  set(prefix: IpPrefix, entry: IpcacheEntry): void {
    this.map.set(ipcacheKey(prefix), entry);
  }

  /** Exact-prefix value (not a longest-prefix match). */
  get(prefix: IpPrefix): IpcacheEntry | null {
    return this.map.get(ipcacheKey(prefix));
  }

  delete(prefix: IpPrefix): boolean {
    return this.map.delete(ipcacheKey(prefix));
  }

  entries(): Array<[IpPrefix, IpcacheEntry]> {
    return this.map.entries().map(([k, v]) => [keyPrefix(k), v]);
  }
}
