// SPDX-License-Identifier: Apache-2.0
// The `twill` CLI end to end: a real twill-agent, three pods in two
// namespaces wired by twill-cni, real packets. Checks what an operator sees:
// status, endpoints, identities, policies, validate, observe (a denied
// connection shows up with reason POLICY within a second), policy trace
// against what packets did in a matrix, map dumps against bpftool, metrics
// (CLI and Prometheus), and the documented errors and exit codes.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { run } from "../../cli/main.js";
import { twillReasonName } from "../../agent/generated/bpf-types.js";
import { REPO, startAgent, type TestAgent, type TestPod } from "../helpers/agent.js";

const NETPROBE = path.join(REPO, "hack", "netprobe.mjs");
const METRICS_PORT = 20000 + Math.floor(Math.random() * 30000);

const pod = (ns: string, name: string): string =>
  `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: ${ns}, labels: {app: ${name}}}\nspec: {containers: [{name: c}]}\n`;

// front/web: not isolated. back/db: ingress only from web (TCP/80, UDP/81,
// any namespace) and from cache (TCP/81). back/cache: egress only to db
// (TCP/81, UDP/81); its ingress is not isolated.
const MANIFESTS = {
  "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: front}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: back}\n",
  "pods.yaml": [pod("front", "web"), pod("back", "db"), pod("back", "cache")].join("---\n"),
  "db.yaml": `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: back}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80, protocol: TCP}, {port: 81, protocol: UDP}]
  - from: [{podSelector: {matchLabels: {app: cache}}}]
    ports: [{port: 81}]
`,
  "cache.yaml": `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cache-egress, namespace: back}
spec:
  podSelector: {matchLabels: {app: cache}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 81, protocol: TCP}, {port: 81, protocol: UDP}]
`,
};

interface CliResult { code: number; stdout: string; stderr: string }

/** The CLI in this process (same code as the binary, no tsx start-up per call). */
async function twillIn(socket: string, args: readonly string[]): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await run(["--socket", socket, ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    isTty: false,
    env: {},
  });
  return { code, stdout, stderr };
}

/** netprobe connect without blocking the event loop (the matrix runs probes concurrently). */
function probeAsync(from: TestPod, proto: "tcp" | "udp", ip: string, port: number, timeoutMs = 700): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn("ip", ["netns", "exec", from.netns.name, process.execPath, NETPROBE, "connect", proto, ip, String(port), String(timeoutMs)]);
    let out = "";
    p.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    p.on("close", () => resolve(out.trim()));
  });
}

