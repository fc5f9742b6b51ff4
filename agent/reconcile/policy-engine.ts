// SPDX-License-Identifier: Apache-2.0
// From cluster state and local endpoints to the desired datapath contents:
// identities, the ipcache, and one policy trie per local endpoint.
//
// API: `new PolicyEngine(identityStore, cidrStore)`, `compute(input)` ->
// DesiredState. The engine keeps the identity allocators (numbers stay
// stable across recomputes and, through the stores, across restarts) and
// computes the whole desired state from the whole input on every call; the
// sync step (datapath-sync.ts) then writes only what differs.
// What does not change between calls is memoised, never trusted blindly:
// per pod, its security labels, named ports and canonical ipcache prefixes
// (reused while the Pod object, or its labels, and its namespace's labels
// and addresses are unchanged); the SelectorCache persists, so only new
// selectors are matched against every identity and only new or vanished
// identities against every selector (per policy object, its selectors stay
// tracked while the same object is in the input). Identities are allocated
// once per label set per call, not once per pod. Any exception drops every
// memo, and the next call starts from scratch.
import type { LabelMap, Namespace, NetworkPolicy, Pod } from "../k8s/manifest-types.js";
import { podIpsOf } from "../k8s/manifest-types.js";
import { CidrIdentityAllocator, IdentityAllocator, type IdentityStore } from "../identity/allocator.js";
import { labelSetKey, parseLabelSetKey, securityLabelsOf, type SecurityLabels } from "../identity/labels.js";
import { ReservedIdentity } from "../identity/reserved.js";
import { compileEndpointPolicy, trackPolicySelectors, untrackPolicySelectors, type NamedPort } from "../policy/compiler.js";
import { ipcacheEntriesForIpBlock, type IpcacheEntry } from "../policy/ipcache.js";
import { parseCidr } from "../ipam/cidr.js";
import { PolicyDirection, PolicyPrefix, type PolicyEntry } from "../policy/policy-key.js";
import { RuleRefTable } from "../policy/rule-ref.js";
import { SelectorCache, type IdentitySource } from "../policy/selector.js";

/** A local endpoint as the engine needs it. */
export interface EngineEndpoint {
  readonly key: string;            // container id
  readonly namespace: string;
  readonly podName: string;
  readonly ips: readonly string[];
}

/** Everything a recompute reads. */
export interface EngineInput {
  readonly namespaces: readonly Namespace[];
  readonly pods: readonly Pod[];
  readonly policies: readonly NetworkPolicy[];
  readonly endpoints: readonly EngineEndpoint[];
  /** Addresses of this node (host identity). */
  readonly hostIps: readonly string[];
}

/** Identity and compiled policy of one local endpoint. */
export interface EndpointPolicy {
  readonly identity: number;
  readonly labels: SecurityLabels;
  /** False when no Pod object matched: the endpoint has namespace labels only. */
  readonly podKnown: boolean;
  readonly entries: readonly PolicyEntry[];
}

/** The datapath contents the cluster state calls for. */
export interface DesiredState {
  readonly ipcache: readonly IpcacheEntry[];
  readonly endpoints: ReadonlyMap<string, EndpointPolicy>;
  readonly ruleRefs: RuleRefTable;
  readonly computeMs: number;
}

const podKey = (ns: string, name: string): string => `${ns}/${name}`;

/** What the engine derived from one pod (or endpoint without a Pod) last time. */
interface PodMemo {
  readonly pod: Pod | null;
  readonly podLabels: LabelMap;
  readonly nsLabelsKey: string;
  readonly ips: readonly string[];
  readonly labels: SecurityLabels;
  readonly labelKey: string;
  readonly namedPorts: readonly NamedPort[];
  readonly prefixes: readonly string[];
}

function sameLabels(a: LabelMap, b: LabelMap): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => b[k] === a[k]);
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

const hostPrefix = (ip: string): string => `${ip}/${ip.includes(":") ? 128 : 32}`;

function namedPortsOf(p: Pod | undefined): NamedPort[] {
  if (!p) return [];
  return p.spec.containers.flatMap((c) =>
    (c.ports ?? []).flatMap((cp) => (cp.name ? [{ name: cp.name, port: cp.containerPort, protocol: cp.protocol ?? "TCP" }] : [])),
  );
}

