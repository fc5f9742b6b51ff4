// SPDX-License-Identifier: Apache-2.0
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { LabelSelector } from "../../agent/k8s/manifest-types.js";
import { securityLabelsOf } from "../../agent/identity/labels.js";
import { SelectorCache, matchesLabelSelector, peerSelector, selectorKey, selectorMatches, type IdentitySelector, type IdentitySource } from "../../agent/policy/selector.js";

describe("matchesLabelSelector", () => {
  const labels = { app: "web", tier: "fe", empty: "" };
  it.each<{ name: string; sel: LabelSelector; want: boolean }>([
    { name: "empty selector matches all", sel: {}, want: true },
    { name: "matchLabels hit", sel: { matchLabels: { app: "web" } }, want: true },
    { name: "matchLabels needs every pair", sel: { matchLabels: { app: "web", tier: "be" } }, want: false },
    { name: "matchLabels with empty value", sel: { matchLabels: { empty: "" } }, want: true },
    { name: "matchLabels empty value needs the key", sel: { matchLabels: { missing: "" } }, want: false },
    { name: "In hit", sel: { matchExpressions: [{ key: "app", operator: "In", values: ["db", "web"] }] }, want: true },
    { name: "In with missing key", sel: { matchExpressions: [{ key: "zone", operator: "In", values: ["x"] }] }, want: false },
    { name: "NotIn with missing key matches", sel: { matchExpressions: [{ key: "zone", operator: "NotIn", values: ["x"] }] }, want: true },
    { name: "NotIn with listed value", sel: { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["fe"] }] }, want: false },
    { name: "Exists", sel: { matchExpressions: [{ key: "tier", operator: "Exists" }] }, want: true },
    { name: "DoesNotExist on present key", sel: { matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] }, want: false },
    { name: "DoesNotExist on missing key", sel: { matchExpressions: [{ key: "zone", operator: "DoesNotExist" }] }, want: true },
    { name: "labels AND expressions", sel: { matchLabels: { app: "web" }, matchExpressions: [{ key: "tier", operator: "In", values: ["be"] }] }, want: false },
    { name: "inherited property names are not labels", sel: { matchExpressions: [{ key: "constructor", operator: "Exists" }] }, want: false },
  ])("$name", ({ sel, want }) => {
    expect(matchesLabelSelector(sel, labels)).toBe(want);
  });
});

describe("selectorKey", () => {
  it("is the same whatever the order of labels, expressions and values", () => {
    const a = peerSelector({ podSelector: { matchLabels: { a: "1", b: "2" }, matchExpressions: [{ key: "x", operator: "In", values: ["p", "q"] }, { key: "y", operator: "Exists" }] } }, "default");
    const b = peerSelector({ podSelector: { matchLabels: { b: "2", a: "1" }, matchExpressions: [{ key: "y", operator: "Exists" }, { key: "x", operator: "In", values: ["q", "p"] }] } }, "default");
    expect(selectorKey(a)).toBe(selectorKey(b));
  });
  it("differs between namespaces for podSelector-only peers", () => {
    expect(selectorKey(peerSelector({ podSelector: {} }, "a"))).not.toBe(selectorKey(peerSelector({ podSelector: {} }, "b")));
  });
  it("canonicalises CIDR spelling", () => {
    expect(selectorKey(peerSelector({ ipBlock: { cidr: "2001:db8:0::/32" } }, "a"))).toBe(selectorKey(peerSelector({ ipBlock: { cidr: "2001:db8::/32" } }, "b")));
  });
});

