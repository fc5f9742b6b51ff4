// SPDX-License-Identifier: Apache-2.0
// Neighbour (ARP/NDP) entries over rtnetlink. The pod gets permanent entries
// for its gateways (169.254.1.1, fe80::1) pointing at the host veth MAC so it
// never has to resolve them.
//
// API: setNeighbor, deleteNeighbor, listNeighbors; type NeighborInfo.
import {
  AF, bytesToIp, bytesToMac, decodeAttrs, decodeNdMsg, encodeAttrs, encodeNdMsg, findAttr, ipFamily, ipToBytes,
  macToBytes, NDA, NDMSG_LEN, NLM_F, NUD, RTM, type NlMessage,
} from "./codec.js";
import { isNotFound, NetlinkArgumentError } from "./errors.js";
import type { NetlinkSocket } from "./socket.js";

/** A neighbour entry. */
export interface NeighborInfo {
  readonly family: 4 | 6;
  readonly ifindex: number;
  readonly ip: string;
  readonly mac: string | null;
  /** NUD_* bits; NUD.PERMANENT = 0x80. */
  readonly state: number;
}

/** Create or replace a permanent (NUD_PERMANENT) entry ip -> mac on a link. */
export function setNeighbor(nl: NetlinkSocket, ifindex: number, ip: string, mac: string): void {
  const op = `set neighbor ${ip} lladdr ${mac} dev ${ifindex}`;
  let family: 4 | 6;
  let lladdr: Buffer;
  try {
    family = ipFamily(ip);
    lladdr = macToBytes(mac);
  } catch (e: unknown) {
    throw new NetlinkArgumentError(`${op}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const hdr = encodeNdMsg({ family: family === 4 ? AF.INET : AF.INET6, ifindex, state: NUD.PERMANENT, flags: 0, type: 0 });
  const attrs = encodeAttrs([{ type: NDA.DST, value: ipToBytes(ip) }, { type: NDA.LLADDR, value: lladdr }]);
  nl.request(op, RTM.NEWNEIGH, NLM_F.CREATE | NLM_F.REPLACE, Buffer.concat([hdr, attrs]));
}

/** Delete an entry; false if it did not exist. */
export function deleteNeighbor(nl: NetlinkSocket, ifindex: number, ip: string): boolean {
  const op = `delete neighbor ${ip} dev ${ifindex}`;
  let family: 4 | 6;
  try {
    family = ipFamily(ip);
  } catch (e: unknown) {
    throw new NetlinkArgumentError(`${op}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const hdr = encodeNdMsg({ family: family === 4 ? AF.INET : AF.INET6, ifindex, state: 0, flags: 0, type: 0 });
  try {
    nl.request(op, RTM.DELNEIGH, 0, Buffer.concat([hdr, encodeAttrs([{ type: NDA.DST, value: ipToBytes(ip) }])]));
    return true;
  } catch (e: unknown) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Neighbour entries (both families), optionally of one link. */
export function listNeighbors(nl: NetlinkSocket, filter: { ifindex?: number } = {}): NeighborInfo[] {
  const req = encodeNdMsg({ family: AF.UNSPEC, ifindex: 0, state: 0, flags: 0, type: 0 });
  return nl.dump("list neighbors", RTM.GETNEIGH, req)
    .filter((m) => m.type === RTM.NEWNEIGH)
    .map(decodeNeighbor)
    .filter((n) => (n.family === 4 || n.family === 6) && (filter.ifindex === undefined || n.ifindex === filter.ifindex));
}

/** Decode an RTM_NEWNEIGH message. */
export function decodeNeighbor(m: NlMessage): NeighborInfo {
  const h = decodeNdMsg(m.payload);
  const attrs = decodeAttrs(m.payload.subarray(NDMSG_LEN));
  const dst = findAttr(attrs, NDA.DST);
  const ll = findAttr(attrs, NDA.LLADDR);
  return {
    family: h.family === AF.INET6 ? 6 : 4,
    ifindex: h.ifindex,
    ip: dst && (dst.length === 4 || dst.length === 16) ? bytesToIp(dst) : "",
    mac: ll && ll.length === 6 ? bytesToMac(ll) : null,
    state: h.state,
  };
}