/** Traffic between a pod and its own node is always allowed (NetworkPolicy spec), both ways. */
function hostEntries(): PolicyEntry[] {
  return [PolicyDirection.FROM_POD, PolicyDirection.TO_POD].map((direction) => ({
    key: { identity: ReservedIdentity.HOST, direction, protocol: 0, port: 0, prefixLen: PolicyPrefix.DIR },
    ruleRef: 0,
  }));
}

/** Stateful compiler of cluster state into desired datapath contents. */
export class PolicyEngine {
  readonly identities: IdentityAllocator;
  readonly cidrIdentities: CidrIdentityAllocator;
  /** Identities held by the previous compute, released after the next (no flapping numbers). */
  private held: number[] = [];
  private heldCidr: number[] = [];
  private firstDone = false;
  private ruleRefs = new RuleRefTable();
  /** Cluster-wide numbers (Kubernetes mode), by label-set key; null = allocate locally. */
  private external: ReadonlyMap<string, number> | null = null;

  constructor(identityStore: IdentityStore | null, cidrStore: IdentityStore | null) {
    this.identities = new IdentityAllocator(identityStore);
    this.cidrIdentities = new CidrIdentityAllocator(cidrStore);
  }

  /**
   * Use cluster-wide identity numbers (resolved beforehand, e.g. through the
   * TwillIdentity CRD) instead of the local allocator. A label set missing
   * from the map leaves its pods without an identity until it is resolved.
   */
  useExternalIdentities(table: ReadonlyMap<string, number> | null): void {
    this.external = table;
  }

  /** Label-derived identities in use: the cluster-wide table, or the local allocator's. */
  labelIdentities(): { identity: number; labels: SecurityLabels }[] {
    if (!this.external) return this.identities.entries();
    return [...this.external].map(([k, identity]) => ({ identity, labels: parseLabelSetKey(k) })).sort((a, b) => a.identity - b.identity);
  }

  /** Labels of a label-derived identity, or null. */
  labelsOfIdentity(identity: number): SecurityLabels | null {
    if (!this.external) return this.identities.labelsOf(identity);
    for (const [k, n] of this.external) if (n === identity) return parseLabelSetKey(k);
    return null;
  }

  /** Label sets of every pod and endpoint of the input (what an external resolver must resolve). */
  static labelSetsOf(input: Pick<EngineInput, "namespaces" | "pods" | "endpoints">): SecurityLabels[] {
    const nsLabels = new Map(input.namespaces.map((n) => [n.metadata.name, n.metadata.labels]));
    const out = new Map<string, SecurityLabels>();
    const known = new Set(input.pods.map((p) => podKey(p.metadata.namespace, p.metadata.name)));
    for (const p of input.pods) {
      const l = securityLabelsOf(p.metadata.namespace, p.metadata.labels, nsLabels.get(p.metadata.namespace));
      out.set(labelSetKey(l), l);
    }
    for (const e of input.endpoints) {
      if (known.has(podKey(e.namespace, e.podName))) continue;
      const l = securityLabelsOf(e.namespace, {}, nsLabels.get(e.namespace));
      out.set(labelSetKey(l), l);
    }
    return [...out.values()];
  }

  /** Persistent across computes (see the file comment); reset by dropMemos(). */
  private cache = new SelectorCache();
  /** identity -> key of the source the cache holds for it. */
  private cachedSources = new Map<number, string>();
  /** Policy objects whose selectors the cache tracks (a stack of key lists per object). */
  private tracked = new Map<NetworkPolicy, string[][]>();
  private podMemos = new Map<string, PodMemo>();
  private canonical = new Map<string, string>();

  private dropMemos(): void {
    this.cache = new SelectorCache();
    this.cachedSources = new Map();
    this.tracked = new Map();
    this.podMemos = new Map();
    this.canonical = new Map();
  }

  private canon(prefix: string): string {
    let t = this.canonical.get(prefix);
    if (t === undefined) {
      t = parseCidr(prefix).text;
      this.canonical.set(prefix, t);
    }
    return t;
  }

  /** Compute the desired state from the whole input. Throws only on internal inconsistency. */
  compute(input: EngineInput): DesiredState {
    try {
      return this.computeMemoised(input);
    } catch (e: unknown) {
      this.dropMemos();
      throw e;
    }
  }

