// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from "vitest";
import { CniError, CniErrorCode } from "../../cni/errors.js";
import { compareVersions, formatResult, parseResult, versionJson, type CniResult } from "../../cni/version.js";

const result: CniResult = {
  interfaces: [
    { name: "twba7816bf8f0", mac: "02:00:00:00:00:01", mtu: 1500 },
    { name: "eth0", mac: "02:00:00:00:00:02", mtu: 1500, sandbox: "/var/run/netns/p" },
  ],
  ips: [
    { address: "10.244.0.5/32", gateway: "169.254.1.1", interface: 1 },
    { address: "fd00:10:244::5/128", gateway: "fe80::1", interface: 1 },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "169.254.1.1", scope: 0 }, { dst: "::/0", gw: "fe80::1" }],
  dns: {},
};

describe("formatResult", () => {
  it.each([
    { name: "0.3.1", version: "0.3.1", ipVersions: ["4", "6"], ifaceMtu: undefined, routeScope: undefined },
    { name: "0.4.0", version: "0.4.0", ipVersions: ["4", "6"], ifaceMtu: undefined, routeScope: undefined },
    { name: "1.0.0", version: "1.0.0", ipVersions: [undefined, undefined], ifaceMtu: undefined, routeScope: undefined },
    { name: "1.1.0", version: "1.1.0", ipVersions: [undefined, undefined], ifaceMtu: 1500, routeScope: 0 },
  ] as const)("writes the $name shape", ({ version, ipVersions, ifaceMtu, routeScope }) => {
    const out = formatResult(result, version) as {
      cniVersion: string; ips: { version?: string; address: string; interface: number }[];
      interfaces: { mtu?: number; sandbox?: string }[]; routes: { scope?: number }[]; dns: object;
    };
    expect(out.cniVersion).toBe(version);
    expect(out.ips.map((i) => i.version)).toEqual(ipVersions);
    expect(out.ips.map((i) => i.interface)).toEqual([1, 1]);
    expect(out.interfaces[0]?.mtu).toBe(ifaceMtu);
    expect(out.interfaces[1]?.sandbox).toBe("/var/run/netns/p");
    expect(out.routes[0]?.scope).toBe(routeScope);
    expect(out.dns).toEqual({});
  });

  it.each(["0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const)("round-trips through parseResult in %s", (version) => {
    const back = parseResult(JSON.parse(JSON.stringify(formatResult(result, version))), version);
    expect(back.ips).toEqual(result.ips);
    expect(back.routes.map((r) => r.dst)).toEqual(["0.0.0.0/0", "::/0"]);
    expect(back.interfaces.map((i) => i.name)).toEqual(["twba7816bf8f0", "eth0"]);
  });
});

describe("parseResult", () => {
  function code(json: unknown, version = "1.0.0"): number | null {
    try {
      parseResult(json, version);
    } catch (e: unknown) {
      if (e instanceof CniError) return e.code;
      throw e;
    }
    return null;
  }
  it.each([
    { name: "not an object", json: "x", want: CniErrorCode.DecodingFailure },
    { name: "ips not a list", json: { ips: {} }, want: CniErrorCode.DecodingFailure },
    { name: "address without prefix", json: { ips: [{ address: "10.0.0.1" }] }, want: CniErrorCode.DecodingFailure },
    { name: "interface index out of range", json: { interfaces: [], ips: [{ address: "10.0.0.1/32", interface: 0 }] }, want: CniErrorCode.DecodingFailure },
    { name: "interface without name", json: { interfaces: [{ mac: "x" }] }, want: CniErrorCode.DecodingFailure },
    { name: "0.2.0 ip4 result", json: { ip4: { ip: "10.0.0.1/24" } }, want: CniErrorCode.IncompatibleVersion },
    { name: "an empty result", json: {}, want: null },
  ])("$name -> $want", ({ json, want }) => {
    expect(code(json)).toBe(want);
  });
});

describe("versions", () => {
  it.each([
    { name: "equal", a: "1.0.0", b: "1.0.0", want: 0 },
    { name: "minor", a: "0.3.1", b: "0.4.0", want: -1 },
    { name: "numeric not lexical", a: "0.10.0", b: "0.4.0", want: 1 },
  ])("compares $name", ({ a, b, want }) => {
    expect(compareVersions(a, b)).toBe(want);
  });
  it("VERSION lists every supported version and echoes a known asked version", () => {
    expect(versionJson("0.4.0")).toEqual({ cniVersion: "0.4.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
    expect(versionJson("9.9.9").cniVersion).toBe("1.1.0");
    expect(versionJson(null).cniVersion).toBe("1.1.0");
  });
});
