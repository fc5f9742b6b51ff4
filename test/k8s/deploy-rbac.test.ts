// SPDX-License-Identifier: Apache-2.0
// The install manifest against a real kube-apiserver: it validates with
// `kubectl apply --dry-run=server` and installs with `kubectl create -f`; the
// agent's ServiceAccount token (TokenRequest) can do what the agent does
// (list/watch cluster state, allocate identities, post policy events) and is
// refused outside the ClusterRole.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { securityLabelsOf } from "../../agent/identity/labels.js";
import { CrdIdentityAllocator } from "../../agent/k8s/identity-crd.js";
import { isKubeApiError, loadKubeClient, type KubeClient, type KubeList } from "../../agent/k8s/kube-client.js";
import { startKubeSource, type KubeSource } from "../../agent/k8s/kube-source.js";
import { POLICY_REJECTED_REASON, PolicyStatusReporter, rejectionsFromErrors } from "../../agent/k8s/policy-status.js";
import type { ClusterSnapshot } from "../../agent/k8s/cluster-source.js";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { apply, createPod, testLogger, tokenKubeconfig, waitFor } from "./k8s-fixture.js";

const MANIFEST = resolve("deploy/twill.yaml");
let cp: ControlPlane;
let dir: string;
let agent: KubeClient;
let agentKubeconfig: string;
let source: KubeSource | null = null;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "twt-k8s-"));
  cp = await startControlPlane();
});

afterAll(async () => {
  source?.stop();
  await cp?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("install manifest", () => {
  it("validates with kubectl apply --dry-run=server", async () => {
    // Namespaced objects of a dry run need their namespace to exist for real.
    await cp.kubectl("create", "namespace", "twill-system");
    const out = await cp.kubectl("apply", "--dry-run=server", "-f", MANIFEST);
    for (const obj of ["serviceaccount/twill", "clusterrole.rbac.authorization.k8s.io/twill-agent", "clusterrolebinding.rbac.authorization.k8s.io/twill-agent",
      "customresourcedefinition.apiextensions.k8s.io/twillidentities.twill.io", "configmap/twill-config", "daemonset.apps/twill-agent"]) {
      expect(out).toContain(`${obj} created (server dry run)`);
    }
    await cp.kubectl("delete", "namespace", "twill-system", "--wait=false");
  });

  it("installs with kubectl create -f (the documented install flow)", async () => {
    // The namespace from the dry run is stuck Terminating (no namespace controller); make a fresh control plane's worth of state.
    await cp.stop();
    cp = await startControlPlane();
    const out = await cp.kubectl("create", "-f", MANIFEST);
    expect(out).toContain("daemonset.apps/twill-agent created");
    await cp.kubectl("wait", "--for=condition=Established", "crd/twillidentities.twill.io", "--timeout=60s");
    const ds = JSON.parse(await cp.kubectl("-n", "twill-system", "get", "daemonset", "twill-agent", "-o", "json")) as {
      spec: { template: { spec: { hostNetwork: boolean; containers: { securityContext: { privileged: boolean } }[] } } };
    };
    expect(ds.spec.template.spec.hostNetwork).toBe(true);
    expect(ds.spec.template.spec.containers[0]?.securityContext.privileged).toBe(true);
  });

  it("rejects an identity whose labels are not a string (the CRD schema is enforced)", async () => {
    const bad = JSON.stringify({ apiVersion: "twill.io/v1", kind: "TwillIdentity", metadata: { name: "999" }, spec: { labels: 42 } });
    await expect(apply(cp, bad, dir)).rejects.toThrow(/spec.labels/);
  });
});

describe("agent ServiceAccount token", () => {
  beforeAll(async () => {
    const token = (await cp.kubectl("-n", "twill-system", "create", "token", "twill", "--duration=1h")).trim();
    agentKubeconfig = await tokenKubeconfig(cp, token, "twill-agent");
    agent = loadKubeClient(agentKubeconfig);
  });

  it("lists and watches cluster state through startKubeSource", async () => {
    await apply(cp, JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: "twt-node-a" }, spec: { podCIDR: "10.244.9.0/24" } }), dir);
    await createPod(cp, dir, "default", "web", "twt-node-a", { app: "web" }, "10.244.9.5");
    const snapshots: ClusterSnapshot[] = [];
    source = await startKubeSource({ kubeconfig: agentKubeconfig, nodeName: "twt-node-a" }, (s) => snapshots.push(s), testLogger());
    expect(source.healthy()).toBe(true);
    expect(source.localPodCidrs()).toEqual(["10.244.9.0/24"]);
    expect(snapshots.at(-1)?.pods.map((p) => p.metadata.name)).toContain("web");
    await apply(cp, JSON.stringify({
      apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace: "default", name: "deny-all" }, spec: { podSelector: {} },
    }), dir);
    await waitFor("policy via the watch", () => snapshots.at(-1)?.policies.some((p) => p.metadata.name === "deny-all"));
  });

  it("allocates identities", async () => {
    const alloc = new CrdIdentityAllocator(agent, testLogger());
    const n = await alloc.allocate(securityLabelsOf("default", { app: "web" }, {}));
    expect(await alloc.gc(new Set([n]), 60_000)).toEqual([]);
  });

  it("posts a PolicyRejected event on a policy this node does not enforce", async () => {
    const reporter = new PolicyStatusReporter(agent, "twt-node-a", testLogger());
    const rejections = rejectionsFromErrors([{ source: "NetworkPolicy default/deny-all", message: "validate NetworkPolicy default/deny-all: spec: unsupported" }]);
    await reporter.update(rejections);
    await reporter.update(rejections); // reported once, not per snapshot
    const events = JSON.parse(await cp.kubectl("-n", "default", "get", "events", "--field-selector", "involvedObject.name=deny-all", "-o", "json")) as {
      items: { reason: string; type: string; message: string; involvedObject: { kind: string; uid?: string } }[];
    };
    expect(events.items).toHaveLength(1);
    expect(events.items[0]).toMatchObject({ reason: POLICY_REJECTED_REASON, type: "Warning", involvedObject: { kind: "NetworkPolicy" } });
    expect(events.items[0]?.message).toContain("twt-node-a");
    expect(events.items[0]?.involvedObject.uid).toBeTruthy();
  });

  it.each([
    { name: "create secrets", method: "POST", path: "/api/v1/namespaces/default/secrets", body: { metadata: { name: "x" } } },
    { name: "read secrets", method: "GET", path: "/api/v1/namespaces/default/secrets", body: undefined },
    { name: "delete pods", method: "DELETE", path: "/api/v1/namespaces/default/pods/web", body: undefined },
    { name: "edit network policies", method: "DELETE", path: "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/deny-all", body: undefined },
    { name: "change nodes", method: "PATCH", path: "/api/v1/nodes/twt-node-a", body: { metadata: { labels: { x: "y" } } } },
  ])("is refused to $name", async ({ method, path, body }) => {
    const err: unknown = await agent.request(method, path, body, method === "PATCH" ? { contentType: "application/merge-patch+json" } : {}).then(() => null, (e: unknown) => e);
    expect(isKubeApiError(err, 403)).toBe(true);
  });

  it("the admin may read secrets (so the refusals above come from RBAC, not a broken request)", async () => {
    const admin = loadKubeClient(cp.kubeconfigPath);
    await expect(admin.request<KubeList>("GET", "/api/v1/namespaces/default/secrets")).resolves.toHaveProperty("items");
  });
});
