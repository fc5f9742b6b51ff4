// SPDX-License-Identifier: Apache-2.0
// CNI ADD/DEL latency of twill-cni (compiled binary + real agent) against
// Debian's bridge + host-local, interleaved in one run so both see the same
// machine state; then the start time of a podman container on a twill network
// against a bridge network (and against --network none, to show the network's
// own share).
//
// Each sample is one plugin process, spawned as a runtime spawns it, timed
// from spawn to exit; the netns are made before timing. Both plugins wire
// dual-stack pods. Pod range: 10.244.29.0/24 and fd00:10:244:29::/64 only
// (twill 10.244.29.0/25, bridge 10.244.29.128/26, podman bridge
// 10.244.29.192/26).
//
// Usage: npm run bench:cni [-- --pods 50 --podman-runs 10]
// Prints a table, then as its last line one JSON object:
// {add_p50_ms, add_p99_ms, del_p50_ms, bridge_add_p50_ms,
//  add_p50_ratio_vs_bridge, podman_start_ratio_vs_bridge}.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { CNI_BIN, REPO, startAgent, type TestAgent } from "../test/helpers/agent.js";
import { Cleanup, createNetns, randomName, type TestNetns } from "../test/helpers/netns.js";

const SYSTEM_CNI = "/usr/lib/cni";
const WARMUP = 3;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

/** Nearest-rank percentile of `xs` (ms). */
function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

