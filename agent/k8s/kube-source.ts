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
import type { ClusterChanges, ClusterSnapshot, ClusterSource } from "./cluster-source.js";
import { loadKubeClient, type KubeClient, type KubeObject } from "./kube-client.js";
import { validateNamespace, validateNetworkPolicy, validatePod, type Namespace, type NetworkPolicy, type Pod, type Validated } from "./manifest-types.js";
import { Reflector } from "./reflector.js";
import { ValidatedCollection } from "./validated-collection.js";

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

class KubeSourceImpl implements KubeSource {
  readonly description: string;
  private readonly namespaces: Reflector;
  private readonly pods: Reflector;
  private readonly policies: Reflector;
  private readonly node: Reflector;
  private readonly all: Reflector[];
  private readonly validNamespaces = new ValidatedCollection<Namespace>((o) => `Namespace ${o.metadata.name ?? "?"}`, (o, s) => validateNamespace(o, s), () => true, (k) => k.slice(1));
  private readonly validPods = new ValidatedCollection<Pod>((o) => `Pod ${o.metadata.namespace ?? "?"}/${o.metadata.name ?? "?"}`, validateKubePod, holdsPodIp, (k) => k);
  private readonly validPolicies = new ValidatedCollection<NetworkPolicy>((o) => `NetworkPolicy ${o.metadata.namespace ?? "?"}/${o.metadata.name ?? "?"}`, (o, s) => validateNetworkPolicy(o, s), () => true, (k) => k);
  /** Keys each reflector changed since the last delivery (null: relisted, look at everything). */
  private readonly dirty = new Map<Reflector, Set<string> | null>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private firstDelivered: (() => void) | null = null;

  constructor(client: KubeClient, private readonly opts: KubeSourceOptions, private readonly onSnapshot: (s: ClusterSnapshot) => void, private readonly log: Logger) {
    this.description = `kubernetes:${client.server}`;
    const backoff = { minBackoffMs: opts.minBackoffMs, maxBackoffMs: opts.maxBackoffMs };
    const changed = (r: () => Reflector) => (keys: readonly string[] | null): void => {
      const reflector = r();
      const cur = this.dirty.get(reflector);
      if (keys === null) this.dirty.set(reflector, null);
      else if (cur === undefined) this.dirty.set(reflector, new Set(keys));
      else if (cur !== null) for (const k of keys) cur.add(k);
      this.schedule();
    };
    this.namespaces = new Reflector(client, { path: "/api/v1/namespaces", ...backoff }, changed(() => this.namespaces), log);
    this.pods = new Reflector(client, { path: "/api/v1/pods", slim: slimPod, ...backoff }, changed(() => this.pods), log);
    this.policies = new Reflector(client, { path: "/apis/networking.k8s.io/v1/networkpolicies", ...backoff }, changed(() => this.policies), log);
    this.node = new Reflector(client, { path: "/api/v1/nodes", fieldSelector: `metadata.name=${opts.nodeName}`, ...backoff }, changed(() => this.node), log);
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
    // Validate only what the reflectors changed since the last delivery.
    for (const [r, c] of [[this.namespaces, this.validNamespaces], [this.pods, this.validPods], [this.policies, this.validPolicies]] as const) {
      const keys = this.dirty.get(r);
      if (keys === undefined) continue;
      (c as ValidatedCollection<unknown>).update(keys, (k) => r.get(k), () => r.keys());
    }
    this.dirty.clear();
    const changes: ClusterChanges = {
      namespaces: this.validNamespaces.takeChanges(),
      pods: this.validPods.takeChanges(),
      policies: this.validPolicies.takeChanges(),
    };
    const snapshot: ClusterSnapshot = {
      namespaces: this.validNamespaces.values(),
      pods: this.validPods.values(),
      policies: this.validPolicies.values(),
      errors: [...this.validNamespaces.errors(), ...this.validPods.errors(), ...this.validPolicies.errors()],
      changes,
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

/**
 * The fields of a Pod the agent reads (validatePod, holdsPodIp, nodeName);
 * a real Pod object is mostly other things (managedFields, env, volumes).
 */
export function slimPod(o: KubeObject): KubeObject {
  const m = o.metadata;
  const spec = (o["spec"] ?? {}) as { containers?: unknown; nodeName?: unknown; hostNetwork?: unknown };
  const status = (o["status"] ?? {}) as { phase?: unknown; podIP?: unknown; podIPs?: unknown };
  const containers = Array.isArray(spec.containers)
    ? spec.containers.map((c: unknown) => {
      const x = (c ?? {}) as { name?: unknown; ports?: unknown };
      return { name: x.name, ...(x.ports !== undefined ? { ports: x.ports } : {}) };
    })
    : spec.containers;
  return {
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion, ...(m.labels ? { labels: m.labels } : {}) },
    spec: { containers, nodeName: spec.nodeName, hostNetwork: spec.hostNetwork },
    status: { phase: status.phase, podIP: status.podIP, podIPs: status.podIPs },
  };
}

/** Whether the pod holds an address of the pod network (see the module comment). */
function holdsPodIp(o: KubeObject): boolean {
  const spec = (o["spec"] ?? {}) as { hostNetwork?: unknown };
  const status = (o["status"] ?? {}) as { phase?: unknown };
  if (spec.hostNetwork === true) return false;
  return status.phase !== "Succeeded" && status.phase !== "Failed";
}
