// SPDX-License-Identifier: Apache-2.0
// From cluster state and local endpoints to the desired datapath contents:
// identities, the ipcache, and one policy trie per local endpoint.
//
// API: `new PolicyEngine(identityStore, cidrStore)`, `compute(input)` ->
// DesiredState. The engine keeps the identity allocators (numbers stay
// stable across recomputes and, through the stores, across restarts) and
// recomputes the rest from scratch: simple and exactly right; the sync step
// (datapath-sync.ts) then writes only what differs.
import type { Namespace, NetworkPolicy, Pod } from "../k8s/manifest-types.js";
import { podIpsOf } from "../k8s/manifest-types.js";
import { CidrIdentityAllocator, IdentityAllocator, type IdentityStore } from "../identity/allocator.js";
import { labelSetKey, parseLabelSetKey, securityLabelsOf, type SecurityLabels } from "../identity/labels.js";
import { ReservedIdentity } from "../identity/reserved.js";
import { compileEndpointPolicy, trackPolicySelectors, type NamedPort } from "../policy/compiler.js";
import { ipcacheEntriesForIpBlock, mergeIpcache, type IpcacheEntry } from "../policy/ipcache.js";
import { PolicyDirection, PolicyPrefix, type PolicyEntry } from "../policy/policy-key.js";
import { RuleRefTable } from "../policy/rule-ref.js";
import { SelectorCache } from "../policy/selector.js";

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

  /** Recompute everything from the input. Throws only on internal inconsistency. */
  compute(input: EngineInput): DesiredState {
    const t0 = performance.now();
    const cache = new SelectorCache();
    const held: number[] = [];
    const heldCidr: number[] = [];
    const nsLabels = new Map(input.namespaces.map((n) => [n.metadata.name, n.metadata.labels]));
    const podsByKey = new Map(input.pods.map((p) => [podKey(p.metadata.namespace, p.metadata.name), p]));
    const localByPod = new Map(input.endpoints.map((e) => [podKey(e.namespace, e.podName), e]));
    const remoteNamedPorts = new Map<number, NamedPort[]>();
    const podIdentity = new Map<string, { identity: number; labels: SecurityLabels }>();
    const seen = new Set<number>();

    const identify = (ns: string, labels: Pod["metadata"]["labels"]): { identity: number; labels: SecurityLabels } | null => {
      const sl = securityLabelsOf(ns, labels, nsLabels.get(ns));
      let identity: number;
      if (this.external) {
        const n = this.external.get(labelSetKey(sl));
        if (n === undefined) return null;
        identity = n;
      } else {
        identity = this.identities.allocate(sl).identity;
        held.push(identity);
      }
      if (!seen.has(identity)) {
        seen.add(identity);
        cache.upsertIdentity(identity, { kind: "labels", labels: sl });
      }
      return { identity, labels: sl };
    };

    const podEntries: IpcacheEntry[] = [];
    for (const p of input.pods) {
      const k = podKey(p.metadata.namespace, p.metadata.name);
      const id = identify(p.metadata.namespace, p.metadata.labels);
      if (!id) continue;
      podIdentity.set(k, id);
      const ports = remoteNamedPorts.get(id.identity) ?? [];
      for (const np of namedPortsOf(p)) {
        if (!ports.some((x) => x.name === np.name && x.port === np.port && x.protocol === np.protocol)) ports.push(np);
      }
      remoteNamedPorts.set(id.identity, ports);
      // A local pod's addresses come from its endpoint (the CNI result), not
      // from the manifest, which in standalone mode has no status.
      const ips = localByPod.get(k)?.ips ?? podIpsOf(p);
      for (const ip of ips) podEntries.push({ prefix: `${ip}/${ip.includes(":") ? 128 : 32}`, identity: id.identity });
    }
    // Endpoints whose Pod is unknown still get an identity (namespace labels
    // only) so that namespace-wide policies apply to them.
    for (const e of input.endpoints) {
      const k = podKey(e.namespace, e.podName);
      if (podIdentity.has(k) || podsByKey.has(k)) continue;
      const id = identify(e.namespace, {});
      if (!id) continue;
      podIdentity.set(k, id);
      for (const ip of e.ips) podEntries.push({ prefix: `${ip}/${ip.includes(":") ? 128 : 32}`, identity: id.identity });
    }
    for (const ip of input.hostIps) {
      podEntries.push({ prefix: `${ip}/${ip.includes(":") ? 128 : 32}`, identity: ReservedIdentity.HOST });
    }

    const cidrEntries: IpcacheEntry[] = [];
    for (const pol of input.policies) {
      trackPolicySelectors(cache, pol);
      const blocks = [...(pol.spec.ingress ?? []).flatMap((r) => r.from ?? []), ...(pol.spec.egress ?? []).flatMap((r) => r.to ?? [])]
        .flatMap((peer) => (peer.ipBlock ? [peer.ipBlock] : []));
      for (const b of blocks) {
        for (const c of [b.cidr, ...(b.except ?? [])]) {
          const a = this.cidrIdentities.allocate(c);
          heldCidr.push(a.identity);
          if (!seen.has(a.identity)) {
            seen.add(a.identity);
            cache.upsertIdentity(a.identity, { kind: "cidr", cidr: c });
          }
        }
        cidrEntries.push(...ipcacheEntriesForIpBlock(b.cidr, b.except ?? [], (c) => this.cidrIdentities.identityOf(c) ?? ReservedIdentity.WORLD));
      }
    }
    const ipcache = mergeIpcache(podEntries, cidrEntries);

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
      const entries = [...compileEndpointPolicy({ identity: id.identity, labels: id.labels, namedPorts: namedPortsOf(pod) }, ctx), ...hostEntries()];
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
