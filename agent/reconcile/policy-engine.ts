// SPDX-License-Identifier: Apache-2.0
// From cluster state and local endpoints to the desired datapath contents:
// identities, the ipcache, and one policy trie per local endpoint; updated
// incrementally.
//
// API: `new PolicyEngine(identityStore, cidrStore)`,
// `compute(input, changes?)` -> DesiredState (the whole state in force, plus
// the delta against the previous call), `useExternalIdentities(table)`,
// `labelIdentities()`, `labelsOfIdentity(n)`, `PolicyEngine.labelSetsOf`.
//
// How a change stays small: the engine keeps, per pod (a "member": a Pod
// object, a local endpoint, or both under one namespace/name), its label
// group, addresses and named ports. Members with equal security labels form
// one group = one identity. A change re-derives only the members it touches
// (a Namespace change: the members of that namespace), moves them between
// groups, and reports to the SelectorCache only identities that appeared or
// vanished; the cache answers with the selectors whose selection changed.
// Local endpoints are recompiled only when something they depend on changed:
// a policy of their namespace, a selector their policies use, their own
// labels or named ports, or (for egress named ports) remote named ports.
// Addresses go through IpcacheClaims, which yields the ipcache delta.
//
// `changes` (from ClusterSnapshot.changes) names the objects that differ
// from the previous call; without it (or after a failure) the engine diffs
// the whole input against what it holds, which costs O(pods). Endpoints and
// host addresses are always diffed in full: there are ~100 of them.
// Any exception drops the whole state; the next call rebuilds it from the
// full input (the allocators, and so the identity numbers, survive).
import type { ClusterChanges } from "../k8s/cluster-source.js";
import type { LabelMap, Namespace, NetworkPolicy, Pod } from "../k8s/manifest-types.js";
import { podIpsOf } from "../k8s/manifest-types.js";
import { CidrIdentityAllocator, IdentityAllocator, type IdentityStore } from "../identity/allocator.js";
import { labelSetKey, parseLabelSetKey, securityLabelsOf, type SecurityLabels } from "../identity/labels.js";
import { ReservedIdentity } from "../identity/reserved.js";
import { compileEndpointPolicy, selectorKeysFor, trackPolicySelectors, untrackPolicySelectors } from "../policy/compiler.js";
import { ipcacheEntriesForIpBlock, type IpcacheEntry } from "../policy/ipcache.js";
import { isCanonicalIpv4, parseCidr } from "../ipam/cidr.js";
import { RuleRefTable } from "../policy/rule-ref.js";
import { ClaimRank, type IpcacheChange, type IpcacheDelta } from "./ipcache-claims.js";
import { CIDR_OWNER, HOST_OWNER, NO_PORTS, addToIndex, groupPorts, hostEntries, hostPrefix, podKey, portSetOf, prefixList, removeFromIndex, sameEndpointPolicy, sameLabels, sameList, samePrefixes, type Batch, EngineState, type LabelGroup, type Member, type TrackedPolicy, type EndpointDeps } from "./engine-state.js";
import type { EndpointPolicy, EngineEndpoint } from "./engine-state.js";

export type { EndpointPolicy, EngineEndpoint } from "./engine-state.js";

/** Everything a compute reads. */
export interface EngineInput {
  readonly namespaces: readonly Namespace[];
  readonly pods: readonly Pod[];
  readonly policies: readonly NetworkPolicy[];
  readonly endpoints: readonly EngineEndpoint[];
  /** Addresses of this node (host identity). */
  readonly hostIps: readonly string[];
}

/** What differs from the previous compute. */
export interface EngineDelta {
  /** Empty when `full`. */
  readonly ipcache: IpcacheDelta;
  /** Keys of endpoints whose identity or entries changed, or that have no policy any more. */
  readonly endpoints: readonly string[];
  /** True when the engine rebuilt its state from scratch: sync everything, not just the delta. */
  readonly full: boolean;
}

/** The datapath contents the cluster state calls for. */
export interface DesiredState {
  /** Every ipcache entry in force (built on each access: prefer `delta` and `ipcacheSize`). */
  readonly ipcache: readonly IpcacheEntry[];
  readonly ipcacheSize: number;
  /** Every ipcache entry in force with its local flag, without building one big array. */
  ipcacheEntries(): Iterable<IpcacheChange>;
  /** Whether a (canonical) prefix has an entry in force. */
  hasIpcachePrefix(prefix: string): boolean;
  readonly endpoints: ReadonlyMap<string, EndpointPolicy>;
  readonly ruleRefs: RuleRefTable;
  readonly computeMs: number;
  readonly delta: EngineDelta;
}

