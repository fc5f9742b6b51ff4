// SPDX-License-Identifier: Apache-2.0
// The reference NetworkPolicy evaluator: the networking.k8s.io/v1 semantics
// read literally, over pods and IPs, with no identities, no LPM and no
// caches. It is the oracle the compiled datapath entries are tested against,
// and it answers "why" questions (which policy rule allowed a flow).
//
// API: `ClusterState`, `ProbeEnd`, `Probe`, `Verdict`, `DirectionVerdict`,
// `evaluateProbe(state, probe)`, `ProbeError`.
//
// Semantics, in the spec's words:
// - a pod is isolated for ingress (egress) when a policy of its namespace
//   selects it with Ingress (Egress) in its effective policyTypes
//   (policyTypesOf: absent -> Ingress, plus Egress if spec.egress is non-empty);
// - a flow is allowed when the source's egress allows it AND the
//   destination's ingress allows it; a non-isolated direction allows all;
//   an external IP end has no policy of its own;
// - rules of all selecting policies are a union; a rule with no (or empty)
//   from/to matches every peer; no (or empty) ports matches every port and
//   protocol (ICMP included), a ports list never matches ICMP;
// - podSelector alone: pods of the policy's namespace; namespaceSelector
//   alone: every pod of matching namespaces; both in one peer: AND;
// - named ports are resolved against the DESTINATION pod's container ports
//   (name, protocol and number must all agree); a destination that is not a
//   pod never matches a named port; endPort is inclusive.
// - ipBlock (implementation-defined for pod IPs in Kubernetes): here an
//   ipBlock matches only addresses that are NOT pod IPs, i.e. traffic from or
//   to outside the cluster, as in Cilium. An identity-based datapath cannot
//   do better: two pods with the same labels share one identity, so it
//   cannot tell which of them lies inside a CIDR.
// - A probe end given as an IP that belongs to a pod is that pod.
// - Namespaces always carry kubernetes.io/metadata.name=<name> (the API
//   server sets it), also when the Namespace object is not in the state.
import {
  podIpsOf,
  policyTypesOf,
  type IpBlock,
  type LabelMap,
  type Namespace,
  type NetworkPolicy,
  type NetworkPolicyPeer,
  type NetworkPolicyPort,
  type Pod,
  type Protocol,
} from "../k8s/manifest-types.js";
import { cidrContains, parseCidr, parseIp } from "../ipam/cidr.js";
import { matchesLabelSelector } from "./selector.js";
import type { RuleId } from "./rule-ref.js";

/** Everything the evaluator looks at. */
export interface ClusterState {
  readonly namespaces: readonly Namespace[];
  readonly pods: readonly Pod[];
  readonly policies: readonly NetworkPolicy[];
}

/** One end of a probe: a pod by name, or an IP (a pod's IP means that pod). */
export type ProbeEnd =
  | { readonly kind: "pod"; readonly namespace: string; readonly name: string }
  | { readonly kind: "ip"; readonly ip: string };

/** A new flow to judge. ICMP uses port 0. */
export interface Probe {
  readonly from: ProbeEnd;
  readonly to: ProbeEnd;
  readonly protocol: Protocol | "ICMP";
  readonly port: number;
}

/** The verdict of one side (the source's egress or the destination's ingress). */
export interface DirectionVerdict {
  /** False when this end is not a pod (no policy applies). */
  readonly policed: boolean;
  /** Whether some policy isolates this pod in this direction. */
  readonly isolated: boolean;
  readonly allowed: boolean;
  /** Every rule that allows the flow (empty when not isolated or denied). */
  readonly allowedBy: readonly RuleId[];
}

/** Allowed iff both sides allow. */
export interface Verdict {
  readonly allowed: boolean;
  readonly egress: DirectionVerdict;
  readonly ingress: DirectionVerdict;
}

/** The probe names a pod that does not exist or is malformed. */
export class ProbeError extends Error {
  constructor(detail: string) {
    super(`evaluate probe: ${detail}`);
    this.name = "ProbeError";
  }
}

type End = { readonly kind: "pod"; readonly pod: Pod } | { readonly kind: "ip"; readonly ip: string };

const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

