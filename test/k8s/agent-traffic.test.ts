// SPDX-License-Identifier: Apache-2.0
// NetworkPolicies applied with kubectl to a real kube-apiserver, enforced on
// real packets: twill-agent in Kubernetes mode (IPAM ranges from its Node's
// spec.podCIDRs), pods wired by twill-cni into netns the test owns (their
// status then set as a kubelet would), netprobe between them. Policies are
// applied, edited and deleted; the API server is stopped (enforcement and
// CNI ADD go on) and restarted (changes apply again).
// Needs root and the control-plane build cache (hack/build-control-plane.sh).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { REPO, startAgent, type TestAgent, type TestPod } from "../helpers/agent.js";
import { randomName } from "../helpers/netns.js";
import { apply, createNamespace, createNode, createPodObject, setPodIps, waitFor } from "./k8s-fixture.js";

const POD_CIDRS = ["10.244.50.0/24", "fd00:10:244:50::/64"];
const NODE = randomName("twt-node-", 6);
/** Long enough for a snapshot, a regenerate and (after a restart) the agent's reconnect backoff. */
const CONVERGE_MS = 40_000;

interface PodSpec { readonly ns: string; readonly name: string; readonly labels: Record<string, string> }
const PODS: readonly PodSpec[] = [
  { ns: "shop", name: "web", labels: { app: "web" } },
  { ns: "shop", name: "client", labels: { app: "client" } },
  { ns: "shop", name: "intruder", labels: { app: "intruder" } },
  // Same pod labels as shop/client, other namespace: a podSelector-only peer must not match it.
  { ns: "other", name: "visitor", labels: { app: "client" } },
];
/** Created before the API server goes down, wired by CNI while it is down. */
const LATE: PodSpec = { ns: "shop", name: "late", labels: { app: "client" } };

let cp: ControlPlane | null = null;
let agent: TestAgent | null = null;
let dir = "";
const pods = new Map<string, TestPod>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "twt-k8s-traffic-"));
  cp = await startControlPlane();
  await cp.kubectl("create", "-f", join(REPO, "deploy/twill.yaml"));
  await createNode(cp, dir, NODE, POD_CIDRS);
  await createNamespace(cp, dir, "shop", { team: "shop" });
  await createNamespace(cp, dir, "other", { team: "other" });
  for (const p of [...PODS, LATE]) await createPodObject(cp, dir, p.ns, p.name, NODE, p.labels);
  // No --pod-cidr: the agent must take its ranges from the Node.
  agent = await startAgent({ podCidrs: [], kubeconfig: cp.kubeconfigPath, nodeName: NODE });
  for (const p of PODS) await wire(p);
  agent.serve(pod("web"), [8080, 9090]);
});

afterAll(async () => {
  const errors: unknown[] = [];
  for (const step of [() => agent?.stop(), () => cp?.stop(), () => (dir ? rm(dir, { recursive: true, force: true }) : undefined)]) {
    try { await step(); } catch (e: unknown) { errors.push(e); }
  }
  if (errors.length > 0) throw new AggregateError(errors, "clean up agent-traffic");
});

/** CNI ADD for a pod, then its status as the kubelet would write it (skipped while the API server is down). */
async function wire(p: PodSpec, patchStatus = true): Promise<TestPod> {
  if (!agent || !cp) throw new Error("setup did not finish");
  const tp = agent.addPod(p.ns, p.name);
  pods.set(p.name, tp);
  if (patchStatus) await setPodIps(cp, p.ns, p.name, [tp.ipv4, tp.ipv6]);
  return tp;
}

function pod(name: string): TestPod {
  const p = pods.get(name);
  if (!p) throw new Error(`pod ${name} not wired`);
  return p;
}

type Want = "ok" | "timeout";
/** One expected probe: [from pod, proto, v4|v6 of web, port, outcome]. */
type Probe = readonly [from: string, proto: "tcp" | "udp", family: 4 | 6, port: number, want: Want];

/** Probe each row once; returns the rows whose outcome differs, as text. */
function mismatches(rows: readonly Probe[]): string[] {
  const a = agent;
  if (!a) throw new Error("setup did not finish");
  const web = pod("web");
  const bad: string[] = [];
  for (const [from, proto, family, port, want] of rows) {
    const got = a.probe(pod(from), proto, family === 4 ? web.ipv4 : web.ipv6, port);
    if (got !== want) bad.push(`${from} -> web ${proto}/v${family}:${port}: want ${want}, got ${got || "(nothing)"}`);
  }
  return bad;
}

