// SPDX-License-Identifier: Apache-2.0
// Flows: the decoded, named form of the datapath's flow_event records
// (bpf/lib/events_types.h), and the filters `twill observe` applies to them.
//
// API: Flow, FlowPeer, FlowFilter, FlowEventFields, FlowLookups,
// decodeFlowEvent(fields, lookups) -> Flow, matchesFilter(flow, filter),
// formatFlowTime(ns) -> RFC 3339 with nanoseconds.
// Pure: no I/O, the agent injects the lookups (endpoint by ifindex / by IP,
// identity labels, clock offset). Enum values and reason names come from
// the generated agent/generated/bpf-types.ts.
import { TwillDirection, TwillEventType, TwillFamily, twillReasonName } from "../generated/bpf-types.js";
import { formatIpBytes } from "../ipam/cidr.js";

/** One side of a flow. */
export interface FlowPeer {
  readonly ip: string;
  readonly port: number;
  readonly identity: number;
  /** "" when the side is not a known pod. */
  readonly namespace: string;
  readonly pod: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** A decoded datapath event. */
export interface Flow {
  /** Wall-clock time, nanoseconds since the Unix epoch. */
  readonly timeNs: bigint;
  readonly type: "new-conn" | "drop";
  readonly source: FlowPeer;
  readonly destination: FlowPeer;
  readonly family: 4 | 6;
  /** IANA protocol number. */
  readonly protocol: number;
  readonly direction: "egress" | "ingress";
  readonly verdict: "forwarded" | "dropped";
  /** Reason name without prefix ("POLICY", "SPOOFED_IP"); null when forwarded. */
  readonly dropReason: string | null;
  readonly ruleRef: number;
  readonly lengthBytes: number;
  readonly ifindex: number;
}

/** Observe filters; an absent (null) field matches everything. */
export interface FlowFilter {
  /** Either side in this namespace. */
  readonly namespace: string | null;
  /** Either side is this pod: "name" or "namespace/name". */
  readonly pod: string | null;
  readonly identity: number | null;
  readonly verdict: Flow["verdict"] | null;
  readonly protocol: number | null;
  /** Source or destination port. */
  readonly port: number | null;
}

/** A filter that matches every flow. */
export const MATCH_ALL: FlowFilter = Object.freeze({
  namespace: null,
  pod: null,
  identity: null,
  verdict: null,
  protocol: null,
  port: null,
});

/**
 * The fields of one flow_event as the generated codec decodes them (host
 * byte order for ports; addresses as 16 raw bytes, IPv4 in the first 4).
 */
export interface FlowEventFields {
  readonly tsNs: bigint;
  readonly ifindex: number;
  readonly srcIdentity: number;
  readonly dstIdentity: number;
  readonly pktLen: number;
  readonly ruleRef: number;
  readonly type: number;
  readonly direction: number;
  readonly reason: number;
  readonly protocol: number;
  readonly family: number;
  readonly sport: number;
  readonly dport: number;
  readonly saddr: Uint8Array;
  readonly daddr: Uint8Array;
}

/** A local pod as the decoder needs it. */
export interface FlowEndpointRef {
  readonly namespace: string;
  readonly pod: string;
}

/** What the decoder asks the agent. Every lookup may miss (null). */
export interface FlowLookups {
  /** Local endpoint by host-side veth ifindex. */
  endpointByIfindex(ifindex: number): FlowEndpointRef | null;
  /** Local endpoint by pod IP, to name the other side of same-node flows. */
  endpointByIp(ip: string): FlowEndpointRef | null;
  identityLabels(identity: number): Readonly<Record<string, string>> | null;
  /** Add to a bpf_ktime_get_ns() value to get Unix-epoch nanoseconds. */
  readonly monotonicToUnixNs: bigint;
}

/** Label key Kubernetes-derived identities carry for the pod's namespace. */
const NAMESPACE_LABELS = ["k8s:io.kubernetes.pod.namespace", "io.kubernetes.pod.namespace"];

function formatAddr(family: 4 | 6, bytes: Uint8Array): string {
  return formatIpBytes(bytes.subarray(0, family === 4 ? 4 : 16));
}

function peer(
  ip: string,
  port: number,
  identity: number,
  local: FlowEndpointRef | null,
  lookups: FlowLookups,
): FlowPeer {
  const labels = lookups.identityLabels(identity) ?? {};
  let namespace = local?.namespace ?? "";
  if (namespace === "") {
    for (const k of NAMESPACE_LABELS) {
      const v = labels[k];
      if (v !== undefined) { namespace = v; break; }
    }
  }
  return { ip, port, identity, namespace, pod: local?.pod ?? "", labels };
}

/** Turn one ring-buffer event into a Flow, naming what the lookups know. */
export function decodeFlowEvent(ev: FlowEventFields, lookups: FlowLookups): Flow {
  const family: 4 | 6 = ev.family === TwillFamily.INET ? 4 : 6;
  const saddr = formatAddr(family, ev.saddr);
  const daddr = formatAddr(family, ev.daddr);
  const egress = ev.direction === TwillDirection.FROM_POD;
  const self = lookups.endpointByIfindex(ev.ifindex);
  // The endpoint owning the veth is the source of egress traffic and the
  // destination of ingress traffic; the other side may be a local pod too.
  const srcLocal = egress ? self : lookups.endpointByIp(saddr);
  const dstLocal = egress ? lookups.endpointByIp(daddr) : self;
  const dropped = ev.type === TwillEventType.DROP;
  // "DROP_POLICY" -> "POLICY"; an unknown number stays visible as "unknown(29)".
  const dropReason = dropped ? twillReasonName(ev.reason).replace(/^(DROP_|REASON_)/, "") : null;
  return {
    timeNs: ev.tsNs + lookups.monotonicToUnixNs,
    type: dropped ? "drop" : "new-conn",
    source: peer(saddr, ev.sport, ev.srcIdentity, srcLocal, lookups),
    destination: peer(daddr, ev.dport, ev.dstIdentity, dstLocal, lookups),
    family,
    protocol: ev.protocol,
    direction: egress ? "egress" : "ingress",
    verdict: dropped ? "dropped" : "forwarded",
    dropReason,
    ruleRef: ev.ruleRef,
    lengthBytes: ev.pktLen,
    ifindex: ev.ifindex,
  };
}

function peerIsPod(p: FlowPeer, pod: string): boolean {
  if (p.pod === "") return false;
  const slash = pod.indexOf("/");
  if (slash < 0) return p.pod === pod;
  return p.namespace === pod.slice(0, slash) && p.pod === pod.slice(slash + 1);
}

/** Whether a flow passes a filter (every set field must match). */
export function matchesFilter(f: Flow, filter: FlowFilter): boolean {
  const s = f.source;
  const d = f.destination;
  if (filter.namespace !== null && s.namespace !== filter.namespace && d.namespace !== filter.namespace) return false;
  if (filter.pod !== null && !peerIsPod(s, filter.pod) && !peerIsPod(d, filter.pod)) return false;
  if (filter.identity !== null && s.identity !== filter.identity && d.identity !== filter.identity) return false;
  if (filter.verdict !== null && f.verdict !== filter.verdict) return false;
  if (filter.protocol !== null && f.protocol !== filter.protocol) return false;
  if (filter.port !== null && s.port !== filter.port && d.port !== filter.port) return false;
  return true;
}

/** RFC 3339 UTC with nanoseconds, e.g. 2026-01-02T03:04:05.123456789Z. */
export function formatFlowTime(unixNs: bigint): string {
  const ms = unixNs / 1_000_000n;
  const iso = new Date(Number(ms)).toISOString(); // ...T03:04:05.123Z
  const nanos = (((unixNs % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n).toString().padStart(9, "0");
  return `${iso.slice(0, 19)}.${nanos}Z`;
}
