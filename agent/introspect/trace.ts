// SPDX-License-Identifier: Apache-2.0
// Policy trace: "may A reach B on proto/port, and which rule decides". It
// answers from the compiled state the datapath holds (the same ipcache and
// per-endpoint tries, looked up the way bpf/lib/policy.h does), so a trace
// cannot disagree with what packets do.
import type { Daemon } from "../daemon.js";
import type { EndpointRecord } from "../endpoint/endpoint-store.js";
import { ipcacheLookup } from "../policy/ipcache.js";
import { PolicyDirection, policyLookup } from "../policy/policy-key.js";
import { NotFoundError, type DecidingRuleInfo, type TracePeerQuery, type TraceQuery, type TraceResult, type TraceStepInfo } from "../api/agent-state.js";
import { ReservedIdentity } from "../identity/reserved.js";

interface ResolvedPeer {
  readonly ip: string;
  readonly endpoint: EndpointRecord | null;
  readonly name: string;
}

function resolve(d: Daemon, q: TracePeerQuery, family: 4 | 6 | null): ResolvedPeer {
  const records = d.store.list();
  if (q.kind === "ip") {
    const ep = records.find((r) => r.ipv4 === q.ip || r.ipv6 === q.ip) ?? null;
    return { ip: q.ip, endpoint: ep, name: ep ? `${ep.namespace}/${ep.podName}` : q.ip };
  }
  const ep = records.find((r) => r.namespace === q.pod.namespace && r.podName === q.pod.name);
  if (ep) {
    const ip = (family === 6 ? ep.ipv6 : ep.ipv4) ?? ep.ipv4 ?? ep.ipv6;
    if (ip) return { ip, endpoint: ep, name: `${ep.namespace}/${ep.podName}` };
  }
  const pod = d.snapshot.pods.find((p) => p.metadata.namespace === q.pod.namespace && p.metadata.name === q.pod.name);
  const ip = pod?.status?.podIPs?.[0]?.ip ?? pod?.status?.podIP;
  if (!ip) throw new NotFoundError("pod", `${q.pod.namespace}/${q.pod.name}`);
  return { ip, endpoint: null, name: `${q.pod.namespace}/${q.pod.name}` };
}

/** Evaluate a trace query against the state in force. */
export function tracePolicy(d: Daemon, q: TraceQuery): TraceResult {
  const desired = d.desired;
  const fromFamily = q.from.kind === "ip" ? (q.from.ip.includes(":") ? 6 : 4) : null;
  const toFamily = q.to.kind === "ip" ? (q.to.ip.includes(":") ? 6 : 4) : null;
  const from = resolve(d, q.from, toFamily);
  const to = resolve(d, q.to, fromFamily ?? (from.ip.includes(":") ? 6 : 4));
  const ipcache = desired?.ipcache ?? [];
  const fromIdentity = from.endpoint ? desired?.endpoints.get(from.endpoint.containerId)?.identity ?? 0 : ipcacheLookup(ipcache, from.ip);
  const toIdentity = to.endpoint ? desired?.endpoints.get(to.endpoint.containerId)?.identity ?? 0 : ipcacheLookup(ipcache, to.ip);

  const rule = (ref: number): DecidingRuleInfo | null => {
    const r = desired?.ruleRefs.lookup(ref) ?? null;
    return r ? { ruleRef: ref, policyNamespace: r.namespace, policyName: r.policy, ruleIndex: r.index } : null;
  };
  const steps: TraceStepInfo[] = [];
  const step = (ep: EndpointRecord, direction: "egress" | "ingress", remote: number): void => {
    const entries = desired?.endpoints.get(ep.containerId)?.entries ?? [];
    const dir = direction === "egress" ? PolicyDirection.FROM_POD : PolicyDirection.TO_POD;
    const hit = policyLookup(entries, remote, dir, q.protocol, q.port);
    const isolated = !entries.some((e) => e.key.identity === ReservedIdentity.ANY && e.key.direction === dir && e.key.prefixLen === 40 && e.ruleRef === 0);
    steps.push({
      direction,
      endpoint: `${ep.namespace}/${ep.podName}`,
      isolated,
      verdict: hit ? "allowed" : "denied",
      rule: hit ? rule(hit.ruleRef) : null,
      reason: !hit ? `no rule of a policy selecting ${ep.namespace}/${ep.podName} allows ${direction} from identity ${remote}`
        : !isolated ? `${direction} not isolated: no policy with ${direction === "egress" ? "Egress" : "Ingress"} selects the pod`
        : hit.ruleRef === 0 ? "traffic between a pod and its node is always allowed"
        : `allowed by rule ${hit.ruleRef}`,
    });
  };
  if (from.endpoint) step(from.endpoint, "egress", toIdentity);
  if (to.endpoint) step(to.endpoint, "ingress", fromIdentity);
  const denied = steps.find((s) => s.verdict === "denied");
  const deciding = denied ? null : [...steps].reverse().find((s) => s.rule !== null)?.rule ?? null;
  return { verdict: denied ? "denied" : "allowed", fromIdentity, toIdentity, rule: deciding, steps };
}
