// SPDX-License-Identifier: Apache-2.0
// Shared pieces of the k8s tests: a silent logger, polling until a condition
// holds, kubectl apply from a string, a kubeconfig for a bearer token (the
// agent's ServiceAccount token), and Nodes, Namespaces and Pods made as the
// missing controllers and kubelet would (createNode, createNamespace,
// createPod = createPodObject + setPodIps, deleteNamespace).
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { ControlPlane } from "../helpers/control-plane.js";

/** A logger that prints nothing unless TWILL_TEST_LOG is set. */
export function testLogger(): Logger {
  return pino({ level: process.env["TWILL_TEST_LOG"] ?? "silent" });
}

/** Poll `check` until it returns a value other than undefined/false, or fail after `timeoutMs` with `what`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `kubectl apply -f -` of a YAML/JSON document. */
export async function apply(cp: ControlPlane, doc: string, dir: string): Promise<void> {
  const file = join(dir, `apply-${Date.now()}-${Math.random().toString(16).slice(2)}.yaml`);
  await writeFile(file, doc);
  await cp.kubectl("apply", "-f", file);
}

/** Write a kubeconfig that authenticates with `token`; returns its path. */
export async function tokenKubeconfig(cp: ControlPlane, token: string, name: string): Promise<string> {
  const path = join(cp.dir, `${name}.kubeconfig`);
  await writeFile(
    path,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: c",
      "  cluster:",
      `    server: ${cp.server}`,
      `    certificate-authority: ${cp.caFile}`,
      "users:",
      `- name: ${name}`,
      "  user:",
      `    token: ${token}`,
      "contexts:",
      "- name: c",
      "  context:",
      "    cluster: c",
      `    user: ${name}`,
      "current-context: c",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  return path;
}

/** A pod bound to `node` with the given labels and IP (status set as a kubelet would). */
export async function createPod(cp: ControlPlane, dir: string, ns: string, name: string, node: string, labels: Record<string, string>, ip: string): Promise<void> {
  await createPodObject(cp, dir, ns, name, node, labels);
  await setPodIps(cp, ns, name, [ip]);
}

/** A pod bound to `node` with no status yet: what the API server holds before the kubelet has run the pod's CNI ADD. */
export async function createPodObject(cp: ControlPlane, dir: string, ns: string, name: string, node: string, labels: Record<string, string>): Promise<void> {
  await apply(cp, JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { namespace: ns, name, labels },
    spec: { nodeName: node, containers: [{ name: "c", image: "busybox", ports: [{ name: "http", containerPort: 80 }] }] },
  }), dir);
}

/** Patch a pod's status as the kubelet does after CNI ADD: Running, podIP = ips[0], podIPs = ips. */
export async function setPodIps(cp: ControlPlane, ns: string, name: string, ips: readonly string[]): Promise<void> {
  await cp.kubectl("-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
    JSON.stringify({ status: { phase: "Running", podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } }));
}

/** A Node object with spec.podCIDRs (what an agent in Kubernetes mode takes its IPAM ranges from). */
export async function createNode(cp: ControlPlane, dir: string, name: string, podCidrs: readonly string[]): Promise<void> {
  await apply(cp, JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name }, spec: { podCIDRs: podCidrs } }), dir);
}

/** A Namespace with labels. */
export async function createNamespace(cp: ControlPlane, dir: string, name: string, labels: Record<string, string> = {}): Promise<void> {
  await apply(cp, JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } }), dir);
}

/** Delete a namespace for real: without a controller-manager it would stay Terminating, so finalize it ourselves. */
export async function deleteNamespace(cp: ControlPlane, ns: string): Promise<void> {
  await cp.kubectl("delete", "namespace", ns, "--wait=false");
  const raw = await cp.kubectl("get", "namespace", ns, "-o", "json");
  const obj = JSON.parse(raw) as { spec?: { finalizers?: string[] } };
  obj.spec = { finalizers: [] };
  const file = join(cp.dir, `finalize-${ns}.json`);
  await writeFile(file, JSON.stringify(obj));
  await cp.kubectl("replace", "--raw", `/api/v1/namespaces/${ns}/finalize`, "-f", file);
}
