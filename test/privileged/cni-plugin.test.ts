// SPDX-License-Identifier: Apache-2.0
// The compiled twill-cni binary (hack/build-cni.sh) run as a runtime runs it:
// CNI_* env, config on stdin, result or error JSON on stdout, against temp
// netns. Addresses come from delegated IPAM (host-local for 0.3.1..1.0.0,
// whose Debian build stops at 1.0.0; a tiny scripted IPAM plugin for 1.1.0),
// while a real agent (pool 10.244.29.0/24, unused here) programs the
// datapath for the delegate's addresses, as it does for its own.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { hostVethName } from "../../cni/config.js";
import { Cleanup, createNetns, ip, ipJson, nsExec, randomName, type TestNetns } from "../helpers/netns.js";
import { startAgent, type TestAgent } from "../helpers/agent.js";

const SYSTEM_CNI = "/usr/lib/cni";
let workDir = "";
let pluginDir = "";
let plugin = "";
let agent: TestAgent | null = null;

beforeAll(async () => {
  agent = await startAgent({ podCidrs: ["10.244.29.0/24", "fd00:10:244:29::/64"] });
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "twt-cni-"));
  pluginDir = path.join(workDir, "bin");
  fs.mkdirSync(pluginDir);
  plugin = path.join(pluginDir, "twill-cni");
  execFileSync("bash", ["hack/build-cni.sh", plugin], { stdio: "ignore" });
  // A scripted IPAM plugin that speaks 1.1.0: ADD returns fixed addresses,
  // every verb is recorded so the test can see what was delegated.
  fs.writeFileSync(path.join(pluginDir, "twt-ipam"), `#!/bin/sh
cat >/dev/null
echo "$CNI_COMMAND $CNI_CONTAINERID" >> "${workDir}/twt-ipam.log"
case "$CNI_COMMAND" in
ADD) echo '{"cniVersion":"1.1.0","ips":[{"address":"10.244.22.7/24"},{"address":"fd00:10:244:22::7/64"}],"dns":{"nameservers":["10.96.0.10"]}}' ;;
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["1.1.0"]}' ;;
esac
`, { mode: 0o755 });
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  if (workDir !== "") fs.rmSync(workDir, { recursive: true, force: true });
});

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

interface Run {
  code: number;
  json: Record<string, unknown> | null;
  stdout: string;
}

