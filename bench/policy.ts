// SPDX-License-Identifier: Apache-2.0
// `npm run bench:policy`: the policy benchmark of issue 5 (not a test).
// A synthetic cluster (default 150k pods over 5k namespaces, 10k identities,
// 5k policies, 110 local endpoints with fake ifindexes) driven through the
// agent's real PolicyEngine and DatapathSync into a real loaded datapath
// (agent/loader, temp bpf root). Measures:
//   full_sync_ms        engine.compute + ipcache sync + every endpoint's trie, from empty maps;
//   change_p50/p99_ms   one pod label change or one policy edit -> compute + sync done
//                       (what the daemon does on every change);
//   ipcache_entries_per_s  all ipcache entries written with BpfMap.setMany (batch
//                       syscall, or per-element where the map type has none);
//   rss_mb              resident set size of this process (engine + maps views), max seen.
// Prints a table, then as its last line one JSON object:
// {"full_sync_ms","change_p50_ms","change_p99_ms","ipcache_entries_per_s","rss_mb"}.
//
// Usage: npm run bench:policy -- [--pods 150000] [--namespaces 5000] [--policies 5000] [--local 110] [--changes 40]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { compileDatapath } from "../agent/loader/compile-cache.js";
import { loadDatapath, removeDatapathPins, type Datapath } from "../agent/loader/datapath-loader.js";
import { openDatapathMaps } from "../agent/maps/datapath-maps.js";
import { ipcacheKey } from "../agent/maps/ipcache-map.js";
import { mapUpdateBatch } from "../agent/native/libbpf.js";
import { IpcacheEntry, IpcacheKey } from "../agent/generated/bpf-types.js";
import { PolicyEngine, type EngineEndpoint, type EngineInput } from "../agent/reconcile/policy-engine.js";
import { DatapathSync } from "../agent/reconcile/datapath-sync.js";
import { DatapathApplier } from "../agent/reconcile/apply-desired.js";
import type { ClusterChanges } from "../agent/k8s/cluster-source.js";
import { parseCidr } from "../agent/ipam/cidr.js";
import type { EndpointRecord } from "../agent/endpoint/endpoint-store.js";
import type { Namespace, NetworkPolicy, Pod } from "../agent/k8s/manifest-types.js";
import { bpfSourceDir } from "../agent/daemon.js";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const quantile = (xs: readonly number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] ?? NaN;
const round = (x: number, digits: number): number => Number(x.toFixed(digits));

const NPODS = arg("--pods", 150_000);
const NNS = arg("--namespaces", 5000);
const NPOL = arg("--policies", 5000);
const NLOCAL = arg("--local", 110);
const NCHANGES = arg("--changes", 40);
const PODS_PER_NS = Math.ceil(NPODS / NNS);

// Peak resident set so far (VmHWM): a sample after each step would miss the
// peak inside a long synchronous compute.
let maxRss = 0;
let rssAfterCompute: number | undefined;
const sampleRss = (): void => {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  maxRss = Math.max(maxRss, m ? Number(m[1]) * 1024 : process.memoryUsage().rss);
};

