// SPDX-License-Identifier: Apache-2.0
// IP addresses and CIDRs as bigints: parse, format, contain, iterate.
// Used by IPAM and by everything that turns addresses into map keys.
import { isIPv4, isIPv6 } from "node:net";

/** A parsed CIDR; `base` has the host bits cleared. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly base: bigint;
  readonly prefixLen: number;
  /** Canonical text, e.g. "10.244.0.0/24". */
  readonly text: string;
}

/** Parse an IPv4 or IPv6 address into its family and value. */
export function parseIp(text: string): { family: 4 | 6; value: bigint } {
  if (isIPv4(text)) {
    const v = text.split(".").reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
    return { family: 4, value: v };
  }
  if (isIPv6(text)) {
    let t = text;
    // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
    if (v4?.[1]) {
      const n = parseIp(v4[1]).value;
      t = t.slice(0, -v4[1].length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
    }
    const [head = "", tail] = t.split("::");
    const h = head ? head.split(":") : [];
    const tl = tail !== undefined && tail !== "" ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - tl.length).fill("0"), ...tl];
    const v = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
    return { family: 6, value: v };
  }
  throw new Error(`"${text}" is not an IP address`);
}

/** Format an address value of the given family as text (RFC 5952 for v6). */
export function formatIp(family: 4 | 6, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join(".");
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // Longest run of zero groups (length >= 2) becomes "::".
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** Address width in bits. */
export function familyBits(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

/** Parse "addr/len"; host bits must be zero. */
export function parseCidr(text: string): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m?.[1] || m[2] === undefined) throw new Error(`"${text}" is not a CIDR (want addr/len)`);
  const { family, value } = parseIp(m[1]);
  const prefixLen = Number(m[2]);
  const bits = familyBits(family);
  if (prefixLen > bits) throw new Error(`"${text}": prefix length ${prefixLen} exceeds ${bits}`);
  const hostMask = (1n << BigInt(bits - prefixLen)) - 1n;
  if ((value & hostMask) !== 0n) throw new Error(`"${text}": host bits are set`);
  return { family, base: value, prefixLen, text: `${formatIp(family, value)}/${prefixLen}` };
}

/** Whether the address lies inside the CIDR. */
export function cidrContains(c: Cidr, family: 4 | 6, value: bigint): boolean {
  if (c.family !== family) return false;
  const shift = BigInt(familyBits(family) - c.prefixLen);
  return value >> shift === c.base >> shift;
}

/** Number of addresses in the CIDR. */
export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(familyBits(c.family) - c.prefixLen);
}

/** 4 or 16 network-order bytes of an address. */
export function ipBytes(family: 4 | 6, value: bigint): Uint8Array {
  const n = family === 4 ? 4 : 16;
  const out = new Uint8Array(n);
  for (let i = n - 1, v = value; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

/** Text of 4 or 16 network-order address bytes (RFC 5952 for v6). */
export function formatIpBytes(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new Error(`format address: ${bytes.length} bytes is neither IPv4 nor IPv6`);
  return formatIp(6, bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n));
}

const OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const CANONICAL_V4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/**
 * Network-order bytes of an IPv4 address already in canonical dotted-quad
 * form (no leading zeros), else null. The fast path for the 100k+ pod
 * addresses a full sync handles; anything else goes through parseIp.
 */
export function canonicalIpv4Bytes(text: string): Uint8Array | null {
  const m = CANONICAL_V4.exec(text);
  return m ? Uint8Array.of(Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])) : null;
}

/** Whether `text` is an IPv4 address in canonical dotted-quad form. */
export function isCanonicalIpv4(text: string): boolean {
  return CANONICAL_V4.test(text);
}