function runPlugin(command: string, conf: Record<string, unknown>, env: Record<string, string>): Run {
  const r = spawnSync(plugin, [], {
    input: JSON.stringify({ socket: agent?.socket, ...conf }),
    env: { PATH: process.env["PATH"] ?? "", CNI_COMMAND: command, CNI_PATH: `${pluginDir}:${SYSTEM_CNI}`, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  const stdout = r.stdout.trim();
  return { code: r.status ?? -1, json: stdout === "" ? null : (JSON.parse(stdout) as Record<string, unknown>), stdout };
}

/** A pod-to-be: netns, container ID, env, and a host-local range of its own. */
interface Pod {
  netns: TestNetns;
  containerId: string;
  env: Record<string, string>;
  hostIf: string;
  dataDir: string;
  subnet4: string;
  subnet6: string;
}

// This file's pod range is 10.244.20.0/24 and fd00:10:244:20::/64 (the CNI
// work's share); each pod gets its own /28 and /80 so pods of one test never
// share an address.
let podCounter = 0;

function newPod(): Pod {
  const netns = createNetns(cleanup);
  const containerId = randomName("twtctr", 16);
  const hostIf = hostVethName(containerId);
  // Whatever happens in the test, the host end must not outlive it.
  cleanup.add(`link ${hostIf}`, () => { spawnSync("ip", ["link", "del", hostIf], { stdio: "ignore" }); });
  const dataDir = path.join(workDir, randomName("ipam-", 8));
  cleanup.add(`dir ${dataDir}`, () => fs.rmSync(dataDir, { recursive: true, force: true }));
  const k = podCounter++ % 16;
  return {
    netns, containerId, hostIf, dataDir,
    subnet4: `10.244.20.${k * 16}/28`, subnet6: `fd00:10:244:20:${k.toString(16)}::/80`,
    env: { CNI_CONTAINERID: containerId, CNI_NETNS: netns.path, CNI_IFNAME: "eth0", CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web" },
  };
}

function hostLocalConf(pod: Pod, cniVersion: string): Record<string, unknown> {
  return {
    cniVersion, name: "twt-net", type: "twill-cni", mtu: 1400,
    ipam: { type: "host-local", dataDir: pod.dataDir, ranges: [[{ subnet: pod.subnet4 }], [{ subnet: pod.subnet6 }]] },
  };
}

/** Addresses host-local still holds for the network (files named by IP). */
function heldAddresses(pod: Pod): string[] {
  const dir = path.join(pod.dataDir, "twt-net");
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => /^[0-9a-f.:]+$/i.test(f) && (f.includes(".") || f.includes(":")));
}

function linkExists(name: string, netns?: string): boolean {
  return spawnSync("ip", [...(netns ? ["-n", netns] : []), "link", "show", name], { stdio: "ignore" }).status === 0;
}

function ping(target: string, v6: boolean): boolean {
  return spawnSync("busybox", ["ping", ...(v6 ? ["-6"] : []), "-c", "1", "-W", "2", target], { stdio: "ignore" }).status === 0;
}

describe.each(["0.3.1", "0.4.0", "1.0.0"])("twill-cni %s with host-local IPAM", (cniVersion) => {
  it("ADD wires a reachable dual-stack pod, CHECK passes, DEL frees everything and repeats", () => {
    const pod = newPod();
    const conf = hostLocalConf(pod, cniVersion);
    const add = runPlugin("ADD", conf, pod.env);
    expect(add.code, add.stdout).toBe(0);
    const res = add.json as {
      cniVersion: string; interfaces: { name: string; mac: string; sandbox?: string }[];
      ips: { version?: string; address: string; gateway: string; interface: number }[]; routes: { dst: string; gw: string }[];
    };
    expect(res.cniVersion).toBe(cniVersion);
    expect(res.interfaces.map((i) => i.name)).toEqual([pod.hostIf, "eth0"]);
    expect(res.interfaces[1]?.sandbox).toBe(pod.netns.path);
    expect(res.ips.map((i) => i.interface)).toEqual([1, 1]);
    expect(res.ips.map((i) => i.version)).toEqual(cniVersion === "1.0.0" ? [undefined, undefined] : ["4", "6"]);
    expect(res.routes).toEqual([{ dst: "0.0.0.0/0", gw: "169.254.1.1" }, { dst: "::/0", gw: "fe80::1" }]);
    const ip4 = (res.ips[0]?.address ?? "").split("/")[0] ?? "";
    const ip6 = (res.ips[1]?.address ?? "").split("/")[0] ?? "";
    // The agent programmed the datapath with host-local's addresses.
    const ep = JSON.parse(agent?.twill(["endpoint", "get", pod.containerId, "-o", "json"]).stdout ?? "{}") as { ipv4?: { address?: string }; ipv6?: { address?: string } };
    expect([ep.ipv4?.address, ep.ipv6?.address]).toEqual([ip4, ip6]);

    // What the pod sees: its addresses, MTU, gateways resolved to the host veth.
    const podLink = ipJson<{ mtu: number; address: string }[]>(["link", "show", "eth0"], pod.netns.name)[0];
    expect(podLink?.mtu).toBe(1400);
    expect(podLink?.address).toBe(res.interfaces[1]?.mac);
    const neigh = ip(["neigh", "show", "dev", "eth0"], pod.netns.name);
    expect(neigh).toContain(`169.254.1.1 lladdr ${res.interfaces[0]?.mac} PERMANENT`);
    expect(neigh).toContain(`fe80::1 lladdr ${res.interfaces[0]?.mac} PERMANENT`);
    expect(ip(["-4", "route"], pod.netns.name)).toContain("default via 169.254.1.1 dev eth0");
    expect(ip(["-6", "route"], pod.netns.name)).toContain("default via fe80::1 dev eth0");
    // Host to pod over both families, right after ADD (no DAD wait).
    expect(ping(ip4, false)).toBe(true);
    expect(ping(ip6, true)).toBe(true);
    expect(nsExec(pod.netns.name, "busybox", ["ping", "-c", "1", "-W", "2", ip4])).toContain("1 packets received");

    if (cniVersion !== "0.3.1") {
      const check = runPlugin("CHECK", { ...conf, prevResult: res }, pod.env);
      expect(check.code, check.stdout).toBe(0);
    }

    const del = runPlugin("DEL", conf, pod.env);
    expect(del.code, del.stdout).toBe(0);
    expect(linkExists(pod.hostIf)).toBe(false);
    expect(linkExists("eth0", pod.netns.name)).toBe(false);
    expect(ip(["route"])).not.toContain(ip4);
    expect(heldAddresses(pod)).toEqual([]);
    const again = runPlugin("DEL", conf, pod.env);
    expect(again.code, again.stdout).toBe(0);
  });
});

describe("twill-cni 1.1.0 with a delegated 1.1.0 IPAM plugin", () => {
  const conf = { cniVersion: "1.1.0", name: "twt-net", type: "twill-cni", ipam: { type: "twt-ipam" } };

  it("ADD configures the delegate's addresses as /32 and /128, passes its DNS, CHECK catches drift", () => {
    const pod = newPod();
    const add = runPlugin("ADD", conf, pod.env);
    expect(add.code, add.stdout).toBe(0);
    const res = add.json as { ips: { address: string }[]; dns: unknown; interfaces: { mtu?: number }[] };
    expect(res.ips.map((i) => i.address)).toEqual(["10.244.22.7/32", "fd00:10:244:22::7/128"]);
    expect(res.dns).toEqual({ nameservers: ["10.96.0.10"] });
    expect(res.interfaces[1]?.mtu).toBe(1500);
    expect(ip(["-4", "addr", "show", "eth0"], pod.netns.name)).toContain("10.244.22.7/32");

    expect(runPlugin("CHECK", { ...conf, prevResult: res }, pod.env).code).toBe(0);
    ip(["route", "del", "default"], pod.netns.name);
    const drift = runPlugin("CHECK", { ...conf, prevResult: res }, pod.env);
    expect(drift.code).toBe(1);
    expect(drift.json).toMatchObject({ code: 102, msg: expect.stringContaining("default route via 169.254.1.1 is missing") });

    expect(runPlugin("DEL", conf, pod.env).code).toBe(0);
    const log = fs.readFileSync(path.join(workDir, "twt-ipam.log"), "utf8");
    expect(log).toContain(`ADD ${pod.containerId}`);
    expect(log).toContain(`CHECK ${pod.containerId}`);
    expect(log).toContain(`DEL ${pod.containerId}`);
  });

  it.each([
    { name: "STATUS", command: "STATUS", extra: {} },
    { name: "GC", command: "GC", extra: { "cni.dev/valid-attachments": [{ containerID: "x", ifname: "eth0" }] } },
  ])("$name is passed to the delegate and succeeds with empty stdout", ({ command, extra }) => {
    const r = runPlugin(command, { ...conf, ...extra }, {});
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toBe("");
  });
});

describe("twill-cni failure handling", () => {
  it("releases the delegated address when ADD fails after IPAM (interface name taken)", () => {
    const pod = newPod();
    ip(["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], pod.netns.name);
    const add = runPlugin("ADD", hostLocalConf(pod, "1.0.0"), pod.env);
    expect(add.code).toBe(1);
    expect(add.json).toMatchObject({ code: 100, msg: expect.stringContaining("EEXIST") });
    expect(heldAddresses(pod)).toEqual([]);
    expect(linkExists(pod.hostIf)).toBe(false);
  });

  it("fails ADD with code 11 naming the socket when the agent is unreachable, leaving nothing behind", () => {
    const pod = newPod();
    const socket = path.join(workDir, "no-agent.sock");
    const add = runPlugin("ADD", { cniVersion: "1.1.0", name: "twt-net", type: "twill-cni", socket }, pod.env);
    expect(add.code).toBe(1);
    expect(add.json).toMatchObject({ cniVersion: "1.1.0", code: 11, msg: `create endpoint: agent unreachable at ${socket}` });
    expect(linkExists(pod.hostIf)).toBe(false);
    expect(linkExists("eth0", pod.netns.name)).toBe(false);
  });

  it("reports STATUS 50 when the agent is unreachable", () => {
    const r = runPlugin("STATUS", { cniVersion: "1.1.0", name: "twt-net", type: "twill-cni", socket: path.join(workDir, "none.sock") }, {});
    expect(r.json).toMatchObject({ code: 50 });
  });

  it("succeeds DEL with the agent down by queueing the deletion, also when the netns is gone", () => {
    const pod = newPod();
    const queue = path.join(workDir, randomName("queue-", 8));
    const conf = { cniVersion: "1.0.0", name: "twt-net", type: "twill-cni", socket: path.join(workDir, "none.sock"), deletionQueueDir: queue };
    const del = runPlugin("DEL", conf, { ...pod.env, CNI_NETNS: "/var/run/netns/twt-gone" });
    expect(del.code, del.stdout).toBe(0);
    const entry = JSON.parse(fs.readFileSync(path.join(queue, `${pod.containerId}.json`), "utf8")) as Record<string, unknown>;
    expect(entry).toMatchObject({ containerId: pod.containerId, ifname: "eth0", podNamespace: "default", podName: "web" });
  });

  it("succeeds DEL for a container that was never added (delegated IPAM, no netns)", () => {
    const pod = newPod();
    const del = runPlugin("DEL", hostLocalConf(pod, "1.0.0"), { ...pod.env, CNI_NETNS: "" });
    expect(del.code, del.stdout).toBe(0);
  });

  it.each([
    { name: "16-byte CNI_IFNAME", env: { CNI_IFNAME: "eth0123456789abc" }, conf: {}, code: 4 },
    { name: "missing netns", env: { CNI_NETNS: "/var/run/netns/twt-missing" }, conf: {}, code: 4 },
    { name: "unsupported cniVersion", env: {}, conf: { cniVersion: "0.2.0" }, code: 1 },
    { name: "mtu out of range", env: {}, conf: { mtu: 10 }, code: 7 },
  ] as { name: string; env: Record<string, string>; conf: Record<string, unknown>; code: number }[])("rejects ADD with $name (code $code) and creates nothing", ({ env, conf, code }) => {
    const pod = newPod();
    const r = runPlugin("ADD", { ...hostLocalConf(pod, "1.0.0"), ...conf }, { ...pod.env, ...env });
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ code });
    expect(linkExists(pod.hostIf)).toBe(false);
    expect(heldAddresses(pod)).toEqual([]);
  });

  it("rejects stdin that is not JSON with code 6", () => {
    const pod = newPod();
    const r = spawnSync(plugin, [], { input: "{oops", env: { CNI_COMMAND: "ADD", ...pod.env }, encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 6 });
  });

  it("answers VERSION without any other environment", () => {
    const r = spawnSync(plugin, [], { input: '{"cniVersion":"1.1.0"}', env: { CNI_COMMAND: "VERSION" }, encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ cniVersion: "1.1.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
  });
});