describe("SelectorCache", () => {
  const web = securityLabelsOf("default", { app: "web" }, { team: "a" });
  const db = securityLabelsOf("default", { app: "db" }, { team: "a" });
  const prodWeb = securityLabelsOf("prod", { app: "web" }, { team: "b" });

  it("tracks selections as identities appear and disappear, reporting changed selectors", () => {
    const c = new SelectorCache();
    c.upsertIdentity(256, { kind: "labels", labels: web });
    const webSel = c.add(peerSelector({ podSelector: { matchLabels: { app: "web" } } }, "default"));
    const teamB = c.add(peerSelector({ namespaceSelector: { matchLabels: { team: "b" } } }, "default"));
    const cidr = c.add(peerSelector({ ipBlock: { cidr: "198.18.0.0/16", except: ["198.18.1.0/24"] } }, "default"));
    expect([...c.selections(webSel)]).toEqual([256]);
    expect(c.upsertIdentity(257, { kind: "labels", labels: db })).toEqual([]);
    expect(c.upsertIdentity(258, { kind: "labels", labels: prodWeb })).toEqual([teamB]);
    expect(c.upsertIdentity(1 << 24, { kind: "cidr", cidr: "198.18.0.0/16" })).toEqual([cidr]);
    expect(c.upsertIdentity((1 << 24) + 1, { kind: "cidr", cidr: "198.18.1.0/24" })).toEqual([]);
    expect(c.upsertIdentity((1 << 24) + 2, { kind: "cidr", cidr: "198.18.2.0/24" })).toEqual([cidr]);
    expect([...c.selections(cidr)].sort()).toEqual([1 << 24, (1 << 24) + 2]);
    expect(c.removeIdentity(256)).toEqual([webSel]);
    expect([...c.selections(webSel)]).toEqual([]);
  });

  it("reference counts selectors", () => {
    const c = new SelectorCache();
    const k1 = c.add(peerSelector({ podSelector: {} }, "default"));
    const k2 = c.add(peerSelector({ podSelector: {} }, "default"));
    expect(k1).toBe(k2);
    expect(c.remove(k1)).toBe(false);
    expect(c.has(k1)).toBe(true);
    expect(c.remove(k1)).toBe(true);
    expect(c.has(k1)).toBe(false);
  });
});

describe("SelectorCache under random updates", () => {
  const selArb = fc.record({ matchLabels: fc.dictionary(fc.constantFrom("app", "tier"), fc.constantFrom("a", "b"), { maxKeys: 1 }) });
  const identitySelArb = fc.oneof(
    fc.record({ ns: fc.constantFrom("n1", "n2"), pod: selArb }).map(({ ns, pod }) => peerSelector({ podSelector: pod }, ns)),
    fc.record({ pod: selArb, nsSel: selArb }).map(({ pod, nsSel }) => peerSelector({ podSelector: pod, namespaceSelector: nsSel }, "n1")),
    fc.constantFrom("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24").map((cidr) => peerSelector({ ipBlock: { cidr, except: ["10.1.2.0/24"].filter((e) => e !== cidr && cidr !== "10.1.2.0/24") } }, "n1")),
  );
  const sourceArb = fc.oneof(
    fc.record({ ns: fc.constantFrom("n1", "n2"), pod: fc.dictionary(fc.constantFrom("app", "tier"), fc.constantFrom("a", "b")), nsl: fc.dictionary(fc.constantFrom("app", "tier"), fc.constantFrom("a", "b")) })
      .map(({ ns, pod, nsl }): IdentitySource => ({ kind: "labels", labels: securityLabelsOf(ns, pod, nsl) })),
    fc.constantFrom("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "10.2.0.0/16").map((cidr): IdentitySource => ({ kind: "cidr", cidr })),
  );
  const opArb = fc.oneof(
    fc.record({ op: fc.constant("add" as const), sel: identitySelArb }),
    fc.record({ op: fc.constant("upsert" as const), id: fc.integer({ min: 256, max: 262 }), src: sourceArb }),
    fc.record({ op: fc.constant("remove" as const), id: fc.integer({ min: 256, max: 262 }) }),
  );

  it("always equals a from-scratch evaluation and reports exactly the changed selectors", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const cache = new SelectorCache();
        const ids = new Map<number, IdentitySource>();
        const sels = new Map<string, IdentitySelector>();
        const snapshot = (): Map<string, number[]> => new Map([...sels.keys()].map((k) => [k, [...cache.selections(k)].sort()]));
        for (const o of ops) {
          const before = snapshot();
          let changed: string[] = [];
          if (o.op === "add") sels.set(cache.add(o.sel), o.sel);
          else if (o.op === "upsert") { ids.set(o.id, o.src); changed = cache.upsertIdentity(o.id, o.src); }
          else { ids.delete(o.id); changed = cache.removeIdentity(o.id); }
          for (const [k, sel] of sels) {
            const want = [...ids].filter(([, src]) => selectorMatches(sel, src)).map(([id]) => id).sort();
            expect([...cache.selections(k)].sort()).toEqual(want);
            if (o.op !== "add") expect(changed.includes(k)).toBe(JSON.stringify(before.get(k)) !== JSON.stringify(want));
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
