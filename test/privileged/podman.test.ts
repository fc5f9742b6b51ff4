// SPDX-License-Identifier: Apache-2.0
// twill-cni driven by podman 4 with its CNI backend: two busybox containers
// (image built locally by hack/podman-image.sh) on a twill network get
// addresses from the real agent, reach each other, and a NetworkPolicy in the
// agent's standalone manifests then blocks one direction only.
//
// podman passes CNI_ARGS "IgnoreUnknown=1;K8S_POD_NAME=<container name>" and
// no namespace, so twill-cni files the container as Pod default/<name>; the
// manifests below name the containers' Pods that way.
//
// Nothing system-wide is changed: CONTAINERS_CONF points podman at a temp
// containers.conf whose cni_plugin_dirs and network_config_dir are temp dirs.
// Pod range: 10.244.28.0/24 + fd00:10:244:28::/64.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CNI_BIN, REPO, startAgent, type TestAgent } from "../helpers/agent.js";
import { randomName } from "../helpers/netns.js";

/** A podman whose CNI networks and plugins live in `dir` (nothing under /etc). */
interface PodmanEnv {
  readonly env: NodeJS.ProcessEnv;
  readonly confDir: string;
  readonly binDir: string;
}

function podmanEnv(dir: string): PodmanEnv {
  const binDir = path.join(dir, "cni-bin");
  const confDir = path.join(dir, "cni-conf");
  fs.mkdirSync(binDir, { recursive: true });
  fs.mkdirSync(confDir, { recursive: true });
  fs.copyFileSync(CNI_BIN, path.join(binDir, "twill-cni"));
  fs.chmodSync(path.join(binDir, "twill-cni"), 0o755);
  const conf = path.join(dir, "containers.conf");
  fs.writeFileSync(conf, [
    // As hack/install-deps.sh sets system-wide: this sandbox may not raise rlimits.
    "[containers]", 'default_ulimits = ["nofile=4096:4096", "nproc=1024:1024"]', "[engine]", 'runtime = "runc"', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"',
    "[network]", 'network_backend = "cni"', `cni_plugin_dirs = ["${binDir}", "/usr/lib/cni"]`, `network_config_dir = "${confDir}"`, "",
  ].join("\n"));
  return { env: { ...process.env, CONTAINERS_CONF: conf }, confDir, binDir };
}

function podman(p: PodmanEnv, args: readonly string[], timeoutMs = 60_000): { code: number; stdout: string; stderr: string } {
  const r = spawnSync("podman", args, { env: p.env, encoding: "utf8", timeout: timeoutMs });
  return { code: r.status ?? -1, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

const suffix = randomName("", 6);
const A = `twt-a-${suffix}`;
const B = `twt-b-${suffix}`;
const NET = `twt-net-${suffix}`;
const PORT = 8080;

const pod = (name: string, app: string): string =>
  `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: default, labels: {app: ${app}}}\nspec: {containers: [{name: c}]}\n`;
// b accepts nothing: a -> b is blocked, b -> a (a is not isolated) still works.
const DENY_TO_B = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-to-b-${suffix}, namespace: default}\nspec:\n  podSelector: {matchLabels: {app: b-${suffix}}}\n  policyTypes: [Ingress]\n`;

describe("podman with a twill CNI network", () => {
  let agent: TestAgent;
  let pm: PodmanEnv;
  let image = "";
  const ips: Record<string, string> = {};

  beforeAll(async () => {
    image = execFileSync("bash", [path.join(REPO, "hack", "podman-image.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    agent = await startAgent({
      podCidrs: ["10.244.28.0/24", "fd00:10:244:28::/64"],
      manifests: { "pods.yaml": [pod(A, `a-${suffix}`), pod(B, `b-${suffix}`)].join("---\n") },
    });
    pm = podmanEnv(agent.dir);
    // podman 4's libcni stops at spec 1.0.0.
    fs.writeFileSync(path.join(pm.confDir, `${NET}.conflist`), JSON.stringify({
      cniVersion: "1.0.0", name: NET, plugins: [{ type: "twill-cni", socket: agent.socket, deletionQueueDir: path.join(agent.dir, "dq") }],
    }));
    for (const name of [A, B]) {
      // A busybox nc server that answers every connection with the container's
      // name (busybox-static's wget segfaults in getaddrinfo, so no httpd/wget).
      const r = podman(pm, ["run", "-d", "--name", name, "--network", NET, image, "nc", "-ll", "-p", String(PORT), "-e", "echo", name]);
      if (r.code !== 0) throw new Error(`podman run ${name}: ${r.stderr}\n${agent.logs.slice(-4000)}`);
      ips[name] = podman(pm, ["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name]).stdout;
    }
  }, 180_000);

  afterAll(async () => {
    if (pm !== undefined) podman(pm, ["rm", "-f", "--ignore", "-t", "0", A, B]);
    await agent?.stop();
  }, 120_000);

  function fetch(from: string, to: string): string {
    const r = podman(pm, ["exec", from, "sh", "-c", `nc -w 2 ${ips[to] ?? ""} ${PORT} </dev/null`], 20_000);
    return r.code === 0 ? r.stdout : "blocked";
  }

  it("gives both containers addresses from the agent, registered as Pods default/<container>", () => {
    expect(ips[A]).toMatch(/^10\.244\.28\.\d+$/);
    expect(ips[B]).toMatch(/^10\.244\.28\.\d+$/);
    expect(ips[A]).not.toBe(ips[B]);
    const eps = JSON.parse(agent.twill(["endpoint", "list", "-o", "json"]).stdout) as { pod: { namespace: string; name: string }; ipv4: { address: string } }[];
    expect(eps.map((e) => `${e.pod.namespace}/${e.pod.name}=${e.ipv4.address}`).sort()).toEqual([`default/${A}=${ips[A]}`, `default/${B}=${ips[B]}`].sort());
  });

  it("lets the containers reach each other both ways", () => {
    expect(fetch(A, B)).toBe(B);
    expect(fetch(B, A)).toBe(A);
  });

  it("blocks a -> b once a NetworkPolicy isolates b, while b -> a still works", async () => {
    agent.writeManifest("deny.yaml", DENY_TO_B);
    const deadline = Date.now() + 20_000;
    while (fetch(A, B) !== "blocked" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 300));
    expect(fetch(A, B)).toBe("blocked");
    expect(fetch(B, A)).toBe(A);
  }, 60_000);

  it("removes the endpoints when podman removes the containers", () => {
    expect(podman(pm, ["rm", "-f", "--ignore", "-t", "0", A, B]).code).toBe(0);
    expect(JSON.parse(agent.twill(["endpoint", "list", "-o", "json"]).stdout)).toEqual([]);
  });
});
