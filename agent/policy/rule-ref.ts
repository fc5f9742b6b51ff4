// SPDX-License-Identifier: Apache-2.0
// Numbers for policy rules, carried in policy_entry.rule_ref so that a flow
// event can say which rule allowed it.
//
// API: `RuleId`, `formatRuleId`, `RULE_REF_NOT_ISOLATED` (0: the direction is
// not isolated, no rule involved), `RuleRefTable` (refOf / lookup).

/** One rule of one NetworkPolicy. */
export interface RuleId {
  readonly namespace: string;
  readonly policy: string;
  readonly direction: "ingress" | "egress";
  /** Index in spec.ingress / spec.egress. */
  readonly index: number;
}

/** rule_ref of the {ANY, dir}/40 entry of a direction no policy isolates. */
export const RULE_REF_NOT_ISOLATED = 0;

/** "namespace/policy/ingress[0]". */
export function formatRuleId(r: RuleId): string {
  return `${r.namespace}/${r.policy}/${r.direction}[${r.index}]`;
}

/**
 * Interns rules as small numbers from 1 up. Numbers are never reused within
 * the agent's life, so an event decoded later never names the wrong rule.
 */
export class RuleRefTable {
  private readonly byText = new Map<string, number>();
  private readonly byRef = new Map<number, RuleId>();

  /** The number of a rule, interning it on first use. */
  refOf(rule: RuleId): number {
    const text = formatRuleId(rule);
    const known = this.byText.get(text);
    if (known !== undefined) return known;
    const ref = this.byText.size + 1;
    this.byText.set(text, ref);
    this.byRef.set(ref, { ...rule });
    return ref;
  }

  /** The rule behind a number (null for 0 or unknown numbers). */
  lookup(ref: number): RuleId | null {
    return this.byRef.get(ref) ?? null;
  }
}
