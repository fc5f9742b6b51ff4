// SPDX-License-Identifier: Apache-2.0
// The incremental PolicyEngine must end where a fresh engine computing the
// same input from scratch ends (up to identity and rule numbering), whether
// it is told what changed or has to diff; its deltas, applied to a mirror,
// must reproduce the full state; and the result must give the reference
// evaluator's verdicts.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ClusterChanges } from "../../agent/k8s/cluster-source.js";
import type { Namespace, NetworkPolicy, Pod } from "../../agent/k8s/manifest-types.js";
import { podIpsOf } from "../../agent/k8s/manifest-types.js";
import { labelSetKey } from "../../agent/identity/labels.js";
import { evaluateProbe, type ClusterState } from "../../agent/policy/evaluator.js";
import { policyKeyText, type PolicyEntry } from "../../agent/policy/policy-key.js";
import { formatRuleId } from "../../agent/policy/rule-ref.js";
import { PolicyEngine, type DesiredState, type EngineEndpoint, type EngineInput } from "../../agent/reconcile/policy-engine.js";
import { clusterArb, probeArb } from "../fixtures/policy/arbitraries.js";
import { simulate } from "../fixtures/policy/datapath-sim.js";

const keyOf = (o: { metadata: { namespace?: string; name: string } }): string => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
const nsKey = (n: Namespace): string => n.metadata.name;

/** Next state: per object, keep the previous one (same reference), take the new one, or drop it. */
function mix(prev: ClusterState, next: ClusterState, choice: readonly number[]): ClusterState {
  let i = 0;
  const pickFrom = <T>(a: readonly T[], b: readonly T[], key: (o: T) => string): T[] => {
    const keys = [...new Set([...a.map(key), ...b.map(key)])].sort();
    const out: T[] = [];
    for (const k of keys) {
      const c = choice[i++ % choice.length] ?? 0;
      const o = c === 0 ? a.find((x) => key(x) === k) : c === 1 ? b.find((x) => key(x) === k) : undefined;
      if (o) out.push(o);
    }
    return out;
  };
  const namespaces = pickFrom(prev.namespaces, next.namespaces, nsKey);
  // Pods must keep distinct IPs: take either the previous or the next pod list's addresses wholesale.
  const pods = pickFrom(prev.pods, next.pods, keyOf);
  const ips = new Set<string>();
  const podsUnique = pods.filter((p) => podIpsOf(p).every((ip) => !ips.has(ip)) && (podIpsOf(p).forEach((ip) => ips.add(ip)), true));
  return { namespaces, pods: podsUnique, policies: pickFrom(prev.policies, next.policies, keyOf) };
}

function changesBetween(a: ClusterState, b: ClusterState): ClusterChanges {
  const diff = <T>(x: readonly T[], y: readonly T[], key: (o: T) => string) => {
    const before = new Map(x.map((o) => [key(o), o]));
    const after = new Map(y.map((o) => [key(o), o]));
    return {
      upserted: [...after].filter(([k, o]) => before.get(k) !== o).map(([, o]) => o),
      removed: [...before.keys()].filter((k) => !after.has(k)),
    };
  };
  return { namespaces: diff(a.namespaces, b.namespaces, nsKey), pods: diff(a.pods, b.pods, keyOf), policies: diff(a.policies, b.policies, keyOf) };
}

/** Every pod with an even index in its name is a local endpoint; so is one pod that has no Pod object. */
function inputOf(s: ClusterState, extraEndpoint: boolean): EngineInput {
  const endpoints: EngineEndpoint[] = s.pods
    .filter((p) => Number(p.metadata.name.replace(/\D/g, "")) % 2 === 0)
    .map((p) => ({ key: `ctr-${keyOf(p)}`, namespace: p.metadata.namespace, podName: p.metadata.name, ips: podIpsOf(p) }));
  if (extraEndpoint) endpoints.push({ key: "ctr-orphan", namespace: "prod", podName: "no-such-pod", ips: ["10.244.99.9"] });
  return { namespaces: s.namespaces, pods: s.pods, policies: s.policies as NetworkPolicy[], endpoints, hostIps: ["192.0.2.1"] };
}

/** The state with numbers replaced by what they stand for, so two engines can be compared. */
function normalise(engine: PolicyEngine, d: DesiredState): { ipcache: string[]; endpoints: Record<string, string[]> } {
  const name = (n: number): string => {
    const l = engine.labelsOfIdentity(n);
    if (l) return labelSetKey(l);
    const c = engine.cidrIdentities.cidrOf(n);
    return c ?? `#${n}`;
  };
  const entry = (e: PolicyEntry): string => {
    const r = engine.rules.lookup(e.ruleRef);
    return `${policyKeyText({ ...e.key, identity: 0 })} ${name(e.key.identity)} ${r ? formatRuleId(r) : e.ruleRef}`;
  };
  const endpoints: Record<string, string[]> = {};
  for (const [k, ep] of d.endpoints) endpoints[k] = [name(ep.identity), ...ep.entries.map(entry).sort()];
  return { ipcache: d.ipcache.map((e) => `${e.prefix} ${name(e.identity)}`).sort(), endpoints };
}

/** Per object: 0 keep, 1 replace, 2 drop; mostly keep, so that steps are often one or two changes. */
const choiceArb = fc.array(fc.oneof({ arbitrary: fc.constant(0), weight: 12 }, { arbitrary: fc.constant(1), weight: 2 }, { arbitrary: fc.constant(2), weight: 1 }), { minLength: 5, maxLength: 30 });

