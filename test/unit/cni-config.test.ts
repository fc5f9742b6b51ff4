// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from "vitest";
import {
  DEFAULT_MTU, DEFAULT_SOCKET, decodeStdin, hostVethName, parseCniArgs, parseEnv, parseNetConf,
} from "../../cni/config.js";
import { CniError, CniErrorCode } from "../../cni/errors.js";

const exists = (): boolean => true;
const missing = (): boolean => false;

function codeOf(fn: () => unknown): number | null {
  try {
    fn();
  } catch (e: unknown) {
    if (e instanceof CniError) return e.code;
    throw e;
  }
  return null;
}

const addEnv = {
  CNI_COMMAND: "ADD", CNI_CONTAINERID: "abc123", CNI_NETNS: "/var/run/netns/x", CNI_IFNAME: "eth0",
  CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0", CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
};

describe("parseEnv", () => {
  it("reads every CNI_* variable of an ADD", () => {
    const env = parseEnv(addEnv, exists);
    expect(env).toMatchObject({ command: "ADD", containerId: "abc123", netns: "/var/run/netns/x", ifname: "eth0" });
    expect(env.args.get("K8S_POD_NAMESPACE")).toBe("default");
    expect(env.args.get("K8S_POD_NAME")).toBe("web-0");
    expect(env.path).toEqual(["/opt/cni/bin", "/usr/lib/cni"]);
  });

  it.each([
    { name: "no command", env: { ...addEnv, CNI_COMMAND: undefined } },
    { name: "unknown command", env: { ...addEnv, CNI_COMMAND: "FROB" } },
    { name: "no container id", env: { ...addEnv, CNI_CONTAINERID: "" } },
    { name: "container id with slash", env: { ...addEnv, CNI_CONTAINERID: "../etc" } },
    { name: "ifname of 16 bytes", env: { ...addEnv, CNI_IFNAME: "eth0123456789abc" } },
    { name: "ifname with slash", env: { ...addEnv, CNI_IFNAME: "a/b" } },
    { name: "no ifname", env: { ...addEnv, CNI_IFNAME: undefined } },
    { name: "ADD without netns", env: { ...addEnv, CNI_NETNS: undefined } },
    { name: "malformed CNI_ARGS", env: { ...addEnv, CNI_ARGS: "K8S_POD_NAME" } },
  ])("rejects $name with code 4", ({ env }) => {
    expect(codeOf(() => parseEnv(env, exists))).toBe(CniErrorCode.InvalidEnvironment);
  });

  it("rejects an ADD whose netns path does not exist, naming the path", () => {
    expect(() => parseEnv(addEnv, missing)).toThrow(/CNI_NETNS: \/var\/run\/netns\/x does not exist/);
  });

  it.each([
    { name: "DEL without netns (netns already gone)", env: { ...addEnv, CNI_COMMAND: "DEL", CNI_NETNS: undefined }, netnsExists: false },
    { name: "DEL with a netns path that no longer exists", env: { ...addEnv, CNI_COMMAND: "DEL" }, netnsExists: false },
    { name: "VERSION with nothing else", env: { CNI_COMMAND: "VERSION" }, netnsExists: false },
    { name: "STATUS with nothing else", env: { CNI_COMMAND: "STATUS" }, netnsExists: false },
    { name: "GC with nothing else", env: { CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, netnsExists: false },
    { name: "15-byte ifname", env: { ...addEnv, CNI_IFNAME: "eth0123456789ab" }, netnsExists: true },
  ])("accepts $name", ({ env, netnsExists }) => {
    expect(() => parseEnv(env, netnsExists ? exists : missing)).not.toThrow();
  });
});

describe("parseCniArgs", () => {
  it.each([
    { name: "empty", text: "", want: {} },
    { name: "pairs", text: "A=1;B=2", want: { A: "1", B: "2" } },
    { name: "value with '='", text: "A=x=y", want: { A: "x=y" } },
    { name: "trailing ';'", text: "A=1;", want: { A: "1" } },
  ])("parses $name", ({ text, want }) => {
    expect(Object.fromEntries(parseCniArgs(text))).toEqual(want);
  });
});

describe("parseNetConf", () => {
  const base = { cniVersion: "1.0.0", name: "twill", type: "twill-cni" };

  it("needs only cniVersion, name and type, filling defaults", () => {
    const c = parseNetConf({ cniVersion: "1.1.0", name: "n", type: "twill-cni" }, "ADD");
    expect(c).toMatchObject({ cniVersion: "1.1.0", type: "twill-cni", socket: DEFAULT_SOCKET, mtu: DEFAULT_MTU, ipam: null, prevResult: null });
  });

  it("keeps the ipam object only when ipam.type names a delegate", () => {
    expect(parseNetConf({ ...base, ipam: { type: "host-local", ranges: [] } }, "ADD").ipam).toEqual({ type: "host-local", ranges: [] });
    expect(parseNetConf({ ...base, ipam: {} }, "ADD").ipam).toBeNull();
  });

  it("parses a 0.4.0 prevResult and drops its ips[].version", () => {
    const c = parseNetConf({
      ...base, cniVersion: "0.4.0",
      prevResult: { cniVersion: "0.4.0", interfaces: [{ name: "eth0" }], ips: [{ version: "4", address: "10.244.0.5/32", interface: 0 }] },
    }, "CHECK");
    expect(c.prevResult?.ips).toEqual([{ address: "10.244.0.5/32", interface: 0 }]);
  });

  it("reads GC's valid attachments", () => {
    const c = parseNetConf({ ...base, cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: "c1", ifname: "eth0" }] }, "GC");
    expect(c.validAttachments).toEqual([{ containerId: "c1", ifname: "eth0" }]);
  });

  it.each([
    { name: "unsupported version", raw: { ...base, cniVersion: "0.2.0" }, cmd: "ADD", code: CniErrorCode.IncompatibleVersion },
    { name: "future version", raw: { ...base, cniVersion: "2.0.0" }, cmd: "ADD", code: CniErrorCode.IncompatibleVersion },
    { name: "CHECK in 0.3.1", raw: { ...base, cniVersion: "0.3.1" }, cmd: "CHECK", code: CniErrorCode.IncompatibleVersion },
    { name: "GC in 1.0.0", raw: base, cmd: "GC", code: CniErrorCode.IncompatibleVersion },
    { name: "STATUS in 0.4.0", raw: { ...base, cniVersion: "0.4.0" }, cmd: "STATUS", code: CniErrorCode.IncompatibleVersion },
    { name: "missing cniVersion", raw: { name: "n", type: "twill-cni" }, cmd: "ADD", code: CniErrorCode.InvalidNetworkConfig },
    { name: "missing type", raw: { cniVersion: "1.0.0", name: "n" }, cmd: "ADD", code: CniErrorCode.InvalidNetworkConfig },
    { name: "missing name", raw: { cniVersion: "1.0.0", type: "twill-cni" }, cmd: "ADD", code: CniErrorCode.InvalidNetworkConfig },
    { name: "mtu as string", raw: { ...base, mtu: "1500" }, cmd: "ADD", code: CniErrorCode.InvalidNetworkConfig },
    { name: "mtu too large", raw: { ...base, mtu: 70000 }, cmd: "ADD", code: CniErrorCode.InvalidNetworkConfig },
    { name: "unknown logLevel", raw: { ...base, logLevel: "loud" }, cmd: "ADD", code: CniErrorCode.InvalidNetworkConfig },
    { name: "ipam.type with a path", raw: { ...base, ipam: { type: "../x" } }, cmd: "ADD", code: CniErrorCode.InvalidNetworkConfig },
    { name: "ipMasq", raw: { ...base, ipMasq: true }, cmd: "ADD", code: CniErrorCode.UnsupportedField },
    { name: "malformed prevResult", raw: { ...base, prevResult: { ips: [{ address: 5 }] } }, cmd: "ADD", code: CniErrorCode.DecodingFailure },
    { name: "GC attachments not a list", raw: { ...base, cniVersion: "1.1.0", "cni.dev/valid-attachments": {} }, cmd: "GC", code: CniErrorCode.InvalidNetworkConfig },
  ] as const)("rejects $name with code $code", ({ raw, cmd, code }) => {
    expect(codeOf(() => parseNetConf(raw as Record<string, unknown>, cmd))).toBe(code);
  });
});

describe("decodeStdin", () => {
  it.each([
    { name: "not JSON", text: "{cniVersion" },
    { name: "a JSON array", text: "[]" },
    { name: "empty", text: "" },
  ])("rejects $name with code 6", ({ text }) => {
    expect(codeOf(() => decodeStdin(text))).toBe(CniErrorCode.DecodingFailure);
  });
});

describe("hostVethName", () => {
  it("is tw + 11 hex chars of sha256(containerId), within IFNAMSIZ", () => {
    // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    expect(hostVethName("abc")).toBe("twba7816bf8f0");
    expect(hostVethName("x".repeat(64)).length).toBe(13);
  });
  it("differs between containers", () => {
    expect(hostVethName("c1")).not.toBe(hostVethName("c2"));
  });
});
