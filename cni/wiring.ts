// SPDX-License-Identifier: Apache-2.0
// Pod wiring (docs/architecture.md "Pod wiring") on top of agent/netlink:
// a veth pair whose peer is created directly in the pod netns, the pod's
// addresses, gateway neighbours and routes, the host's /32 and /128 routes and
// sysctls. Everything here is synchronous: netlink sockets are opened inside
// the pod netns (NetlinkSocket.open({netns})) and used from the host, and
// sysctls of the pod are written inside withNetns, so no await ever runs while
// switched.
//
// API: POD_GATEWAY4, POD_GATEWAY6, createVeth, configurePod, configureHost,
// removeVeth, inspectWiring; types VethPair, PodAddresses, WiringState.
import {
  NetlinkSocket, createVethPair, deleteLink, findLink, getLink, listAddresses, listNeighbors, listRoutes,
  replaceAddress, replaceRoute, setLinkUp, setNeighbor, writeSysctl, NetnsError, SysctlError, type LinkInfo,
} from "../agent/netlink/index.js";

// NUD_PERMANENT (linux/neighbour.h).
const NUD_PERMANENT = 0x80;

/** The pod's IPv4 gateway: a link-local address that exists nowhere. */
export const POD_GATEWAY4 = "169.254.1.1";
/** The pod's IPv6 gateway. */
export const POD_GATEWAY6 = "fe80::1";

/** Both ends of a pod's veth as the kernel created them. */
export interface VethPair {
  readonly hostIfname: string;
  readonly hostIfindex: number;
  readonly hostMac: string;
  readonly podIfname: string;
  readonly podIfindex: number;
  readonly podMac: string;
  readonly netns: string;
  readonly mtu: number;
  /** A host end of the same name existed (an earlier ADD died half-way) and was replaced. */
  readonly replacedStale: boolean;
}

/** The pod's addresses without prefix ("10.244.0.5"); null = family absent. */
export interface PodAddresses {
  readonly ipv4: string | null;
  readonly ipv6: string | null;
}

function mustMac(l: LinkInfo, where: string): string {
  if (l.mac === null) throw new Error(`read mac of ${l.name} (${where}): link has no hardware address`);
  return l.mac;
}

/** Write an IPv6 sysctl; a kernel without IPv6 has no such key, which is fine. */
function writeIpv6Sysctl(key: string, value: number, netns: string | null): void {
  try {
    writeSysctl(key, value, { netns });
  } catch (e: unknown) {
    if (e instanceof SysctlError && /ENOENT/.test(e.message)) return;
    throw e;
  }
}

/**
 * Create the veth pair `hostIfname` <-> `podIfname` (peer inside `netns`),
 * both with `mtu` and up. A leftover host end of the same name (an ADD that
 * died half-way) is removed first: the name is derived from the container ID,
 * so it can only belong to this container.
 */
export function createVeth(hostIfname: string, podIfname: string, netns: string, mtu: number): VethPair {
  return NetlinkSocket.with(null, (host) => {
    const replacedStale = findLink(host, hostIfname) !== null;
    if (replacedStale) deleteLink(host, hostIfname);
    createVethPair(host, { name: hostIfname, peerName: podIfname, peerNetns: { path: netns }, mtu });
    try {
      // Both link-local addresses would otherwise be "tentative" for ~1-2 s
      // after up (DAD), and the host could not reach a new pod over IPv6 yet.
      // Set before up, since DAD starts when the link comes up.
      writeIpv6Sysctl(`net/ipv6/conf/${hostIfname}/accept_dad`, 0, null);
      writeIpv6Sysctl(`net/ipv6/conf/${podIfname}/accept_dad`, 0, netns);
      return NetlinkSocket.with(netns, (pod) => {
        setLinkUp(pod, podIfname);
        setLinkUp(host, hostIfname);
        const h = getLink(host, hostIfname);
        const p = getLink(pod, podIfname);
        return {
          hostIfname, hostIfindex: h.index, hostMac: mustMac(h, "host"),
          podIfname, podIfindex: p.index, podMac: mustMac(p, "pod"), netns, mtu, replacedStale,
        };
      });
    } catch (e: unknown) {
      deleteLink(host, hostIfname);
      throw e;
    }
  });
}

/**
 * Inside the pod: addresses (/32, /128 without DAD), permanent neighbours for
 * the gateways -> host veth MAC, and the routes
 * `169.254.1.1 dev <if> scope link`, `default via 169.254.1.1`,
 * `default via fe80::1 dev <if>`.
 */