describe("incremental policy engine", () => {
  it("ends where a fresh engine ends, with and without change hints, and its deltas rebuild the state", () => {
    const stepArb = fc.tuple(clusterArb, choiceArb, fc.boolean());
    fc.assert(
      fc.property(clusterArb, fc.array(stepArb, { minLength: 1, maxLength: 6 }), (first, steps) => {
        const hinted = new PolicyEngine(null, null);
        const diffing = new PolicyEngine(null, null);
        const ipcacheMirror = new Map<string, string>();
        const endpointMirror = new Map<string, string>();
        let state = first;
        let prev: ClusterState | null = null;
        let orphan = false;
        for (let i = 0; i <= steps.length; i++) {
          if (i > 0) {
            const [next, choice, o] = steps[i - 1] as (typeof steps)[number];
            prev = state;
            state = mix(state, next, choice);
            orphan = o;
          }
          const input = inputOf(state, orphan);
          const d = hinted.compute(input, prev ? changesBetween(prev, state) : undefined);
          const e = diffing.compute(input);
          const fresh = new PolicyEngine(null, null);
          const f = fresh.compute(input);
          const want = normalise(fresh, f);
          expect(normalise(hinted, d)).toEqual(want);
          expect(normalise(diffing, e)).toEqual(want);
          // Deltas applied to mirrors give the full state.
          if (d.delta.full) {
            expect(d.delta.ipcache.upserts).toEqual([]);
            ipcacheMirror.clear();
            for (const x of d.ipcache) ipcacheMirror.set(x.prefix, `${x.identity}`);
          }
          for (const u of d.delta.ipcache.upserts) ipcacheMirror.set(u.prefix, `${u.identity}`);
          for (const p of d.delta.ipcache.deletes) ipcacheMirror.delete(p);
          expect([...ipcacheMirror].map(([p, n]) => `${p} ${n}`).sort()).toEqual(d.ipcache.map((x) => `${x.prefix} ${x.identity}`).sort());
          const text = (k: string): string | undefined => {
            const ep = d.endpoints.get(k);
            return ep ? JSON.stringify([ep.identity, ep.entries]) : undefined;
          };
          for (const k of d.delta.endpoints) {
            const t = text(k);
            if (t === undefined) endpointMirror.delete(k);
            else endpointMirror.set(k, t);
          }
          for (const k of d.endpoints.keys()) expect(endpointMirror.get(k)).toBe(text(k));
          expect(endpointMirror.size).toBe(d.endpoints.size);
        }
      }),
      { numRuns: 150 },
    );
  });

  it("gives the reference evaluator's verdicts after a sequence of changes", () => {
    fc.assert(
      fc.property(
        clusterArb,
        clusterArb.chain((s) => fc.tuple(fc.constant(s), choiceArb)),
        (first, [next, choice]) => {
          const engine = new PolicyEngine(null, null);
          const all = (s: ClusterState): EngineInput => ({ ...inputOf(s, false), endpoints: s.pods.map((p) => ({ key: keyOf(p), namespace: p.metadata.namespace, podName: p.metadata.name, ips: podIpsOf(p) })) });
          engine.compute(all(first));
          const state = mix(first, next, choice);
          fc.pre(state.pods.length > 0);
          const d = engine.compute(all(state), changesBetween(first, state));
          const entries = new Map([...d.endpoints].map(([k, ep]) => [k, ep.entries.filter((e) => e.key.identity !== 1)]));
          const sim = simulate(state, d.ipcache.filter((e) => e.prefix !== "192.0.2.1/32"), entries, engine.rules);
          fc.assert(
            fc.property(probeArb(state), (probe) => {
              expect(sim.verdict(probe).allowed).toBe(evaluateProbe(state, probe).allowed);
            }),
            { numRuns: 30 },
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  it("keeps identity numbers of label sets that stay, and reports only what a label change touches", () => {
    const ns: Namespace = { metadata: { name: "prod", labels: { team: "a" } } };
    const pod = (name: string, app: string, ip: string): Pod => ({ metadata: { namespace: "prod", name, labels: { app } }, spec: { containers: [{ name: "c" }] }, status: { podIP: ip } });
    const web = pod("w", "web", "10.244.1.1");
    const db = pod("d", "db", "10.244.1.2");
    const pol: NetworkPolicy = { metadata: { namespace: "prod", name: "db" }, spec: { podSelector: { matchLabels: { app: "db" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "web" } } }] }] } };
    const engine = new PolicyEngine(null, null);
    const endpoints = [{ key: "c-d", namespace: "prod", podName: "d", ips: ["10.244.1.2"] }];
    const first = engine.compute({ namespaces: [ns], pods: [web, db], policies: [pol], endpoints, hostIps: [] });
    expect(first.delta.full).toBe(true);
    expect(first.ipcacheSize).toBe(2);
    const dbIdentity = first.endpoints.get("c-d")?.identity;
    const other = pod("x", "web", "10.244.1.3");
    const d = engine.compute({ namespaces: [ns], pods: [web, db, other], policies: [pol], endpoints, hostIps: [] }, {
      namespaces: { upserted: [], removed: [] }, pods: { upserted: [other], removed: [] }, policies: { upserted: [], removed: [] },
    });
    // A new pod with an existing label set: one ipcache entry, no trie changes, same numbers.
    expect(d.delta.full).toBe(false);
    expect(d.delta.ipcache.upserts.map((u) => u.prefix)).toEqual(["10.244.1.3/32"]);
    expect(d.delta.ipcache.deletes).toEqual([]);
    expect(d.delta.endpoints).toEqual([]);
    expect(d.endpoints.get("c-d")?.identity).toBe(dbIdentity);
    // The local endpoint's address is flagged local.
    expect([...d.ipcacheEntries()].find((e) => e.prefix === "10.244.1.2/32")?.local).toBe(true);
  });
});
