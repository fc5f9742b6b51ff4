// SPDX-License-Identifier: Apache-2.0
// Pure parts of ADD and CHECK: the result we hand to chained plugins and the
// comparison CHECK makes. The kernel side runs in test/privileged/cni-*.
import { describe, expect, it } from "vitest";
import type { LinkInfo } from "../../agent/netlink/index.js";
import { addressesFromIpam, buildResult } from "../../cni/commands/add.js";
import { diffWiring } from "../../cni/commands/check.js";
import { formatResult, parseResult, type CniResult } from "../../cni/version.js";
import type { VethPair, WiringState } from "../../cni/wiring.js";

const pair: VethPair = {
  hostIfname: "twba7816bf8f0", hostIfindex: 20, hostMac: "02:00:00:00:00:01",
  podIfname: "eth0", podIfindex: 2, podMac: "02:00:00:00:00:02", netns: "/var/run/netns/p", mtu: 1500, replacedStale: false,
};

describe("buildResult", () => {
  it("puts the pod interface at index 1 and routes via the link-local gateways", () => {
    const r = buildResult(pair, { ipv4: "10.244.0.5", ipv6: "fd00:10:244::5" }, null, null);
    expect(r.interfaces.map((i) => i.name)).toEqual(["twba7816bf8f0", "eth0"]);
    expect(r.ips).toEqual([
      { address: "10.244.0.5/32", gateway: "169.254.1.1", interface: 1 },
      { address: "fd00:10:244::5/128", gateway: "fe80::1", interface: 1 },
    ]);
    expect(r.routes).toEqual([{ dst: "0.0.0.0/0", gw: "169.254.1.1" }, { dst: "::/0", gw: "fe80::1" }]);
  });

  it("appends to a prevResult and shifts our interface indexes past its interfaces", () => {
    const prev: CniResult = {
      interfaces: [{ name: "lo0" }, { name: "net1", sandbox: "/var/run/netns/p" }],
      ips: [{ address: "192.0.2.1/24", interface: 1 }], routes: [], dns: { nameservers: ["192.0.2.53"] },
    };
    const r = buildResult(pair, { ipv4: "10.244.0.5", ipv6: null }, prev, { nameservers: ["10.96.0.10"] });
    expect(r.interfaces.map((i) => i.name)).toEqual(["lo0", "net1", "twba7816bf8f0", "eth0"]);
    expect(r.ips).toEqual([{ address: "192.0.2.1/24", interface: 1 }, { address: "10.244.0.5/32", gateway: "169.254.1.1", interface: 3 }]);
    expect(r.dns).toEqual({ nameservers: ["192.0.2.53"] });
  });

  it("keeps an IPv4-only pod free of IPv6 routes", () => {
    const r = buildResult(pair, { ipv4: "10.244.0.5", ipv6: null }, null, null);
    expect(r.routes).toEqual([{ dst: "0.0.0.0/0", gw: "169.254.1.1" }]);
  });
});

describe("addressesFromIpam", () => {
  it.each([
    { name: "dual stack", ips: ["10.1.0.5/24", "fd00::5/64"], want: { ipv4: "10.1.0.5", ipv6: "fd00::5" } },
    { name: "v6 only", ips: ["fd00::5/64"], want: { ipv4: null, ipv6: "fd00::5" } },
  ])("takes the bare addresses ($name)", ({ ips, want }) => {
    expect(addressesFromIpam({ interfaces: [], ips: ips.map((address) => ({ address })), routes: [], dns: {} })).toEqual(want);
  });
  it("fails on a result without addresses", () => {
    expect(() => addressesFromIpam({ interfaces: [], ips: [], routes: [], dns: {} })).toThrow(/no address/);
  });
});

function link(name: string, mac: string, up = true): LinkInfo {
  return { index: 1, name, mac, mtu: 1500, flags: up ? 1 : 0, up, operState: up ? "up" : "down", kind: "veth", parentIndex: null };
}

describe("diffWiring", () => {
  const expected = buildResult(pair, { ipv4: "10.244.0.5", ipv6: "fd00:10:244::5" }, null, null);
  const healthy: WiringState = {
    host: link("twba7816bf8f0", pair.hostMac),
    pod: link("eth0", pair.podMac),
    podAddresses: ["10.244.0.5/32", "fd00:10:244::5/128", "fe80::2/64"],
    podDefaultGateways: ["169.254.1.1", "fe80::1"],
    podNeighbors: [{ ip: "169.254.1.1", mac: pair.hostMac }, { ip: "fe80::1", mac: pair.hostMac }],
    hostRoutes: ["10.244.0.5/32", "fd00:10:244::5/128"],
  };

  it("finds nothing wrong with the wiring ADD made", () => {
    expect(diffWiring(expected, pair.hostIfname, "eth0", healthy)).toEqual([]);
  });

  it.each([
    { name: "host veth gone", state: { ...healthy, host: null }, want: "host veth twba7816bf8f0 is missing" },
    { name: "pod interface gone", state: { ...healthy, pod: null }, want: "pod interface eth0 is missing" },
    { name: "pod interface down", state: { ...healthy, pod: link("eth0", pair.podMac, false) }, want: "pod interface eth0 is down" },
    { name: "pod MAC changed", state: { ...healthy, pod: link("eth0", "02:00:00:00:00:99") }, want: "pod interface mac is 02:00:00:00:00:99" },
    { name: "address removed", state: { ...healthy, podAddresses: ["fd00:10:244::5/128"] }, want: "address 10.244.0.5/32 is not on eth0" },
    { name: "v6 default route removed", state: { ...healthy, podDefaultGateways: ["169.254.1.1"] }, want: "default route via fe80::1 is missing" },
    { name: "gateway neighbour wrong", state: { ...healthy, podNeighbors: [{ ip: "169.254.1.1", mac: "02:00:00:00:00:77" }, { ip: "fe80::1", mac: pair.hostMac }] }, want: "neighbour 169.254.1.1 points to 02:00:00:00:00:77" },
    { name: "host route removed", state: { ...healthy, hostRoutes: ["fd00:10:244::5/128"] }, want: "host route to 10.244.0.5/32 via twba7816bf8f0 is missing" },
  ])("reports $name", ({ state, want }) => {
    expect(diffWiring(expected, pair.hostIfname, "eth0", state).join("; ")).toContain(want);
  });

  it.each(["0.4.0", "1.0.0", "1.1.0"] as const)("accepts the healthy wiring against a %s prevResult", (version) => {
    const prev = parseResult(JSON.parse(JSON.stringify(formatResult(expected, version))), version);
    expect(diffWiring(prev, pair.hostIfname, "eth0", healthy)).toEqual([]);
  });
});
