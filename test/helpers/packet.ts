// SPDX-License-Identifier: Apache-2.0
// Packet builder and parser for datapath tests: Ethernet + IPv4/IPv6 +
// TCP/UDP/ICMP/ICMPv6 (correct IP and L4 checksums) and Ethernet ARP, plus a
// parser that decodes what a program wrote back so tests can assert MACs,
// TTL/hop limit and checksum validity.
//
// API: buildPacket(spec), buildArp(spec), parsePacket(bytes), TcpFlags,
// macBytes/ipBytes/formatMac/formatIp, onesComplementSum.
// The address family follows the address text: "a:b::c" is IPv6.

/** TCP header flag bits (byte 13 of the header). */
export const TcpFlags = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

/** IP protocol numbers used here. */
export const IpProto = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58 } as const;

/** The transport part of a packet. */
export type L4Spec =
  | { readonly proto: "tcp"; readonly sport: number; readonly dport: number; readonly flags?: number; readonly seq?: number; readonly ack?: number }
  | { readonly proto: "udp"; readonly sport: number; readonly dport: number }
  | { readonly proto: "icmp" | "icmpv6"; readonly type: number; readonly code?: number; readonly id?: number; readonly seq?: number };

/** A whole Ethernet/IP frame. */
export interface PacketSpec {
  readonly srcMac: string;
  readonly dstMac: string;
  readonly src: string;
  readonly dst: string;
  /** TTL (IPv4) or hop limit (IPv6); default 64. */
  readonly ttl?: number;
  readonly l4: L4Spec;
  readonly payload?: Uint8Array;
  /** IPv4 fragment offset in bytes (multiple of 8) and the MF bit. */
  readonly fragment?: { readonly offsetBytes: number; readonly more: boolean };
}

/** An Ethernet/IPv4 ARP frame. */
export interface ArpSpec {
  readonly srcMac: string;
  readonly dstMac?: string;
  readonly senderMac: string;
  readonly senderIp: string;
  readonly targetIp: string;
  /** 1 request (default), 2 reply. */
  readonly op?: number;
}

/** "aa:bb:cc:dd:ee:ff" -> 6 bytes. */
export function macBytes(mac: string): Uint8Array {
  const parts = mac.split(":").map((p) => parseInt(p, 16));
  if (parts.length !== 6 || parts.some((p) => Number.isNaN(p) || p < 0 || p > 255)) {
    throw new Error(`parse mac: bad address ${mac}`);
  }
  return Uint8Array.from(parts);
}

/** 6 bytes -> "aa:bb:cc:dd:ee:ff". */
export function formatMac(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, "0")).join(":");
}

function ipv6Bytes(ip: string): Uint8Array {
  const out = new Uint8Array(16);
  const [head = "", tail] = ip.split("::");
  const groups = (s: string): number[] => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  if (tail === undefined && h.length !== 8) throw new Error(`parse ip: bad address ${ip}`);
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** Dotted IPv4 -> 4 bytes, IPv6 text -> 16 bytes. */
export function ipBytes(ip: string): Uint8Array {
  if (ip.includes(":")) return ipv6Bytes(ip);
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`parse ip: bad address ${ip}`);
  }
  return Uint8Array.from(parts);
}

/** 4 or 16 bytes -> text (IPv6 uncompressed groups, lowercase, no zero padding). */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push((((b[i] ?? 0) << 8) | (b[i + 1] ?? 0)).toString(16));
  return g.join(":");
}

/** Ones' complement sum of bytes (big-endian 16-bit words), folded, not inverted. */
export function onesComplementSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i < bytes.length; i += 2) sum += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function checksum(bytes: Uint8Array, initial = 0): number {
  return ~onesComplementSum(bytes, initial) & 0xffff;
}

function pseudoHeader(src: Uint8Array, dst: Uint8Array, proto: number, len: number): Uint8Array {
  if (src.length === 4) {
    const p = new Uint8Array(12);
    p.set(src, 0);
    p.set(dst, 4);
    p[9] = proto;
    new DataView(p.buffer).setUint16(10, len);
    return p;
  }
  const p = new Uint8Array(40);
  p.set(src, 0);
  p.set(dst, 16);
  new DataView(p.buffer).setUint32(32, len);
  p[39] = proto;
  return p;
}

function l4Bytes(l4: L4Spec, payload: Uint8Array): { proto: number; bytes: Uint8Array; csumOffset: number } {
  switch (l4.proto) {
    case "tcp": {
      const b = new Uint8Array(20 + payload.length);
      const v = new DataView(b.buffer);
      v.setUint16(0, l4.sport);
      v.setUint16(2, l4.dport);
      v.setUint32(4, l4.seq ?? 1000);
      v.setUint32(8, l4.ack ?? 0);
      b[12] = 5 << 4;
      b[13] = l4.flags ?? TcpFlags.ACK;
      v.setUint16(14, 65535);
      b.set(payload, 20);
      return { proto: IpProto.TCP, bytes: b, csumOffset: 16 };
    }
    case "udp": {
      const b = new Uint8Array(8 + payload.length);
      const v = new DataView(b.buffer);
      v.setUint16(0, l4.sport);
      v.setUint16(2, l4.dport);
      v.setUint16(4, b.length);
      b.set(payload, 8);
      return { proto: IpProto.UDP, bytes: b, csumOffset: 6 };
    }
    case "icmp":
    case "icmpv6": {
      const b = new Uint8Array(8 + payload.length);
      const v = new DataView(b.buffer);
      b[0] = l4.type;
      b[1] = l4.code ?? 0;
      v.setUint16(4, l4.id ?? 0);
      v.setUint16(6, l4.seq ?? 0);
      b.set(payload, 8);
      return { proto: l4.proto === "icmp" ? IpProto.ICMP : IpProto.ICMPV6, bytes: b, csumOffset: 2 };
    }
  }
}

