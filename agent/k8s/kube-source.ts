// SPDX-License-Identifier: Apache-2.0
// Kubernetes mode's source of cluster state: list-watch mirrors (reflector.ts)
// of Namespaces, Pods (all nodes: remote pods feed the ipcache), NetworkPolicies
// and this node's Node object, turned into the ClusterSnapshot contract of
// cluster-source.ts.
//
// API: `startKubeSource({kubeconfig, nodeName}, onSnapshot, log)` ->
// `KubeSource` (ClusterSource + `localPodCidrs()`); `nodeNameOf(pod)` reads
// the spec.nodeName that pods in a KubeSource snapshot carry; `KubeSourceError`.
//
// Behaviour the agent relies on:
//  - No snapshot is delivered until every collection has been listed once: a
//    partial first view would look like "every pod was deleted".
//  - While the API server is away, healthy() is false and nothing is
//    delivered: the datapath keeps the last good state. On reconnect the
//    reflectors re-watch from their version (or relist after 410 Gone) and a
//    fresh complete snapshot follows.
//  - Bursts of events are coalesced (debounce, default 20 ms).
//  - An object that fails validation keeps its last valid version in force and
//    is reported in `errors` ("NetworkPolicy ns/name"), as manifest-dir does.
//  - Pods that do not hold a pod-network IP are left out: hostNetwork pods
//    (their IP is the node's) and finished pods (phase Succeeded/Failed, whose
//    IP the runtime has already released for reuse).
import type { Logger } from "pino";
import type { ClusterSnapshot, ClusterSource, SourceError } from "./cluster-source.js";
import { loadKubeClient, type KubeClient, type KubeObject } from "./kube-client.js";
import { validateNamespace, validateNetworkPolicy, validatePod, type Namespace, type NetworkPolicy, type Pod, type Validated } from "./manifest-types.js";
import { Reflector } from "./reflector.js";

/** Options of {@link startKubeSource}. */
export interface KubeSourceOptions {
  /** Path of a kubeconfig, or null for the in-cluster service account. */
  readonly kubeconfig: string | null;
  /** This node's name (spec.nodeName of its pods; the Node whose podCIDRs we read). */
  readonly nodeName: string;
  /** Snapshot coalescing delay; default 20 ms. */
  readonly debounceMs?: number;
  /** How long the returned promise waits for the first complete sync; default 30 s. */
  readonly syncTimeoutMs?: number;
  /** Reconnect backoff bounds (tests shorten them); defaults 200 ms .. 10 s. */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** An already-built client (tests, or a caller that shares one). */
  readonly client?: KubeClient;
}

/** A running Kubernetes source. */
export interface KubeSource extends ClusterSource {
  /** This node's spec.podCIDRs (falling back to spec.podCIDR); [] until the Node is seen. */
  localPodCidrs(): string[];
}

/** A pod as delivered by this source: spec.nodeName is kept (manifest-types' Pod drops it). */
export type KubePod = Pod & { readonly spec: Pod["spec"] & { readonly nodeName?: string } };

/** The node a pod from a KubeSource snapshot is bound to, or null if unscheduled/unknown. */
export function nodeNameOf(pod: Pod): string | null {
  const n = (pod as KubePod).spec.nodeName;
  return typeof n === "string" && n !== "" ? n : null;
}

/** The source could not be created (bad kubeconfig). */
export class KubeSourceError extends Error {
  override readonly name = "KubeSourceError";
}

/**
 * Start watching the API server. Resolves once the first complete snapshot has
 * been delivered, or after `syncTimeoutMs` with the source still trying (then
 * healthy() is false and the first snapshot follows when the server answers).
 */
