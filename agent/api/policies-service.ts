// SPDX-License-Identifier: Apache-2.0
// twill.v1.Policies handlers: List, Get, Validate, Trace.
// API: policiesHandlers(backend).
import type { DecidingRule } from "../generated/proto/twill/v1/DecidingRule.js";
import type { Direction } from "../generated/proto/twill/v1/Direction.js";
import type { PoliciesHandlers } from "../generated/proto/twill/v1/Policies.js";
import type { Policy } from "../generated/proto/twill/v1/Policy.js";
import type { TraceVerdict } from "../generated/proto/twill/v1/TraceVerdict.js";
import type {
  AgentBackend,
  DecidingRuleInfo,
  Direction as DomainDirection,
  PolicyInfo,
  TraceVerdictValue,
} from "./agent-state.js";
import { unary } from "./unary.js";
import { validateGetPolicy, validateListPolicies, validateTracePolicy, validateValidatePolicy } from "./validate.js";

/** Domain direction -> proto enum name. */
export function directionToProto(d: DomainDirection): Direction {
  return d === "egress" ? "DIRECTION_EGRESS" : "DIRECTION_INGRESS";
}

function verdictToProto(v: TraceVerdictValue): TraceVerdict {
  return v === "allowed" ? "TRACE_VERDICT_ALLOWED" : "TRACE_VERDICT_DENIED";
}

function ruleToProto(r: DecidingRuleInfo | null): DecidingRule | null {
  if (r === null) return null;
  return { ruleRef: r.ruleRef, policyNamespace: r.policyNamespace, policyName: r.policyName, ruleIndex: r.ruleIndex };
}

function policyToProto(p: PolicyInfo): Policy {
  return {
    namespace: p.namespace,
    name: p.name,
    podSelector: p.podSelector,
    policyTypes: p.policyTypes.map(directionToProto),
    rules: p.rules.map((r) => ({ ruleRef: r.ruleRef, direction: directionToProto(r.direction), peers: r.peers, ports: r.ports })),
    selectedEndpoints: [...p.selectedEndpoints],
    revision: String(p.revision),
  };
}

/** Handlers of the Policies service over backend. */
export function policiesHandlers(backend: AgentBackend): PoliciesHandlers {
  return {
    List: unary("policy.list", async (req) => ({
      policies: (await backend.listPolicies(validateListPolicies(req).namespace)).map(policyToProto),
    })),
    Get: unary("policy.get", async (req) => {
      const { namespace, name } = validateGetPolicy(req);
      return policyToProto(await backend.getPolicy(namespace, name));
    }),
    Validate: unary("policy.validate", async (req) => {
      const v = await backend.validatePolicy(validateValidatePolicy(req).manifestYaml);
      return {
        valid: v.errors.length === 0,
        errors: v.errors.map((e) => ({ document: e.document, path: e.path, message: e.message })),
        policies: v.policies.map((p) => ({ namespace: p.namespace, name: p.name })),
      };
    }),
    Trace: unary("policy.trace", async (req) => {
      const t = await backend.tracePolicy(validateTracePolicy(req));
      return {
        verdict: verdictToProto(t.verdict),
        fromIdentity: t.fromIdentity,
        toIdentity: t.toIdentity,
        rule: ruleToProto(t.rule),
        steps: t.steps.map((s) => ({
          direction: directionToProto(s.direction),
          endpoint: s.endpoint,
          isolated: s.isolated,
          verdict: verdictToProto(s.verdict),
          rule: ruleToProto(s.rule),
          reason: s.reason,
        })),
      };
    }),
  };
}
