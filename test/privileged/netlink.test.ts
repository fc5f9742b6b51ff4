// SPDX-License-Identifier: Apache-2.0
// agent/netlink against the real kernel, inside namespaces this test makes:
// veth with the peer created straight into a netns, addresses, routes,
// neighbours, MTU, sysctls in a netns, ping over IPv4 and IPv6, idempotent
// delete, and the errors a caller sees. `ip -j` is the independent witness.
import * as fs from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import {
  addAddress, addRoute, createVethPair, CURRENT_NETNS_PATH, deleteAddress, deleteLink, deleteRoute, findLink, getLink,
  listAddresses, listLinks, listNeighbors, listRoutes, NetlinkArgumentError, NetlinkError, NetlinkNotFoundError,
  NetlinkSocket, NetnsError, openNetns, readSysctl, renameLink, setLinkDown, setLinkMtu, setLinkUp, setNeighbor, withNetns,
  writeSysctl,
} from "../../agent/netlink/index.js";
import { Cleanup, createNetns, ip, ipJson, nsExec, randomName, type TestNetns } from "../helpers/netns.js";

interface IpLink { ifname: string; ifindex: number; mtu: number; address: string; flags: string[]; operstate: string; linkinfo?: { info_kind: string } }
interface IpAddr { ifname: string; addr_info: Array<{ family: string; local: string; prefixlen: number; nodad?: boolean; tentative?: boolean }> }
interface IpRoute { dst: string; gateway?: string; dev: string; scope?: string; flags: string[] }
interface IpNeigh { dst: string; dev: string; lladdr: string; state: string[] }

const cleanup = new Cleanup();
const sockets: NetlinkSocket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
  cleanup.run();
});

function open(netns: TestNetns | null = null): NetlinkSocket {
  const s = NetlinkSocket.open({ netns: netns?.path ?? null });
  sockets.push(s);
  return s;
}

/** Register removal of a link made through the API in the test process's netns. */
function ownLink(name: string): void {
  cleanup.add(`link ${name}`, () => NetlinkSocket.with(null, (nl) => { deleteLink(nl, name); }));
}

function nsInode(path: string): number {
  return fs.statSync(path).ino;
}

/**
 * Wire a pod netns to a node netns the way the CNI plugin will: veth created from
 * the node side with its peer straight in the pod, /32 + /128 addresses, gateway
 * routes via 169.254.1.1 / fe80::1 answered by permanent neighbours, and host routes.
 */
function wirePod(node: TestNetns, pod: TestNetns) {
  const hostIf = randomName("twt", 8);
  const nodeNl = open(node);
  const podNl = open(pod);
  createVethPair(nodeNl, { name: hostIf, peerName: "eth0", peerNetns: { path: pod.path }, mtu: 1450, peerMac: "02:00:0a:f4:00:05" });
  const host = getLink(nodeNl, hostIf);
  const eth0 = getLink(podNl, "eth0");
  // No DAD on either end so link-local and global v6 addresses are usable at once.
  writeSysctl(`net.ipv6.conf.${hostIf}.accept_dad`, 0, { netns: node.path });
  writeSysctl("net.ipv6.conf.eth0.accept_dad", 0, { netns: pod.path });
  writeSysctl("net.ipv6.conf.eth0.accept_ra", 0, { netns: pod.path });
  writeSysctl("net.ipv6.conf.eth0.disable_ipv6", 0, { netns: pod.path });
  setLinkUp(nodeNl, host.index);
  setLinkUp(podNl, eth0.index);
  addAddress(podNl, eth0.index, "10.244.7.5/32");
  addAddress(podNl, eth0.index, "fd00:10:244:7::5/128");
  addRoute(podNl, { dst: "169.254.1.1/32", ifindex: eth0.index });
  addRoute(podNl, { dst: "default", gateway: "169.254.1.1", ifindex: eth0.index });
  addRoute(podNl, { dst: "default", gateway: "fe80::1", ifindex: eth0.index });
  setNeighbor(podNl, eth0.index, "169.254.1.1", host.mac ?? "");
  setNeighbor(podNl, eth0.index, "fe80::1", host.mac ?? "");
  // The node side: an "outside" address on lo, and host routes to the pod.
  const lo = getLink(nodeNl, "lo");
  addAddress(nodeNl, lo.index, "198.18.0.1/32");
  addAddress(nodeNl, lo.index, "2001:db8:18::1/128");
  addRoute(nodeNl, { dst: "10.244.7.5/32", ifindex: host.index });
  addRoute(nodeNl, { dst: "fd00:10:244:7::5/128", ifindex: host.index });
  return { hostIf, host, eth0, nodeNl, podNl };
}

