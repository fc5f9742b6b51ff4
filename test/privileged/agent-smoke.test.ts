// SPDX-License-Identifier: Apache-2.0
// Smoke test of the whole path: agent + twill-cni + policy + packets.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, type TestAgent, type TestPod } from "../helpers/agent.js";

const MANIFESTS = {
  "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: smoke}\n",
  "pods.yaml": ["a", "b"].map((n) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${n}, namespace: smoke, labels: {app: ${n}}}\nspec: {containers: [{name: c}]}\n`).join("---\n"),
  "pol.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b-only-from-a-80, namespace: smoke}\nspec:\n  podSelector: {matchLabels: {app: b}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]\n",
};

describe("agent smoke", () => {
  let agent: TestAgent;
  let a: TestPod;
  let b: TestPod;
  beforeAll(async () => {
    agent = await startAgent({ podCidrs: ["10.244.90.0/24", "fd00:10:244:90::/64"], manifests: MANIFESTS });
    a = agent.addPod("smoke", "a");
    b = agent.addPod("smoke", "b");
    agent.serve(a, [80, 81]);
    agent.serve(b, [80, 81]);
    await new Promise((r) => setTimeout(r, 300));
  });
  afterAll(async () => { await agent?.stop(); });

  it.each([
    { name: "a->b tcp/80 v4 allowed", from: () => a, to: () => b.ipv4, proto: "tcp" as const, port: 80, want: "ok" },
    { name: "a->b tcp/81 v4 denied", from: () => a, to: () => b.ipv4, proto: "tcp" as const, port: 81, want: "timeout" },
    { name: "a->b tcp/80 v6 allowed", from: () => a, to: () => b.ipv6, proto: "tcp" as const, port: 80, want: "ok" },
    { name: "b->a tcp/81 allowed (a not isolated)", from: () => b, to: () => a.ipv4, proto: "tcp" as const, port: 81, want: "ok" },
    { name: "a->b udp/80 denied (policy names TCP)", from: () => a, to: () => b.ipv4, proto: "udp" as const, port: 80, want: "timeout" },
  ])("$name", ({ from, to, proto, port, want }) => {
    expect(agent.probe(from(), proto, to(), port)).toBe(want);
  });
});
