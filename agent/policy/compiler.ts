// SPDX-License-Identifier: Apache-2.0
// Compiles the NetworkPolicies that select one local endpoint into the
// desired entries of its policy trie (bpf/lib/policy_types.h).
//
// API: `NamedPort`, `LocalEndpoint`, `CompileContext`,
// `compileEndpointPolicy(endpoint, ctx) -> PolicyEntry[]`,
// `policyPeerSelectors(policy)`, `trackPolicySelectors(cache, policy)`,
// `untrackPolicySelectors(cache, keys)`, `selectsEndpoint(policy, endpoint)`,
// `selectorKeysFor(endpoint, policies)` (recompile when one of them changes),
// `UntrackedSelectorError`.
//
// Per direction: not isolated -> {ANY, dir}/40 (rule_ref 0). Isolated -> for
// every rule of every selecting policy, peers x ports:
//   peers: none/empty = ANY (0); otherwise the union of the identities each
//     peer's selector selects (SelectorCache), CIDR identities for ipBlocks;
//   ports: none/empty = /40 (any protocol, ICMP included); protocol only =
//     /48; port[..endPort] = minimal port prefixes /48+n; a named port =
//     exact /64 ports, resolved against the DESTINATION: for ingress the
//     endpoint's own container ports, for egress each remote identity's
//     ports (ctx.remoteNamedPorts); an ipBlock destination never matches a
//     named port, and an egress named port with no peers expands to every
//     identity that has that port name, not to ANY.
// Known limit of identity-based enforcement: egress named ports are resolved
// per identity, so two pods with the same labels but different numbers for
// one port name both get both numbers (as in Cilium).
// Entries are deduplicated by key; the first rule (policies sorted by
// namespace/name, rules in order) keeps its rule_ref.
import { policyTypesOf, type NetworkPolicy, type NetworkPolicyPeer, type NetworkPolicyPort, type Protocol } from "../k8s/manifest-types.js";
import type { SecurityLabels } from "../identity/labels.js";
import { ReservedIdentity } from "../identity/reserved.js";
import { IpProto, PolicyDirection, PolicyPrefix, policyKeyText, portRangePrefixes, type PolicyDirectionValue, type PolicyEntry, type PolicyKey } from "./policy-key.js";
import { RULE_REF_NOT_ISOLATED, type RuleRefTable } from "./rule-ref.js";
import { matchesLabelSelector, peerSelector, selectorKey, type IdentitySelector, type SelectorCache } from "./selector.js";

/** A named container port. */
export interface NamedPort {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}

/** The endpoint whose trie is compiled. */
export interface LocalEndpoint {
  readonly identity: number;
  readonly labels: SecurityLabels;
  /** Named ports of the endpoint's containers (resolves ingress named ports). */
  readonly namedPorts: readonly NamedPort[];
}

/** Cluster-wide inputs shared by every endpoint's compilation. */
export interface CompileContext {
  /** Every policy of the cluster (the compiler picks those selecting the endpoint). */
  readonly policies: readonly NetworkPolicy[];
  /** Must track every peer selector of `policies` (trackPolicySelectors). */
  readonly selectorCache: SelectorCache;
  /** Identity -> named ports of the pods with that identity (resolves egress named ports). */
  readonly remoteNamedPorts: ReadonlyMap<number, readonly NamedPort[]>;
  readonly ruleRefs: RuleRefTable;
}

/** A policy peer's selector was not added to the SelectorCache before compiling. */
export class UntrackedSelectorError extends Error {
  constructor(readonly key: string, readonly policy: string) {
    super(`compile policy ${policy}: selector ${key} is not tracked by the selector cache`);
    this.name = "UntrackedSelectorError";
  }
}

const PROTO_NUMBER: Readonly<Record<Protocol, number>> = { TCP: IpProto.TCP, UDP: IpProto.UDP, SCTP: IpProto.SCTP };

/** The selectors of every from/to peer of a policy (what the SelectorCache must track). */
export function policyPeerSelectors(policy: NetworkPolicy): IdentitySelector[] {
  const peers: NetworkPolicyPeer[] = [
    ...(policy.spec.ingress ?? []).flatMap((r) => r.from ?? []),
    ...(policy.spec.egress ?? []).flatMap((r) => r.to ?? []),
  ];
  return peers.map((p) => peerSelector(p, policy.metadata.namespace));
}

/** Add a policy's peer selectors to the cache; returns the keys to pass to untrackPolicySelectors later. */
export function trackPolicySelectors(cache: SelectorCache, policy: NetworkPolicy): string[] {
  return policyPeerSelectors(policy).map((s) => cache.add(s));
}

/** Undo trackPolicySelectors. */
export function untrackPolicySelectors(cache: SelectorCache, keys: readonly string[]): void {
  for (const k of keys) cache.remove(k);
}

/** Whether the policy's spec.podSelector selects the endpoint (same namespace, labels match). */
export function selectsEndpoint(policy: NetworkPolicy, endpoint: LocalEndpoint): boolean {
  return policy.metadata.namespace === endpoint.labels.namespace && matchesLabelSelector(policy.spec.podSelector, endpoint.labels.podLabels);
}

/**
 * Keys of the selectors an endpoint's entries depend on: when
 * SelectorCache.upsertIdentity/removeIdentity reports one of them, the
 * endpoint must be recompiled. (Changes of named ports, policies or the
 * endpoint's own labels call for a recompile too.)
 */
