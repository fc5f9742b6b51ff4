// SPDX-License-Identifier: Apache-2.0
// Observe throughput: how many flow events per second reach a `twill
// observe --follow` client while the datapath is flooded with denied SYNs,
// how many are lost on the way (kernel ring buffer full: twill_ev_lost;
// client too slow: LostEvents notices), and the agent's CPU meanwhile.
//
// Setup: a real agent (test/helpers/agent.ts) and two pods, front/attacker
// and back/victim; back/victim only accepts TCP/80 from nobody, so every SYN
// to port 9 is dropped at its ingress (one DROP event) after the attacker's
// egress opened a conntrack entry (one new-conn event). The flood is a Node
// loop in the attacker's netns keeping many non-blocking connects in flight,
// each closed after a short timeout so that source ports keep changing.
//
// Client: `twill observe --follow -o json` as a separate process (what an
// operator runs), lines counted here; `--client grpc` reads the stream in
// this process instead.
//
// Output: a table, then as the LAST line one JSON object
// {"events_per_s","lost_share","agent_cpu_pct"}.
// Usage: npx tsx bench/observe.ts [--seconds 5] [--concurrency 800] [--hold-ms 40] [--client cli|grpc]
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { run } from "../cli/main.js";
import { AgentConnection } from "../cli/client.js";
import type { ObserveResponse__Output } from "../agent/generated/proto/twill/v1/ObserveResponse.js";
import { REPO, startAgent, type TestAgent } from "../test/helpers/agent.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const SECONDS = Number(arg("--seconds", "5"));
const CONCURRENCY = Number(arg("--concurrency", "800"));
const HOLD_MS = Number(arg("--hold-ms", "40"));
const CLIENT = arg("--client", "cli");
if (CLIENT !== "cli" && CLIENT !== "grpc") throw new Error(`--client: ${CLIENT} is not cli or grpc`);
const DENIED_PORT = 9;

