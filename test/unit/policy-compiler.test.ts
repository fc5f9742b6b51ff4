// SPDX-License-Identifier: Apache-2.0
// The compiled datapath (identities + ipcache + policy tries + LPM lookups)
// must give the same verdict as the reference evaluator: random clusters,
// random policies, random probes; then the tricky cases as a table.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ContainerPort, LabelSelector, Namespace, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, Pod } from "../../agent/k8s/manifest-types.js";
import { validateNetworkPolicy } from "../../agent/k8s/manifest-types.js";
import { evaluateProbe, type ClusterState, type Probe, type ProbeEnd } from "../../agent/policy/evaluator.js";
import { formatRuleId } from "../../agent/policy/rule-ref.js";
import { buildDatapath } from "../fixtures/policy/datapath-sim.js";

// ---- generators ---------------------------------------------------------

const NS_NAMES = ["default", "prod", "dev"] as const;
const LABEL_VALUES: Record<string, readonly string[]> = { app: ["web", "db", "api"], tier: ["fe", "be"], team: ["a", "b"], env: ["x", "y"] };
const LABEL_KEYS = Object.keys(LABEL_VALUES);
const PORT_NUMBERS = [53, 79, 80, 81, 443, 8080, 9090] as const;
const PORT_NAMES = ["http", "dns", "metrics"] as const;

const labelsArb = fc.dictionary(fc.constantFrom(...LABEL_KEYS), fc.constantFrom("web", "db", "a", "b", "x", "fe"), { maxKeys: 3 });

const fullSelectorArb: fc.Arbitrary<LabelSelector> = fc.record(
  {
    matchLabels: fc.dictionary(fc.constantFrom(...LABEL_KEYS), fc.constantFrom("web", "db", "a", "x", "fe"), { maxKeys: 2 }),
    matchExpressions: fc.array(
      fc.oneof(
        fc.record({ key: fc.constantFrom(...LABEL_KEYS), operator: fc.constantFrom("In" as const, "NotIn" as const), values: fc.uniqueArray(fc.constantFrom("web", "db", "a", "b", "x", "fe"), { minLength: 1, maxLength: 2 }) }),
        fc.record({ key: fc.constantFrom(...LABEL_KEYS), operator: fc.constantFrom("Exists" as const, "DoesNotExist" as const) }),
      ),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: [] },
);
// Biased towards selectors that match often, so that most probes meet isolated pods and allowing rules.
const selectorArb: fc.Arbitrary<LabelSelector> = fc.oneof(
  { arbitrary: fc.constant({}), weight: 2 },
  { arbitrary: fc.record({ matchLabels: fc.dictionary(fc.constantFrom(...LABEL_KEYS), fc.constantFrom("web", "a", "x"), { minKeys: 1, maxKeys: 1 }) }), weight: 2 },
  { arbitrary: fullSelectorArb, weight: 3 },
);

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join(".");
}
const EXT_BASE = 0xc6120000; // 198.18.0.0
const POD_BASE = 0x0af40000; // 10.244.0.0

/** A prefix of len `len` around a random address of a /22 (externals) or /24 (pods) pool, plus excepts inside it. */
const ipBlockArb = fc
  .record({
    pool: fc.constantFrom(EXT_BASE, POD_BASE, 0),
    offset: fc.integer({ min: 0, max: 1023 }),
    len: fc.integer({ min: 21, max: 32 }),
    excepts: fc.array(fc.record({ offset: fc.integer({ min: 0, max: 1023 }), extra: fc.integer({ min: 1, max: 8 }) }), { maxLength: 2 }),
  })
  .map(({ pool, offset, len, excepts }) => {
    const plen = pool === 0 ? 0 : len;
    const mask = (n: number, l: number): number => (l === 0 ? 0 : (n & (0xffffffff << (32 - l))) >>> 0);
    const base = mask(pool + offset, plen);
    const except = excepts
      .map((e) => ({ l: Math.min(32, plen + e.extra), addr: base + (e.offset % 2 ** (32 - plen)) }))
      .filter((e) => e.l > plen)
      .map((e) => `${ipv4(mask(e.addr, e.l))}/${e.l}`);
    const uniq = [...new Set(except)];
    return uniq.length > 0 ? { cidr: `${ipv4(base)}/${plen}`, except: uniq } : { cidr: `${ipv4(base)}/${plen}` };
  });