export async function startKubeSource(opts: KubeSourceOptions, onSnapshot: (s: ClusterSnapshot) => void, log: Logger): Promise<KubeSource> {
  let client: KubeClient;
  try {
    client = opts.client ?? loadKubeClient(opts.kubeconfig);
  } catch (e: unknown) {
    throw new KubeSourceError(`start kubernetes source: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const source = new KubeSourceImpl(client, opts, onSnapshot, log.child({ source: "kubernetes" }));
  await source.start(opts.syncTimeoutMs ?? 30_000);
  return source;
}

/** Last valid typed value of each object, so an invalid edit keeps the previous one in force. */
class LastValid<T> {
  private readonly byKey = new Map<string, T>();

  /** Validate every raw object; returns the values in force and the errors. */
  update(raws: readonly KubeObject[], describe: (o: KubeObject) => string, validate: (o: KubeObject, source: string) => Validated<T>): { values: T[]; errors: SourceError[] } {
    const values: T[] = [];
    const errors: SourceError[] = [];
    const seen = new Set<string>();
    for (const raw of raws) {
      const source = describe(raw);
      seen.add(source);
      const v = validate(raw, source);
      if (v.value !== null) {
        this.byKey.set(source, v.value);
        values.push(v.value);
        continue;
      }
      for (const e of v.errors) errors.push({ source, message: e.message });
      const old = this.byKey.get(source);
      if (old !== undefined) values.push(old);
    }
    for (const k of [...this.byKey.keys()]) if (!seen.has(k)) this.byKey.delete(k);
    return { values, errors };
  }
}

class KubeSourceImpl implements KubeSource {
  readonly description: string;
  private readonly namespaces: Reflector;
  private readonly pods: Reflector;
  private readonly policies: Reflector;
  private readonly node: Reflector;
  private readonly all: Reflector[];
  private readonly lastNamespaces = new LastValid<Namespace>();
  private readonly lastPods = new LastValid<Pod>();
  private readonly lastPolicies = new LastValid<NetworkPolicy>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private firstDelivered: (() => void) | null = null;

  constructor(client: KubeClient, private readonly opts: KubeSourceOptions, private readonly onSnapshot: (s: ClusterSnapshot) => void, private readonly log: Logger) {
    this.description = `kubernetes:${client.server}`;
    const backoff = { minBackoffMs: opts.minBackoffMs, maxBackoffMs: opts.maxBackoffMs };
    const changed = (): void => this.schedule();
    this.namespaces = new Reflector(client, { path: "/api/v1/namespaces", ...backoff }, changed, log);
    this.pods = new Reflector(client, { path: "/api/v1/pods", ...backoff }, changed, log);
    this.policies = new Reflector(client, { path: "/apis/networking.k8s.io/v1/networkpolicies", ...backoff }, changed, log);
    this.node = new Reflector(client, { path: "/api/v1/nodes", fieldSelector: `metadata.name=${opts.nodeName}`, ...backoff }, changed, log);
    this.all = [this.namespaces, this.pods, this.policies, this.node];
  }

  async start(syncTimeoutMs: number): Promise<void> {
    const first = new Promise<void>((resolve) => {
      this.firstDelivered = resolve;
    });
    for (const r of this.all) r.start();
    let timeout: NodeJS.Timeout | null = null;
    const timedOut = new Promise<boolean>((resolve) => {
      timeout = setTimeout(() => resolve(true), syncTimeoutMs);
    });
    const late = await Promise.race([first.then(() => false), timedOut]);
    if (timeout) clearTimeout(timeout);
    if (late) this.log.warn({ server: this.description, syncTimeoutMs }, "api server not synced yet; continuing with the last local state");
  }

  healthy(): boolean {
    return !this.stopped && this.all.every((r) => r.healthy());
  }

  localPodCidrs(): string[] {
    const node = this.node.items().find((n) => n.metadata.name === this.opts.nodeName);
    const spec = (node?.["spec"] ?? {}) as { podCIDRs?: unknown; podCIDR?: unknown };
    if (Array.isArray(spec.podCIDRs)) return spec.podCIDRs.filter((c): c is string => typeof c === "string");
    return typeof spec.podCIDR === "string" && spec.podCIDR !== "" ? [spec.podCIDR] : [];
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const r of this.all) void r.stop();
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.deliver();
    }, this.opts.debounceMs ?? 20);
  }

  private deliver(): void {
    if (this.stopped || !this.all.every((r) => r.synced())) return;
    const ns = this.lastNamespaces.update(this.namespaces.items(), (o) => `Namespace ${o.metadata.name ?? "?"}`, (o, s) => validateNamespace(o, s));
    const pods = this.lastPods.update(this.pods.items().filter(holdsPodIp), (o) => `Pod ${o.metadata.namespace ?? "?"}/${o.metadata.name ?? "?"}`, validateKubePod);
    const pol = this.lastPolicies.update(this.policies.items(), (o) => `NetworkPolicy ${o.metadata.namespace ?? "?"}/${o.metadata.name ?? "?"}`, (o, s) => validateNetworkPolicy(o, s));
    const snapshot: ClusterSnapshot = {
      namespaces: ns.values,
      pods: pods.values,
      policies: pol.values,
      errors: [...ns.errors, ...pods.errors, ...pol.errors],
    };
    try {
      this.onSnapshot(snapshot);
    } catch (e: unknown) {
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, "snapshot consumer failed");
    }
    const resolve = this.firstDelivered;
    this.firstDelivered = null;
    resolve?.();
  }
}

/** validatePod plus spec.nodeName, which the agent needs to tell local pods from remote ones. */
function validateKubePod(o: KubeObject, source: string): Validated<Pod> {
  const v = validatePod(o, source);
  if (v.value === null) return v;
  const nodeName = (o["spec"] as { nodeName?: unknown } | undefined)?.nodeName;
  if (typeof nodeName !== "string" || nodeName === "") return v;
  const pod: KubePod = { ...v.value, spec: { ...v.value.spec, nodeName } };
  return { value: pod, errors: [] };
}

/** Whether the pod holds an address of the pod network (see the module comment). */
function holdsPodIp(o: KubeObject): boolean {
  const spec = (o["spec"] ?? {}) as { hostNetwork?: unknown };
  const status = (o["status"] ?? {}) as { phase?: unknown };
  if (spec.hostNetwork === true) return false;
  return status.phase !== "Succeeded" && status.phase !== "Failed";
}