const MANIFESTS = {
  "pods.yaml": [["front", "attacker"], ["back", "victim"]]
    .map(([ns, n]) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${n}, namespace: ${ns}, labels: {app: ${n}}}\nspec: {containers: [{name: c}]}\n`)
    .join("---\n"),
  "pol.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: victim-closed, namespace: back}\nspec:\n  podSelector: {matchLabels: {app: victim}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: nobody}}}], ports: [{port: 80}]}]\n",
};

// Runs in the attacker's netns (plain CommonJS for `node -e`). Prints the
// number of connects it started.
const FLOOD = `
const net = require("node:net");
const [host, port, ms, conc, hold] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const end = Date.now() + ms;
let started = 0;
function one() {
  if (Date.now() >= end) return;
  const s = net.connect({ host, port });
  started++;
  s.on("error", () => {});
  setTimeout(() => { s.destroy(); one(); }, hold);
}
for (let i = 0; i < conc; i++) one();
setTimeout(() => { process.stdout.write(String(started) + "\\n"); process.exit(0); }, ms + hold + 50);
`;

/** Counts of what a client received. */
interface Received {
  flows: number;
  clientLost: number;
  ringLostNotices: number;
  lastAt: number;
}

/** An observe client; `received` grows as messages arrive. */
interface Client {
  readonly received: Received;
  /** CPU ticks used by the client so far. */
  cpuTicks(): number;
  stop(): void;
}

function cliClient(socket: string): Client {
  const received: Received = { flows: 0, clientLost: 0, ringLostNotices: 0, lastAt: 0 };
  const p = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "cli/main.ts"), "--socket", socket, "observe", "--follow", "-o", "json"], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
  let buf = "";
  p.stdout.on("data", (d: Buffer) => {
    const lines = (buf + d.toString()).split("\n");
    buf = lines.pop() ?? "";
    for (const line of lines) {
      // Flows are the bulk: tell them apart without parsing.
      if (line.startsWith('{"flow"')) received.flows++;
      else if (line.startsWith('{"lost"')) {
        const l = (JSON.parse(line) as { lost: { count: string; source: string } }).lost;
        if (l.source === "LOST_SOURCE_CLIENT") received.clientLost += Number(l.count);
        else received.ringLostNotices += Number(l.count);
      }
    }
    received.lastAt = Date.now();
  });
  return { received, cpuTicks: () => cpuTicks(p.pid ?? 0), stop: () => { p.kill("SIGKILL"); } };
}

function grpcClient(socket: string): Client {
  const received: Received = { flows: 0, clientLost: 0, ringLostNotices: 0, lastAt: 0 };
  const conn = new AgentConnection(socket);
  const call = conn.observer.Observe({ follow: true });
  call.on("data", (m: ObserveResponse__Output) => {
    if (m.flow != null) received.flows++;
    else if (m.lost != null) {
      if (m.lost.source === "LOST_SOURCE_CLIENT") received.clientLost += Number(m.lost.count);
      else received.ringLostNotices += Number(m.lost.count);
    }
    received.lastAt = Date.now();
  });
  call.on("error", () => undefined);
  return {
    received,
    cpuTicks: () => { const u = process.cpuUsage(); return ((u.user + u.system) / 1e6) * CLK_TCK; },
    stop: () => { call.cancel(); conn.close(); },
  };
}

async function twillJson<T>(agent: TestAgent, args: readonly string[]): Promise<T> {
  let out = "";
  let err = "";
  const code = await run(["--socket", agent.socket, "-o", "json", ...args], {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    isTty: false,
    env: {},
  });
  if (code !== 0) throw new Error(`twill ${args.join(" ")}: exit ${code}: ${err}`);
  return JSON.parse(out) as T;
}

async function eventsLost(agent: TestAgent): Promise<number> {
  return Number((await twillJson<{ eventsLost: string }>(agent, ["status"])).eventsLost);
}

async function policyDrops(agent: TestAgent): Promise<number> {
  const d = await twillJson<{ entries: Record<string, string>[] }>(agent, ["map", "dump", "metrics"]);
  return d.entries.filter((e) => e["REASON"] === "DROP_POLICY").reduce((s, e) => s + Number(e["PACKETS"]), 0);
}

/** The agent process: the one whose command line names this agent's bpf root. */
function agentPid(agent: TestAgent): number {
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      if (cmd.some((a) => a.endsWith("agent/main.ts")) && cmd.includes(agent.bpfRoot)) return Number(d);
    } catch {
      // the process exited while we looked
    }
  }
  throw new Error(`find agent process: none runs with --bpf-root ${agent.bpfRoot}`);
}

/** utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat). */
function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

const CLK_TCK = 100; // getconf CLK_TCK on Linux x86-64

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const agent = await startAgent({ podCidrs: ["10.244.31.0/24", "fd00:10:244:31::/64"], manifests: MANIFESTS, extraArgs: ["--log-level", "info"] });
  let client: Client | null = null;
  try {
    const attacker = agent.addPod("front", "attacker");
    const victim = agent.addPod("back", "victim");
    const pid = agentPid(agent);

    client = CLIENT === "cli" ? cliClient(agent.socket) : grpcClient(agent.socket);
    // The stream is live once a drop made after it opened arrives.
    for (let i = 0; i < 50 && client.received.flows === 0; i++) {
      agent.probe(attacker, "tcp", victim.ipv4, DENIED_PORT, 100);
      await sleep(100);
    }
    if (client.received.flows === 0) throw new Error("observe client never received a flow");
    await sleep(300);

    const base = { ...client.received };
    const lost0 = await eventsLost(agent);
    const drops0 = await policyDrops(agent);
    const cpu0 = cpuTicks(pid);
    const clientCpu0 = client.cpuTicks();
    const t0 = Date.now();
    const flood = spawn("ip", ["netns", "exec", attacker.netns.name, process.execPath, "-e", FLOOD, victim.ipv4, String(DENIED_PORT), String(SECONDS * 1000), String(CONCURRENCY), String(HOLD_MS)], { stdio: ["ignore", "pipe", "inherit"] });
    let floodOut = "";
    flood.stdout.on("data", (d: Buffer) => { floodOut += d.toString(); });
    await new Promise((r) => flood.on("close", r));
    const t1 = Date.now();
    const cpu1 = cpuTicks(pid);
    const clientCpu1 = client.cpuTicks();
    // Let the client drain what is still queued (until 500 ms pass without a message).
    while (Date.now() - client.received.lastAt < 500 && Date.now() - t1 < 10_000) await sleep(100);
    // The agent reports ring losses once a second.
    await sleep(1100);
    const lost1 = await eventsLost(agent);
    const drops1 = await policyDrops(agent);

    const r = client.received;
    const delivered = r.flows - base.flows;
    const clientLost = r.clientLost - base.clientLost;
    const ringLost = lost1 - lost0;
    const lost = ringLost + clientLost;
    const deliverSeconds = Math.max(t1, r.lastAt) / 1000 - t0 / 1000;
    const result = {
      events_per_s: Math.round(delivered / deliverSeconds),
      lost_share: Number((lost / Math.max(1, delivered + lost)).toFixed(4)),
      agent_cpu_pct: Number((((cpu1 - cpu0) / CLK_TCK / ((t1 - t0) / 1000)) * 100).toFixed(1)),
    };
    const rows: [string, string][] = [
      ["client", CLIENT === "cli" ? "twill observe --follow -o json" : "in-process gRPC Observe"],
      ["flood", `${SECONDS}s, ${CONCURRENCY} connects in flight, ${HOLD_MS} ms each, to ${victim.ipv4}:${DENIED_PORT}`],
      ["connects started", floodOut.trim()],
      ["SYNs dropped by policy (DROP_POLICY)", String(drops1 - drops0)],
      ["flow events delivered", String(delivered)],
      ["lost in ring buffer (twill_ev_lost)", String(ringLost)],
      ["lost by slow client (notices)", String(clientLost)],
      ["events/s delivered", String(result.events_per_s)],
      ["lost share", `${(result.lost_share * 100).toFixed(2)} %`],
      ["agent CPU during flood", `${result.agent_cpu_pct} % of one core`],
      ["client CPU during flood", `${(((clientCpu1 - clientCpu0) / CLK_TCK / ((t1 - t0) / 1000)) * 100).toFixed(1)} % of one core`],
    ];
    const w = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}  ${v}\n`);
    process.stdout.write(JSON.stringify(result) + "\n");
  } finally {
    client?.stop();
    await agent.stop();
  }
}

await main();
// grpc-js keeps handles open after close(); the bench is done.
process.exit(0);