const peerArb: fc.Arbitrary<NetworkPolicyPeer> = fc.oneof(
  selectorArb.map((podSelector) => ({ podSelector })),
  selectorArb.map((namespaceSelector) => ({ namespaceSelector })),
  fc.record({ podSelector: selectorArb, namespaceSelector: selectorArb }),
  ipBlockArb.map((ipBlock) => ({ ipBlock })),
);

const protocolArb = fc.option(fc.constantFrom("TCP" as const, "UDP" as const, "SCTP" as const), { nil: undefined });
const portArb: fc.Arbitrary<NetworkPolicyPort> = fc.oneof(
  protocolArb.map((protocol) => (protocol ? { protocol } : {})),
  fc.record({ protocol: protocolArb, port: fc.constantFrom(...PORT_NUMBERS) }, { requiredKeys: ["port"] }),
  fc.record({ protocol: protocolArb, port: fc.constantFrom(...PORT_NAMES) }, { requiredKeys: ["port"] }),
  fc.record({ protocol: protocolArb, port: fc.constantFrom(...PORT_NUMBERS), width: fc.integer({ min: 0, max: 9000 }) }, { requiredKeys: ["port", "width"] })
    .map(({ protocol, port, width }) => ({ ...(protocol ? { protocol } : {}), port, endPort: Math.min(65535, port + width) })),
);

// Absent, empty and non-empty lists all mean something different to check.
const peersArb = fc.oneof(fc.constant(undefined), fc.constant([]), fc.array(peerArb, { minLength: 1, maxLength: 2 }));
const portsArb = fc.oneof(fc.constant(undefined), fc.constant([]), fc.array(portArb, { minLength: 1, maxLength: 2 }));

const policyArb = (i: number): fc.Arbitrary<NetworkPolicy> =>
  fc
    .record({
      namespace: fc.constantFrom(...NS_NAMES),
      podSelector: selectorArb,
      policyTypes: fc.option(fc.subarray(["Ingress", "Egress"] as const), { nil: undefined }),
      ingress: fc.option(fc.array(fc.record({ from: peersArb, ports: portsArb }, { requiredKeys: [] }), { maxLength: 2 }), { nil: undefined }),
      egress: fc.option(fc.array(fc.record({ to: peersArb, ports: portsArb }, { requiredKeys: [] }), { maxLength: 2 }), { nil: undefined }),
    })
    .map((r) => ({
      metadata: { namespace: r.namespace, name: `np${i}` },
      spec: {
        podSelector: r.podSelector,
        ...(r.policyTypes ? { policyTypes: r.policyTypes } : {}),
        ...(r.ingress ? { ingress: r.ingress.map(strip) } : {}),
        ...(r.egress ? { egress: r.egress.map(strip) } : {}),
      },
    }));

/** fast-check's optional record keys can be present with undefined; manifests never are. */
function strip<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

const portTableArb = fc.array(
  fc.record({ name: fc.constantFrom(...PORT_NAMES), containerPort: fc.constantFrom(...PORT_NUMBERS), protocol: fc.constantFrom("TCP" as const, "UDP" as const) }),
  { maxLength: 3 },
);

/** Deterministic pick so that pods with equal labels (one identity) have equal named ports, as replicas of one template do. */
function pick<T>(tables: readonly T[], key: string): T | undefined {
  let h = 0;
  for (const ch of key) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return tables[h % tables.length];
}

