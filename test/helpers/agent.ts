// SPDX-License-Identifier: Apache-2.0
// Test harness for end-to-end tests: a real twill-agent process in
// standalone mode (own bpf root, state dir, socket and manifest dir) or in
// Kubernetes mode (`kubeconfig` + `nodeName` options), pods
// wired by the real twill-cni binary into netns the test owns, netprobe
// servers/clients in them, and the twill CLI. `stop()` removes everything,
// also after a failed test.
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Cleanup, createNetns, randomName, type TestNetns } from "./netns.js";

export const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
export const CNI_BIN = path.join(REPO, "build", "twill-cni");
const NETPROBE = path.join(REPO, "hack", "netprobe.mjs");

/** Build build/twill-cni if missing or older than its sources. */
export function ensureCniBuilt(): string {
  const newest = Math.max(...fs.readdirSync(path.join(REPO, "cni"), { recursive: true }).map((f) => fs.statSync(path.join(REPO, "cni", String(f))).mtimeMs));
  if (!fs.existsSync(CNI_BIN) || fs.statSync(CNI_BIN).mtimeMs < newest) {
    execFileSync("bash", [path.join(REPO, "hack", "build-cni.sh")], { stdio: "ignore" });
  }
  return CNI_BIN;
}

/** A pod made by {@link TestAgent.addPod}. */
export interface TestPod {
  readonly namespace: string;
  readonly name: string;
  readonly containerId: string;
  readonly netns: TestNetns;
  readonly ipv4: string;
  readonly ipv6: string;
  readonly hostIfname: string;
}

/** Options of startAgent. */
export interface AgentOptions {
  /**
   * Pod CIDRs; use a range no other test file uses (host routes are global).
   * In Kubernetes mode [] lets the agent take them from its Node's spec.podCIDRs.
   */
  readonly podCidrs: readonly string[];
  /** Manifests written to the agent's manifest dir before start (file name -> YAML); standalone mode only. */
  readonly manifests?: Readonly<Record<string, string>>;
  /** Kubernetes mode: the agent watches the API server of this kubeconfig instead of a manifest dir. */
  readonly kubeconfig?: string;
  /** Kubernetes mode: --node-name (the Node whose pods and podCIDRs are this agent's). */
  readonly nodeName?: string;
  readonly extraArgs?: readonly string[];
}

/** A running agent plus everything the test made around it. */
export class TestAgent {
  readonly cleanup = new Cleanup();
  readonly pods: TestPod[] = [];
  private proc: ChildProcess | null = null;
  logs = "";

  constructor(
    readonly dir: string,
    readonly bpfRoot: string,
    readonly socket: string,
    readonly manifestDir: string,
    private readonly args: string[],
  ) {}