describe("netlink against the kernel", () => {
  it("creates a veth whose peer appears only inside the target netns, with the given names, MTU and MAC", () => {
    const pod = createNetns(cleanup);
    const name = randomName("twt", 8);
    const nl = open();
    ownLink(name);
    createVethPair(nl, { name, peerName: "eth0", peerNetns: { path: pod.path }, mtu: 1400, peerMac: "02:00:00:00:00:07" });

    const [hostSide] = ipJson<IpLink[]>(["-d", "link", "show", "dev", name]);
    expect(hostSide).toMatchObject({ ifname: name, mtu: 1400, linkinfo: { info_kind: "veth" } });
    const [podSide] = ipJson<IpLink[]>(["-d", "link", "show", "dev", "eth0"], pod.name);
    expect(podSide).toMatchObject({ ifname: "eth0", mtu: 1400, address: "02:00:00:00:00:07", linkinfo: { info_kind: "veth" } });

    const got = getLink(nl, name);
    expect(got).toMatchObject({ name, index: hostSide?.ifindex, mtu: 1400, kind: "veth", up: false, mac: hostSide?.address });
    expect(listLinks(open(pod)).map((l) => l.name).sort()).toEqual(["eth0", "lo"]);
    expect(findLink(nl, `${name}x`)).toBeNull();
  });

  it("configures addresses, routes, neighbours, MTU and up state that `ip` reports back", () => {
    const node = createNetns(cleanup);
    const pod = createNetns(cleanup);
    const { hostIf, host, eth0, nodeNl, podNl } = wirePod(node, pod);
    setLinkMtu(podNl, eth0.index, 1400);

    const [link] = ipJson<IpLink[]>(["link", "show", "dev", "eth0"], pod.name);
    expect(link?.mtu).toBe(1400);
    expect(link?.flags).toContain("UP");
    expect(getLink(podNl, "eth0")).toMatchObject({ mtu: 1400, up: true });

    const [addrs] = ipJson<IpAddr[]>(["addr", "show", "dev", "eth0"], pod.name);
    const global = addrs?.addr_info.filter((a) => !a.local.startsWith("fe80")).map((a) => `${a.local}/${a.prefixlen}`);
    expect(global).toEqual(["10.244.7.5/32", "fd00:10:244:7::5/128"]);
    expect(addrs?.addr_info.find((a) => a.local === "fd00:10:244:7::5")).toMatchObject({ nodad: true });
    expect(addrs?.addr_info.some((a) => a.tentative)).toBe(false);
    expect(listAddresses(podNl, { ifindex: eth0.index }).map((a) => `${a.address}/${a.prefixLen}`))
      .toEqual(expect.arrayContaining(["10.244.7.5/32", "fd00:10:244:7::5/128"]));

    const v4 = ipJson<IpRoute[]>(["-4", "route", "show"], pod.name);
    expect(v4).toEqual(expect.arrayContaining([
      expect.objectContaining({ dst: "default", gateway: "169.254.1.1", dev: "eth0" }),
      expect.objectContaining({ dst: "169.254.1.1", dev: "eth0", scope: "link" }),
    ]));
    const v6 = ipJson<IpRoute[]>(["-6", "route", "show"], pod.name);
    expect(v6).toEqual(expect.arrayContaining([expect.objectContaining({ dst: "default", gateway: "fe80::1", dev: "eth0" })]));
    expect(listRoutes(podNl, 4).map((r) => `${r.dst} ${r.gateway ?? ""}`)).toEqual(expect.arrayContaining(["default 169.254.1.1"]));
    const hostRoutes = ipJson<IpRoute[]>(["route", "show", "dev", hostIf], node.name);
    expect(hostRoutes.map((r) => r.dst)).toContain("10.244.7.5");
    expect(listRoutes(nodeNl, 6, { ifindex: host.index }).map((r) => r.dst)).toContain("fd00:10:244:7::5/128");

    const neigh = ipJson<IpNeigh[]>(["neigh", "show", "dev", "eth0"], pod.name);
    for (const gw of ["169.254.1.1", "fe80::1"]) {
      expect(neigh).toEqual(expect.arrayContaining([expect.objectContaining({ dst: gw, lladdr: host.mac, state: ["PERMANENT"] })]));
    }
    expect(listNeighbors(podNl, { ifindex: eth0.index }).filter((n) => n.state === 0x80).map((n) => n.ip).sort())
      .toEqual(["169.254.1.1", "fe80::1"]);
  });

  it("writes sysctls into the pod netns, not the caller's", () => {
    const pod = createNetns(cleanup);
    const hostBefore = fs.readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8");
    const podBefore = nsExec(pod.name, "cat", ["/proc/sys/net/ipv4/ip_forward"]).trim();
    const flipped = podBefore === "1" ? "0" : "1";
    writeSysctl("net.ipv4.ip_forward", flipped, { netns: pod.path });
    expect(nsExec(pod.name, "cat", ["/proc/sys/net/ipv4/ip_forward"]).trim()).toBe(flipped);
    expect(readSysctl("net.ipv4.ip_forward", { netns: pod.path })).toBe(flipped);
    expect(fs.readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8")).toBe(hostBefore);
  });

  it("pings over IPv4 and IPv6 between two netns it wired", () => {
    const node = createNetns(cleanup);
    const pod = createNetns(cleanup);
    wirePod(node, pod);
    // busybox ping: the image has no iputils. -w bounds the whole run.
    const ping = (ns: TestNetns, args: string[]): string => nsExec(ns.name, "busybox", ["ping", "-c", "2", "-w", "5", ...args]);
    expect(ping(pod, ["-4", "198.18.0.1"])).toMatch(/2 packets received/);
    expect(ping(pod, ["-6", "2001:db8:18::1"])).toMatch(/2 packets received/);
    expect(ping(node, ["-4", "10.244.7.5"])).toMatch(/2 packets received/);
    expect(ping(node, ["-6", "fd00:10:244:7::5"])).toMatch(/2 packets received/);
  });

  it("deletes idempotently and leaves nothing behind", () => {
    const node = createNetns(cleanup);
    const pod = createNetns(cleanup);
    const { hostIf, eth0, nodeNl, podNl } = wirePod(node, pod);
    expect(deleteRoute(podNl, { dst: "default", gateway: "169.254.1.1", ifindex: eth0.index })).toBe(true);
    expect(deleteRoute(podNl, { dst: "default", gateway: "169.254.1.1", ifindex: eth0.index })).toBe(false);
    expect(deleteAddress(podNl, eth0.index, "10.244.7.5/32")).toBe(true);
    expect(deleteAddress(podNl, eth0.index, "10.244.7.5/32")).toBe(false);

    setLinkDown(nodeNl, hostIf);
    expect(deleteLink(nodeNl, hostIf)).toBe(true);
    expect(deleteLink(nodeNl, hostIf)).toBe(false);
    expect(ipJson<IpLink[]>(["link", "show"], node.name).map((l) => l.ifname)).toEqual(["lo"]);
    expect(ipJson<IpLink[]>(["link", "show"], pod.name).map((l) => l.ifname)).toEqual(["lo"]);
    expect(ipJson<IpRoute[]>(["route", "show"], node.name).filter((r) => r.dst.startsWith("10.244."))).toEqual([]);
    expect(ipJson<IpNeigh[]>(["neigh", "show"], pod.name)).toEqual([]);
    expect(() => getLink(nodeNl, hostIf)).toThrow(NetlinkNotFoundError);
  });

  it("places the peer by an already open netns fd", () => {
    const node = createNetns(cleanup);
    const pod = createNetns(cleanup);
    const podNs = openNetns(pod.path);
    try {
      createVethPair(open(node), { name: "twtfd0", peerName: "eth1", peerNetns: { fd: podNs.fd } });
    } finally {
      podNs.close();
    }
    expect(ipJson<IpLink[]>(["link", "show"], node.name).map((l) => l.ifname).sort()).toEqual(["lo", "twtfd0"]);
    expect(ipJson<IpLink[]>(["link", "show"], pod.name).map((l) => l.ifname).sort()).toEqual(["eth1", "lo"]);
  });

  it("renames a down link", () => {
    const pod = createNetns(cleanup);
    const nl = open(pod);
    createVethPair(nl, { name: "a0", peerName: "b0" });
    renameLink(nl, "a0", "a1");
    expect(ipJson<IpLink[]>(["link", "show"], pod.name).map((l) => l.ifname).sort()).toEqual(["a1", "b0", "lo"]);
  });
});

describe("netlink errors", () => {
  it("reports a duplicate name as EEXIST naming the operation", () => {
    const pod = createNetns(cleanup);
    const nl = open(pod);
    createVethPair(nl, { name: "dup0", peerName: "dup1" });
    const err = (() => {
      try {
        createVethPair(nl, { name: "dup0", peerName: "dup2" });
      } catch (e: unknown) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(NetlinkError);
    expect(err).toMatchObject({ op: "create link dup0", code: "EEXIST", errno: 17 });
    expect((err as Error).message).toMatch(/^create link dup0: File exists \(EEXIST\)/);
    expect(ipJson<IpLink[]>(["link", "show"], pod.name).map((l) => l.ifname).sort()).toEqual(["dup0", "dup1", "lo"]);
  });

  it.each([
    { name: "host end", opts: { name: "twt0123456789abc", peerName: "eth0" } },
    { name: "peer end", opts: { name: "twtok", peerName: "eth0123456789abc" } },
  ])("rejects an interface name over 15 bytes ($name) before the syscall", ({ opts }) => {
    const pod = createNetns(cleanup);
    const nl = open(pod);
    expect(() => createVethPair(nl, opts)).toThrow(NetlinkArgumentError);
    expect(() => createVethPair(nl, opts)).toThrow(/is 16 bytes, at most 15 allowed/);
    expect(ipJson<IpLink[]>(["link", "show"], pod.name).map((l) => l.ifname)).toEqual(["lo"]);
  });

  it.each([
    { name: "socket", run: (p: string) => NetlinkSocket.open({ netns: p }) },
    { name: "veth peer", run: (p: string) => createVethPair(open(), { name: randomName("twt", 8), peerName: "eth0", peerNetns: { path: p } }) },
    { name: "withNetns", run: (p: string) => withNetns(p, () => 1) },
    { name: "sysctl", run: (p: string) => writeSysctl("net.ipv4.ip_forward", 1, { netns: p }) },
  ])("names a missing netns path ($name)", ({ run }) => {
    const path = `/var/run/netns/${randomName("twt-missing-", 8)}`;
    expect(() => run(path)).toThrow(NetnsError);
    expect(() => run(path)).toThrow(new RegExp(`open netns ${path}: no such namespace`));
  });

  it("returns to the caller's netns when the callback throws, and refuses async callbacks", () => {
    const pod = createNetns(cleanup);
    const before = nsInode(CURRENT_NETNS_PATH);
    expect(withNetns(pod.path, () => nsInode(CURRENT_NETNS_PATH))).toBe(nsInode(pod.path));
    expect(() => withNetns(pod.path, () => { throw new Error("boom"); })).toThrow("boom");
    expect(nsInode(CURRENT_NETNS_PATH)).toBe(before);
    // @ts-expect-error: the signature forbids promise-returning callbacks; check the runtime guard too.
    expect(() => withNetns(pod.path, async () => 1)).toThrow(/returned a promise/);
    expect(nsInode(CURRENT_NETNS_PATH)).toBe(before);
    expect(() => withNetns("/proc/self/ns/uts", () => 1)).toThrow(/not a network namespace/);
    expect(nsInode(CURRENT_NETNS_PATH)).toBe(before);
  });

  it("keeps a missing link distinct from other failures", () => {
    const pod = createNetns(cleanup);
    const nl = open(pod);
    expect(() => setLinkUp(nl, "nope0")).toThrow(NetlinkNotFoundError);
    expect(() => setLinkUp(nl, "nope0")).toThrow(/^set link nope0 up: No such device \(ENODEV\)/);
    expect(ip(["link", "show"], pod.name)).not.toMatch(/nope0/);
  });
});