const clusterArb: fc.Arbitrary<ClusterState> = fc
  .record({
    namespaces: fc.subarray([...NS_NAMES]).chain((names) =>
      fc.tuple(...names.map((name) => labelsArb.map((labels): Namespace => ({ metadata: { name, labels } })))),
    ),
    pods: fc.array(fc.record({ ns: fc.constantFrom(...NS_NAMES), labels: labelsArb }), { minLength: 1, maxLength: 6 }),
    portTables: fc.array(portTableArb, { minLength: 1, maxLength: 3 }),
    policyCount: fc.integer({ min: 1, max: 7 }),
  })
  .chain(({ namespaces, pods, portTables, policyCount }) =>
    fc.tuple(...Array.from({ length: policyCount }, (_, i) => policyArb(i))).map((policies): ClusterState => ({
      namespaces,
      policies,
      pods: pods.map((p, i): Pod => {
        const ports: ContainerPort[] = [...(pick(portTables, `${p.ns}/${JSON.stringify(Object.entries(p.labels).sort())}`) ?? [])];
        return {
          metadata: { namespace: p.ns, name: `pod${i}`, labels: p.labels },
          spec: { containers: [{ name: "c", ports }] },
          status: { podIPs: [{ ip: ipv4(POD_BASE + i + 1) }] },
        };
      }),
    })),
  );

function probeArb(state: ClusterState): fc.Arbitrary<Probe> {
  const podEnd = fc.constantFrom(...state.pods).map((p): ProbeEnd => ({ kind: "pod", namespace: p.metadata.namespace, name: p.metadata.name }));
  const extEnd = fc.integer({ min: 0, max: 1023 }).map((o): ProbeEnd => ({ kind: "ip", ip: ipv4(EXT_BASE + o) }));
  const end = fc.oneof({ arbitrary: podEnd, weight: 3 }, { arbitrary: extEnd, weight: 1 });
  return fc
    .record({
      from: end,
      to: end,
      protocol: fc.constantFrom("TCP" as const, "UDP" as const, "SCTP" as const, "ICMP" as const),
      port: fc.oneof({ arbitrary: fc.constantFrom(...PORT_NUMBERS), weight: 4 }, { arbitrary: fc.integer({ min: 1, max: 65535 }), weight: 1 }),
      // Half the time aim at one of the destination pod's container ports, so named ports get exercised.
      aim: fc.option(fc.nat(), { nil: undefined }),
    })
    .filter((p) => p.from.kind === "pod" || p.to.kind === "pod")
    .map(({ aim, ...p }): Probe => {
      const to = p.to;
      const dst = to.kind === "pod" ? state.pods.find((x) => x.metadata.name === to.name) : undefined;
      const ports = dst?.spec.containers.flatMap((c) => c.ports ?? []) ?? [];
      const cp = aim === undefined || ports.length === 0 ? undefined : ports[aim % ports.length];
      if (cp) return { ...p, protocol: cp.protocol ?? "TCP", port: cp.containerPort };
      return p.protocol === "ICMP" ? { ...p, port: 0 } : p;
    });
}

describe("compiled policy vs reference evaluator", () => {
  it("agree on random clusters, policies and probes", () => {
    fc.assert(
      fc.property(
        clusterArb.chain((state) => fc.tuple(fc.constant(state), fc.array(probeArb(state), { minLength: 1, maxLength: 12 }))),
        ([state, probes]) => {
          for (const np of state.policies) {
            const v = validateNetworkPolicy(JSON.parse(JSON.stringify(np)), "gen");
            expect(v.errors.map((e) => e.message)).toEqual([]);
          }
          const dp = buildDatapath(state);
          for (const probe of probes) {
            const want = evaluateProbe(state, probe);
            const got = dp.verdict(probe);
            expect({ probe, egress: got.egressAllowed, ingress: got.ingressAllowed }).toEqual({ probe, egress: want.egress.allowed, ingress: want.ingress.allowed });
            // The rule named by the matching entry must be one the evaluator says allows the flow.
            if (got.egressRule) expect(want.egress.allowedBy.map(formatRuleId)).toContain(formatRuleId(got.egressRule));
            if (got.ingressRule) expect(want.ingress.allowedBy.map(formatRuleId)).toContain(formatRuleId(got.ingressRule));
            if (want.egress.isolated && want.egress.allowed) expect(got.egressRule).not.toBeNull();
            if (want.ingress.isolated && want.ingress.allowed) expect(got.ingressRule).not.toBeNull();
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