  /** Start (or restart) the agent process and wait for its socket. */
  async start(): Promise<void> {
    fs.rmSync(this.socket, { force: true });
    const p = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "agent/main.ts"), ...this.args], { cwd: REPO, stdio: ["ignore", "ignore", "pipe"] });
    p.stderr?.on("data", (d: Buffer) => { this.logs += d.toString(); });
    this.proc = p;
    const deadline = Date.now() + 60_000;
    while (!fs.existsSync(this.socket)) {
      if (p.exitCode !== null) throw new Error(`twill-agent exited with ${p.exitCode}:\n${this.logs}`);
      if (Date.now() > deadline) throw new Error(`twill-agent did not open ${this.socket}:\n${this.logs}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stop the agent process (signal "SIGKILL" to simulate a crash). Pins and links stay. */
  async kill(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill(signal);
    await exited;
    this.proc = null;
  }

  /** Run the CNI plugin with a verb; returns parsed stdout and the exit code. */
  cni(verb: string, containerId: string, netns: string, extraEnv: Record<string, string> = {}, conf: Record<string, unknown> = {}): { code: number; out: Record<string, unknown> } {
    const net = { cniVersion: "1.1.0", name: "twill-test", type: "twill-cni", socket: this.socket, deletionQueueDir: path.join(this.dir, "dq"), ...conf };
    const r = spawnSync(CNI_BIN, [], {
      input: JSON.stringify(net), encoding: "utf8", timeout: 30_000,
      env: { ...process.env, CNI_COMMAND: verb, CNI_CONTAINERID: containerId, CNI_NETNS: netns, CNI_IFNAME: "eth0", CNI_PATH: "/usr/lib/cni", ...extraEnv },
    });
    let out: Record<string, unknown> = {};
    try { out = JSON.parse(r.stdout || "{}") as Record<string, unknown>; } catch { out = { raw: r.stdout }; }
    return { code: r.status ?? -1, out };
  }

  /** Make a netns and run CNI ADD for namespace/name in it. */
  addPod(namespace: string, name: string): TestPod {
    const netns = createNetns(this.cleanup);
    const containerId = randomName("ctr", 16);
    const r = this.cni("ADD", containerId, netns.path, { CNI_ARGS: `K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name}` });
    if (r.code !== 0) throw new Error(`cni ADD ${namespace}/${name}: ${JSON.stringify(r.out)}\n${this.logs}`);
    this.cleanup.add(`cni DEL ${containerId}`, () => { this.cni("DEL", containerId, netns.path); });
    const ips = (r.out["ips"] as { address: string }[]).map((i) => i.address.split("/")[0] ?? "");
    const ifaces = r.out["interfaces"] as { name: string; sandbox?: string }[];
    const pod: TestPod = {
      namespace, name, containerId, netns,
      ipv4: ips.find((i) => !i.includes(":")) ?? "", ipv6: ips.find((i) => i.includes(":")) ?? "",
      hostIfname: ifaces.find((i) => !i.sandbox)?.name ?? "",
    };
    this.pods.push(pod);
    return pod;
  }

  /** Start netprobe echo servers (TCP+UDP, v4+v6) on ports inside a pod. */
  serve(pod: TestPod, ports: readonly number[]): void {
    const p = spawn("ip", ["netns", "exec", pod.netns.name, process.execPath, NETPROBE, "serve", ...ports.map(String)], { stdio: "ignore" });
    this.cleanup.add(`netprobe in ${pod.name}`, () => { p.kill("SIGKILL"); });
  }

  /** One connection attempt from a pod: "ok", "timeout", "refused"... */
  probe(from: TestPod, proto: "tcp" | "udp", ip: string, port: number, timeoutMs = 600): string {
    const r = spawnSync("ip", ["netns", "exec", from.netns.name, process.execPath, NETPROBE, "connect", proto, ip, String(port), String(timeoutMs)], { encoding: "utf8", timeout: timeoutMs + 5000 });
    return (r.stdout ?? "").trim();
  }

  /** Run the twill CLI against this agent; returns stdout and exit code. */
  twill(args: readonly string[]): { code: number; stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, ["--import", "tsx", path.join(REPO, "cli/main.ts"), "--socket", this.socket, ...args], { cwd: REPO, encoding: "utf8", timeout: 30_000 });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** Replace a manifest file (the agent picks it up through its watcher). */
  writeManifest(file: string, yaml: string): void {
    const tmp = path.join(this.manifestDir, `.${file}.tmp`);
    fs.writeFileSync(tmp, yaml);
    fs.renameSync(tmp, path.join(this.manifestDir, file));
  }

  removeManifest(file: string): void {
    fs.rmSync(path.join(this.manifestDir, file), { force: true });
  }

  /** Tear everything down: pods (CNI DEL), agent, pins, links, dirs. */
  async stop(): Promise<void> {
    let err: unknown = null;
    try { this.cleanup.run(); } catch (e: unknown) { err = e; }
    await this.kill();
    spawnSync(process.execPath, ["--import", "tsx", path.join(REPO, "agent/main.ts"), "--cleanup", "--bpf-root", this.bpfRoot], { cwd: REPO, stdio: "ignore" });
    fs.rmSync(this.bpfRoot, { recursive: true, force: true });
    fs.rmSync(this.dir, { recursive: true, force: true });
    if (err) throw err;
  }
}

/** Start an agent with fresh dirs; call `stop()` in afterEach/afterAll. */
export async function startAgent(o: AgentOptions): Promise<TestAgent> {
  ensureCniBuilt();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twill-e2e-"));
  const bpfRoot = `/sys/fs/bpf/${randomName("twill-test-", 8)}`;
  const manifestDir = path.join(dir, "manifests");
  fs.mkdirSync(manifestDir);
  for (const [f, y] of Object.entries(o.manifests ?? {})) fs.writeFileSync(path.join(manifestDir, f), y);
  const socket = path.join(dir, "agent.sock");
  const source = o.kubeconfig !== undefined
    ? ["--kubeconfig", o.kubeconfig, ...(o.nodeName !== undefined ? ["--node-name", o.nodeName] : [])]
    : ["--manifests", manifestDir];
  const args = [...source, "--bpf-root", bpfRoot, "--state-dir", path.join(dir, "state"), "--socket", socket,
    ...o.podCidrs.flatMap((c) => ["--pod-cidr", c]), "--log-level", "debug", ...(o.extraArgs ?? [])];
  const a = new TestAgent(dir, bpfRoot, socket, manifestDir, args);
  try {
    await a.start();
  } catch (e: unknown) {
    await a.stop().catch(() => undefined);
    throw e;
  }
  return a;
}