/** Build an Ethernet frame with IPv4 or IPv6 and a transport header, all checksums correct. */
export function buildPacket(spec: PacketSpec): Uint8Array {
  const src = ipBytes(spec.src);
  const dst = ipBytes(spec.dst);
  const v6 = src.length === 16;
  if (dst.length !== src.length) throw new Error(`build packet: mixed families ${spec.src} ${spec.dst}`);
  const l4 = l4Bytes(spec.l4, spec.payload ?? new Uint8Array(0));
  // ICMPv4 has no pseudo header; UDP, TCP and ICMPv6 do.
  const pseudo = l4.proto === IpProto.ICMP ? 0 : onesComplementSum(pseudoHeader(src, dst, l4.proto, l4.bytes.length));
  let csum = checksum(l4.bytes, pseudo);
  if (l4.proto === IpProto.UDP && csum === 0) csum = 0xffff;
  new DataView(l4.bytes.buffer).setUint16(l4.csumOffset, csum);

  const ipLen = v6 ? 40 : 20;
  const frame = new Uint8Array(14 + ipLen + l4.bytes.length);
  const v = new DataView(frame.buffer);
  frame.set(macBytes(spec.dstMac), 0);
  frame.set(macBytes(spec.srcMac), 6);
  v.setUint16(12, v6 ? 0x86dd : 0x0800);
  if (v6) {
    v.setUint32(14, 6 << 28);
    v.setUint16(18, l4.bytes.length);
    frame[20] = l4.proto;
    frame[21] = spec.ttl ?? 64;
    frame.set(src, 22);
    frame.set(dst, 38);
  } else {
    frame[14] = 0x45;
    v.setUint16(16, ipLen + l4.bytes.length);
    v.setUint16(18, 0x1234);
    const frag = spec.fragment;
    v.setUint16(20, frag ? (frag.more ? 0x2000 : 0) | (frag.offsetBytes / 8) : 0x4000);
    frame[22] = spec.ttl ?? 64;
    frame[23] = l4.proto;
    frame.set(src, 26);
    frame.set(dst, 30);
    v.setUint16(24, checksum(frame.subarray(14, 34)));
  }
  frame.set(l4.bytes, 14 + ipLen);
  return frame;
}

/** Build an Ethernet/IPv4 ARP frame (broadcast unless dstMac is given). */
export function buildArp(spec: ArpSpec): Uint8Array {
  const frame = new Uint8Array(42);
  const v = new DataView(frame.buffer);
  frame.set(macBytes(spec.dstMac ?? "ff:ff:ff:ff:ff:ff"), 0);
  frame.set(macBytes(spec.srcMac), 6);
  v.setUint16(12, 0x0806);
  v.setUint16(14, 1);
  v.setUint16(16, 0x0800);
  frame[18] = 6;
  frame[19] = 4;
  v.setUint16(20, spec.op ?? 1);
  frame.set(macBytes(spec.senderMac), 22);
  frame.set(ipBytes(spec.senderIp), 28);
  frame.set(ipBytes(spec.targetIp), 38);
  return frame;
}

/** What parsePacket decodes. */
export interface ParsedPacket {
  readonly dstMac: string;
  readonly srcMac: string;
  readonly ethType: number;
  readonly src: string;
  readonly dst: string;
  /** TTL or hop limit. */
  readonly ttl: number;
  readonly protocol: number;
  /** IPv4 header checksum verifies (always true for IPv6, which has none). */
  readonly ipChecksumOk: boolean;
  /** Transport checksum verifies over the pseudo header. */
  readonly l4ChecksumOk: boolean;
  readonly sport: number;
  readonly dport: number;
}

/** Decode an Ethernet + IPv4/IPv6 frame written by buildPacket (no IPv6 extension headers). */
export function parsePacket(frame: Uint8Array): ParsedPacket {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const ethType = v.getUint16(12);
  const v6 = ethType === 0x86dd;
  if (!v6 && ethType !== 0x0800) throw new Error(`parse packet: not IP (ethertype 0x${ethType.toString(16)})`);
  const ipLen = v6 ? 40 : (frame[14]! & 0x0f) * 4;
  const src = v6 ? frame.subarray(22, 38) : frame.subarray(26, 30);
  const dst = v6 ? frame.subarray(38, 54) : frame.subarray(30, 34);
  const protocol = v6 ? frame[20]! : frame[23]!;
  const l4 = frame.subarray(14 + ipLen, v6 ? 54 + v.getUint16(18) : 14 + v.getUint16(16));
  const pseudo = protocol === IpProto.ICMP ? 0 : onesComplementSum(pseudoHeader(src, dst, protocol, l4.length));
  const hasPorts = protocol === IpProto.TCP || protocol === IpProto.UDP;
  return {
    dstMac: formatMac(frame.subarray(0, 6)),
    srcMac: formatMac(frame.subarray(6, 12)),
    ethType,
    src: formatIp(src),
    dst: formatIp(dst),
    ttl: v6 ? frame[21]! : frame[22]!,
    protocol,
    ipChecksumOk: v6 ? true : onesComplementSum(frame.subarray(14, 14 + ipLen)) === 0xffff,
    l4ChecksumOk: onesComplementSum(l4, pseudo) === 0xffff,
    sport: hasPorts ? v.getUint16(14 + ipLen) : 0,
    dport: hasPorts ? v.getUint16(14 + ipLen + 2) : 0,
  };
}