/** Poll until every row holds, or fail with the last differences and the agent's log tail. */
async function converge(what: string, rows: readonly Probe[]): Promise<void> {
  let last: string[] = [];
  try {
    await waitFor(what, () => (last = mismatches(rows)).length === 0, CONVERGE_MS);
  } catch (e: unknown) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${last.join("\n")}\n--- agent log tail ---\n${agent?.logs.slice(-3000) ?? ""}`, { cause: e });
  }
}

/** Every row holds on each of `rounds` probe rounds (for "stays as it was" checks). */
function holds(rows: readonly Probe[], rounds: number): void {
  for (let i = 0; i < rounds; i++) expect(mismatches(rows), `round ${i + 1}`).toEqual([]);
}

function policy(name: string, from: readonly Record<string, unknown>[], ports: readonly Record<string, unknown>[]): string {
  return JSON.stringify({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace: "shop", name },
    spec: { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Ingress"], ingress: [{ from, ports }] },
  });
}

async function kubectlApply(doc: string): Promise<void> {
  if (!cp) throw new Error("setup did not finish");
  await apply(cp, doc, dir);
}

const ALLOW_CLIENT = policy("web-ingress", [{ podSelector: { matchLabels: { app: "client" } } }], [{ protocol: "TCP", port: 8080 }]);
const EVERYONE_IN: readonly Probe[] = [
  ["client", "tcp", 4, 8080, "ok"], ["client", "tcp", 6, 8080, "ok"], ["client", "tcp", 4, 9090, "ok"], ["client", "udp", 4, 8080, "ok"],
  ["intruder", "tcp", 4, 8080, "ok"], ["intruder", "tcp", 6, 8080, "ok"], ["visitor", "tcp", 4, 8080, "ok"],
];
const ONLY_CLIENT_8080: readonly Probe[] = [
  ["client", "tcp", 4, 8080, "ok"], ["client", "tcp", 6, 8080, "ok"],
  ["client", "tcp", 4, 9090, "timeout"], ["client", "udp", 4, 8080, "timeout"],
  ["intruder", "tcp", 4, 8080, "timeout"], ["intruder", "tcp", 6, 8080, "timeout"],
  ["visitor", "tcp", 4, 8080, "timeout"],
];

describe("NetworkPolicies from the API server on real packets", () => {
  it("gives pods addresses from the Node's spec.podCIDRs and lets all traffic through without policies", async () => {
    for (const p of PODS) {
      expect(pod(p.name).ipv4, p.name).toMatch(/^10\.244\.50\./);
      expect(pod(p.name).ipv6, p.name).toMatch(/^fd00:10:244:50:/);
    }
    await converge("all traffic allowed before any policy", EVERYONE_IN);
  });

  it("enforces a NetworkPolicy applied with kubectl", async () => {
    await kubectlApply(ALLOW_CLIENT);
    await converge("only shop/client reaches web tcp/8080", ONLY_CLIENT_8080);
  });

  it("follows an edit of the policy", async () => {
    await kubectlApply(policy("web-ingress",
      [{ namespaceSelector: { matchLabels: { team: "other" } }, podSelector: { matchLabels: { app: "client" } } }],
      [{ protocol: "TCP", port: 8080 }, { protocol: "TCP", port: 9090 }]));
    await converge("only other/visitor reaches web on 8080 and 9090", [
      ["visitor", "tcp", 4, 8080, "ok"], ["visitor", "tcp", 6, 9090, "ok"],
      ["client", "tcp", 4, 8080, "timeout"], ["intruder", "tcp", 4, 9090, "timeout"],
    ]);
  });

  it("lets traffic through again once the policy is deleted", async () => {
    await cp?.kubectl("-n", "shop", "delete", "networkpolicy", "web-ingress");
    await converge("all traffic allowed after the delete", EVERYONE_IN);
  });

  it("keeps enforcing and wires new pods while the API server is down", async () => {
    if (!cp) throw new Error("setup did not finish");
    await kubectlApply(ALLOW_CLIENT);
    await converge("policy in force before the outage", ONLY_CLIENT_8080);
    const logFrom = agent?.logs.length ?? 0;
    await cp.stopApiServer();
    // Check only once the agent has seen the API server go.
    await waitFor("the agent to notice the API server is gone", () => agent?.logs.slice(logFrom).includes("list/watch failed"), CONVERGE_MS);
    holds(ONLY_CLIENT_8080, 2);
    // IPAM is local: CNI ADD works without the API server, and the new pod
    // (labels known from before the outage) is a client like shop/client.
    const late = await wire(LATE, false);
    expect(late.ipv4).toMatch(/^10\.244\.50\./);
    await converge("shop/late (app=client) reaches web during the outage", [["late", "tcp", 4, 8080, "ok"], ["late", "tcp", 6, 8080, "ok"], ["late", "tcp", 4, 9090, "timeout"]]);
    holds(ONLY_CLIENT_8080, 1);
  });

  it("applies a new change after the API server is back", async () => {
    if (!cp) throw new Error("setup did not finish");
    await cp.startApiServer();
    const late = pod("late");
    await setPodIps(cp, LATE.ns, LATE.name, [late.ipv4, late.ipv6]);
    await kubectlApply(policy("web-ingress", [{ podSelector: { matchLabels: { app: "intruder" } } }], [{ protocol: "TCP", port: 8080 }]));
    await converge("only shop/intruder reaches web after the restart", [
      ["intruder", "tcp", 4, 8080, "ok"], ["intruder", "tcp", 6, 8080, "ok"],
      ["client", "tcp", 4, 8080, "timeout"], ["late", "tcp", 4, 8080, "timeout"], ["visitor", "tcp", 4, 8080, "timeout"],
    ]);
  });
});
