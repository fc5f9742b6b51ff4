// SPDX-License-Identifier: Apache-2.0
// twill-cni driven by libcni through cnitool (hack/build-cnitool.sh), the way
// containerd and CRI-O call it: a conflist where twill-cni is followed by a
// chained plugin (tuning) that must receive our result as prevResult, then
// CHECK and DEL through the same list.
import { createHash } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { hostVethName } from "../../cni/config.js";
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
afterEach(() => cleanup.run());

function tool(verb: string, net: string, netns: string, confDir: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cnitool, [verb, net, netns], {
    env: {
      PATH: process.env["PATH"] ?? "", NETCONFPATH: confDir, CNI_PATH: `${path.join(workDir, "bin")}:/usr/lib/cni`,
      CNI_IFNAME: "eth0", CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
    },
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe("twill-cni under cnitool (libcni)", () => {
  it("ADD through a conflist hands our result to the chained plugin; CHECK and DEL follow", () => {
    expect(buildError, `cnitool could not be built: ${buildError}`).toBe("");
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
          type: "twill-cni",
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