/** Run one plugin invocation; resolves with its wall time, rejects on failure. */
function timedPlugin(bin: string, conf: string, env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(bin, [], { env: { PATH: process.env["PATH"] ?? "", CNI_PATH: SYSTEM_CNI, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    p.stderr.on("data", () => undefined);
    p.on("error", reject);
    p.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${path.basename(bin)} ${env["CNI_COMMAND"] ?? ""}: ${out.trim()}`));
    });
    p.stdin.end(conf);
  });
}

interface Plugin {
  readonly label: string;
  readonly bin: string;
  readonly conf: string;
  readonly add: number[];
  readonly del: number[];
}

function env(verb: string, id: string, ns: TestNetns, n: number): Record<string, string> {
  return { CNI_COMMAND: verb, CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: "eth0", CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p${n}` };
}

/** ADD n pods per plugin, alternating which plugin goes first, then DEL them the same way. */
async function pluginRounds(plugins: readonly Plugin[], pods: number, cleanup: Cleanup): Promise<void> {
  const made = plugins.map(() => [] as { id: string; ns: TestNetns }[]);
  for (let i = 0; i < pods + WARMUP; i++) {
    const order = i % 2 === 0 ? plugins.map((_, k) => k) : plugins.map((_, k) => k).reverse();
    for (const k of order) {
      const pl = plugins[k] as Plugin;
      const ns = createNetns(cleanup);
      const id = randomName("twtb", 16);
      const ms = await timedPlugin(pl.bin, pl.conf, env("ADD", id, ns, i));
      cleanup.add(`DEL ${id}`, () => { spawnSync(pl.bin, [], { input: pl.conf, env: { PATH: process.env["PATH"] ?? "", CNI_PATH: SYSTEM_CNI, ...env("DEL", id, ns, i) } }); });
      made[k]?.push({ id, ns });
      if (i >= WARMUP) pl.add.push(ms);
    }
  }
  for (let i = 0; i < pods + WARMUP; i++) {
    const order = i % 2 === 0 ? plugins.map((_, k) => k) : plugins.map((_, k) => k).reverse();
    for (const k of order) {
      const pl = plugins[k] as Plugin;
      const pod = made[k]?.[i];
      if (pod === undefined) continue;
      const ms = await timedPlugin(pl.bin, pl.conf, env("DEL", pod.id, pod.ns, i));
      if (i >= WARMUP) pl.del.push(ms);
    }
  }
}

/** podman using temp CNI dirs (nothing under /etc/cni) via CONTAINERS_CONF. */
function podmanEnv(dir: string, binDir: string, confDir: string): NodeJS.ProcessEnv {
  const conf = path.join(dir, "containers.conf");
  fs.writeFileSync(conf, [
    "[containers]", 'default_ulimits = ["nofile=4096:4096", "nproc=1024:1024"]',
    "[engine]", 'runtime = "runc"', 'cgroup_manager = "cgroupfs"', 'events_logger = "file"',
    "[network]", 'network_backend = "cni"', `cni_plugin_dirs = ["${binDir}", "${SYSTEM_CNI}"]`, `network_config_dir = "${confDir}"`, "",
  ].join("\n"));
  return { ...process.env, CONTAINERS_CONF: conf };
}

/** `podman run -d` wall times per network, interleaved; containers removed untimed. */
function podmanRounds(penv: NodeJS.ProcessEnv, image: string, networks: readonly string[], runs: number): Map<string, number[]> {
  const out = new Map(networks.map((n) => [n, [] as number[]]));
  for (let i = 0; i < runs + 1; i++) {
    for (const net of i % 2 === 0 ? networks : [...networks].reverse()) {
      const name = randomName("twt-bench-", 8);
      const t0 = process.hrtime.bigint();
      const r = spawnSync("podman", ["run", "-d", "--name", name, "--network", net, image, "sleep", "600"], { env: penv, encoding: "utf8" });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      spawnSync("podman", ["rm", "-f", "-t", "0", name], { env: penv, stdio: "ignore" });
      if (r.status !== 0) throw new Error(`podman run --network ${net}: ${r.stderr}`);
      if (i > 0) out.get(net)?.push(ms); // the first round warms podman's caches
    }
  }
  return out;
}

const f1 = (x: number): string => x.toFixed(1);

async function main(): Promise<void> {
  const pods = arg("pods", 50);
  const podmanRuns = arg("podman-runs", 10);
  const cleanup = new Cleanup();
  const bridges = [randomName("twtbr", 8), randomName("twtbr", 8)];
  let agent: TestAgent | null = null;
  try {
    agent = await startAgent({ podCidrs: ["10.244.29.0/25", "fd00:10:244:29::/80"] });
    const a = agent;
    for (const b of bridges) cleanup.add(`bridge ${b}`, () => { spawnSync("ip", ["link", "del", b], { stdio: "ignore" }); });
    const bridgeConf = (name: string, br: string, v4: string, v6: string): Record<string, unknown> => ({
      cniVersion: "1.0.0", name, type: "bridge", bridge: br, isGateway: true, ipMasq: false,
      ipam: { type: "host-local", dataDir: path.join(a.dir, "host-local"), ranges: [[{ subnet: v4 }], [{ subnet: v6 }]] },
    });
    const twill: Plugin = { label: "twill-cni (agent IPAM)", bin: CNI_BIN, add: [], del: [],
      conf: JSON.stringify({ cniVersion: "1.0.0", name: "twt-bench", type: "twill-cni", socket: a.socket, deletionQueueDir: path.join(a.dir, "dq") }) };
    const bridge: Plugin = { label: "bridge + host-local", bin: path.join(SYSTEM_CNI, "bridge"), add: [], del: [],
      conf: JSON.stringify(bridgeConf("twt-bench-br", bridges[0] ?? "", "10.244.29.128/26", "fd00:10:244:29:1::/80")) };
    await pluginRounds([twill, bridge], pods, cleanup);
    cleanup.run(); // netns of the plugin rounds (their DEL already ran)
    for (const b of bridges) cleanup.add(`bridge ${b}`, () => { spawnSync("ip", ["link", "del", b], { stdio: "ignore" }); });

    let podman: Map<string, number[]> | null = null;
    let podmanError = "";
    try {
      const image = execFileSync("bash", [path.join(REPO, "hack", "podman-image.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
      const binDir = path.join(a.dir, "podman-cni-bin");
      const confDir = path.join(a.dir, "podman-cni-conf");
      fs.mkdirSync(binDir);
      fs.mkdirSync(confDir);
      fs.copyFileSync(CNI_BIN, path.join(binDir, "twill-cni"));
      fs.chmodSync(path.join(binDir, "twill-cni"), 0o755);
      const twNet = randomName("twt-bench-tw-", 6);
      const brNet = randomName("twt-bench-br-", 6);
      fs.writeFileSync(path.join(confDir, `${twNet}.conflist`), JSON.stringify({ cniVersion: "1.0.0", name: twNet, plugins: [{ type: "twill-cni", socket: a.socket, deletionQueueDir: path.join(a.dir, "dq") }] }));
      const { cniVersion, name, ...br } = bridgeConf(brNet, bridges[1] ?? "", "10.244.29.192/26", "fd00:10:244:29:2::/80");
      fs.writeFileSync(path.join(confDir, `${brNet}.conflist`), JSON.stringify({ cniVersion, name, plugins: [br] }));
      podman = podmanRounds(podmanEnv(a.dir, binDir, confDir), image, [twNet, brNet, "none"], podmanRuns);
      podman = new Map([["twill", podman.get(twNet) ?? []], ["bridge", podman.get(brNet) ?? []], ["none", podman.get("none") ?? []]]);
    } catch (e: unknown) {
      podmanError = e instanceof Error ? e.message : String(e);
    }

    const rows = [twill, bridge].map((p) => [p.label, f1(pct(p.add, 50)), f1(pct(p.add, 99)), f1(pct(p.del, 50)), f1(pct(p.del, 99))]);
    const head = ["plugin", "ADD p50 ms", "ADD p99 ms", "DEL p50 ms", "DEL p99 ms"];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const line = (r: readonly string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i] ?? 0) : c.padStart(w[i] ?? 0))).join("  ");
    console.log(`CNI ADD/DEL over ${pods} pods each (dual-stack, interleaved, ${WARMUP} warm-up pods dropped)`);
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    // Does ADD cost grow with the number of pods already on the node?
    const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    for (const p of [twill, bridge]) {
      console.log(`${p.label}: ADD mean of the first 10 pods ${f1(mean(p.add.slice(0, 10)))} ms, of the last 10 ${f1(mean(p.add.slice(-10)))} ms`);
    }
    let podmanRatio: number | null = null;
    if (podman !== null) {
      const m = (k: string): number => pct(podman?.get(k) ?? [], 50);
      podmanRatio = m("twill") / m("bridge");
      console.log(`\npodman run -d, p50 over ${podmanRuns} containers each (interleaved)`);
      console.log(`  twill network  ${f1(m("twill"))} ms   (network share ${f1(m("twill") - m("none"))} ms)`);
      console.log(`  bridge network ${f1(m("bridge"))} ms   (network share ${f1(m("bridge") - m("none"))} ms)`);
      console.log(`  --network none ${f1(m("none"))} ms`);
    } else {
      console.log(`\npodman: not measured: ${podmanError}`);
    }
    const r2 = (x: number): number => Math.round(x * 100) / 100;
    console.log(JSON.stringify({
      add_p50_ms: r2(pct(twill.add, 50)), add_p99_ms: r2(pct(twill.add, 99)), del_p50_ms: r2(pct(twill.del, 50)),
      bridge_add_p50_ms: r2(pct(bridge.add, 50)), add_p50_ratio_vs_bridge: r2(pct(twill.add, 50) / pct(bridge.add, 50)),
      podman_start_ratio_vs_bridge: podmanRatio === null ? null : r2(podmanRatio),
    }));
  } finally {
    try { cleanup.run(); } catch (e: unknown) { console.error(e instanceof Error ? e.message : String(e)); }
    await agent?.stop();
  }
}

await main();
