// SPDX-License-Identifier: Apache-2.0
// Links over rtnetlink: veth pairs (peer created directly in another netns by
// fd), lookup by name or index, listing, up/down, MTU, rename, delete.
//
// API: createVethPair, getLink, findLink, listLinks, setLinkUp, setLinkDown,
// setLinkMtu, renameLink, setLinkMac, deleteLink; types LinkInfo, VethPairOptions.
import {
  AF, bytesToMac, decodeAttrs, decodeIfInfoMsg, encodeAttrs, encodeIfInfoMsg, findAttr, IFF, IFLA, IFLA_INFO,
  macToBytes, NLM_F, readCString, RTM, strAttr, u32Attr, VETH_INFO, type AttrInput, type NlMessage,
} from "./codec.js";
import { checkIfName, NetlinkArgumentError, NetlinkError, isNotFound } from "./errors.js";
import { openNetns } from "./netns.js";
import type { NetlinkSocket } from "./socket.js";

/** RFC 2863 operational state (IFLA_OPERSTATE). */
export type OperState = "unknown" | "notpresent" | "down" | "lowerlayerdown" | "testing" | "dormant" | "up";
const OPER_STATES: readonly OperState[] = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"];

/** A link as the kernel reports it. */
export interface LinkInfo {
  readonly index: number;
  readonly name: string;
  /** Lowercase "aa:bb:..", or null for links without a hardware address. */
  readonly mac: string | null;
  readonly mtu: number;
  /** IFF_* bits. */
  readonly flags: number;
  /** True if IFF_UP (administratively up). */
  readonly up: boolean;
  readonly operState: OperState;
  /** IFLA_INFO_KIND ("veth"), or null for physical/loopback links. */
  readonly kind: string | null;
  /** ifindex of the peer/parent (IFLA_LINK); for a veth the peer's index in its netns. */
  readonly parentIndex: number | null;
}

/** Where to put the peer: a netns path or an already open netns fd. */
export type PeerNetns = { readonly path: string } | { readonly fd: number };

/** Options for createVethPair. */
export interface VethPairOptions {
  /** Name of the end in the socket's netns (e.g. "tw1a2b3c4d5e6"). */
  readonly name: string;
  /** Name of the peer end (e.g. "eth0"). */
  readonly peerName: string;
  /** Peer netns; null/absent = same netns as `name`. */
  readonly peerNetns?: PeerNetns | null;
  readonly mtu?: number | null;
  readonly mac?: string | null;
  readonly peerMac?: string | null;
}

/**
 * Create a veth pair in one RTM_NEWLINK; the peer is created directly inside
 * `peerNetns` (IFLA_NET_NS_FD), so it never appears in the host netns.
 * Fails with NetlinkError code EEXIST if either name exists. Both ends stay down.
 */
export function createVethPair(nl: NetlinkSocket, o: VethPairOptions): void {
  const op = `create link ${o.name}`;
  checkIfName(op, o.name);
  checkIfName(op, o.peerName);
  if (o.mtu != null) checkMtu(op, o.mtu);
  const peerNs = o.peerNetns ?? null;
  const ns = peerNs !== null && "path" in peerNs ? openNetns(peerNs.path) : null;
  try {
    const peerFd = ns ? ns.fd : peerNs !== null && "fd" in peerNs ? peerNs.fd : null;
    const peerAttrs: AttrInput[] = [strAttr(IFLA.IFNAME, o.peerName)];
    if (peerFd !== null) peerAttrs.push(u32Attr(IFLA.NET_NS_FD, peerFd));
    if (o.mtu != null) peerAttrs.push(u32Attr(IFLA.MTU, o.mtu));
    if (o.peerMac != null) peerAttrs.push({ type: IFLA.ADDRESS, value: macToBytes(o.peerMac) });
    // VETH_INFO_PEER holds a whole ifinfomsg followed by the peer's IFLA_* attributes.
    const peer = Buffer.concat([ifinfo(0), encodeAttrs(peerAttrs)]);
    const attrs: AttrInput[] = [strAttr(IFLA.IFNAME, o.name)];
    if (o.mtu != null) attrs.push(u32Attr(IFLA.MTU, o.mtu));
    if (o.mac != null) attrs.push({ type: IFLA.ADDRESS, value: macToBytes(o.mac) });
    attrs.push({
      type: IFLA.LINKINFO,
      value: [
        strAttr(IFLA_INFO.KIND, "veth"),
        { type: IFLA_INFO.DATA, value: [{ type: VETH_INFO.PEER, value: peer }] },
      ],
    });
    nl.request(op, RTM.NEWLINK, NLM_F.CREATE | NLM_F.EXCL, Buffer.concat([ifinfo(0), encodeAttrs(attrs)]));
  } finally {
    ns?.close();
  }
}

/** Look up a link by name or ifindex; throws NetlinkNotFoundError if absent. */
export function getLink(nl: NetlinkSocket, link: string | number): LinkInfo {
  const op = `get link ${link}`;
  const body = typeof link === "number"
    ? ifinfo(link)
    : (checkIfName(op, link), Buffer.concat([ifinfo(0), encodeAttrs([strAttr(IFLA.IFNAME, link)])]));
  const replies = nl.request(op, RTM.GETLINK, 0, body);
  const m = replies.find((r) => r.type === RTM.NEWLINK);
  if (!m) throw new NetlinkError(op, 0, "kernel sent no link in reply");
  return decodeLink(m);
}

