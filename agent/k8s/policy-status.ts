// SPDX-License-Identifier: Apache-2.0
// Tells users, where they already look, that this node does not enforce one of
// their NetworkPolicies: a Warning Event (reason PolicyRejected) on the policy,
// from component twill-agent on this node, so `kubectl describe
// networkpolicy` shows it. Events rather than a status field or a Twill CRD
// because NetworkPolicy has no status conditions to write to, and Events need
// no extra object kind nor extra RBAC beyond "create events".
//
// API: `PolicyStatusReporter` {update(rejections) -> Promise<void>},
// `rejectionsFromErrors(errors)` (the NetworkPolicy entries of a snapshot's
// SourceErrors), `PolicyRejection`, `POLICY_REJECTED_REASON`.
//
// Each (policy, reason) is reported once per agent run: a snapshot arrives
// on every change anywhere, and re-posting the same Event each time would
// flood the API server. A policy that becomes valid and is rejected again
// later is reported again.
import type { Logger } from "pino";
import type { SourceError } from "./cluster-source.js";
import { isKubeApiError, type KubeClient, type KubeObject } from "./kube-client.js";

/** Event reason of a rejected policy. */
export const POLICY_REJECTED_REASON = "PolicyRejected";

/** A NetworkPolicy this node does not enforce, and why. */
export interface PolicyRejection {
  readonly namespace: string;
  readonly name: string;
  readonly reason: string;
}

/** The NetworkPolicy entries ("NetworkPolicy ns/name") of a snapshot's errors. */
export function rejectionsFromErrors(errors: readonly SourceError[]): PolicyRejection[] {
  const out: PolicyRejection[] = [];
  for (const e of errors) {
    const m = /^NetworkPolicy ([^/\s]+)\/(\S+)$/.exec(e.source);
    if (m?.[1] && m[2]) out.push({ namespace: m[1], name: m[2], reason: e.message });
  }
  return out;
}

/** Posts one Event per newly rejected (policy, reason). */
export class PolicyStatusReporter {
  /** "ns/name" -> reasons already reported. */
  private readonly reported = new Map<string, Set<string>>();

  constructor(private readonly client: KubeClient, private readonly nodeName: string, private readonly log: Logger) {}

  /**
   * The complete current set of rejections. New ones get an Event; the ones
   * absent now are forgotten (so they are reported again if they come back).
   * Never throws: status is best effort and must not stall the agent.
   */
  async update(rejections: readonly PolicyRejection[]): Promise<void> {
    const now = new Map<string, Set<string>>();
    for (const r of rejections) {
      const k = `${r.namespace}/${r.name}`;
      if (!now.has(k)) now.set(k, new Set());
      now.get(k)?.add(r.reason);
    }
    for (const k of [...this.reported.keys()]) if (!now.has(k)) this.reported.delete(k);
    for (const r of rejections) {
      const k = `${r.namespace}/${r.name}`;
      const done = this.reported.get(k) ?? new Set<string>();
      if (done.has(r.reason)) continue;
      if (await this.post(r)) {
        done.add(r.reason);
        this.reported.set(k, done);
      }
    }
  }

  private async post(r: PolicyRejection): Promise<boolean> {
    const uid = await this.uidOf(r);
    const time = new Date().toISOString();
    const event = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { generateName: `${r.name}.`, namespace: r.namespace },
      involvedObject: { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", namespace: r.namespace, name: r.name, ...(uid ? { uid } : {}) },
      reason: POLICY_REJECTED_REASON,
      message: `twill-agent on node ${this.nodeName} does not enforce this policy: ${r.reason}`.slice(0, 1024),
      type: "Warning",
      source: { component: "twill-agent", host: this.nodeName },
      reportingComponent: "twill.io/agent",
      reportingInstance: this.nodeName,
      firstTimestamp: time,
      lastTimestamp: time,
      count: 1,
    };
    try {
      await this.client.request("POST", `/api/v1/namespaces/${encodeURIComponent(r.namespace)}/events`, event);
      return true;
    } catch (e: unknown) {
      this.log.warn({ policy: `${r.namespace}/${r.name}`, err: e instanceof Error ? e.message : String(e) }, "report rejected policy failed");
      return false;
    }
  }

  private async uidOf(r: PolicyRejection): Promise<string | null> {
    try {
      const p = await this.client.request<KubeObject>("GET", `/apis/networking.k8s.io/v1/namespaces/${encodeURIComponent(r.namespace)}/networkpolicies/${encodeURIComponent(r.name)}`);
      return p.metadata.uid ?? null;
    } catch (e: unknown) {
      if (!isKubeApiError(e, 404)) this.log.debug({ err: e instanceof Error ? e.message : String(e) }, "read policy uid failed");
      return null;
    }
  }
}