/** Stateful, incremental compiler of cluster state into desired datapath contents. */
export class PolicyEngine {
  readonly identities: IdentityAllocator;
  readonly cidrIdentities: CidrIdentityAllocator;
  private state: EngineState | null = null;
  private firstDone = false;
  /** Numbers the dropped state held: released after the rebuild has re-claimed what is still in use. */
  private heldAfterDrop: { labels: number[]; cidr: number[] } = { labels: [], cidr: [] };
  private readonly ruleRefs = new RuleRefTable();
  /** Cluster-wide numbers (Kubernetes mode), by label-set key; null = allocate locally. */
  private external: ReadonlyMap<string, number> | null = null;
  /** Canonical prefix texts of host addresses (memo: pod IPs are parsed once per member change). */
  private readonly canonical = new Map<string, string>();

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

  /** Rule table (numbers are never reused, so flows decode against it at any time). */
  get rules(): RuleRefTable {
    return this.ruleRefs;
  }

  /**
   * Bring the state to `input`. `changes`, when given, must name every
   * namespace, pod and policy that differs from the previous call's input;
   * the rest of `input` is then only read for what they touch.
   */
  compute(input: EngineInput, changes?: ClusterChanges): DesiredState {
    const t0 = performance.now();
    const full = this.state === null;
    const st = this.state ?? new EngineState();
    this.state = st;
    // A rebuild is synced in full (delta.full): no per-prefix delta to keep.
    if (full) st.claims.pauseDelta();
    const batch: Batch = { dirtyMembers: new Set(), pods: new Map(), dirtyEndpoints: new Set(), emptied: new Set(), changedEndpoints: new Set() };
    try {
      if (changes && !full) this.applyChanges(st, batch, changes);
      else this.diffAll(st, batch, input);
      this.diffEndpoints(st, batch, input.endpoints);
      if (st.external !== this.external) {
        const wasLocal = st.external === null;
        st.external = this.external;
        const renumbered = new Set<LabelGroup>();
        for (const g of st.groups.values()) if (this.renumberGroup(st, batch, g, wasLocal)) renumbered.add(g);
        // Their members re-claim their addresses with the new numbers.
        if (renumbered.size > 0) for (const m of st.members.values()) if (renumbered.has(m.group)) batch.dirtyMembers.add(m.key);
      }
      for (const k of batch.dirtyMembers) this.refreshMember(st, batch, k);
      this.diffHostIps(st, input.hostIps);
      for (const g of batch.emptied) if (g.size === 0) this.dropGroup(st, batch, g);
      for (const k of batch.dirtyEndpoints) this.recompile(st, batch, k);
      for (const n of this.heldAfterDrop.labels) this.identities.release(n);
      for (const n of this.heldAfterDrop.cidr) this.cidrIdentities.release(n);
      this.heldAfterDrop = { labels: [], cidr: [] };
      if (!this.firstDone) {
        this.identities.pruneRestored();
        this.cidrIdentities.pruneRestored();
        this.firstDone = true;
      }
    } catch (e: unknown) {
      this.dropState();
      throw e;
    }
    const claims = st.claims;
    const ipcacheDelta = claims.takeDelta();
    return {
      get ipcache(): IpcacheEntry[] {
        return [...claims.entries()].map((e) => ({ prefix: e.prefix, identity: e.identity }));
      },
      ipcacheSize: claims.size,
      ipcacheEntries: () => claims.entries(),
      hasIpcachePrefix: (p: string) => claims.has(p),
      endpoints: st.compiled,
      ruleRefs: this.ruleRefs,
      computeMs: performance.now() - t0,
      delta: { ipcache: ipcacheDelta, endpoints: [...batch.changedEndpoints], full },
    };
  }

