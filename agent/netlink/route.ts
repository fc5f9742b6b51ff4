// SPDX-License-Identifier: Apache-2.0
// Routes over rtnetlink (IPv4 and IPv6, main table by default).
//
// Twill needs three shapes (docs/architecture.md "Pod wiring"):
//   pod:  169.254.1.1 dev eth0 scope link; default via 169.254.1.1 dev eth0
//         (or onlink); default via fe80::1 dev eth0
//   host: <podIP>/32 dev twXXX and <podIP6>/128 dev twXXX (scope link)
//
// API: addRoute, replaceRoute, deleteRoute, listRoutes; types RouteSpec, RouteInfo.
import {
  AF, bytesToIp, decodeAttrs, decodeRtMsg, encodeAttrs, encodeRtMsg, findAttr, ipFamily, ipToBytes, NLM_F,
  parsePrefix, RT_SCOPE, RT_TABLE, RTA, RTM, RTMSG_LEN, RTN, RTNH_F, RTPROT, u32Attr, type AttrInput, type NlMessage,
} from "./codec.js";
import { isNotFound, NetlinkArgumentError } from "./errors.js";
import type { NetlinkSocket } from "./socket.js";

/** A route to add, replace or delete. */
export interface RouteSpec {
  /** "10.244.0.5/32", "fd00::/64", a bare address (host route), or "default" (needs `family` or `gateway`). */
  readonly dst: string;
  /** Output interface index. */
  readonly ifindex?: number | null;
  /** Next hop; omitted for a directly connected (dev) route. */
  readonly gateway?: string | null;
  /** Treat the gateway as on-link even without a covering connected route (RTNH_F_ONLINK). */
  readonly onlink?: boolean;
  /** Defaults: "link" for a route without gateway, else "universe". */
  readonly scope?: "universe" | "link" | "host";
  /** Family for dst "default" without gateway. */
  readonly family?: 4 | 6;
  /** Preferred source address (RTA_PREFSRC). */
  readonly src?: string | null;
  /** Route metric (RTA_PRIORITY). */
  readonly metric?: number | null;
  /** Routing table id (default main, 254). */
  readonly table?: number;
}

/** A route as listed by the kernel. */
export interface RouteInfo {
  readonly family: 4 | 6;
  /** "10.244.0.5/32" or "default". */
  readonly dst: string;
  readonly gateway: string | null;
  readonly ifindex: number | null;
  readonly scope: number;
  readonly table: number;
  readonly protocol: number;
  readonly type: number;
  readonly flags: number;
  readonly metric: number | null;
  readonly src: string | null;
}

/** Add a route; EEXIST if the same route exists. */
export function addRoute(nl: NetlinkSocket, r: RouteSpec): void {
  nl.request(`add route ${describe(r)}`, RTM.NEWROUTE, NLM_F.CREATE | NLM_F.EXCL, encodeRoute(r));
}

/** Add or replace a route (idempotent). */
export function replaceRoute(nl: NetlinkSocket, r: RouteSpec): void {
  nl.request(`replace route ${describe(r)}`, RTM.NEWROUTE, NLM_F.CREATE | NLM_F.REPLACE, encodeRoute(r));
}

