// SPDX-License-Identifier: Apache-2.0
// Pure rtnetlink wire codec: nlmsghdr, rtattr (flat and nested), the fixed
// family headers (ifinfomsg, ifaddrmsg, rtmsg, ndmsg), IP/MAC byte forms and
// the constants we use. No I/O here, so it is unit-tested against golden bytes.
//
// Layouts follow the kernel uapi (include/uapi/linux/{netlink,rtnetlink,
// if_link,if_addr,neighbour}.h). Everything is host byte order (little-endian
// on every platform we run on) except addresses, which are network order.
//
// API: encodeMessage/decodeMessages, encodeAttrs/decodeAttrs, encode/decode
// of each family header, ipToBytes/bytesToIp, macToBytes/bytesToMac,
// cString/readCString, u32/u8 attribute helpers, and the constant objects.
import { isIPv4, isIPv6 } from "node:net";
import { formatIpBytes } from "../ipam/cidr.js";

/** nlmsghdr.nlmsg_type values that are not family-specific. */
export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3, OVERRUN: 4 } as const;

/** nlmsghdr.nlmsg_flags bits. */
export const NLM_F = {
  REQUEST: 0x1, MULTI: 0x2, ACK: 0x4, ECHO: 0x8, DUMP_INTR: 0x10,
  ROOT: 0x100, MATCH: 0x200, DUMP: 0x300,
  REPLACE: 0x100, EXCL: 0x200, CREATE: 0x400, APPEND: 0x800,
  /** On NLMSG_ERROR: the request was not echoed (NETLINK_CAP_ACK). */
  CAPPED: 0x100,
  /** On NLMSG_ERROR: extended-ack TLVs follow. */
  ACK_TLVS: 0x200,
} as const;

/** rtnetlink message types. */
export const RTM = {
  NEWLINK: 16, DELLINK: 17, GETLINK: 18,
  NEWADDR: 20, DELADDR: 21, GETADDR: 22,
  NEWROUTE: 24, DELROUTE: 25, GETROUTE: 26,
  NEWNEIGH: 28, DELNEIGH: 29, GETNEIGH: 30,
} as const;

/** IFLA_* link attributes. */
export const IFLA = {
  ADDRESS: 1, BROADCAST: 2, IFNAME: 3, MTU: 4, LINK: 5, MASTER: 10,
  OPERSTATE: 16, LINKINFO: 18, NET_NS_PID: 19, NET_NS_FD: 28, LINK_NETNSID: 37,
} as const;
/** IFLA_INFO_* (nested in IFLA_LINKINFO). */
export const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
/** VETH_INFO_* (nested in IFLA_INFO_DATA for kind "veth"). */
export const VETH_INFO = { PEER: 1 } as const;
/** IFA_* address attributes and IFA_F_* flags. */
export const IFA = { ADDRESS: 1, LOCAL: 2, LABEL: 3, BROADCAST: 4, FLAGS: 8 } as const;
export const IFA_F = { NODAD: 0x02, PERMANENT: 0x80, NOPREFIXROUTE: 0x200 } as const;
/** RTA_* route attributes. */
export const RTA = { DST: 1, SRC: 2, OIF: 4, GATEWAY: 5, PRIORITY: 6, PREFSRC: 7, TABLE: 15 } as const;
/** NDA_* neighbour attributes. */
export const NDA = { DST: 1, LLADDR: 2 } as const;
/** NUD_* neighbour states. */
export const NUD = { INCOMPLETE: 0x01, REACHABLE: 0x02, STALE: 0x04, NOARP: 0x40, PERMANENT: 0x80 } as const;
/** Address families. */
export const AF = { UNSPEC: 0, INET: 2, INET6: 10 } as const;
/** net_device flags we care about. */
export const IFF = { UP: 0x1, BROADCAST: 0x2, LOOPBACK: 0x8, POINTOPOINT: 0x10, RUNNING: 0x40, NOARP: 0x80, LOWER_UP: 0x10000 } as const;
/** Route scopes, tables, protocols, types and nexthop flags. */
export const RT_SCOPE = { UNIVERSE: 0, SITE: 200, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
export const RT_TABLE = { UNSPEC: 0, MAIN: 254, LOCAL: 255 } as const;
export const RTPROT = { UNSPEC: 0, KERNEL: 2, BOOT: 3, STATIC: 4 } as const;
export const RTN = { UNSPEC: 0, UNICAST: 1, LOCAL: 2 } as const;
export const RTNH_F = { ONLINK: 0x4 } as const;
/** nlmsgerr extended-ack attribute carrying a human-readable message. */
export const NLMSGERR_ATTR = { MSG: 1, OFFS: 2 } as const;
/** rtattr type bit marking a nested attribute (some kernels set it, we ignore it). */
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

/** Header sizes from the uapi structs. */
export const NLMSG_HDRLEN = 16;
export const IFINFOMSG_LEN = 16;
export const IFADDRMSG_LEN = 8;
export const RTMSG_LEN = 12;
export const NDMSG_LEN = 12;
export const RTA_HDRLEN = 4;

/** Round up to the 4-byte netlink alignment. */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** One decoded netlink message: header fields plus the payload after the 16-byte header. */
export interface NlMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
  readonly payload: Buffer;
}

