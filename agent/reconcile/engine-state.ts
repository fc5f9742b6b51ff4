// SPDX-License-Identifier: Apache-2.0
// The state the PolicyEngine keeps between computes (members, label groups,
// tracked policies, endpoint dependencies) and the small pure helpers around
// it. policy-engine.ts holds the logic that moves this state; see its header
// for how a change stays small.
//
// API: `EngineEndpoint`, `EndpointPolicy`, `EngineState`, `Batch`,
// `LabelGroup`, `Member`, `TrackedPolicy`, `EndpointDeps`, `PortSet`,
// `portSetOf`, `groupPorts`, `hostEntries`, index and comparison helpers.
import type { LabelMap, Namespace, NetworkPolicy, Pod } from "../k8s/manifest-types.js";
import type { SecurityLabels } from "../identity/labels.js";
import { labelSetKey } from "../identity/labels.js";
import { ReservedIdentity } from "../identity/reserved.js";
import type { NamedPort } from "../policy/compiler.js";
import { PolicyDirection, PolicyPrefix, type PolicyEntry } from "../policy/policy-key.js";
import { SelectorCache } from "../policy/selector.js";
import { IpcacheClaims } from "./ipcache-claims.js";

/** A local endpoint as the engine needs it. */
export interface EngineEndpoint {
  readonly key: string;            // container id
  readonly namespace: string;
  readonly podName: string;
  readonly ips: readonly string[];
}

/** Identity and compiled policy of one local endpoint. */
export interface EndpointPolicy {
  readonly identity: number;
  readonly labels: SecurityLabels;
  /** False when no Pod object matched: the endpoint has namespace labels only. */
  readonly podKnown: boolean;
  readonly entries: readonly PolicyEntry[];
}

export const podKey = (ns: string, name: string): string => `${ns}/${name}`;
export const hostPrefix = (ip: string): string => `${ip}/${ip.includes(":") ? 128 : 32}`;
export const HOST_OWNER = "\u0000host";
export const CIDR_OWNER = "\u0000cidr";

/** A pod's named ports, and a signature of the whole list (equal lists, equal signatures). */
export interface PortSet {
  readonly ports: readonly NamedPort[];
  readonly sig: string;
}

export const NO_PORTS: PortSet = { ports: [], sig: "" };
/** By spec object: pods of one template often share it, and a changed pod brings a new one. */
export const portSetMemo = new WeakMap<object, PortSet>();
export const portSetIntern = new Map<string, PortSet>();

export const portSig = (np: NamedPort): string => `${np.name}/${np.protocol}/${np.port}`;

export function portSetOf(p: Pod | null): PortSet {
  if (!p) return NO_PORTS;
  let ps = portSetMemo.get(p.spec);
  if (!ps) {
    const ports = p.spec.containers.flatMap((c) =>
      (c.ports ?? []).flatMap((cp) => (cp.name ? [{ name: cp.name, port: cp.containerPort, protocol: cp.protocol ?? "TCP" }] : [])),
    );
    const sig = ports.map(portSig).join(",");
    // Interned by signature: pods of one template share one PortSet however their specs were parsed.
    ps = ports.length === 0 ? NO_PORTS : (portSetIntern.get(sig) ?? { ports, sig });
    if (ps !== NO_PORTS && !portSetIntern.has(sig)) {
      if (portSetIntern.size > 10_000) portSetIntern.clear();
      portSetIntern.set(sig, ps);
    }
    portSetMemo.set(p.spec, ps);
  }
  return ps;
}
export const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

export function sameLabels(a: LabelMap | undefined, b: LabelMap | undefined): boolean {
  const x = a ?? {};
  const y = b ?? {};
  const kx = Object.keys(x);
  return kx.length === Object.keys(y).length && kx.every((k) => Object.hasOwn(y, k) && y[k] === x[k]);
}

/** Traffic between a pod and its own node is always allowed (NetworkPolicy spec), both ways. */
export function hostEntries(): PolicyEntry[] {
  return [PolicyDirection.FROM_POD, PolicyDirection.TO_POD].map((direction) => ({
    key: { identity: ReservedIdentity.HOST, direction, protocol: 0, port: 0, prefixLen: PolicyPrefix.DIR },
    ruleRef: 0,
  }));
}

/** Pods with the same security labels: one identity. */
export interface LabelGroup {
  readonly key: string;
  readonly labels: SecurityLabels;
  identity: number | null;
  /** How many members the group has. */
  size: number;
  /** Named port lists of the members, counted by signature. */
  readonly portSets: Map<string, { set: PortSet; count: number }>;
}