/** Delete a route; false if no such route existed. */
export function deleteRoute(nl: NetlinkSocket, r: RouteSpec): boolean {
  try {
    nl.request(`delete route ${describe(r)}`, RTM.DELROUTE, 0, encodeRoute(r, true));
    return true;
  } catch (e: unknown) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Routes of a family in one table (default main). */
export function listRoutes(nl: NetlinkSocket, family: 4 | 6, filter: { table?: number; ifindex?: number } = {}): RouteInfo[] {
  const table = filter.table ?? RT_TABLE.MAIN;
  const req = encodeRtMsg({
    family: family === 4 ? AF.INET : AF.INET6, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0,
  });
  return nl.dump(`list ipv${family} routes`, RTM.GETROUTE, req)
    .filter((m) => m.type === RTM.NEWROUTE)
    .map(decodeRoute)
    .filter((r) => r.table === table && (filter.ifindex === undefined || r.ifindex === filter.ifindex));
}

/** Decode an RTM_NEWROUTE message. */
export function decodeRoute(m: NlMessage): RouteInfo {
  const h = decodeRtMsg(m.payload);
  const attrs = decodeAttrs(m.payload.subarray(RTMSG_LEN));
  const dst = findAttr(attrs, RTA.DST);
  const gw = findAttr(attrs, RTA.GATEWAY);
  const oif = findAttr(attrs, RTA.OIF);
  const table = findAttr(attrs, RTA.TABLE);
  const prio = findAttr(attrs, RTA.PRIORITY);
  const src = findAttr(attrs, RTA.PREFSRC);
  return {
    family: h.family === AF.INET6 ? 6 : 4,
    dst: dst ? `${bytesToIp(dst)}/${h.dstLen}` : h.dstLen === 0 ? "default" : `?/${h.dstLen}`,
    gateway: gw ? bytesToIp(gw) : null,
    ifindex: oif ? oif.readUInt32LE(0) : null,
    scope: h.scope,
    table: table ? table.readUInt32LE(0) : h.table,
    protocol: h.protocol,
    type: h.type,
    flags: h.flags,
    metric: prio ? prio.readUInt32LE(0) : null,
    src: src ? bytesToIp(src) : null,
  };
}

/** Encode the rtmsg + attributes for a route request (exported for unit tests). */
export function encodeRoute(r: RouteSpec, forDelete = false): Buffer {
  const op = `route ${describe(r)}`;
  let family: 4 | 6;
  let dst: { address: string; prefixLen: number } | null;
  try {
    if (r.dst === "default") {
      family = r.family ?? (r.gateway ? ipFamily(r.gateway) : 4);
      dst = null;
    } else {
      const p = parsePrefix(r.dst);
      family = p.family;
      dst = p;
    }
    if (r.gateway && ipFamily(r.gateway) !== family) throw new Error(`gateway ${r.gateway} is not IPv${family}`);
  } catch (e: unknown) {
    throw new NetlinkArgumentError(`${op}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!r.gateway && r.ifindex == null) throw new NetlinkArgumentError(`${op}: needs a gateway or an interface`);
  const scopeName = r.scope ?? (r.gateway ? "universe" : "link");
  const scope = scopeName === "link" ? RT_SCOPE.LINK : scopeName === "host" ? RT_SCOPE.HOST : RT_SCOPE.UNIVERSE;
  const table = r.table ?? RT_TABLE.MAIN;
  const hdr = encodeRtMsg({
    family: family === 4 ? AF.INET : AF.INET6,
    dstLen: dst?.prefixLen ?? 0,
    srcLen: 0,
    tos: 0,
    table: table < 256 ? table : RT_TABLE.UNSPEC,
    // Deletes match any protocol/scope when they are 0/NOWHERE; iproute2 does the same.
    protocol: forDelete ? RTPROT.UNSPEC : RTPROT.BOOT,
    scope: forDelete ? RT_SCOPE.NOWHERE : scope,
    type: RTN.UNICAST,
    flags: r.onlink ? RTNH_F.ONLINK : 0,
  });
  const attrs: AttrInput[] = [];
  if (dst) attrs.push({ type: RTA.DST, value: ipToBytes(dst.address) });
  if (r.gateway) attrs.push({ type: RTA.GATEWAY, value: ipToBytes(r.gateway) });
  if (r.ifindex != null) attrs.push(u32Attr(RTA.OIF, r.ifindex));
  if (r.src) attrs.push({ type: RTA.PREFSRC, value: ipToBytes(r.src) });
  if (r.metric != null) attrs.push(u32Attr(RTA.PRIORITY, r.metric));
  if (table >= 256) attrs.push(u32Attr(RTA.TABLE, table));
  return Buffer.concat([hdr, encodeAttrs(attrs)]);
}

function describe(r: RouteSpec): string {
  return [r.dst, r.gateway ? `via ${r.gateway}` : "", r.ifindex != null ? `dev ${r.ifindex}` : "", r.onlink ? "onlink" : ""]
    .filter(Boolean).join(" ");
}