  private computeMemoised(input: EngineInput): DesiredState {
    const t0 = performance.now();
    const cache = this.cache;
    const held: number[] = [];
    const heldCidr: number[] = [];
    const nsLabels = new Map(input.namespaces.map((n) => [n.metadata.name, n.metadata.labels]));
    const nsKeys = new Map<string, string>();
    const nsKeyOf = (ns: string): string => {
      let k = nsKeys.get(ns);
      if (k === undefined) {
        const l = nsLabels.get(ns) ?? {};
        k = JSON.stringify(Object.keys(l).sort().map((x) => [x, l[x]]));
        nsKeys.set(ns, k);
      }
      return k;
    };
    const podsByKey = new Map(input.pods.map((p) => [podKey(p.metadata.namespace, p.metadata.name), p]));
    const localByPod = new Map(input.endpoints.map((e) => [podKey(e.namespace, e.podName), e]));
    const remoteNamedPorts = new Map<number, NamedPort[]>();
    const podIdentity = new Map<string, { identity: number; labels: SecurityLabels }>();
    const sources = new Map<number, { key: string; source: IdentitySource }>();
    const byLabelKey = new Map<string, number | null>();
    const memos = new Map<string, PodMemo>();

    const memoOf = (k: string, ns: string, pod: Pod | null, ips: readonly string[]): PodMemo => {
      const podLabels = pod?.metadata.labels ?? {};
      const nsLabelsKey = nsKeyOf(ns);
      const m = this.podMemos.get(k);
      if (m && m.nsLabelsKey === nsLabelsKey && sameList(m.ips, ips) && (m.pod === pod || (pod !== null && m.pod !== null && sameLabels(m.podLabels, podLabels)))) {
        const keep = m.pod === pod ? m : { ...m, pod, namedPorts: namedPortsOf(pod ?? undefined) };
        memos.set(k, keep);
        return keep;
      }
      const labels = securityLabelsOf(ns, podLabels, nsLabels.get(ns));
      const fresh: PodMemo = {
        pod, podLabels, nsLabelsKey, ips, labels, labelKey: labelSetKey(labels),
        namedPorts: namedPortsOf(pod ?? undefined), prefixes: ips.map((ip) => this.canon(hostPrefix(ip))),
      };
      memos.set(k, fresh);
      return fresh;
    };

    // One allocation per label set per compute (held until the next one).
    const identityOf = (m: PodMemo): number | null => {
      const known = byLabelKey.get(m.labelKey);
      if (known !== undefined) return known;
      let identity: number | null;
      if (this.external) identity = this.external.get(m.labelKey) ?? null;
      else {
        identity = this.identities.allocate(m.labels).identity;
        held.push(identity);
      }
      byLabelKey.set(m.labelKey, identity);
      if (identity !== null && !sources.has(identity)) sources.set(identity, { key: `labels:${m.labelKey}`, source: { kind: "labels", labels: m.labels } });
      return identity;
    };

    const podEntries: Array<readonly [string, number]> = [];
    for (const p of input.pods) {
      const k = podKey(p.metadata.namespace, p.metadata.name);
      // A local pod's addresses come from its endpoint (the CNI result), not
      // from the manifest, which in standalone mode has no status.
      const m = memoOf(k, p.metadata.namespace, p, localByPod.get(k)?.ips ?? podIpsOf(p));
      const identity = identityOf(m);
      if (identity === null) continue;
      podIdentity.set(k, { identity, labels: m.labels });
      const ports = remoteNamedPorts.get(identity) ?? [];
      for (const np of m.namedPorts) {
        if (!ports.some((x) => x.name === np.name && x.port === np.port && x.protocol === np.protocol)) ports.push(np);
      }
      remoteNamedPorts.set(identity, ports);
      for (const prefix of m.prefixes) podEntries.push([prefix, identity]);
    }
    // Endpoints whose Pod is unknown still get an identity (namespace labels
    // only) so that namespace-wide policies apply to them.
    for (const e of input.endpoints) {
      const k = podKey(e.namespace, e.podName);
      if (podIdentity.has(k) || podsByKey.has(k)) continue;
      const m = memoOf(`endpoint:${k}`, e.namespace, null, e.ips);
      const identity = identityOf(m);
      if (identity === null) continue;
      podIdentity.set(k, { identity, labels: m.labels });
      for (const prefix of m.prefixes) podEntries.push([prefix, identity]);
    }
    for (const ip of input.hostIps) podEntries.push([this.canon(hostPrefix(ip)), ReservedIdentity.HOST]);

    // Selectors: keep those of policy objects seen last time, track new ones
    // (before forgetting old ones, so a shared selector is not re-matched).
    const previous = this.tracked;
    const tracked = new Map<NetworkPolicy, string[][]>();
    const cidrEntries: IpcacheEntry[] = [];
    for (const pol of input.policies) {
      const stack = previous.get(pol);
      const keys = stack?.pop() ?? trackPolicySelectors(cache, pol);
      tracked.set(pol, [...(tracked.get(pol) ?? []), keys]);
      const blocks = [...(pol.spec.ingress ?? []).flatMap((r) => r.from ?? []), ...(pol.spec.egress ?? []).flatMap((r) => r.to ?? [])]
        .flatMap((peer) => (peer.ipBlock ? [peer.ipBlock] : []));
      for (const b of blocks) {
        for (const c of [b.cidr, ...(b.except ?? [])]) {
          const a = this.cidrIdentities.allocate(c);
          heldCidr.push(a.identity);
          if (!sources.has(a.identity)) sources.set(a.identity, { key: `cidr:${c}`, source: { kind: "cidr", cidr: c } });
        }
        cidrEntries.push(...ipcacheEntriesForIpBlock(b.cidr, b.except ?? [], (c) => this.cidrIdentities.identityOf(c) ?? ReservedIdentity.WORLD));
      }
    }
    for (const stack of previous.values()) for (const keys of stack) untrackPolicySelectors(cache, keys);
    this.tracked = tracked;

    // Identities: tell the cache only what appeared, changed or vanished.
    for (const [identity, s] of sources) {
      if (this.cachedSources.get(identity) === s.key) continue;
      cache.upsertIdentity(identity, s.source);
      this.cachedSources.set(identity, s.key);
    }
    for (const identity of [...this.cachedSources.keys()]) {
      if (sources.has(identity)) continue;
      cache.removeIdentity(identity);
      this.cachedSources.delete(identity);
    }
    this.podMemos = memos;
    if (this.canonical.size > 2 * memos.size + 4096) this.canonical.clear();

    // One trie from pod and CIDR entries; a pod (or host) entry wins an exact-prefix tie.
    const merged = new Map<string, number>();
    for (const e of cidrEntries) merged.set(this.canon(e.prefix), e.identity);
    for (const [prefix, identity] of podEntries) merged.set(prefix, identity);
    const ipcache: IpcacheEntry[] = [];
    for (const [prefix, identity] of merged) ipcache.push({ prefix, identity });

    // Rule numbers restart with each compute so the table cannot grow without
    // bound; flows decode rule_ref against the table of the state in force.
    const ruleRefs = new RuleRefTable();
    const ctx = { policies: input.policies, selectorCache: cache, remoteNamedPorts, ruleRefs };
    const endpoints = new Map<string, EndpointPolicy>();
    for (const e of input.endpoints) {
      const k = podKey(e.namespace, e.podName);
      const id = podIdentity.get(k);
      if (!id) continue;
      const pod = podsByKey.get(k);
      const entries = [...compileEndpointPolicy({ identity: id.identity, labels: id.labels, namedPorts: memos.get(k)?.namedPorts ?? [] }, ctx), ...hostEntries()];
      endpoints.set(e.key, { identity: id.identity, labels: id.labels, podKnown: pod !== undefined, entries });
    }

    // Release the previous compute's references only now, so an identity that
    // is still used keeps its number.
    for (const i of this.held) this.identities.release(i);
    for (const i of this.heldCidr) this.cidrIdentities.release(i);
    this.held = held;
    this.heldCidr = heldCidr;
    if (!this.firstDone) {
      this.identities.pruneRestored();
      this.cidrIdentities.pruneRestored();
      this.firstDone = true;
    }
    this.ruleRefs = ruleRefs;
    return { ipcache, endpoints, ruleRefs, computeMs: performance.now() - t0 };
  }

  /** Rule table of the last compute. */
  get rules(): RuleRefTable {
    return this.ruleRefs;
  }
}
