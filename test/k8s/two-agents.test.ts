// SPDX-License-Identifier: Apache-2.0
// Two twill-agents (two simulated nodes: own --node-name, bpf root, state dir,
// socket and Node podCIDRs) against one real kube-apiserver, started at the
// same moment over 10 pods with 5 label sets spread over both nodes, so both
// race to allocate the same identities. In the end every label set has one
// TwillIdentity and both agents use its number.
// Needs root and the control-plane build cache (hack/build-control-plane.sh).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { REPO, startAgent, type TestAgent } from "../helpers/agent.js";
import { randomName } from "../helpers/netns.js";
import { parseLabelSetKey } from "../../agent/identity/labels.js";
import { createNamespace, createNode, createPodObject, setPodIps, waitFor } from "./k8s-fixture.js";

const NODES = [
  { name: randomName("twt-node-a-", 6), podCidrs: ["10.244.51.0/24", "fd00:10:244:51::/64"] },
  { name: randomName("twt-node-b-", 6), podCidrs: ["10.244.52.0/24", "fd00:10:244:52::/64"] },
] as const;
const NS = "race";
/** The label that tells the 5 label sets apart ("s0".."s4"). */
const SET_LABEL = "twt-set";
const SETS = ["s0", "s1", "s2", "s3", "s4"];
/** Pod i has label set i % 5 and lives on node i % 2: every label set has a pod on each node. */
const PODS = Array.from({ length: 10 }, (_, i) => ({
  name: `pod-${i}`,
  set: SETS[i % SETS.length] ?? "",
  node: i % 2,
  labels: { app: "race", [SET_LABEL]: SETS[i % SETS.length] ?? "" },
}));

let cp: ControlPlane | null = null;
let dir = "";
const agents: TestAgent[] = [];
/** Pod name -> the IPv4 its node's agent gave it. */
const podIps = new Map<string, string>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "twt-k8s-two-"));
  cp = await startControlPlane();
  await cp.kubectl("create", "-f", join(REPO, "deploy/twill.yaml"));
  for (const n of NODES) await createNode(cp, dir, n.name, n.podCidrs);
  await createNamespace(cp, dir, NS, { purpose: "race" });
  for (const p of PODS) await createPodObject(cp, dir, NS, p.name, NODES[p.node]?.name ?? "", p.labels);
  // Both at once, each seeing all 10 pods in its first snapshot: they race for the same 5 label sets.
  const kubeconfig = cp.kubeconfigPath;
  const started = await Promise.allSettled(NODES.map((n) => startAgent({ podCidrs: [], kubeconfig, nodeName: n.name })));
  for (const s of started) if (s.status === "fulfilled") agents.push(s.value);
  const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  // Each pod's network through its own node's agent, then its status as the kubelet would write it.
  for (const p of PODS) {
    const a = agents[p.node];
    if (!a) throw new Error(`no agent for node ${p.node}`);
    const tp = a.addPod(NS, p.name);
    podIps.set(p.name, tp.ipv4);
    await setPodIps(cp, NS, p.name, [tp.ipv4, tp.ipv6]);
  }
});

afterAll(async () => {
  const errors: unknown[] = [];
  const steps = [...agents.map((a) => () => a.stop()), () => cp?.stop(), () => (dir ? rm(dir, { recursive: true, force: true }) : undefined)];
  for (const step of steps) {
    try { await step(); } catch (e: unknown) { errors.push(e); }
  }
  if (errors.length > 0) throw new AggregateError(errors, "clean up two-agents");
});

interface CliIdentity { readonly id: number; readonly labels: Record<string, string>; readonly reserved: boolean }

/** Label set ("s0".."s4") -> identity numbers, from `twill identity list -o json` of one agent. */
function identitiesOf(a: TestAgent): Map<string, number[]> {
  const r = a.twill(["identity", "list", "-o", "json"]);
  if (r.code !== 0) throw new Error(`twill identity list: exit ${r.code}: ${r.stderr}`);
  const bySet = new Map<string, number[]>();
  for (const i of JSON.parse(r.stdout) as CliIdentity[]) {
    const set = Object.entries(i.labels).find(([k]) => k === SET_LABEL || k.endsWith(`:${SET_LABEL}`))?.[1];
    if (set !== undefined) bySet.set(set, [...(bySet.get(set) ?? []), i.id]);
  }
  return bySet;
}

describe("two agents against one API server", () => {
  it("give each node's pods addresses from that node's spec.podCIDRs", () => {
    for (const p of PODS) expect(podIps.get(p.name), p.name).toMatch(p.node === 0 ? /^10\.244\.51\./ : /^10\.244\.52\./);
  });

  it("give every label set the same identity number on both nodes", async () => {
    const [a, b] = agents;
    if (!a || !b) throw new Error("setup did not finish");
    const complete = (m: Map<string, number[]>): boolean => SETS.every((s) => m.get(s)?.length === 1);
    const [ia, ib] = await waitFor("both agents to list an identity for each label set", () => {
      const x = identitiesOf(a);
      const y = identitiesOf(b);
      return complete(x) && complete(y) ? [x, y] as const : undefined;
    }, 60_000);
    for (const s of SETS) expect(ia.get(s), `label set ${s}`).toEqual(ib.get(s));
    expect(new Set(SETS.map((s) => ia.get(s)?.[0])).size, "distinct numbers for distinct label sets").toBe(SETS.length);
  });

  it("leaves exactly one TwillIdentity per label set, with the number the agents use", async () => {
    const [a] = agents;
    if (!a || !cp) throw new Error("setup did not finish");
    const raw = await cp.kubectl("get", "twillidentities", "-o", "json");
    const items = (JSON.parse(raw) as { items: { metadata: { name: string }; spec: { labels: string } }[] }).items;
    const bySet = new Map<string, number[]>();
    for (const o of items) {
      const set = parseLabelSetKey(o.spec.labels).podLabels[SET_LABEL] ?? "(none)";
      bySet.set(set, [...(bySet.get(set) ?? []), Number(o.metadata.name)]);
    }
    const agentIds = identitiesOf(a);
    expect(items).toHaveLength(SETS.length);
    for (const s of SETS) expect(bySet.get(s), `TwillIdentity of label set ${s}`).toEqual(agentIds.get(s));
  });
});
