// SPDX-License-Identifier: Apache-2.0
// Policy changes are atomic per endpoint: while the policies toggle between
// two sets A and B many times, a flood of fresh connections between nine
// pods never shows a verdict that neither A nor B gives (computed with the
// reference evaluator). A and B differ in ingress only, so each cell's
// verdict depends on one endpoint's trie (cross-endpoint ordering is not
// what PolicyMap.replace promises; see docs/policy.md). Many cells are
// allowed by both sets through DIFFERENT trie entries (port range vs exact
// port, identity vs ANY): a trie that was emptied or edited in place would
// deny them for a moment; cells denied by both must never connect.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, type TestAgent } from "../helpers/agent.js";
import { AgentConnection } from "../../cli/client.js";
import type { NetworkPolicy } from "../../agent/k8s/manifest-types.js";
import { ClusterModel, NS_NAMES, POD_NAMES, applyAndWait, expectedMatrix, type MatrixEnd } from "../fixtures/netpol/cluster.js";
import { floodFrom, type FloodCounts } from "../fixtures/netpol/flood.js";
import { policy } from "../fixtures/netpol/scenarios.js";

const FLOOD_MS = 20_000;
const PROBE_TIMEOUT_MS = 1000;
// Pacing: leaves the 2-core test machine enough CPU for the agent to toggle often.
const PAUSE_MS = 5;
const ANY_NS = { namespaceSelector: {} };

const SET_A: readonly NetworkPolicy[] = [
  policy("x", "from-y-range", {}, { ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 80, endPort: 81 }] }] }),
  policy("x", "from-b-named", {}, { ingress: [{ from: [{ ...ANY_NS, podSelector: { matchLabels: { pod: "b" } } }], ports: [{ port: "serve-80-tcp" }] }] }),
  policy("y", "deny", {}, { types: ["Ingress"] }),
  policy("y", "a-from-all-80", { matchLabels: { pod: "a" } }, { ingress: [{ from: [ANY_NS], ports: [{ port: 80 }] }] }),
  policy("z", "a-allow-all", { matchLabels: { pod: "a" } }, { ingress: [{}] }),
];

const SET_B: readonly NetworkPolicy[] = [
  policy("x", "from-y-80", {}, { ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 80 }] }] }),
  policy("x", "from-b-tcp", {}, { ingress: [{ from: [{ ...ANY_NS, podSelector: { matchLabels: { pod: "b" } } }], ports: [{ protocol: "TCP" }] }] }),
  policy("y", "deny", {}, { types: ["Ingress"] }),
  policy("y", "a-from-pods-80", { matchLabels: { pod: "a" } }, { ingress: [{ from: [{ ...ANY_NS, podSelector: { matchExpressions: [{ key: "pod", operator: "Exists" }] } }], ports: [{ port: 80, endPort: 80 }] }] }),
  policy("z", "a-any-80", { matchLabels: { pod: "a" } }, { ingress: [{ ports: [{ port: 80 }] }] }),
  policy("z", "b-deny", { matchLabels: { pod: "b" } }, { types: ["Ingress"] }),
];

describe("policy changes are atomic per endpoint", () => {
  let agent: TestAgent;
  let conn: AgentConnection;
  const model = new ClusterModel();
  const written = new Map<string, string>();
  const ends: MatrixEnd[] = [];

  beforeAll(async () => {
    agent = await startAgent({ podCidrs: ["10.244.41.0/24", "fd00:10:244:41::/64"], manifests: { "ns.yaml": model.namespacesYaml(), "pods.yaml": model.podsYaml() } });
    written.set("ns.yaml", model.namespacesYaml());
    written.set("pods.yaml", model.podsYaml());
    conn = new AgentConnection(agent.socket);
    for (const ns of NS_NAMES) {
      for (const name of POD_NAMES) {
        const p = agent.addPod(ns, name);
        agent.serve(p, [80, 81]);
        ends.push({ id: `${ns}/${name}`, probeEnd: { kind: "pod", namespace: ns, name }, netns: p.netns.name, ip: p.ipv4 });
      }
    }
  });

  afterAll(async () => {
    conn?.close();
    await agent?.stop();
  });

  it("a probe flood during 20 s of A/B toggling only sees verdicts of A or B", async () => {
    const want = { A: expectedMatrix(model.state(SET_A), ends, "TCP", 80), B: expectedMatrix(model.state(SET_B), ends, "TCP", 80) };
    const cells = [...want.A.keys()].filter((k) => { const [f, t] = k.split(">"); return f !== t; }); // loopback is not policed
    const bothAllow = cells.filter((k) => want.A.get(k) && want.B.get(k));
    const bothDeny = cells.filter((k) => !want.A.get(k) && !want.B.get(k));
    const differ = cells.filter((k) => want.A.get(k) !== want.B.get(k));
    // The sets must make the test meaningful: all three kinds of cells exist.
    expect([bothAllow.length >= 20, bothDeny.length >= 5, differ.length >= 5]).toEqual([true, true, true]);

    await applyAndWait(agent, conn, model, SET_A, written);
    let toggles = 0;
    let stop = false;
    const toggler = (async () => {
      while (!stop) {
        await applyAndWait(agent, conn, model, toggles % 2 === 0 ? SET_B : SET_A, written);
        toggles++;
      }
    })();
    const counts = new Map<string, FloodCounts>();
    try {
      await Promise.all(ends.map(async (f) => {
        const targets = ends.filter((t) => t.id !== f.id);
        const r = await floodFrom(f.netns, targets.map((t) => ({ proto: "tcp" as const, ip: t.ip, port: 80 })), FLOOD_MS, PROBE_TIMEOUT_MS, PAUSE_MS);
        targets.forEach((t, i) => counts.set(`${f.id}>${t.id}`, r[i] ?? { ok: 0, failed: 0 }));
      }));
    } finally {
      stop = true;
      await toggler;
    }

    const wrong = [
      ...bothAllow.filter((k) => (counts.get(k)?.failed ?? 1) > 0).map((k) => `${k}: allowed by A and B, ${counts.get(k)?.failed} of ${(counts.get(k)?.ok ?? 0) + (counts.get(k)?.failed ?? 0)} blocked`),
      ...bothDeny.filter((k) => (counts.get(k)?.ok ?? 1) > 0).map((k) => `${k}: denied by A and B, ${counts.get(k)?.ok} connected`),
    ];
    const probes = [...counts.values()].reduce((n, c) => n + c.ok + c.failed, 0);
    expect(wrong, `${probes} probes, ${toggles} toggles`).toEqual([]);
    // The flood overlapped the changes: the cells where A and B differ saw both verdicts.
    const sawBoth = differ.filter((k) => (counts.get(k)?.ok ?? 0) > 0 && (counts.get(k)?.failed ?? 0) > 0);
    expect(toggles).toBeGreaterThanOrEqual(30);
    expect(sawBoth.length).toBe(differ.length);
    console.log(`policy-atomic: ${probes} probes, ${toggles} toggles, ${bothAllow.length} both-allow / ${bothDeny.length} both-deny / ${differ.length} differing cells`);
  }, 120_000);
});
