// SPDX-License-Identifier: Apache-2.0
// CrdIdentityAllocator against a real kube-apiserver with the install
// manifest's CRD: two agents racing for the same label sets end with one
// identity per set; a small range forces number collisions between different
// sets; unused identities are garbage-collected after the grace period only.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { securityLabelsOf, labelSetKey } from "../../agent/identity/labels.js";
import { CrdIdentityAllocator, LAST_SEEN_ANNOTATION } from "../../agent/k8s/identity-crd.js";
import { loadKubeClient, type KubeClient, type KubeList, type KubeObject } from "../../agent/k8s/kube-client.js";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { testLogger, waitFor } from "./k8s-fixture.js";

let cp: ControlPlane;
let dir: string;
let client: KubeClient;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "twt-k8s-"));
  cp = await startControlPlane();
  await cp.kubectl("create", "-f", resolve("deploy/twill.yaml"));
  await cp.kubectl("wait", "--for=condition=Established", "crd/twillidentities.twill.io", "--timeout=60s");
  client = loadKubeClient(cp.kubeconfigPath);
  // The CRD is served a moment after Established on a cold apiserver.
  await waitFor("twillidentities served", async () => client.request("GET", "/apis/twill.io/v1/twillidentities").then(() => true, () => false));
});

afterAll(async () => {
  await cp?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function identities(): Promise<{ n: number; key: string; obj: KubeObject }[]> {
  const list = await client.request<KubeList>("GET", "/apis/twill.io/v1/twillidentities");
  return list.items.map((o) => ({ n: Number(o.metadata.name), key: String((o["spec"] as { labels: string }).labels), obj: o }));
}

async function deleteAll(): Promise<void> {
  await cp.kubectl("delete", "twillidentities", "--all");
}

const labelSets = Array.from({ length: 20 }, (_, i) => securityLabelsOf(`ns${i % 3}`, { app: `app${i}`, tier: i % 2 ? "web" : "db" }, { team: "t" }));

describe("CrdIdentityAllocator", () => {
  it.each([
    { name: "full range (hash-ordered numbers)", range: {} },
    { name: "28 numbers for 20 sets (hash orders collide)", range: { first: 1000, last: 1027 } },
  ])("two agents racing over 20 label sets end with one identity per set: $name", async ({ range }) => {
    await deleteAll();
    const a = new CrdIdentityAllocator(loadKubeClient(cp.kubeconfigPath), testLogger(), range);
    const b = new CrdIdentityAllocator(loadKubeClient(cp.kubeconfigPath), testLogger(), range);
    const [ra, rb] = await Promise.all([Promise.all(labelSets.map((l) => a.allocate(l))), Promise.all([...labelSets].reverse().map((l) => b.allocate(l))).then((r) => r.reverse())]);
    expect(ra).toEqual(rb);
    expect(new Set(ra).size).toBe(20);
    const stored = await identities();
    expect(stored.length).toBe(20);
    for (const [i, l] of labelSets.entries()) {
      expect(stored.find((s) => s.n === ra[i])?.key).toBe(labelSetKey(l));
    }
    // A third agent started later finds the same numbers without creating any.
    const c = new CrdIdentityAllocator(loadKubeClient(cp.kubeconfigPath), testLogger(), range);
    expect(await Promise.all(labelSets.map((l) => c.allocate(l)))).toEqual(ra);
    expect((await identities()).length).toBe(20);
    expect(await c.labelsOf(ra[3] ?? 0)).toEqual(labelSets[3]);
  });

  it("garbage-collects identities unused past the grace period and stamps the used ones", async () => {
    await deleteAll();
    const a = new CrdIdentityAllocator(client, testLogger());
    const used = await a.allocate(labelSets[0]!);
    const unused = await a.allocate(labelSets[1]!);
    const t0 = Date.now();
    // Within the grace period nothing goes.
    expect(await a.gc(new Set([used]), 60_000, t0 + 30_000)).toEqual([]);
    expect((await identities()).map((s) => s.n).sort()).toEqual([used, unused].sort());
    // Past it the unused one goes; the used one is stamped with the new time.
    expect(await a.gc(new Set([used]), 60_000, t0 + 120_000)).toEqual([unused]);
    const left = await identities();
    expect(left.map((s) => s.n)).toEqual([used]);
    expect(Date.parse(left[0]?.obj.metadata.annotations?.[LAST_SEEN_ANNOTATION] ?? "")).toBe(t0 + 120_000);
    // A collected label set gets an identity again when a pod comes back.
    const again = await a.allocate(labelSets[1]!);
    expect((await identities()).find((s) => s.n === again)?.key).toBe(labelSetKey(labelSets[1]!));
  });
});
