// SPDX-License-Identifier: Apache-2.0
// startKubeSource against a real kube-apiserver: snapshots follow creates,
// edits and deletes of namespaces, pods and policies; this node's podCIDRs
// come from its Node; with the API server gone the source turns unhealthy
// and keeps its last snapshot; once back, new changes arrive.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ClusterSnapshot } from "../../agent/k8s/cluster-source.js";
import { nodeNameOf, startKubeSource, type KubeSource } from "../../agent/k8s/kube-source.js";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { apply, createPod, deleteNamespace, testLogger, waitFor } from "./k8s-fixture.js";

const NODE = "twt-node-a";
let cp: ControlPlane;
let dir: string;
let source: KubeSource | null = null;
const snapshots: ClusterSnapshot[] = [];
const last = (): ClusterSnapshot | undefined => snapshots[snapshots.length - 1];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "twt-k8s-"));
  cp = await startControlPlane();
  await apply(cp, JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: NODE }, spec: { podCIDRs: ["10.244.7.0/24", "fd00:10:244:7::/64"], podCIDR: "10.244.7.0/24" } }), dir);
  source = await startKubeSource({ kubeconfig: cp.kubeconfigPath, nodeName: NODE, minBackoffMs: 100, maxBackoffMs: 500 }, (s) => snapshots.push(s), testLogger());
});