export function configurePod(pair: VethPair, addrs: PodAddresses): void {
  if (addrs.ipv6 !== null) {
    // A runtime may create the netns with IPv6 disabled on new links.
    writeSysctl(`net/ipv6/conf/${pair.podIfname}/disable_ipv6`, 0, { netns: pair.netns });
  }
  NetlinkSocket.with(pair.netns, (pod) => {
    const idx = pair.podIfindex;
    if (addrs.ipv4 !== null) {
      replaceAddress(pod, idx, `${addrs.ipv4}/32`);
      setNeighbor(pod, idx, POD_GATEWAY4, pair.hostMac);
      replaceRoute(pod, { dst: `${POD_GATEWAY4}/32`, ifindex: idx, scope: "link" });
      replaceRoute(pod, { dst: "default", family: 4, gateway: POD_GATEWAY4, ifindex: idx });
    }
    if (addrs.ipv6 !== null) {
      replaceAddress(pod, idx, `${addrs.ipv6}/128`, { noDad: true });
      setNeighbor(pod, idx, POD_GATEWAY6, pair.hostMac);
      replaceRoute(pod, { dst: "default", family: 6, gateway: POD_GATEWAY6, ifindex: idx });
    }
  });
}

/** Host side: /32 and /128 routes to the pod, forwarding on, rp_filter off. */
export function configureHost(pair: VethPair, addrs: PodAddresses): void {
  const ifn = pair.hostIfname;
  writeSysctl("net/ipv4/ip_forward", 1);
  writeSysctl(`net/ipv4/conf/${ifn}/forwarding`, 1);
  writeSysctl(`net/ipv4/conf/${ifn}/rp_filter`, 0);
  if (addrs.ipv6 !== null) {
    writeSysctl(`net/ipv6/conf/${ifn}/disable_ipv6`, 0);
    writeSysctl("net/ipv6/conf/all/forwarding", 1);
    writeSysctl(`net/ipv6/conf/${ifn}/forwarding`, 1);
  }
  NetlinkSocket.with(null, (host) => {
    if (addrs.ipv4 !== null) replaceRoute(host, { dst: `${addrs.ipv4}/32`, ifindex: pair.hostIfindex, scope: "link" });
    if (addrs.ipv6 !== null) replaceRoute(host, { dst: `${addrs.ipv6}/128`, ifindex: pair.hostIfindex });
  });
}

/**
 * Remove the pod's veth by its host end (the kernel removes the peer and every
 * route through it). Idempotent: false when it was already gone.
 */
export function removeVeth(hostIfname: string): boolean {
  return NetlinkSocket.with(null, (host) => deleteLink(host, hostIfname));
}

/** What CHECK compares with the previous result. */
export interface WiringState {
  readonly host: LinkInfo | null;
  readonly pod: LinkInfo | null;
  /** "10.244.0.5/32" style addresses on the pod interface. */
  readonly podAddresses: string[];
  /** Gateways of the pod's default routes through the pod interface. */
  readonly podDefaultGateways: string[];
  /** IPs with a permanent neighbour entry on the pod interface, with their MAC. */
  readonly podNeighbors: { ip: string; mac: string | null }[];
  /** Host routes (dst) through the host veth. */
  readonly hostRoutes: string[];
}

/** Read the current wiring of a pod (for CHECK); missing pieces are null/empty. */
export function inspectWiring(hostIfname: string, podIfname: string, netns: string): WiringState {
  return NetlinkSocket.with(null, (host) => {
    const h = findLink(host, hostIfname);
    const hostRoutes = h === null ? [] : [4, 6].flatMap((f) =>
      listRoutes(host, f as 4 | 6, { ifindex: h.index }).map((r) => r.dst));
    type PodSide = Pick<WiringState, "pod" | "podAddresses" | "podDefaultGateways" | "podNeighbors">;
    const none: PodSide = { pod: null, podAddresses: [], podDefaultGateways: [], podNeighbors: [] };
    let side: PodSide = none;
    try {
      side = NetlinkSocket.with(netns, (p): PodSide => {
        const pod = findLink(p, podIfname);
        if (pod === null) return none;
        const idx = pod.index;
        return {
          pod,
          podAddresses: listAddresses(p, { ifindex: idx }).map((a) => `${a.address}/${a.prefixLen}`),
          podDefaultGateways: [4, 6].flatMap((f) => listRoutes(p, f as 4 | 6, { ifindex: idx }))
            .filter((r) => r.dst === "default" && r.gateway !== null).map((r) => r.gateway as string),
          podNeighbors: listNeighbors(p, { ifindex: idx }).filter((n) => (n.state & NUD_PERMANENT) !== 0)
            .map((n) => ({ ip: n.ip, mac: n.mac })),
        };
      });
    } catch (e: unknown) {
      // A vanished netns reads as "no pod interface"; CHECK reports it.
      if (!(e instanceof NetnsError)) throw e;
    }
    return { host: h, ...side, hostRoutes };
  });
}