  /**
   * Label sets in use after the last compute, by labelSetKey, plus what the
   * given pods and pod-less endpoints would need; null before the first
   * compute or when `changes` touch namespaces (then use labelSetsOf).
   * Lets a cluster-wide resolver look only at what can be new.
   */
  labelSetsAfter(changes: ClusterChanges, endpoints: readonly { namespace: string; podName: string }[]): Map<string, SecurityLabels> | null {
    const st = this.state;
    if (!st || changes.namespaces.upserted.length > 0 || changes.namespaces.removed.length > 0) return null;
    const out = new Map<string, SecurityLabels>();
    for (const g of st.groups.values()) out.set(g.key, g.labels);
    const add = (ns: string, labels: LabelMap | undefined): void => {
      const l = securityLabelsOf(ns, labels ?? {}, st.nsLabels.get(ns));
      out.set(labelSetKey(l), l);
    };
    for (const p of changes.pods.upserted) add(p.metadata.namespace, p.metadata.labels);
    const removed = new Set(changes.pods.removed);
    for (const e of endpoints) {
      const k = podKey(e.namespace, e.podName);
      if (!st.members.get(k)?.pod || removed.has(k)) add(e.namespace, {});
    }
    return out;
  }


  /**
   * Forget everything derived from the cluster. The numbers it held stay held
   * until the rebuild succeeds, so a label set that still exists keeps its number.
   */
  private dropState(): void {
    const st = this.state;
    this.state = null;
    if (!st) return;
    for (const g of st.groups.values()) if (g.identity !== null && st.external === null) this.heldAfterDrop.labels.push(g.identity);
    for (const p of st.policies.values()) this.heldAfterDrop.cidr.push(...p.cidrIdentities);
  }

  // ---- input -> dirty sets ------------------------------------------------

  private applyChanges(st: EngineState, batch: Batch, c: ClusterChanges): void {
    for (const name of c.namespaces.removed) this.setNamespace(st, batch, name, null);
    for (const n of c.namespaces.upserted) this.setNamespace(st, batch, n.metadata.name, n);
    for (const k of c.pods.removed) this.setPod(st, batch, k, null);
    for (const p of c.pods.upserted) this.setPod(st, batch, podKey(p.metadata.namespace, p.metadata.name), p);
    for (const k of c.policies.removed) this.setPolicy(st, batch, k, null);
    for (const p of c.policies.upserted) this.setPolicy(st, batch, podKey(p.metadata.namespace, p.metadata.name), p);
  }

  private diffAll(st: EngineState, batch: Batch, input: EngineInput): void {
    const seenNs = new Set<string>();
    for (const n of input.namespaces) {
      seenNs.add(n.metadata.name);
      if (st.namespaceObjs.get(n.metadata.name) !== n) this.setNamespace(st, batch, n.metadata.name, n);
    }
    for (const name of [...st.namespaceObjs.keys()]) if (!seenNs.has(name)) this.setNamespace(st, batch, name, null);
    // From nothing (the usual full diff) there is nothing to remove: skip the 100k-entry "seen" set.
    const seenPods = st.members.size > 0 ? new Set<string>() : null;
    for (const p of input.pods) {
      const k = podKey(p.metadata.namespace, p.metadata.name);
      seenPods?.add(k);
      if (st.members.get(k)?.pod !== p) this.setPod(st, batch, k, p);
    }
    if (seenPods) for (const m of st.members.values()) if (m.pod && !seenPods.has(m.key)) this.setPod(st, batch, m.key, null);
    const seenPol = new Set<string>();
    for (const p of input.policies) {
      const k = podKey(p.metadata.namespace, p.metadata.name);
      seenPol.add(k);
      if (st.policies.get(k)?.policy !== p) this.setPolicy(st, batch, k, p);
    }
    for (const k of [...st.policies.keys()]) if (!seenPol.has(k)) this.setPolicy(st, batch, k, null);
  }

  private setNamespace(st: EngineState, batch: Batch, name: string, ns: Namespace | null): void {
    const before = st.nsLabels.get(name);
    if (ns) {
      st.namespaceObjs.set(name, ns);
      st.nsLabels.set(name, ns.metadata.labels ?? {});
    } else {
      st.namespaceObjs.delete(name);
      st.nsLabels.delete(name);
    }
    const after = st.nsLabels.get(name);
    if ((before === undefined) === (after === undefined) && sameLabels(before, after)) return;
    st.labelMemo.delete(name);
    for (const k of st.membersByNs.get(name) ?? []) batch.dirtyMembers.add(k);
  }

  private setPod(st: EngineState, batch: Batch, key: string, pod: Pod | null): void {
    if (!pod && !st.members.get(key)?.pod && !batch.pods.get(key)) return;
    batch.pods.set(key, pod);
    batch.dirtyMembers.add(key);
  }

