// SPDX-License-Identifier: Apache-2.0
// Interface addresses over rtnetlink (IPv4 and IPv6).
//
// IPv6 addresses are added with IFA_F_NODAD by default: a pod address is unique
// by IPAM, and without it the address stays "tentative" for ~1 s and cannot be
// used as a source, which makes the first packets of a new pod fail.
//
// API: addAddress, replaceAddress, deleteAddress, listAddresses; type AddressInfo.
import {
  AF, bytesToIp, decodeAttrs, decodeIfAddrMsg, encodeAttrs, encodeIfAddrMsg, findAttr, IFA, IFA_F, IFADDRMSG_LEN,
  ipToBytes, NLM_F, parsePrefix, RT_SCOPE, RTM, u32Attr, type AttrInput, type NlMessage,
} from "./codec.js";
import { isNotFound, NetlinkArgumentError } from "./errors.js";
import type { NetlinkSocket } from "./socket.js";

/** An address on a link. */
export interface AddressInfo {
  readonly family: 4 | 6;
  readonly ifindex: number;
  /** Local address text, e.g. "10.244.0.5" or "fd00:10:244::5". */
  readonly address: string;
  readonly prefixLen: number;
  /** RT_SCOPE_* (0 universe, 253 link, 254 host). */
  readonly scope: number;
  /** IFA_F_* bits (full 32-bit IFA_FLAGS when present). */
  readonly flags: number;
}

/** Options for addAddress. */
export interface AddressOptions {
  /** IPv6 only: skip duplicate address detection (default true). */
  readonly noDad?: boolean;
  /** Do not install the connected prefix route (IFA_F_NOPREFIXROUTE; default false). */
  readonly noPrefixRoute?: boolean;
}

/** Add `cidr` ("10.244.0.5/32", "fd00:10:244::5/128") to a link; EEXIST if present. */
export function addAddress(nl: NetlinkSocket, ifindex: number, cidr: string, opts: AddressOptions = {}): void {
  nl.request(`add address ${cidr} to ifindex ${ifindex}`, RTM.NEWADDR, NLM_F.CREATE | NLM_F.EXCL, body(ifindex, cidr, opts));
}

/** Add or update `cidr` on a link (idempotent). */
export function replaceAddress(nl: NetlinkSocket, ifindex: number, cidr: string, opts: AddressOptions = {}): void {
  nl.request(`replace address ${cidr} on ifindex ${ifindex}`, RTM.NEWADDR, NLM_F.CREATE | NLM_F.REPLACE, body(ifindex, cidr, opts));
}

/** Remove `cidr` from a link; false if it was not there. */
export function deleteAddress(nl: NetlinkSocket, ifindex: number, cidr: string): boolean {
  try {
    nl.request(`delete address ${cidr} from ifindex ${ifindex}`, RTM.DELADDR, 0, body(ifindex, cidr, { noDad: false }));
    return true;
  } catch (e: unknown) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Addresses in the socket's netns, optionally only one link's and one family's. */
export function listAddresses(nl: NetlinkSocket, filter: { ifindex?: number; family?: 4 | 6 } = {}): AddressInfo[] {
  const af = filter.family === 4 ? AF.INET : filter.family === 6 ? AF.INET6 : AF.UNSPEC;
  const req = encodeIfAddrMsg({ family: af, prefixLen: 0, flags: 0, scope: 0, index: 0 });
  return nl.dump("list addresses", RTM.GETADDR, req)
    .filter((m) => m.type === RTM.NEWADDR)
    .map(decodeAddress)
    .filter((a) => filter.ifindex === undefined || a.ifindex === filter.ifindex);
}

/** Decode an RTM_NEWADDR message. */
export function decodeAddress(m: NlMessage): AddressInfo {
  const h = decodeIfAddrMsg(m.payload);
  const attrs = decodeAttrs(m.payload.subarray(IFADDRMSG_LEN));
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
  const addr = findAttr(attrs, IFA.LOCAL) ?? findAttr(attrs, IFA.ADDRESS);
  const flags = findAttr(attrs, IFA.FLAGS);
  return {
    family: h.family === AF.INET6 ? 6 : 4,
    ifindex: h.index,
    address: addr ? bytesToIp(addr) : "",
    prefixLen: h.prefixLen,
    scope: h.scope,
    flags: flags && flags.length >= 4 ? flags.readUInt32LE(0) : h.flags,
  };
}

function body(ifindex: number, cidr: string, opts: AddressOptions): Buffer {
  let p: ReturnType<typeof parsePrefix>;
  try {
    p = parsePrefix(cidr);
  } catch (e: unknown) {
    throw new NetlinkArgumentError(`address ${cidr}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let flags = 0;
  if (p.family === 6 && (opts.noDad ?? true)) flags |= IFA_F.NODAD;
  if (opts.noPrefixRoute) flags |= IFA_F.NOPREFIXROUTE;
  const bytes = ipToBytes(p.address);
  const attrs: AttrInput[] = [{ type: IFA.LOCAL, value: bytes }, { type: IFA.ADDRESS, value: bytes }];
  // The 8-bit ifa_flags cannot hold NOPREFIXROUTE; IFA_FLAGS carries all 32 bits.
  if (flags > 0xff) attrs.push(u32Attr(IFA.FLAGS, flags));
  const hdr = encodeIfAddrMsg({
    family: p.family === 4 ? AF.INET : AF.INET6, prefixLen: p.prefixLen, flags: flags & 0xff, scope: RT_SCOPE.UNIVERSE, index: ifindex,
  });
  return Buffer.concat([hdr, encodeAttrs(attrs)]);
}