// --- the synthetic cluster ------------------------------------------------
// Namespace i: labels team=t<i%100>, env=prod|dev. Pods: app=web|db
// alternating, so identities = 2 per namespace (10k for 5k namespaces).
// Policy p (namespace p % NNS): db pods take the named port "pg" from web
// pods of the namespace and 5432 from web pods of the 50 namespaces of the
// same team; every 10th also has an egress rule with an ipBlock + except.
const nsName = (i: number): string => `ns-${i}`;
const podIp = (k: number): string => `10.${64 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;

// Pods of one template share their spec object and label maps, as the
// agent's own copies do (kube-source keeps only validated fields).
const SPEC: Pod["spec"] = { containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }, { name: "pg", containerPort: 5432 }] }] };
const LABELS: Record<string, { app: string }> = { web: { app: "web" }, db: { app: "db" } };

function makePod(k: number, app: string): Pod {
  const ns = Math.floor(k / PODS_PER_NS);
  return {
    metadata: { namespace: nsName(ns), name: `pod-${k}`, labels: LABELS[app] ?? { app } },
    spec: SPEC,
    status: { podIP: podIp(k) },
  };
}

function makePolicy(p: number, port: number): NetworkPolicy {
  const ns = p % NNS;
  const web = { matchLabels: { app: "web" } };
  const spec = {
    podSelector: { matchLabels: { app: "db" } },
    ingress: [
      { from: [{ podSelector: web }], ports: [{ port: "pg" }] },
      { from: [{ namespaceSelector: { matchLabels: { team: `t${ns % 100}` } }, podSelector: web }], ports: [{ port, protocol: "TCP" as const }] },
    ],
    ...(p % 10 === 0 ? { egress: [{ to: [{ ipBlock: { cidr: `172.16.${p % 256}.0/24`, except: [`172.16.${p % 256}.128/28`] } }, { podSelector: web }] }] } : {}),
  };
  return { metadata: { namespace: nsName(ns), name: `pol-${p}` }, spec } as NetworkPolicy;
}

const namespaces: Namespace[] = Array.from({ length: NNS }, (_, i) => ({ metadata: { name: nsName(i), labels: { team: `t${i % 100}`, env: i % 2 === 0 ? "prod" : "dev" } } }));
const pods: Pod[] = Array.from({ length: NPODS }, (_, k) => makePod(k, k % 2 === 0 ? "web" : "db"));
const policies: NetworkPolicy[] = Array.from({ length: NPOL }, (_, p) => makePolicy(p, 5432));
// Local endpoints: spread over namespaces, half web, half db.
const localPods = Array.from({ length: NLOCAL }, (_, l) => Math.min(NPODS - 1, ((l * 45) % NNS) * PODS_PER_NS + (l % PODS_PER_NS)));
const records: EndpointRecord[] = localPods.map((k, l) => {
  const p = pods[k] as Pod;
  const mac = (x: number): string => `02:00:00:${((x >> 16) & 255).toString(16).padStart(2, "0")}:${((x >> 8) & 255).toString(16).padStart(2, "0")}:${(x & 255).toString(16).padStart(2, "0")}`;
  return {
    containerId: `ctr-${l}`, ifname: "eth0", netns: `/var/run/netns/fake-${l}`, hostIfname: `lxc${l}`, hostIfindex: 100_000 + l,
    hostMac: mac(l), podMac: mac(0x10000 + l), ipv4: podIp(k), ipv6: null,
    namespace: p.metadata.namespace, podName: p.metadata.name, createdAt: new Date(0).toISOString(),
  };
});
const endpoints: EngineEndpoint[] = records.map((r) => ({ key: r.containerId, namespace: r.namespace, podName: r.podName, ips: [r.ipv4 ?? ""] }));
const input = (): EngineInput => ({ namespaces, pods, policies, endpoints, hostIps: ["192.0.2.1"] });

// --- the datapath ---------------------------------------------------------
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "twill-bench-policy-"));
const bpfRoot = `/sys/fs/bpf/twill-bench-${randomBytes(4).toString("hex")}`;
let datapath: Datapath | null = null;
const rows: Array<[string, string]> = [];
let result: Record<string, number> = {};
try {
  const compiled = await compileDatapath({ source: path.join(bpfSourceDir(), "lxc.bpf.c"), includeDir: bpfSourceDir(), cacheDir: path.join(dir, "bpf-cache") });
  datapath = loadDatapath({ objectPath: compiled.objectPath, bpfRoot, settings: { hostIdentity: 1, redirectPeer: true } });
  const maps = openDatapathMaps(datapath);
  const engine = new PolicyEngine(null, null);
  const sync = new DatapathSync(maps);
  const applier = new DatapathApplier(sync);
  sampleRss();
  const inputRss = process.memoryUsage().rss;

  // What the daemon does per regeneration: engine.compute with the changes
  // the source reported, then DatapathApplier (ipcache upserts, changed
  // tries, ipcache deletes; everything compared on the first run).
  const apply = (changes?: ClusterChanges): { computeMs: number; syncMs: number; written: number; changed: number } => {
    const t0 = performance.now();
    const desired = engine.compute(input(), changes);
    const t1 = performance.now();
    sampleRss();
    rssAfterCompute ??= maxRss;
    const r = applier.apply(desired, records);
    if (r.failed.length > 0) throw new Error(`sync endpoints: ${r.failed[0]?.error.message}`);
    const t2 = performance.now();
    sampleRss();
    return { computeMs: t1 - t0, syncMs: t2 - t1, written: r.ipcacheWritten, changed: r.triesChanged };
  };
  const none = { upserted: [], removed: [] };

  console.error(`synthetic cluster: ${NPODS} pods, ${NNS} namespaces, ${NPOL} policies, ${NLOCAL} local endpoints; full sync...`);
  const full = apply();
  const fullMs = full.computeMs + full.syncMs;
  const identities = engine.identities.entries().length;
  rows.push(["identities (label / CIDR)", `${identities} / ${engine.cidrIdentities.entries().length}`]);
  rows.push(["ipcache entries written", String(full.written)]);
  rows.push(["full sync: compute", `${full.computeMs.toFixed(0)} ms`]);
  rows.push(["full sync: ipcache + endpoint tries", `${full.syncMs.toFixed(0)} ms (${full.changed} tries written)`]);
  rows.push(["full sync total", `${fullMs.toFixed(0)} ms (target <= 2000)`]);

  // Single changes: alternate a label flip of a remote pod and a port edit
  // of a policy in a namespace that has a local endpoint (so a trie changes).
  const labelMs: number[] = [];
  const policyMs: number[] = [];
  const parts = { computeMs: 0, syncMs: 0 };
  const addParts = (r: ReturnType<typeof apply>): void => { parts.computeMs += r.computeMs; parts.syncMs += r.syncMs; };
  const localNs = [...new Set(records.map((r) => Number(r.namespace.slice(3))))];
  for (let i = 0; i < NCHANGES; i++) {
    console.error(`change ${i + 1}/${NCHANGES}`);
    if (i % 2 === 0) {
      const k = (i * 7919 + 13) % NPODS;
      const p = pods[k] as Pod;
      const next = makePod(k, p.metadata.labels?.["app"] === "web" ? "db" : "web");
      pods[k] = next;
      const t0 = performance.now();
      addParts(apply({ namespaces: none, policies: none, pods: { upserted: [next], removed: [] } }));
      labelMs.push(performance.now() - t0);
    } else {
      const ns = localNs[i % localNs.length] ?? 0;
      const p = policies.findIndex((x) => x.metadata.namespace === nsName(ns));
      const cur = policies[p] as NetworkPolicy;
      const port = (cur.spec.ingress?.[1]?.ports?.[0]?.port as number) === 5432 ? 5433 : 5432;
      const next = makePolicy(p, port);
      policies[p] = next;
      const t0 = performance.now();
      const r = apply({ namespaces: none, pods: none, policies: { upserted: [next], removed: [] } });
      policyMs.push(performance.now() - t0);
      addParts(r);
      if (r.changed === 0 && p >= 0) console.error(`warning: policy edit ${p} changed no trie`);
    }
  }
  const allMs = [...labelMs, ...policyMs];
  rows.push(["label change -> datapath p50 / p99", `${quantile(labelMs, 0.5).toFixed(0)} / ${quantile(labelMs, 0.99).toFixed(0)} ms`]);
  rows.push(["policy edit -> datapath p50 / p99", `${quantile(policyMs, 0.5).toFixed(0)} / ${quantile(policyMs, 0.99).toFixed(0)} ms`]);
  rows.push(["change, mean parts: compute / map writes", `${(parts.computeMs / NCHANGES).toFixed(2)} / ${(parts.syncMs / NCHANGES).toFixed(2)} ms`]);
  rows.push(["any change p50 / p99", `${quantile(allMs, 0.5).toFixed(0)} / ${quantile(allMs, 0.99).toFixed(0)} ms (target p99 <= 10)`]);

  // What the agent held is measured up to here; the rate measurement below
  // dumps the whole ipcache into objects, which the agent never does.
  const agentRss = maxRss;
  (globalThis as { gc?: () => void }).gc?.();
  const agentHeap = process.memoryUsage();

  // ipcache full sync through BpfMap.setMany. LPM tries may lack batch ops
  // (setMany then falls back per element): probe and say which path ran.
  const entries = [...maps.ipcache.entries()];
  let batch = true;
  try {
    const one = entries[0];
    if (one) {
      const k = new Uint8Array(IpcacheKey.SIZE);
      const v = new Uint8Array(IpcacheEntry.SIZE);
      IpcacheKey.encodeInto(ipcacheKey(one[0]), new DataView(k.buffer), 0);
      IpcacheEntry.encodeInto(one[1], new DataView(v.buffer), 0);
      mapUpdateBatch(maps.ipcache.map.fd, k, v, 1);
    }
  } catch {
    batch = false;
  }
  const kv = entries.map(([p, v]) => [ipcacheKey(p), v] as const);
  const t0 = performance.now();
  maps.ipcache.map.setMany(kv);
  const ipcMs = performance.now() - t0;
  const rate = entries.length / (ipcMs / 1000);
  rows.push([`ipcache full sync (${batch ? "batch syscalls" : "no batch ops on LPM trie: per element"})`, `${entries.length} entries in ${ipcMs.toFixed(0)} ms = ${Math.round(rate)}/s`]);
  rows.push(["RSS before the engine ran (input objects + datapath)", `${(inputRss / 2 ** 20).toFixed(0)} MB`]);
  rows.push(["RSS peak after the first compute / V8 heap used at the end", `${((rssAfterCompute ?? 0) / 2 ** 20).toFixed(0)} MB / ${(agentHeap.heapUsed / 2 ** 20).toFixed(0)} MB (heap total ${(agentHeap.heapTotal / 2 ** 20).toFixed(0)} MB, rss now ${(agentHeap.rss / 2 ** 20).toFixed(0)} MB)`]);
  rows.push(["RSS max through full sync and changes", `${(agentRss / 2 ** 20).toFixed(0)} MB (target <= 300)`]);

  result = {
    full_sync_ms: round(fullMs, 1),
    change_p50_ms: round(quantile(allMs, 0.5), 2),
    change_p99_ms: round(quantile(allMs, 0.99), 2),
    ipcache_entries_per_s: Math.round(rate),
    rss_mb: round(agentRss / 2 ** 20, 1),
  };
} finally {
  datapath?.close();
  removeDatapathPins(bpfRoot);
  fs.rmSync(bpfRoot, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
}

const w = Math.max(...rows.map(([k]) => k.length));
for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
console.log(JSON.stringify(result));