  private diffEndpoints(st: EngineState, batch: Batch, endpoints: readonly EngineEndpoint[]): void {
    const seen = new Set<string>();
    for (const e of endpoints) {
      seen.add(e.key);
      const old = st.endpoints.get(e.key);
      if (old && old.namespace === e.namespace && old.podName === e.podName && sameList(old.ips, e.ips)) continue;
      if (old) this.removeEndpoint(st, batch, old);
      st.endpoints.set(e.key, e);
      const k = podKey(e.namespace, e.podName);
      addToIndex(st.localByPod, k, e.key);
      batch.dirtyMembers.add(k);
      batch.dirtyEndpoints.add(e.key);
    }
    for (const [key, e] of [...st.endpoints]) if (!seen.has(key)) this.removeEndpoint(st, batch, e);
  }

  private removeEndpoint(st: EngineState, batch: Batch, e: EngineEndpoint): void {
    st.endpoints.delete(e.key);
    const k = podKey(e.namespace, e.podName);
    removeFromIndex(st.localByPod, k, e.key);
    batch.dirtyMembers.add(k);
    batch.dirtyEndpoints.add(e.key);
  }

  // ---- members and groups -------------------------------------------------

  /** Canonical host prefix of an address; dotted quads in canonical form skip the parser. */
  private hostPrefixOf(ip: string): string {
    if (isCanonicalIpv4(ip)) return `${ip}/32`;
    return this.canon(hostPrefix(ip));
  }

  private canon(prefix: string): string {
    let t = this.canonical.get(prefix);
    if (t === undefined) {
      t = parseCidr(prefix).text;
      if (this.canonical.size > 500_000) this.canonical.clear();
      this.canonical.set(prefix, t);
    }
    return t;
  }

  /**
   * Security labels and their key for pod labels in a namespace; memoised per
   * namespace by the pod labels' JSON (pods of one template share them).
   */
  private labelsOf(st: EngineState, namespace: string, podLabels: LabelMap | undefined): { labels: SecurityLabels; key: string } {
    let memo = st.labelMemo.get(namespace);
    if (!memo) st.labelMemo.set(namespace, (memo = new Map()));
    const sig = podLabels ? JSON.stringify(podLabels) : "{}";
    let r = memo.get(sig);
    if (!r) {
      const labels = securityLabelsOf(namespace, podLabels ?? {}, st.nsLabels.get(namespace));
      r = { labels, key: labelSetKey(labels) };
      if (memo.size > 1000) memo.clear();
      memo.set(sig, r);
    }
    return r;
  }

  /** Re-derive one member from its pod, endpoint and namespace; apply what moved. */
  private refreshMember(st: EngineState, batch: Batch, key: string): void {
    const old = st.members.get(key);
    const pending = batch.pods.get(key);
    const pod = pending !== undefined ? pending : (old?.pod ?? null);
    // With several endpoints under one pod name, the smallest key speaks for the addresses.
    let epKey: string | undefined;
    for (const k of st.localByPod.get(key) ?? []) {
      batch.dirtyEndpoints.add(k);
      if (epKey === undefined || k < epKey) epKey = k;
    }
    const ep = epKey === undefined ? undefined : st.endpoints.get(epKey);
    if (!pod && !ep) {
      if (old) this.removeMember(st, batch, old);
      return;
    }
    const namespace = pod ? pod.metadata.namespace : (ep as EngineEndpoint).namespace;
    const { labels, key: groupKey } = this.labelsOf(st, namespace, pod?.metadata.labels);
    // A local pod's addresses come from its endpoint (the CNI result), not
    // from the manifest, which in standalone mode has no status.
    const ips = ep ? ep.ips : podIpsOf(pod as Pod);
    const prefixes = ips.length === 1 ? this.hostPrefixOf(ips[0] as string) : ips.map((ip) => this.hostPrefixOf(ip));
    const portSet = portSetOf(pod);
    const rank = ep ? ClaimRank.LOCAL_ENDPOINT : ClaimRank.POD;
    if (old && old.group.key === groupKey && old.rank === rank && samePrefixes(old.prefixes, prefixes) && old.claimedAs === old.group.identity
      && old.portSet.sig === portSet.sig) {
      if (old.pod !== pod) st.members.set(key, { ...old, pod });
      return;
    }
    if (old) this.removeMember(st, batch, old);
    let group = st.groups.get(groupKey);
    if (!group) {
      group = { key: groupKey, labels, identity: null, size: 0, portSets: new Map() };
      st.groups.set(groupKey, group);
      this.numberGroup(st, batch, group);
    }
    group.size++;
    batch.emptied.delete(group);
    if (portSet !== NO_PORTS) {
      const cur = group.portSets.get(portSet.sig);
      if (cur) cur.count++;
      else {
        group.portSets.set(portSet.sig, { set: portSet, count: 1 });
        this.portsChanged(st, batch, group);
      }
    }
    const m: Member = { key, namespace, pod, group, prefixes, portSet, rank, claimedAs: group.identity };
    st.members.set(key, m);
    addToIndex(st.membersByNs, namespace, key);
    if (m.claimedAs !== null) for (const p of prefixList(prefixes)) st.claims.claim(p, key, rank, m.claimedAs);
  }