/** Encode a message: struct nlmsghdr {u32 len; u16 type; u16 flags; u32 seq; u32 pid} + payload. */
export function encodeMessage(type: number, flags: number, seq: number, pid: number, payload: Buffer): Buffer {
  const len = NLMSG_HDRLEN + payload.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt32LE(len, 0);
  out.writeUInt16LE(type, 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(seq >>> 0, 8);
  out.writeUInt32LE(pid >>> 0, 12);
  payload.copy(out, NLMSG_HDRLEN);
  return out;
}

/** Split a datagram into messages; throws on a truncated or malformed header. */
export function decodeMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new Error(`decode netlink message: length ${len} at offset ${off} exceeds datagram of ${buf.length}`);
    }
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** An attribute to encode: raw bytes or a nested list. */
export type AttrInput = { readonly type: number; readonly value: Buffer | readonly AttrInput[] };

/** Encode rtattrs: struct rtattr {u16 len; u16 type} + data, each padded to 4 bytes. */
export function encodeAttrs(attrs: readonly AttrInput[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const data = Buffer.isBuffer(a.value) ? a.value : encodeAttrs(a.value);
    const len = RTA_HDRLEN + data.length;
    if (len > 0xffff) throw new Error(`encode attribute ${a.type}: ${len} bytes exceeds 65535`);
    const b = Buffer.alloc(align4(len));
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(a.type, 2);
    data.copy(b, RTA_HDRLEN);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** One decoded attribute; `type` has the NESTED/BYTEORDER bits masked off. */
export interface Attr {
  readonly type: number;
  readonly value: Buffer;
}

/** Decode a run of rtattrs. Trailing bytes shorter than a header are ignored, as the kernel does. */
export function decodeAttrs(buf: Buffer): Attr[] {
  const out: Attr[] = [];
  let off = 0;
  while (off + RTA_HDRLEN <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < RTA_HDRLEN || off + len > buf.length) {
      throw new Error(`decode attribute: length ${len} at offset ${off} exceeds ${buf.length}`);
    }
    out.push({ type: buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, value: buf.subarray(off + RTA_HDRLEN, off + len) });
    off += align4(len);
  }
  return out;
}

/** First attribute of a type, or undefined. */
export function findAttr(attrs: readonly Attr[], type: number): Buffer | undefined {
  return attrs.find((a) => a.type === type)?.value;
}

/** Attribute helpers. */
export function u32Attr(type: number, v: number): AttrInput {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return { type, value: b };
}
export function u8Attr(type: number, v: number): AttrInput {
  return { type, value: Buffer.from([v & 0xff]) };
}
export function strAttr(type: number, s: string): AttrInput {
  return { type, value: cString(s) };
}

/** NUL-terminated UTF-8 bytes. */
export function cString(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, "utf8"), Buffer.from([0])]);
}
/** Read a string up to the first NUL (or the whole buffer). */
export function readCString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString("utf8");
}

/** struct ifinfomsg {u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change}. */
export interface IfInfoMsg {
  readonly family: number;
  readonly type: number;
  readonly index: number;
  readonly flags: number;
  readonly change: number;
}
export function encodeIfInfoMsg(m: IfInfoMsg): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(m.family, 0);
  b.writeUInt16LE(m.type, 2);
  b.writeInt32LE(m.index, 4);
  b.writeUInt32LE(m.flags >>> 0, 8);
  b.writeUInt32LE(m.change >>> 0, 12);
  return b;
}
export function decodeIfInfoMsg(b: Buffer): IfInfoMsg {
  need(b, IFINFOMSG_LEN, "ifinfomsg");
  return { family: b.readUInt8(0), type: b.readUInt16LE(2), index: b.readInt32LE(4), flags: b.readUInt32LE(8), change: b.readUInt32LE(12) };
}

/** struct ifaddrmsg {u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index}. */
export interface IfAddrMsg {
  readonly family: number;
  readonly prefixLen: number;
  readonly flags: number;
  readonly scope: number;
  readonly index: number;
}
export function encodeIfAddrMsg(m: IfAddrMsg): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b.writeUInt8(m.family, 0);
  b.writeUInt8(m.prefixLen, 1);
  b.writeUInt8(m.flags & 0xff, 2);
  b.writeUInt8(m.scope, 3);
  b.writeUInt32LE(m.index >>> 0, 4);
  return b;
}
export function decodeIfAddrMsg(b: Buffer): IfAddrMsg {
  need(b, IFADDRMSG_LEN, "ifaddrmsg");
  return { family: b.readUInt8(0), prefixLen: b.readUInt8(1), flags: b.readUInt8(2), scope: b.readUInt8(3), index: b.readUInt32LE(4) };
}