/** Like getLink, but null when the link does not exist. */
export function findLink(nl: NetlinkSocket, link: string | number): LinkInfo | null {
  try {
    return getLink(nl, link);
  } catch (e: unknown) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

/** All links in the socket's netns. */
export function listLinks(nl: NetlinkSocket): LinkInfo[] {
  return nl.dump("list links", RTM.GETLINK, ifinfo(0)).filter((m) => m.type === RTM.NEWLINK).map(decodeLink);
}

/** Set IFF_UP. */
export function setLinkUp(nl: NetlinkSocket, link: string | number): void {
  changeLink(nl, `set link ${link} up`, link, { flags: IFF.UP, change: IFF.UP }, []);
}

/** Clear IFF_UP. */
export function setLinkDown(nl: NetlinkSocket, link: string | number): void {
  changeLink(nl, `set link ${link} down`, link, { flags: 0, change: IFF.UP }, []);
}

/** Set the MTU. */
export function setLinkMtu(nl: NetlinkSocket, link: string | number, mtu: number): void {
  const op = `set link ${link} mtu ${mtu}`;
  checkMtu(op, mtu);
  changeLink(nl, op, link, { flags: 0, change: 0 }, [u32Attr(IFLA.MTU, mtu)]);
}

/** Set the hardware address. */
export function setLinkMac(nl: NetlinkSocket, link: string | number, mac: string): void {
  const op = `set link ${link} address ${mac}`;
  changeLink(nl, op, link, { flags: 0, change: 0 }, [{ type: IFLA.ADDRESS, value: macToBytes(mac) }]);
}

/** Rename a link (the kernel may refuse while it is up: EBUSY). */
export function renameLink(nl: NetlinkSocket, link: string | number, newName: string): void {
  const op = `rename link ${link} to ${newName}`;
  checkIfName(op, newName);
  const index = typeof link === "number" ? link : getLink(nl, link).index;
  changeLink(nl, op, index, { flags: 0, change: 0 }, [strAttr(IFLA.IFNAME, newName)]);
}

/**
 * Delete a link (for a veth, both ends go). Returns false if it did not exist,
 * so CNI DEL and agent cleanup can be idempotent.
 */
export function deleteLink(nl: NetlinkSocket, link: string | number): boolean {
  const op = `delete link ${link}`;
  try {
    nl.request(op, RTM.DELLINK, 0, linkSelector(op, link, []));
    return true;
  } catch (e: unknown) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Decode an RTM_NEWLINK message. */
export function decodeLink(m: NlMessage): LinkInfo {
  const hdr = decodeIfInfoMsg(m.payload);
  const attrs = decodeAttrs(m.payload.subarray(16));
  const name = findAttr(attrs, IFLA.IFNAME);
  const mac = findAttr(attrs, IFLA.ADDRESS);
  const mtu = findAttr(attrs, IFLA.MTU);
  const oper = findAttr(attrs, IFLA.OPERSTATE);
  const parent = findAttr(attrs, IFLA.LINK);
  const info = findAttr(attrs, IFLA.LINKINFO);
  const kind = info ? findAttr(decodeAttrs(info), IFLA_INFO.KIND) : undefined;
  return {
    index: hdr.index,
    name: name ? readCString(name) : "",
    mac: mac && mac.length > 0 ? bytesToMac(mac) : null,
    mtu: mtu && mtu.length >= 4 ? mtu.readUInt32LE(0) : 0,
    flags: hdr.flags,
    up: (hdr.flags & IFF.UP) !== 0,
    operState: oper && oper.length >= 1 ? OPER_STATES[oper.readUInt8(0)] ?? "unknown" : "unknown",
    kind: kind ? readCString(kind) : null,
    parentIndex: parent && parent.length >= 4 ? parent.readInt32LE(0) : null,
  };
}

function ifinfo(index: number, flags = 0, change = 0): Buffer {
  return encodeIfInfoMsg({ family: AF.UNSPEC, type: 0, index, flags, change });
}

/** Body selecting a link by index, or by IFLA_IFNAME with index 0. */
function linkSelector(op: string, link: string | number, attrs: AttrInput[], flags = 0, change = 0): Buffer {
  if (typeof link === "number") return Buffer.concat([ifinfo(link, flags, change), encodeAttrs(attrs)]);
  checkIfName(op, link);
  return Buffer.concat([ifinfo(0, flags, change), encodeAttrs([strAttr(IFLA.IFNAME, link), ...attrs])]);
}

/** RTM_NEWLINK without NLM_F_CREATE modifies; a missing link fails with ENODEV (NetlinkNotFoundError). */
function changeLink(
  nl: NetlinkSocket, op: string, link: string | number, f: { flags: number; change: number }, attrs: AttrInput[],
): void {
  nl.request(op, RTM.NEWLINK, 0, linkSelector(op, link, attrs, f.flags, f.change));
}

function checkMtu(op: string, mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
    throw new NetlinkArgumentError(`${op}: mtu ${mtu} is outside 68-65535`);
  }
}