  private removeMember(st: EngineState, batch: Batch, m: Member): void {
    st.members.delete(m.key);
    removeFromIndex(st.membersByNs, m.namespace, m.key);
    if (m.claimedAs !== null) for (const p of prefixList(m.prefixes)) st.claims.unclaim(p, m.key);
    const g = m.group;
    g.size--;
    const cur = m.portSet === NO_PORTS ? undefined : g.portSets.get(m.portSet.sig);
    if (cur && --cur.count === 0) {
      g.portSets.delete(m.portSet.sig);
      this.portsChanged(st, batch, g);
    }
    // Dropped at the end of the batch, so a member moving back keeps the number.
    if (g.size === 0) batch.emptied.add(g);
  }

  /** Give a new group its number and tell the selector cache. */
  private numberGroup(st: EngineState, batch: Batch, g: LabelGroup): void {
    if (st.external) g.identity = st.external.get(g.key) ?? null;
    else g.identity = this.identities.allocate(g.labels).identity;
    if (g.identity === null) return;
    this.selectionsChanged(st, batch, st.cache.upsertIdentity(g.identity, { kind: "labels", labels: g.labels }));
    st.remoteNamedPorts.set(g.identity, groupPorts(g));
  }

  /** Forget a group's number (selector cache, named ports; the allocator if it came from there). */
  private unnumberGroup(st: EngineState, batch: Batch, g: LabelGroup, local: boolean): void {
    if (g.identity === null) return;
    this.selectionsChanged(st, batch, st.cache.removeIdentity(g.identity));
    st.remoteNamedPorts.delete(g.identity);
    this.markNamedPortDependents(batch);
    if (local) this.identities.release(g.identity);
    g.identity = null;
  }

  private dropGroup(st: EngineState, batch: Batch, g: LabelGroup): void {
    this.unnumberGroup(st, batch, g, st.external === null);
    st.groups.delete(g.key);
  }

  /** The identity mode or external table changed: take the group's new number and re-claim its members' addresses. */
  private renumberGroup(st: EngineState, batch: Batch, g: LabelGroup, wasLocal: boolean): boolean {
    if (!wasLocal && st.external && (st.external.get(g.key) ?? null) === g.identity) return false;
    this.unnumberGroup(st, batch, g, wasLocal);
    this.numberGroup(st, batch, g);
    return true;
  }

  private portsChanged(st: EngineState, batch: Batch, g: LabelGroup): void {
    if (g.identity === null) return;
    st.remoteNamedPorts.set(g.identity, groupPorts(g));
    this.markNamedPortDependents(batch);
  }

  private markNamedPortDependents(batch: Batch): void {
    const st = this.state as EngineState;
    for (const e of st.namedPortDependents) batch.dirtyEndpoints.add(e);
  }

  private selectionsChanged(st: EngineState, batch: Batch, keys: readonly string[]): void {
    for (const k of keys) for (const e of st.dependents.get(k) ?? []) batch.dirtyEndpoints.add(e);
  }

  // ---- policies and host addresses ----------------------------------------

