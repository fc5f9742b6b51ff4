// SPDX-License-Identifier: Apache-2.0
// twill_lxc: pod IP -> endpoint_info, for same-node delivery. Keys are built
// here from raw address bytes (4 bytes: IPv4, 16: IPv6) so callers never
// touch the key layout.
//
// API: LxcMap (set/get/delete/entries by address bytes), lxcKey(addr).
import { EndpointInfo, LxcKey, MapName, TwillFamily } from "../generated/bpf-types.js";
import { BpfMap } from "./bpf-map.js";

/** Key of an IPv4 (4 bytes) or IPv6 (16 bytes) address. */
export function lxcKey(addr: Uint8Array): LxcKey {
  if (addr.length !== 4 && addr.length !== 16) throw new RangeError(`build lxc key: address of ${addr.length} bytes`);
  const padded = new Uint8Array(16);
  padded.set(addr);
  return { addr: padded, family: addr.length === 4 ? TwillFamily.INET : TwillFamily.INET6, pad: new Uint8Array(3) };
}

/** Address bytes (4 or 16) of a key. */
export function lxcKeyAddr(key: LxcKey): Uint8Array {
  return key.family === TwillFamily.INET ? key.addr.slice(0, 4) : key.addr.slice();
}

/** twill_lxc by pod address. */
export class LxcMap {
  readonly map: BpfMap<LxcKey, EndpointInfo>;

  /** @param fd map fd (not owned) */
  constructor(fd: number) {
    this.map = new BpfMap(MapName.lxc, fd, LxcKey, EndpointInfo);
  }

  set(addr: Uint8Array, ep: EndpointInfo): void {
    this.map.set(lxcKey(addr), ep);
  }

  get(addr: Uint8Array): EndpointInfo | null {
    return this.map.get(lxcKey(addr));
  }

  delete(addr: Uint8Array): boolean {
    return this.map.delete(lxcKey(addr));
  }

  /** [address bytes, endpoint] pairs. */
  entries(): Array<[Uint8Array, EndpointInfo]> {
    return this.map.entries().map(([k, v]) => [lxcKeyAddr(k), v]);
  }
}