function resolveEnd(state: ClusterState, e: ProbeEnd): End {
  if (e.kind === "pod") {
    const pod = state.pods.find((p) => p.metadata.namespace === e.namespace && p.metadata.name === e.name);
    if (!pod) throw new ProbeError(`no pod ${e.namespace}/${e.name}`);
    return { kind: "pod", pod };
  }
  const want = parseIp(e.ip);
  const pod = state.pods.find((p) => podIpsOf(p).some((ip) => {
    const v = parseIp(ip);
    return v.family === want.family && v.value === want.value;
  }));
  return pod ? { kind: "pod", pod } : { kind: "ip", ip: e.ip };
}

function namespaceLabels(state: ClusterState, name: string): LabelMap {
  const ns = state.namespaces.find((n) => n.metadata.name === name);
  return { ...(ns?.metadata.labels ?? {}), [NAMESPACE_NAME_LABEL]: name };
}

function inIpBlock(block: IpBlock, ip: string): boolean {
  const { family, value } = parseIp(ip);
  if (!cidrContains(parseCidr(block.cidr), family, value)) return false;
  return !(block.except ?? []).some((e) => cidrContains(parseCidr(e), family, value));
}

function peerMatches(state: ClusterState, peer: NetworkPolicyPeer, policyNamespace: string, other: End): boolean {
  if (peer.ipBlock) return other.kind === "ip" && inIpBlock(peer.ipBlock, other.ip);
  if (other.kind !== "pod") return false;
  const pod = other.pod;
  if (peer.namespaceSelector) {
    if (!matchesLabelSelector(peer.namespaceSelector, namespaceLabels(state, pod.metadata.namespace))) return false;
  } else if (pod.metadata.namespace !== policyNamespace) {
    return false;
  }
  return !peer.podSelector || matchesLabelSelector(peer.podSelector, pod.metadata.labels ?? {});
}

function portMatches(p: NetworkPolicyPort, probe: Probe, destination: End): boolean {
  const protocol = p.protocol ?? "TCP";
  if (probe.protocol !== protocol) return false;
  if (p.port === undefined) return true;
  if (typeof p.port === "number") return probe.port >= p.port && probe.port <= (p.endPort ?? p.port);
  if (destination.kind !== "pod") return false;
  const name = p.port;
  return destination.pod.spec.containers.some((c) =>
    (c.ports ?? []).some((cp) => cp.name === name && (cp.protocol ?? "TCP") === protocol && cp.containerPort === probe.port),
  );
}

function judge(state: ClusterState, self: End, other: End, dir: "ingress" | "egress", probe: Probe, destination: End): DirectionVerdict {
  if (self.kind !== "pod") return { policed: false, isolated: false, allowed: true, allowedBy: [] };
  const pod = self.pod;
  const selecting = state.policies.filter(
    (np) =>
      np.metadata.namespace === pod.metadata.namespace &&
      matchesLabelSelector(np.spec.podSelector, pod.metadata.labels ?? {}) &&
      policyTypesOf(np.spec).has(dir === "ingress" ? "Ingress" : "Egress"),
  );
  if (selecting.length === 0) return { policed: true, isolated: false, allowed: true, allowedBy: [] };
  const allowedBy: RuleId[] = [];
  for (const np of selecting) {
    const rules = dir === "ingress"
      ? (np.spec.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports }))
      : (np.spec.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
    rules.forEach((r, index) => {
      const peerOk = !r.peers || r.peers.length === 0 || r.peers.some((peer) => peerMatches(state, peer, np.metadata.namespace, other));
      const portOk = !r.ports || r.ports.length === 0 || r.ports.some((p) => portMatches(p, probe, destination));
      if (peerOk && portOk) allowedBy.push({ namespace: np.metadata.namespace, policy: np.metadata.name, direction: dir, index });
    });
  }
  return { policed: true, isolated: true, allowed: allowedBy.length > 0, allowedBy };
}

/** Judge one new flow against the cluster's NetworkPolicies. */
export function evaluateProbe(state: ClusterState, probe: Probe): Verdict {
  const from = resolveEnd(state, probe.from);
  const to = resolveEnd(state, probe.to);
  if (from.kind === "ip" && to.kind === "ip") throw new ProbeError("neither end is a pod");
  const egress = judge(state, from, to, "egress", probe, to);
  const ingress = judge(state, to, from, "ingress", probe, to);
  return { allowed: egress.allowed && ingress.allowed, egress, ingress };
}