  private setPolicy(st: EngineState, batch: Batch, key: string, policy: NetworkPolicy | null): void {
    const old = st.policies.get(key);
    if (!old && !policy) return;
    if (old?.policy === policy) return;
    let tracked: TrackedPolicy | null = null;
    if (policy) {
      // Track the new selectors before forgetting the old ones, so a shared selector is not re-matched.
      const selectorKeys = trackPolicySelectors(st.cache, policy);
      const cidrIdentities: number[] = [];
      const cidrPrefixes: { prefix: string; identity: number }[] = [];
      const blocks = [...(policy.spec.ingress ?? []).flatMap((r) => r.from ?? []), ...(policy.spec.egress ?? []).flatMap((r) => r.to ?? [])]
        .flatMap((peer) => (peer.ipBlock ? [peer.ipBlock] : []));
      for (const b of blocks) {
        for (const c of [b.cidr, ...(b.except ?? [])]) {
          const a = this.cidrIdentities.allocate(c);
          cidrIdentities.push(a.identity);
          if (st.cache.sourceOf(a.identity) === null) {
            this.selectionsChanged(st, batch, st.cache.upsertIdentity(a.identity, { kind: "cidr", cidr: c }));
          }
        }
        for (const e of ipcacheEntriesForIpBlock(b.cidr, b.except ?? [], (c) => this.cidrIdentities.identityOf(c) ?? ReservedIdentity.WORLD)) {
          cidrPrefixes.push(e);
          st.claims.claim(e.prefix, CIDR_OWNER, ClaimRank.CIDR, e.identity);
        }
      }
      tracked = { policy, selectorKeys, cidrIdentities, cidrPrefixes };
      st.policies.set(key, tracked);
      let inNs = st.policiesByNs.get(policy.metadata.namespace);
      if (!inNs) st.policiesByNs.set(policy.metadata.namespace, (inNs = new Map()));
      inNs.set(key, policy);
    } else {
      st.policies.delete(key);
    }
    const ns = (policy ?? old?.policy)?.metadata.namespace ?? "";
    if (old) {
      untrackPolicySelectors(st.cache, old.selectorKeys);
      for (const e of old.cidrPrefixes) st.claims.unclaim(e.prefix, CIDR_OWNER);
      for (const n of old.cidrIdentities) {
        this.cidrIdentities.release(n);
        if (this.cidrIdentities.cidrOf(n) === null) this.selectionsChanged(st, batch, st.cache.removeIdentity(n));
      }
      if (!policy) {
        const inNs = st.policiesByNs.get(ns);
        inNs?.delete(key);
        if (inNs?.size === 0) st.policiesByNs.delete(ns);
      }
    }
    // Policies select only pods of their own namespace.
    for (const e of st.endpoints.values()) if (e.namespace === ns) batch.dirtyEndpoints.add(e.key);
  }

  private diffHostIps(st: EngineState, hostIps: readonly string[]): void {
    const next = hostIps.map((ip) => this.canon(hostPrefix(ip)));
    if (sameList(next, st.hostIps)) return;
    for (const p of st.hostIps) st.claims.unclaim(p, HOST_OWNER);
    for (const p of next) st.claims.claim(p, HOST_OWNER, ClaimRank.HOST, ReservedIdentity.HOST);
    st.hostIps = next;
  }

  // ---- endpoints ----------------------------------------------------------

  private setDeps(st: EngineState, key: string, deps: EndpointDeps | null): void {
    const old = st.deps.get(key);
    for (const s of old?.selectors ?? []) removeFromIndex(st.dependents, s, key);
    st.namedPortDependents.delete(key);
    if (!deps) {
      st.deps.delete(key);
      return;
    }
    st.deps.set(key, deps);
    for (const s of deps.selectors) addToIndex(st.dependents, s, key);
    if (deps.remoteNamedPorts) st.namedPortDependents.add(key);
  }

  private recompile(st: EngineState, batch: Batch, key: string): void {
    const e = st.endpoints.get(key);
    const m = e ? st.members.get(podKey(e.namespace, e.podName)) : undefined;
    const identity = m?.group.identity ?? null;
    if (!e || !m || identity === null) {
      this.setDeps(st, key, null);
      if (st.compiled.delete(key)) batch.changedEndpoints.add(key);
      return;
    }
    const policies = [...(st.policiesByNs.get(e.namespace)?.values() ?? [])];
    const local = { identity, labels: m.group.labels, namedPorts: m.portSet.ports };
    const ctx = { policies, selectorCache: st.cache, remoteNamedPorts: st.remoteNamedPorts, ruleRefs: this.ruleRefs };
    const entries = [...compileEndpointPolicy(local, ctx), ...hostEntries()];
    const selectors = selectorKeysFor(local, policies);
    const remoteNamedPorts = policies.some((p) => (p.spec.egress ?? []).some((r) => (r.ports ?? []).some((x) => typeof x.port === "string")));
    this.setDeps(st, key, { selectors, remoteNamedPorts });
    const next: EndpointPolicy = { identity, labels: m.group.labels, podKnown: m.pod !== null, entries };
    const prev = st.compiled.get(key);
    st.compiled.set(key, next);
    if (!prev || !sameEndpointPolicy(prev, next)) batch.changedEndpoints.add(key);
  }
}