/** A pod object and/or local endpoint under one namespace/name. */
export interface Member {
  readonly key: string;
  readonly namespace: string;
  /** The Pod object (null: a local endpoint without one). */
  readonly pod: Pod | null;
  readonly group: LabelGroup;
  /** Canonical host prefixes of its addresses: one string for the usual single address. */
  readonly prefixes: string | readonly string[];
  readonly portSet: PortSet;
  readonly rank: number;
  /** Identity its prefixes are claimed with (null: unresolved, no claim). */
  readonly claimedAs: number | null;
}

/** What the engine keeps of a policy object. */
export interface TrackedPolicy {
  readonly policy: NetworkPolicy;
  readonly selectorKeys: readonly string[];
  /** CIDR identity numbers held and ipcache prefixes claimed for its ipBlocks. */
  readonly cidrIdentities: readonly number[];
  readonly cidrPrefixes: readonly { prefix: string; identity: number }[];
}

/** What an endpoint's compiled policy depends on. */
export interface EndpointDeps {
  readonly selectors: ReadonlySet<string>;
  readonly remoteNamedPorts: boolean;
}

/** The state built from the cluster (dropped on failure; allocators are not part of it). */
export class EngineState {
  readonly nsLabels = new Map<string, LabelMap>();
  readonly namespaceObjs = new Map<string, Namespace>();
  readonly endpoints = new Map<string, EngineEndpoint>();
  /** podKey -> keys of its endpoints (usually one; two while a sandbox is replaced). */
  readonly localByPod = new Map<string, Set<string>>();
  readonly members = new Map<string, Member>();
  readonly membersByNs = new Map<string, Set<string>>();
  readonly groups = new Map<string, LabelGroup>();
  readonly policies = new Map<string, TrackedPolicy>();
  readonly policiesByNs = new Map<string, Map<string, NetworkPolicy>>();
  readonly cache = new SelectorCache();
  readonly claims = new IpcacheClaims();
  readonly remoteNamedPorts = new Map<number, NamedPort[]>();
  readonly compiled = new Map<string, EndpointPolicy>();
  readonly deps = new Map<string, EndpointDeps>();
  readonly dependents = new Map<string, Set<string>>();
  readonly namedPortDependents = new Set<string>();
  hostIps: readonly string[] = [];
  /** Namespace -> pod labels JSON -> security labels (dropped when the namespace's labels change). */
  readonly labelMemo = new Map<string, Map<string, { labels: SecurityLabels; key: string }>>();
  /** The external table the groups were numbered with. */
  external: ReadonlyMap<string, number> | null = null;
}

/** Per-compute bookkeeping. */
export interface Batch {
  readonly dirtyMembers: Set<string>;
  /** Pods set or removed (null) in this batch, not yet applied to their members. */
  readonly pods: Map<string, Pod | null>;
  readonly dirtyEndpoints: Set<string>;
  readonly emptied: Set<LabelGroup>;
  readonly changedEndpoints: Set<string>;
}

export function addToIndex<K, V>(index: Map<K, Set<V>>, k: K, v: V): void {
  let s = index.get(k);
  if (!s) index.set(k, (s = new Set()));
  s.add(v);
}

export function removeFromIndex<K, V>(index: Map<K, Set<V>>, k: K, v: V): void {
  const s = index.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) index.delete(k);
}

export const prefixList = (p: string | readonly string[]): readonly string[] => (typeof p === "string" ? [p] : p);

export function samePrefixes(a: string | readonly string[], b: string | readonly string[]): boolean {
  return typeof a === "string" || typeof b === "string" ? a === b : sameList(a, b);
}

/** The union of a group's named ports (what egress named ports resolve against). */
export function groupPorts(g: LabelGroup): NamedPort[] {
  if (g.portSets.size === 1) return [...(g.portSets.values().next().value?.set.ports ?? [])];
  const out = new Map<string, NamedPort>();
  for (const { set } of g.portSets.values()) for (const np of set.ports) out.set(portSig(np), np);
  return [...out.values()];
}

export function sameEndpointPolicy(a: EndpointPolicy, b: EndpointPolicy): boolean {
  if (a.identity !== b.identity || a.podKnown !== b.podKnown || a.entries.length !== b.entries.length) return false;
  if (labelSetKey(a.labels) !== labelSetKey(b.labels)) return false;
  return a.entries.every((x, i) => {
    const y = b.entries[i] as PolicyEntry;
    return x.ruleRef === y.ruleRef && x.key.identity === y.key.identity && x.key.direction === y.key.direction
      && x.key.protocol === y.key.protocol && x.key.port === y.key.port && x.key.prefixLen === y.key.prefixLen;
  });
}