/** struct rtmsg {u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags}. */
export interface RtMsg {
  readonly family: number;
  readonly dstLen: number;
  readonly srcLen: number;
  readonly tos: number;
  readonly table: number;
  readonly protocol: number;
  readonly scope: number;
  readonly type: number;
  readonly flags: number;
}
export function encodeRtMsg(m: RtMsg): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  [m.family, m.dstLen, m.srcLen, m.tos, m.table, m.protocol, m.scope, m.type].forEach((v, i) => b.writeUInt8(v, i));
  b.writeUInt32LE(m.flags >>> 0, 8);
  return b;
}
export function decodeRtMsg(b: Buffer): RtMsg {
  need(b, RTMSG_LEN, "rtmsg");
  return {
    family: b.readUInt8(0), dstLen: b.readUInt8(1), srcLen: b.readUInt8(2), tos: b.readUInt8(3),
    table: b.readUInt8(4), protocol: b.readUInt8(5), scope: b.readUInt8(6), type: b.readUInt8(7), flags: b.readUInt32LE(8),
  };
}

/** struct ndmsg {u8 family; u8 pad1; u16 pad2; i32 ifindex; u16 state; u8 flags; u8 type}. */
export interface NdMsg {
  readonly family: number;
  readonly ifindex: number;
  readonly state: number;
  readonly flags: number;
  readonly type: number;
}
export function encodeNdMsg(m: NdMsg): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b.writeUInt8(m.family, 0);
  b.writeInt32LE(m.ifindex, 4);
  b.writeUInt16LE(m.state, 8);
  b.writeUInt8(m.flags, 10);
  b.writeUInt8(m.type, 11);
  return b;
}
export function decodeNdMsg(b: Buffer): NdMsg {
  need(b, NDMSG_LEN, "ndmsg");
  return { family: b.readUInt8(0), ifindex: b.readInt32LE(4), state: b.readUInt16LE(8), flags: b.readUInt8(10), type: b.readUInt8(11) };
}

/** struct nlmsgerr {i32 error; struct nlmsghdr msg; ...}: the errno (positive) and the ext-ack text if any. */
export interface NlError {
  /** Positive errno, 0 for an ACK. */
  readonly errno: number;
  /** Kernel extended-ack message (NLMSGERR_ATTR_MSG), if it sent one. */
  readonly extAck: string | null;
}
export function decodeNlError(msg: NlMessage): NlError {
  need(msg.payload, 4, "nlmsgerr");
  const errno = -msg.payload.readInt32LE(0) || 0; // "|| 0" turns -0 into 0
  let extAck: string | null = null;
  if (msg.flags & NLM_F.ACK_TLVS && msg.payload.length >= 4 + NLMSG_HDRLEN) {
    // With NETLINK_CAP_ACK only the request's header is echoed; otherwise its whole body.
    const echoed = msg.flags & NLM_F.CAPPED ? NLMSG_HDRLEN : msg.payload.readUInt32LE(4);
    const tlvs = msg.payload.subarray(4 + align4(echoed));
    const m = findAttr(decodeAttrs(tlvs), NLMSGERR_ATTR.MSG);
    if (m) extAck = readCString(m);
  }
  return { errno, extAck };
}

/** Address family of an IP literal, or throws. */
export function ipFamily(ip: string): 4 | 6 {
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  throw new Error(`"${ip}" is not an IP address`);
}

/** IP literal to its 4 or 16 network-order bytes. */
export function ipToBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split(".").map(Number));
  if (!isIPv6(ip)) throw new Error(`"${ip}" is not an IP address`);
  let t = ip.replace(/%.*$/, "");
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (v4?.[1]) {
    const b = ipToBytes(v4[1]);
    t = t.slice(0, -v4[1].length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head = "", tail] = t.split("::");
  const h = head ? head.split(":") : [];
  const tl = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - tl.length).fill("0"), ...tl];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** 4 or 16 network-order bytes to canonical text (RFC 5952 for v6). */
export function bytesToIp(b: Buffer): string {
  return formatIpBytes(b);
}

/** "aa:bb:cc:dd:ee:ff" to 6 bytes. */
export function macToBytes(mac: string): Buffer {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw new Error(`"${mac}" is not a MAC address`);
  return Buffer.from(mac.split(":").map((h) => parseInt(h, 16)));
}
/** Bytes to lowercase colon-separated hex. */
export function bytesToMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** "10.0.0.0/24", "fd00::1/128", or a bare address (full-length prefix). */
export function parsePrefix(text: string): { address: string; prefixLen: number; family: 4 | 6 } {
  const [addr = "", len] = text.split("/");
  const family = ipFamily(addr);
  const max = family === 4 ? 32 : 128;
  const prefixLen = len === undefined ? max : Number(len);
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > max || (len !== undefined && !/^\d+$/.test(len))) {
    throw new Error(`"${text}" has an invalid prefix length (0-${max})`);
  }
  return { address: addr, prefixLen, family };
}

function need(b: Buffer, n: number, what: string): void {
  if (b.length < n) throw new Error(`decode ${what}: ${b.length} bytes, need ${n}`);
}