export function selectorKeysFor(endpoint: LocalEndpoint, policies: readonly NetworkPolicy[]): Set<string> {
  const out = new Set<string>();
  for (const p of policies) if (selectsEndpoint(p, endpoint)) for (const s of policyPeerSelectors(p)) out.add(selectorKey(s));
  return out;
}

interface PortKey {
  readonly protocol: number;
  readonly port: number;
  readonly prefixLen: number;
}

const ANY_PORT: PortKey = { protocol: 0, port: 0, prefixLen: PolicyPrefix.DIR };

/** Port keys of a numeric or protocol-only ports entry (null for a named port). */
function numericPortKeys(p: NetworkPolicyPort): PortKey[] | null {
  const protocol = PROTO_NUMBER[p.protocol ?? "TCP"];
  if (p.port === undefined) return [{ protocol, port: 0, prefixLen: PolicyPrefix.PROTO }];
  if (typeof p.port === "string") return null;
  return portRangePrefixes(p.port, p.endPort ?? p.port).map((x) => ({ protocol, port: x.port, prefixLen: PolicyPrefix.PROTO + x.bits }));
}

function namedPortKeys(name: string, protocol: Protocol, ports: readonly NamedPort[]): PortKey[] {
  return ports
    .filter((np) => np.name === name && np.protocol === protocol)
    .map((np) => ({ protocol: PROTO_NUMBER[protocol], port: np.port, prefixLen: PolicyPrefix.FULL }));
}

class EntrySet {
  readonly entries = new Map<string, PolicyEntry>();
  add(identity: number, direction: PolicyDirectionValue, pk: PortKey, ruleRef: number): void {
    const key: PolicyKey = { identity, direction, protocol: pk.protocol, port: pk.port, prefixLen: pk.prefixLen };
    const text = policyKeyText(key);
    if (!this.entries.has(text)) this.entries.set(text, { key, ruleRef });
  }
}

function compileRule(
  out: EntrySet,
  endpoint: LocalEndpoint,
  ctx: CompileContext,
  policy: NetworkPolicy,
  direction: PolicyDirectionValue,
  peers: readonly NetworkPolicyPeer[] | undefined,
  ports: readonly NetworkPolicyPort[] | undefined,
  ruleRef: number,
): void {
  const anyPeer = !peers || peers.length === 0;
  const remotes = new Set<number>();
  if (anyPeer) remotes.add(ReservedIdentity.ANY);
  else {
    for (const peer of peers) {
      const key = selectorKey(peerSelector(peer, policy.metadata.namespace));
      if (!ctx.selectorCache.has(key)) throw new UntrackedSelectorError(key, `${policy.metadata.namespace}/${policy.metadata.name}`);
      for (const id of ctx.selectorCache.selections(key)) remotes.add(id);
    }
  }
  if (!ports || ports.length === 0) {
    for (const id of remotes) out.add(id, direction, ANY_PORT, ruleRef);
    return;
  }
  for (const p of ports) {
    const numeric = numericPortKeys(p);
    if (numeric) {
      for (const id of remotes) for (const pk of numeric) out.add(id, direction, pk, ruleRef);
      continue;
    }
    const name = p.port as string;
    const protocol = p.protocol ?? "TCP";
    if (direction === PolicyDirection.TO_POD) {
      // Ingress: the endpoint itself is the destination.
      const pks = namedPortKeys(name, protocol, endpoint.namedPorts);
      for (const id of remotes) for (const pk of pks) out.add(id, direction, pk, ruleRef);
      continue;
    }
    // Egress: each destination identity's own ports; ANY expands to every identity having the name.
    const targets = anyPeer ? [...ctx.remoteNamedPorts.keys()] : [...remotes];
    for (const id of targets) {
      for (const pk of namedPortKeys(name, protocol, ctx.remoteNamedPorts.get(id) ?? [])) out.add(id, direction, pk, ruleRef);
    }
  }
}

/** The desired policy trie of one endpoint, sorted by key text. */
export function compileEndpointPolicy(endpoint: LocalEndpoint, ctx: CompileContext): PolicyEntry[] {
  const selecting = ctx.policies
    .filter((p) => selectsEndpoint(p, endpoint))
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
  const out = new EntrySet();
  for (const [dir, type, direction] of [
    ["ingress", "Ingress", PolicyDirection.TO_POD],
    ["egress", "Egress", PolicyDirection.FROM_POD],
  ] as const) {
    const isolating = selecting.filter((p) => policyTypesOf(p.spec).has(type));
    if (isolating.length === 0) {
      out.add(ReservedIdentity.ANY, direction, ANY_PORT, RULE_REF_NOT_ISOLATED);
      continue;
    }
    for (const policy of isolating) {
      const rules = dir === "ingress"
        ? (policy.spec.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports }))
        : (policy.spec.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
      rules.forEach((r, index) => {
        const ruleRef = ctx.ruleRefs.refOf({ namespace: policy.metadata.namespace, policy: policy.metadata.name, direction: dir, index });
        compileRule(out, endpoint, ctx, policy, direction, r.peers, r.ports, ruleRef);
      });
    }
  }
  return [...out.entries.values()].sort((a, b) => {
    const x = policyKeyText(a.key);
    const y = policyKeyText(b.key);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}