async function inBatches<T, R>(items: readonly T[], size: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

interface BpftoolEntry {
  key: string[];
  value?: string[];
  values?: { cpu: number; value: string[] }[];
  formatted?: { key: unknown; value?: Record<string, unknown>; values?: { cpu: number; value: Record<string, unknown> }[] };
}

function bpftool(args: readonly string[]): BpftoolEntry[] {
  return JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", ...args], { encoding: "utf8" })) as BpftoolEntry[];
}

const bytes = (hex: readonly string[]): number[] => hex.map((h) => parseInt(h, 16));
const u32le = (b: readonly number[], o: number): number => ((b[o] ?? 0) | ((b[o + 1] ?? 0) << 8) | ((b[o + 2] ?? 0) << 16) | ((b[o + 3] ?? 0) << 24)) >>> 0;
const u32be = (b: readonly number[], o: number): number => (((b[o] ?? 0) << 24) | ((b[o + 1] ?? 0) << 16) | ((b[o + 2] ?? 0) << 8) | (b[o + 3] ?? 0)) >>> 0;
const u16be = (b: readonly number[], o: number): number => ((b[o] ?? 0) << 8) | (b[o + 1] ?? 0);
const ip4 = (b: readonly number[], o: number): string => b.slice(o, o + 4).join(".");
/** Canonical (RFC 5952) text of 16 address bytes, via the WHATWG URL serializer. */
function ip6(b: readonly number[], o: number): string {
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(u16be(b, o + i).toString(16));
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
}
const PROTO: Readonly<Record<number, string>> = { 0: "any", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP" };

interface FlowJson {
  time: string;
  source: { ip: string; port: number; namespace: string; pod: string; identity: number };
  destination: { ip: string; port: number; namespace: string; pod: string; identity: number };
  protocol: string;
  direction: string;
  verdict: string;
  dropReason: string;
}

/** A `twill observe --follow -o json` process and the flows it printed so far. */
class ObserveClient {
  readonly flows: { at: number; flow: FlowJson }[] = [];
  private buf = "";
  private readonly waiters = new Set<() => void>();
  readonly proc: ChildProcess;

  constructor(socket: string, args: readonly string[]) {
    this.proc = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "cli/main.ts"), "--socket", socket, "observe", "--follow", "-o", "json", ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    this.proc.stdout?.on("data", (d: Buffer) => {
      this.buf += d.toString();
      let nl: number;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const m = JSON.parse(line) as { flow?: FlowJson };
        if (m.flow) this.flows.push({ at: Date.now(), flow: m.flow });
      }
      for (const w of this.waiters) w();
    });
  }

  /** Resolves with the first flow (new since index `from`) matching pred, or null after timeoutMs. */
  waitFor(pred: (f: FlowJson) => boolean, timeoutMs: number, from = 0): Promise<{ at: number; flow: FlowJson } | null> {
    return new Promise((resolve) => {
      const check = (): void => {
        const hit = this.flows.slice(from).find((x) => pred(x.flow));
        if (hit) { done(); resolve(hit); }
      };
      const timer = setTimeout(() => { done(); resolve(null); }, timeoutMs);
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  stop(): void {
    this.proc.kill("SIGKILL");
  }
}

describe("twill CLI against a running agent", () => {
  let agent: TestAgent;
  let web: TestPod;
  let db: TestPod;
  let cache: TestPod;
  const pods = (): TestPod[] => [web, db, cache];
  const twill = (args: readonly string[]): Promise<CliResult> => twillIn(agent.socket, args);

  beforeAll(async () => {
    agent = await startAgent({
      podCidrs: ["10.244.30.0/24", "fd00:10:244:30::/64"],
      manifests: MANIFESTS,
      extraArgs: ["--metrics-addr", `127.0.0.1:${METRICS_PORT}`],
    });
    web = agent.addPod("front", "web");
    db = agent.addPod("back", "db");
    cache = agent.addPod("back", "cache");
    for (const p of pods()) agent.serve(p, [80, 81]);
    // Servers up and policy in force: the allowed path answers.
    for (let i = 0; i < 50 && agent.probe(web, "tcp", db.ipv4, 80) !== "ok"; i++) await new Promise((r) => setTimeout(r, 100));
  });
  afterAll(async () => { await agent?.stop(); });

  it("status shows endpoints, identities and the datapath mode", async () => {
    const r = agent.twill(["status"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Endpoints:\s+3$/m);
    expect(r.stdout).toMatch(/^Identities:\s+3$/m);
    expect(r.stdout).toMatch(/^Datapath:\s+(tcx|clsact)$/m);
    expect(r.stdout).toMatch(/^Policies:\s+2$/m);
    const j = JSON.parse((await twill(["status", "-o", "json"])).stdout) as { endpointCount: number; datapathMode: string };
    expect(j.endpointCount).toBe(3);
  });

  it("endpoint list shows the pods as a table, JSON and YAML", async () => {
    const table = agent.twill(["endpoint", "list"]);
    expect(table.code).toBe(0);
    for (const p of pods()) {
      const line = table.stdout.split("\n").find((l) => l.includes(`${p.namespace}/${p.name} `));
      expect(line, `${p.namespace}/${p.name} in\n${table.stdout}`).toBeDefined();
      expect(line).toContain(p.ipv4);
      expect(line).toContain(p.ipv6);
      expect(line).toContain(p.hostIfname);
      expect(line).toContain("ready");
    }
    type Ep = { pod: { namespace: string; name: string }; ipv4: { address: string }; identity: number };
    const json = JSON.parse((await twill(["endpoint", "list", "-o", "json"])).stdout) as Ep[];
    const yaml = parseYaml((await twill(["-o", "yaml", "endpoint", "list"])).stdout) as Ep[];
    for (const list of [json, yaml]) {
      expect(list.map((e) => `${e.pod.namespace}/${e.pod.name}=${e.ipv4.address}`).sort())
        .toEqual(pods().map((p) => `${p.namespace}/${p.name}=${p.ipv4}`).sort());
      expect(list.every((e) => e.identity >= 256)).toBe(true);
    }
    const back = JSON.parse((await twill(["endpoint", "list", "-n", "back", "-o", "json"])).stdout) as Ep[];
    expect(back.map((e) => e.pod.name).sort()).toEqual(["cache", "db"]);
  });

  it("endpoint get ns/pod shows its addresses, identity and labels", async () => {
    const r = await twill(["endpoint", "get", "back/db"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^IPv4:\\s+${db.ipv4.replace(/\./g, "\\.")}/32 via 169\\.254\\.1\\.1$`, "m"));
    expect(r.stdout).toMatch(/^Labels:.*k8s:app=db/m);
    expect(r.stdout).toMatch(/^Identity:\s+\d+$/m);
    const missing = await twill(["endpoint", "get", "back/nope"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("back/nope not found");
  });

  it("identity list|get show the pods' identities and labels", async () => {
    const eps = JSON.parse((await twill(["endpoint", "list", "-o", "json"])).stdout) as { pod: { name: string }; identity: number }[];
    const dbId = eps.find((e) => e.pod.name === "db")?.identity ?? -1;
    const list = await twill(["identity", "list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${dbId}\\s+.*k8s:app=db.*\\s+no\\s+1$`, "m"));
    expect(list.stdout).toMatch(/^2\s+reserved:world=\s+yes/m);
    const get = await twill(["identity", "get", String(dbId), "-o", "json"]);
    expect(JSON.parse(get.stdout)).toMatchObject({ id: dbId, labels: { "k8s:app": "db", "k8s:io.kubernetes.pod.namespace": "back" }, endpointCount: 1 });
    expect((await twill(["identity", "get", "65000"])).code).toBe(1);
  });

  it("policy list|get show the policies, their rules and selected pods", async () => {
    const list = await twill(["policy", "list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^back\s+cache-egress\s+.*EGRESS\s+1\s+1$/m);
    expect(list.stdout).toMatch(/^back\s+db-ingress\s+.*INGRESS\s+2\s+1$/m);
    const get = await twill(["policy", "get", "back/db-ingress", "-o", "json"]);
    const p = JSON.parse(get.stdout) as { selectedEndpoints: string[]; rules: { ports: string }[] };
    expect(p.selectedEndpoints).toEqual(["back/db"]);
    expect(p.rules.map((r) => r.ports)).toEqual(["TCP/80, UDP/81", "TCP/81"]);
    expect((await twill(["policy", "get", "back/absent"])).code).toBe(1);
  });

  it("policy validate names the bad field and exits 1; a good file exits 0", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twill-cli-"));
    try {
      const bad = path.join(dir, "bad.yaml");
      fs.writeFileSync(bad, MANIFESTS["db.yaml"].replace("{port: 81, protocol: UDP}", "{port: 81, protocol: UPD}"));
      const r = agent.twill(["policy", "validate", bad]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain("spec.ingress[0].ports[1].protocol");
      expect(r.stdout).toContain("UPD");
      const good = path.join(dir, "good.yaml");
      fs.writeFileSync(good, MANIFESTS["db.yaml"]);
      const ok = agent.twill(["policy", "validate", good]);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toContain("valid: 1 policy (back/db-ingress)");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("observe --follow shows a denied connection with reason POLICY within a second, both sides named", async () => {
    const obs = new ObserveClient(agent.socket, []);
    try {
      // The stream is live once an allowed connection made after start shows up.
      let live = null;
      for (let i = 0; i < 40 && live === null; i++) {
        agent.probe(web, "tcp", db.ipv4, 80);
        live = await obs.waitFor((f) => f.destination.port === 80 && f.verdict === "VERDICT_FORWARDED" && f.destination.ip === db.ipv4, 500);
      }
      expect(live, "observe stream never delivered a flow").not.toBeNull();
      expect(live?.flow).toMatchObject({
        source: { namespace: "front", pod: "web", ip: web.ipv4 },
        destination: { namespace: "back", pod: "db", ip: db.ipv4 },
        direction: "DIRECTION_EGRESS",
      });

      for (const [name, dst, src] of [["v4", db.ipv4, web.ipv4], ["v6", db.ipv6, web.ipv6]] as const) {
        const mark = obs.flows.length;
        const t0 = Date.now();
        const probe = probeAsync(web, "tcp", dst, 81, 1500);
        const hit = await obs.waitFor((f) => f.destination.ip === dst && f.destination.port === 81 && f.verdict === "VERDICT_DROPPED", 3000, mark);
        expect(await probe).toBe("timeout");
        expect(hit, `${name} drop not observed`).not.toBeNull();
        expect(hit!.at - t0, `${name} drop seen after ${hit!.at - t0} ms`).toBeLessThan(1000);
        expect(hit!.flow).toMatchObject({
          dropReason: "POLICY",
          direction: "DIRECTION_INGRESS",
          protocol: "PROTOCOL_TCP",
          source: { namespace: "front", pod: "web", ip: src },
          destination: { namespace: "back", pod: "db" },
        });
      }
    } finally {
      obs.stop();
    }
    // The drop stays in the replay buffer for later readers, and filters apply.
    const past = await twill(["observe", "--last", "100", "--verdict", "dropped", "--pod", "back/db", "-o", "json"]);
    const flows = past.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { flow: FlowJson }).flow);
    expect(flows.some((f) => f.destination.port === 81 && f.dropReason === "POLICY")).toBe(true);
    expect(flows.every((f) => f.verdict === "VERDICT_DROPPED")).toBe(true);
    const table = await twill(["observe", "--last", "1", "--verdict", "dropped"]);
    expect(table.stdout).toMatch(/front\/web:\d+ \(id \d+\) -> back\/db:81 \(id \d+\)\s+TCP\s+INGRESS\s+DROPPED \(POLICY\)/);
  });

  it("policy trace agrees with what the packets did (pods x ports x TCP/UDP x v4/v6)", async () => {
    const cases = pods().flatMap((from) => pods().filter((to) => to !== from).flatMap((to) =>
      [80, 81].flatMap((port) => (["tcp", "udp"] as const).flatMap((proto) =>
        (["v4", "v6"] as const).map((family) => ({ from, to, port, proto, family }))))));
    const packets = await inBatches(cases, 8, (c) => probeAsync(c.from, c.proto, c.family === "v4" ? c.to.ipv4 : c.to.ipv6, c.port));
    const results = [];
    for (const [i, c] of cases.entries()) {
      // v4 names the destination pod, v6 its address: both peer forms.
      const to = c.family === "v4" ? `${c.to.namespace}/${c.to.name}` : c.to.ipv6;
      const t = await twill(["policy", "trace", "--from", `${c.from.namespace}/${c.from.name}`, "--to", to, "--protocol", c.proto.toUpperCase(), "--port", String(c.port), "-o", "json"]);
      const traced = t.code === 0 ? "ok" : t.code === 4 ? "timeout" : `exit ${t.code}: ${t.stderr}`;
      results.push(`${c.from.name}->${c.to.name} ${c.proto}/${c.port} ${c.family}: packets ${packets[i]}, trace ${traced}`);
      if (t.code === 0 || t.code === 4) expect(JSON.parse(t.stdout)).toHaveProperty("verdict", t.code === 0 ? "TRACE_VERDICT_ALLOWED" : "TRACE_VERDICT_DENIED");
    }
    const disagree = results.filter((r) => !/packets (\w+), trace \1$/.test(r));
    expect(disagree, results.join("\n")).toEqual([]);
    // The matrix exercises both verdicts and denials at egress and ingress.
    expect(results.filter((r) => r.endsWith("trace ok")).length).toBeGreaterThanOrEqual(8);
    expect(results.filter((r) => r.endsWith("trace timeout")).length).toBeGreaterThanOrEqual(8);
    const egressDenied = await twill(["policy", "trace", "--from", "back/cache", "--to", "front/web", "--port", "80"]);
    expect(egressDenied.code).toBe(4);
    expect(egressDenied.stdout).toMatch(/^EGRESS\s+back\/cache\s+yes\s+DENIED/m);
    const allowed = await twill(["policy", "trace", "--from", "front/web", "--to", "back/db", "--port", "80"]);
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toMatch(/^Decided by:\s+back\/db-ingress rule 0/m);
  });

  describe("map dump agrees with bpftool", () => {
    const pinned = (m: string): string[] => ["pinned", path.join(agent.bpfRoot, m)];
    const dump = async (args: readonly string[]): Promise<Record<string, string>[]> => {
      const r = await twill(["map", "dump", ...args, "-o", "json"]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { entries: Record<string, string>[] }).entries;
    };

    it.each([
      {
        name: "endpoints",
        bpf: (): string[] => bpftool(pinned("twill_endpoints")).map((e) => {
          const v = bytes(e.value ?? []);
          return `${u32le(v, 0)} ${u32le(v, 4)} ${ip4(v, 8)} ${ip6(v, 16)}`;
        }),
        twill: async (): Promise<string[]> => (await dump(["endpoints"])).map((r) => `${r["IFINDEX"]} ${r["IDENTITY"]} ${r["IPV4"]} ${r["IPV6"]}`),
      },
      {
        name: "ipcache",
        bpf: (): string[] => bpftool(pinned("twill_ipcache")).map((e) => {
          const k = bytes(e.key);
          const v = bytes(e.value ?? []);
          const addr = k[7] === 2 ? ip4(k, 8) : ip6(k, 8);
          return `${addr}/${u32le(k, 0) - 32} ${u32le(v, 0)}`;
        }),
        twill: async (): Promise<string[]> => (await dump(["ipcache"])).map((r) => `${r["PREFIX"]} ${r["IDENTITY"]}`),
      },
      {
        name: "ct",
        bpf: (): string[] => [
          ...bpftool(pinned("twill_ct4")).map((e) => {
            const k = bytes(e.key);
            const v = bytes(e.value ?? []);
            return `${PROTO[k[12] ?? 0]} ${ip4(k, 0)}:${u16be(k, 8)} ${ip4(k, 4)}:${u16be(k, 10)} ${u32le(v, 32)} ${u32le(v, 36)}`;
          }),
          ...bpftool(pinned("twill_ct6")).map((e) => {
            const k = bytes(e.key);
            const v = bytes(e.value ?? []);
            return `${PROTO[k[36] ?? 0]} [${ip6(k, 0)}]:${u16be(k, 32)} [${ip6(k, 16)}]:${u16be(k, 34)} ${u32le(v, 32)} ${u32le(v, 36)}`;
          }),
        ],
        twill: async (): Promise<string[]> => (await dump(["ct"])).map((r) => `${r["PROTO"]} ${r["SOURCE"]} ${r["DESTINATION"]} ${r["SRC_ID"]} ${r["DST_ID"]}`),
      },
      {
        name: "policy --endpoint back/db",
        bpf: (): string[] => {
          // The trie in force: twill_policy_slot[ifindex] picks slot 0 or 1, outer key ifindex * 2 + slot.
          const slot = bpftool(pinned("twill_policy_slot")).find((e) => u32le(bytes(e.key), 0) === ifindexOf(db));
          const outerKey = ifindexOf(db) * 2 + u32le(bytes(slot?.value ?? []), 0);
          const outer = bpftool(pinned("twill_policy")).find((e) => u32le(bytes(e.key), 0) === outerKey);
          const innerId = u32le(bytes(outer?.value ?? []), 0);
          return bpftool(["id", String(innerId)]).map((e) => {
            const k = bytes(e.key);
            const prefix = u32le(k, 0);
            const identity = u32be(k, 4);
            const lo = prefix >= 48 ? u16be(k, 10) : 0;
            const hi = lo + (1 << (16 - Math.max(0, prefix - 48))) - 1;
            return [
              k[8] === 0 ? "egress" : "ingress",
              identity === 0 ? "any" : String(identity),
              prefix >= 48 ? PROTO[k[9] ?? 0] : "any",
              prefix <= 48 ? "any" : lo === hi ? String(lo) : `${lo}-${hi}`,
            ].join(" ");
          });
        },
        twill: async (): Promise<string[]> => (await dump(["policy", "--endpoint", "back/db"])).map((r) => `${r["DIRECTION"]} ${r["IDENTITY"]} ${r["PROTOCOL"]} ${r["PORT"]}`),
      },
    ])("$name", async ({ bpf, twill: fromTwill }) => {
      const want = bpf().sort();
      const got = (await fromTwill()).sort();
      expect(want.length).toBeGreaterThan(0);
      expect(got).toEqual(want);
    });

    it("metrics (per-CPU counters summed)", async () => {
      const read = (): Map<string, number> => {
        const m = new Map<string, number>();
        for (const e of bpftool(pinned("twill_metrics"))) {
          const idx = u32le(bytes(e.key), 0);
          const packets = (e.values ?? []).reduce((s, c) => s + Number(BigInt(`0x${bytes(c.value).slice(0, 8).reverse().map((b) => b.toString(16).padStart(2, "0")).join("")}`)), 0);
          if (packets > 0) m.set(`${idx < 32 ? "from-pod" : "to-pod"} ${twillReasonName(idx % 32)}`, packets);
        }
        return m;
      };
      const before = read();
      const rows = await dump(["metrics"]);
      const after = read();
      // Pods may send a packet (ND) between the reads: twill's value lies between bpftool's two.
      expect(rows.map((r) => `${r["DIRECTION"]} ${r["REASON"]}`).sort()).toEqual([...after.keys()].sort());
      for (const r of rows) {
        const k = `${r["DIRECTION"]} ${r["REASON"]}`;
        expect(Number(r["PACKETS"])).toBeGreaterThanOrEqual(before.get(k) ?? 0);
        expect(Number(r["PACKETS"])).toBeLessThanOrEqual(after.get(k) ?? 0);
      }
      expect(after.get("to-pod DROP_POLICY") ?? 0).toBeGreaterThan(0);
    });
  });

  it("twill metrics and the Prometheus endpoint count policy drops", async () => {
    const sample = /^twill_datapath_packets\{direction="to-pod",reason="DROP_POLICY"\} (\d+)$/m;
    const cli = await twill(["metrics"]);
    expect(cli.code).toBe(0);
    expect(Number(sample.exec(cli.stdout)?.[1] ?? 0)).toBeGreaterThan(0);
    const res = await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(Number(sample.exec(text)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(text).toMatch(/^twill_endpoints 3$/m);
    expect(text).toMatch(/^twill_flow_events_lost \d+$/m);
  });

  it.each([
    { name: "trace port out of range", args: ["policy", "trace", "--from", "front/web", "--to", "back/db", "--port", "70000"], code: 2, err: "--port: 70000 is not a port" },
    { name: "trace without port", args: ["policy", "trace", "--from", "front/web", "--to", "back/db"], code: 2, err: "--port: required" },
    { name: "trace bad peer", args: ["policy", "trace", "--from", "web", "--to", "back/db", "--port", "80"], code: 2, err: "--from: \"web\" is neither" },
    { name: "trace unknown pod", args: ["policy", "trace", "--from", "front/ghost", "--to", "back/db", "--port", "80"], code: 1, err: "front/ghost not found" },
    { name: "unknown map", args: ["map", "dump", "nope"], code: 2, err: "name: unknown map \"nope\"" },
    { name: "policy map without endpoint", args: ["map", "dump", "policy"], code: 2, err: "endpoint: required" },
    { name: "bad map name (agent-side validation)", args: ["map", "dump", "Bad-Name"], code: 2, err: "datapath.dumpMap: name:" },
    { name: "bad pod filter (agent-side validation)", args: ["observe", "--pod", "Not_A_Pod"], code: 2, err: "observe: pod:" },
    { name: "identity not a number", args: ["identity", "get", "abc"], code: 2, err: "is not a non-negative integer" },
    { name: "unknown command", args: ["frobnicate"], code: 2, err: "unknown command" },
  ])("malformed request: $name -> exit $code", async ({ args, code, err }) => {
    const r = await twill(args);
    expect(r.stderr).toContain(err);
    expect(r.code).toBe(code);
  });

  it("an absent agent gives exit 3 naming the socket", () => {
    const socket = path.join(agent.dir, "no-such-agent.sock");
    const r = agent.twill(["--socket", socket, "status"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`cannot reach twill-agent at ${socket}`);
  });
});

function ifindexOf(p: TestPod): number {
  return Number(fs.readFileSync(`/sys/class/net/${p.hostIfname}/ifindex`, "utf8").trim());
}