afterAll(async () => {
  source?.stop();
  await cp?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const policyNames = (s: ClusterSnapshot | undefined): string[] => (s?.policies ?? []).map((p) => `${p.metadata.namespace}/${p.metadata.name}`).sort();
const podOf = (s: ClusterSnapshot | undefined, ns: string, name: string) => s?.pods.find((p) => p.metadata.namespace === ns && p.metadata.name === name);

describe("kube source", () => {
  it("delivers a first complete snapshot before startKubeSource resolves, with this node's pod CIDRs", () => {
    expect(snapshots.length).toBeGreaterThan(0);
    expect(last()?.namespaces.map((n) => n.metadata.name)).toContain("default");
    expect(source?.healthy()).toBe(true);
    expect(source?.localPodCidrs()).toEqual(["10.244.7.0/24", "fd00:10:244:7::/64"]);
    expect(source?.description).toBe(`kubernetes:${cp.server}`);
  });

  it("follows namespace creates, label edits and deletes", async () => {
    await cp.kubectl("create", "namespace", "twt-ns1");
    await waitFor("namespace twt-ns1", () => last()?.namespaces.some((n) => n.metadata.name === "twt-ns1"));
    await cp.kubectl("label", "namespace", "twt-ns1", "team=blue");
    await waitFor("label team=blue", () => last()?.namespaces.find((n) => n.metadata.name === "twt-ns1")?.metadata.labels?.["team"] === "blue");
    await deleteNamespace(cp, "twt-ns1");
    await waitFor("namespace twt-ns1 gone", () => !last()?.namespaces.some((n) => n.metadata.name === "twt-ns1"));
  });

  it("follows pods with their IPs and node, local and remote, and drops deleted and hostNetwork pods", async () => {
    await createPod(cp, dir, "default", "web", NODE, { app: "web" }, "10.244.7.10");
    await createPod(cp, dir, "default", "remote", "twt-node-b", { app: "db" }, "10.244.8.10");
    await apply(cp, JSON.stringify({
      apiVersion: "v1", kind: "Pod", metadata: { namespace: "default", name: "hostnet" },
      spec: { nodeName: NODE, hostNetwork: true, containers: [{ name: "c", image: "busybox" }] },
    }), dir);
    const s = await waitFor("both pods with IPs", () => {
      const l = last();
      return podOf(l, "default", "web")?.status?.podIPs?.length && podOf(l, "default", "remote")?.status?.podIPs?.length ? l : undefined;
    });
    const web = podOf(s, "default", "web");
    expect(web?.status?.podIPs).toEqual([{ ip: "10.244.7.10" }]);
    expect(web && nodeNameOf(web)).toBe(NODE);
    const remote = podOf(s, "default", "remote");
    expect(remote && nodeNameOf(remote)).toBe("twt-node-b");
    expect(podOf(s, "default", "hostnet")).toBeUndefined();

    await cp.kubectl("-n", "default", "label", "pod", "web", "app=web2", "--overwrite");
    await waitFor("pod relabel", () => podOf(last(), "default", "web")?.metadata.labels?.["app"] === "web2");
    await cp.kubectl("-n", "default", "delete", "pod", "remote", "--grace-period=0", "--force");
    await waitFor("pod remote gone", () => last() !== undefined && podOf(last(), "default", "remote") === undefined);
  });

  it("follows NetworkPolicy creates, edits and deletes", async () => {
    const policy = (port: number): string => JSON.stringify({
      apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace: "default", name: "allow-web" },
      spec: { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ port }] }] },
    });
    await apply(cp, policy(80), dir);
    await waitFor("policy created", () => policyNames(last()).includes("default/allow-web"));
    await apply(cp, policy(8080), dir);
    const s = await waitFor("policy edited", () => {
      const p = last()?.policies.find((x) => x.metadata.name === "allow-web");
      return p?.spec.ingress?.[0]?.ports?.[0]?.port === 8080 ? last() : undefined;
    });
    expect(s?.errors).toEqual([]);
    await cp.kubectl("-n", "default", "delete", "networkpolicy", "allow-web");
    await waitFor("policy deleted", () => last() !== undefined && !policyNames(last()).includes("default/allow-web"));
  });

  it("coalesces a burst of changes into few snapshots", async () => {
    const before = snapshots.length;
    const docs = Array.from({ length: 10 }, (_, i) => JSON.stringify({
      apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace: "default", name: `burst-${i}` },
      spec: { podSelector: {} },
    })).join("\n---\n");
    await apply(cp, docs, dir);
    await waitFor("10 burst policies", () => policyNames(last()).filter((n) => n.startsWith("default/burst-")).length === 10);
    expect(snapshots.length - before).toBeLessThan(10);
  });

  it("keeps the last snapshot while the API server is down, and applies new changes once it is back", async () => {
    const count = snapshots.length;
    const frozen = last();
    await cp.stopApiServer();
    await waitFor("source unhealthy", () => source?.healthy() === false);
    await new Promise((r) => setTimeout(r, 1000));
    expect(snapshots.length).toBe(count);
    expect(last()).toBe(frozen);
    expect(podOf(last(), "default", "web")).toBeDefined();

    await cp.startApiServer();
    await waitFor("source healthy again", () => source?.healthy() === true, 30_000);
    await apply(cp, JSON.stringify({
      apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace: "default", name: "after-restart" },
      spec: { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Ingress"] },
    }), dir);
    await waitFor("policy made after the restart", () => policyNames(last()).includes("default/after-restart"), 30_000);
    expect(podOf(last(), "default", "web")).toBeDefined();
  });

  it("says what changed in every snapshot: replaying the changes from the first snapshot gives the last one", () => {
    const first = snapshots[0];
    expect(first).toBeDefined();
    const key = (o: { metadata: { namespace?: string; name: string } }): string => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
    const state = {
      namespaces: new Map(first?.namespaces.map((n) => [n.metadata.name, n])),
      pods: new Map(first?.pods.map((p) => [key(p), p])),
      policies: new Map(first?.policies.map((p) => [key(p), p])),
    };
    let small = 0;
    for (const s of snapshots.slice(1)) {
      const c = s.changes;
      expect(c, "every snapshot carries its changes").toBeDefined();
      if (!c) continue;
      for (const k of c.namespaces.removed) state.namespaces.delete(k);
      for (const n of c.namespaces.upserted) state.namespaces.set(n.metadata.name, n);
      for (const [m, ch] of [[state.pods, c.pods], [state.policies, c.policies]] as const) {
        for (const k of ch.removed) m.delete(k);
        for (const o of ch.upserted) (m as Map<string, unknown>).set(key(o), o);
      }
      const n = c.namespaces.upserted.length + c.pods.upserted.length + c.policies.upserted.length;
      if (n + c.namespaces.removed.length + c.pods.removed.length + c.policies.removed.length <= 2) small++;
    }
    const l = last();
    expect([...state.namespaces.values()]).toEqual(expect.arrayContaining([...(l?.namespaces ?? [])]));
    expect(state.namespaces.size).toBe(l?.namespaces.length);
    expect(state.pods.size).toBe(l?.pods.length);
    for (const p of l?.pods ?? []) expect(state.pods.get(key(p))).toBe(p);
    expect(state.policies.size).toBe(l?.policies.length);
    for (const p of l?.policies ?? []) expect(state.policies.get(key(p))).toBe(p);
    // Single edits are reported as single changes, not as the whole cluster.
    expect(small).toBeGreaterThan(5);
  });
});
