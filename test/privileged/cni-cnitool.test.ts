// SPDX-License-Identifier: Apache-2.0
// twill-cni driven by libcni through cnitool (hack/build-cnitool.sh), the way
// containerd and CRI-O call it: a conflist where twill-cni is followed by a
// chained plugin (tuning) that must receive our result as prevResult, then
// CHECK and DEL through the same list. Then the plugin and conflist exactly
// as `twill-agent --install-cni` installs them, against the real agent, with
// portmap (from the installed list) and bandwidth chained after twill-cni.
//
// Pod range: 10.244.24.0/24 (delegated IPAM), 10.244.25.0/24 +
// fd00:10:244:25::/64 (agent).
import { createHash } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { hostVethName } from "../../cni/config.js";
import { REPO, startAgent, type TestAgent } from "../helpers/agent.js";
import { Cleanup, createNetns, ip, nsExec, randomName } from "../helpers/netns.js";

let workDir = "";
let cnitool = "";
let buildError = "";

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "twt-cnitool-"));
  fs.mkdirSync(path.join(workDir, "bin"));
  execFileSync("bash", ["hack/build-cni.sh", path.join(workDir, "bin", "twill-cni")], { stdio: "ignore" });
  try {
    cnitool = execFileSync("bash", ["hack/build-cnitool.sh"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch (e: unknown) {
    buildError = e instanceof Error ? e.message : String(e);
  }
}, 300_000);

afterAll(() => {
  if (workDir !== "") fs.rmSync(workDir, { recursive: true, force: true });
});

const cleanup = new Cleanup();
let delegatedAgent: TestAgent | null = null;
afterEach(async () => {
  try {
    cleanup.run();
  } finally {
    await delegatedAgent?.stop();
    delegatedAgent = null;
  }
});

function tool(verb: string, net: string, netns: string, confDir: string, binDir = path.join(workDir, "bin"), capArgs: Record<string, unknown> | null = null): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cnitool, [verb, net, netns], {
    env: {
      PATH: process.env["PATH"] ?? "", NETCONFPATH: confDir, CNI_PATH: `${binDir}:/usr/lib/cni`,
      CNI_IFNAME: "eth0", CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
      ...(capArgs === null ? {} : { CAP_ARGS: JSON.stringify(capArgs) }),
    },
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe("twill-cni under cnitool (libcni)", () => {
  it("ADD through a conflist hands our result to the chained plugin; CHECK and DEL follow", async () => {
    expect(buildError, `cnitool could not be built: ${buildError}`).toBe("");
    // The agent programs the datapath for host-local's address too (its own pool, unused here, is 10.244.23.0/24).
    const agent = await startAgent({ podCidrs: ["10.244.23.0/24", "fd00:10:244:23::/64"] });
    delegatedAgent = agent;
    const netns = createNetns(cleanup);
    // cnitool derives the container ID from the netns path.
    const containerId = `cnitool-${createHash("sha512").update(netns.path).digest("hex").slice(0, 20)}`;
    const hostIf = hostVethName(containerId);
    cleanup.add(`link ${hostIf}`, () => { spawnSync("ip", ["link", "del", hostIf], { stdio: "ignore" }); });
    const confDir = path.join(workDir, randomName("conf-", 8));
    fs.mkdirSync(confDir);
    const net = randomName("twt-net-", 6);
    const n = 24; // this file's share of the CNI work's pod range
    fs.writeFileSync(path.join(confDir, `10-${net}.conflist`), JSON.stringify({
      cniVersion: "1.0.0", name: net,
      plugins: [
        {
          type: "twill-cni", socket: agent.socket,
          ipam: { type: "host-local", dataDir: path.join(confDir, "ipam"), ranges: [[{ subnet: `10.244.${n}.0/24` }]] },
        },
        { type: "tuning", sysctl: { "net.ipv4.conf.eth0.arp_ignore": "1" } },
      ],
    }));
    cleanup.add("cnitool del", () => { tool("del", net, netns.path, confDir); });

    const add = tool("add", net, netns.path, confDir);
    expect(add.code, add.stderr + add.stdout).toBe(0);
    const res = JSON.parse(add.stdout) as { interfaces: { name: string }[]; ips: { address: string; interface: number }[] };
    // tuning returned our result unchanged: both interfaces, the /32 on eth0.
    expect(res.interfaces.map((i) => i.name)).toEqual([hostIf, "eth0"]);
    expect(res.ips[0]?.address).toMatch(new RegExp(`^10\\.244\\.${n}\\.\\d+/32$`));
    expect(nsExec(netns.name, "cat", ["/proc/sys/net/ipv4/conf/eth0/arp_ignore"]).trim()).toBe("1");

    const check = tool("check", net, netns.path, confDir);
    expect(check.code, check.stderr + check.stdout).toBe(0);

    const del = tool("del", net, netns.path, confDir);
    expect(del.code, del.stderr + del.stdout).toBe(0);
    expect(spawnSync("ip", ["link", "show", hostIf], { stdio: "ignore" }).status).not.toBe(0);
    expect(ip(["link"], netns.name)).not.toContain("eth0");
  });
});

describe("twill-cni as twill-agent --install-cni installs it, under cnitool, chained with portmap and bandwidth", () => {
  let agent: TestAgent;
  beforeAll(async () => { agent = await startAgent({ podCidrs: ["10.244.25.0/24", "fd00:10:244:25::/64"] }); }, 120_000);
  afterAll(async () => { await agent?.stop(); });

  it("ADD hands our result to portmap (DNAT to the pod IP) and bandwidth (shaping our host veth); CHECK and DEL follow", () => {
    expect(buildError, `cnitool could not be built: ${buildError}`).toBe("");
    const binDir = path.join(agent.dir, "cni-bin");
    const confDir = path.join(agent.dir, "cni-conf");
    execFileSync(process.execPath, ["--import", "tsx", path.join(REPO, "agent/main.ts"), "--install-cni", "--cni-bin-dir", binDir, "--cni-conf-dir", confDir, "--socket", agent.socket], { cwd: REPO, stdio: "ignore" });
    const file = path.join(confDir, "05-twill.conflist");
    const list = JSON.parse(fs.readFileSync(file, "utf8")) as { name: string; cniVersion: string; plugins: { type: string }[] };
    expect(list.plugins.map((p) => p.type)).toEqual(["twill-cni", "portmap"]);
    // Debian's portmap speaks up to 1.0.0, so the installer must not name 1.1.0.
    expect(list.cniVersion).toBe("1.0.0");
    list.plugins.push({ type: "bandwidth", capabilities: { bandwidth: true } } as { type: string });
    fs.writeFileSync(file, JSON.stringify(list));

    const netns = createNetns(cleanup);
    const containerId = `cnitool-${createHash("sha512").update(netns.path).digest("hex").slice(0, 20)}`;
    const hostIf = hostVethName(containerId);
    const hostPort = 30000 + Math.floor(Math.random() * 20000);
    const caps = {
      portMappings: [{ hostPort, containerPort: 8080, protocol: "tcp" }],
      bandwidth: { ingressRate: 8_000_000, ingressBurst: 1_000_000, egressRate: 8_000_000, egressBurst: 1_000_000 },
    };
    cleanup.add("cnitool del", () => { tool("del", list.name, netns.path, confDir, binDir, caps); });

    const add = tool("add", list.name, netns.path, confDir, binDir, caps);
    expect(add.code, add.stderr + add.stdout).toBe(0);
    const res = JSON.parse(add.stdout) as { interfaces: { name: string; sandbox?: string }[]; ips: { address: string }[] };
    // bandwidth appends its ifb device; ours come first and unchanged.
    expect(res.interfaces.slice(0, 2).map((i) => i.name)).toEqual([hostIf, "eth0"]);
    const podIp = (res.ips[0]?.address ?? "").split("/")[0] ?? "";
    expect(podIp).toMatch(/^10\.244\.25\.\d+$/);
    const nat = execFileSync("iptables-save", ["-t", "nat"], { encoding: "utf8" });
    expect(nat).toContain(`--dport ${hostPort} -j DNAT --to-destination ${podIp}:8080`);
    expect(execFileSync("tc", ["qdisc", "show", "dev", hostIf], { encoding: "utf8" })).toMatch(/qdisc tbf .* rate 8Mbit/);

    // Debian's portmap 1.1.1 fails CHECK of any port mapping on a host with
    // ip6tables ("could not check ipv6 dnat"), whoever the main plugin is;
    // CHECK without port mappings still runs twill-cni and bandwidth.
    const check = tool("check", list.name, netns.path, confDir, binDir, { bandwidth: caps.bandwidth });
    expect(check.code, check.stderr + check.stdout).toBe(0);

    const del = tool("del", list.name, netns.path, confDir, binDir, caps);
    expect(del.code, del.stderr + del.stdout).toBe(0);
    expect(spawnSync("ip", ["link", "show", hostIf], { stdio: "ignore" }).status).not.toBe(0);
    expect(execFileSync("iptables-save", ["-t", "nat"], { encoding: "utf8" })).not.toContain(`--dport ${hostPort} `);
    const eps = agent.twill(["endpoint", "list", "-o", "json"]);
    expect(JSON.parse(eps.stdout)).toEqual([]);
  }, 120_000);
});
