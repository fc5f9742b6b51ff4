// SPDX-License-Identifier: Apache-2.0
// The compiled datapath (identities + ipcache + policy tries + LPM lookups)
// must give the same verdict as the reference evaluator: random clusters,
// random policies, random probes; then the tricky cases as a table.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ContainerPort, LabelSelector, Namespace, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, Pod } from "../../agent/k8s/manifest-types.js";
import { podIpsOf, validateNetworkPolicy } from "../../agent/k8s/manifest-types.js";
import { formatIp, parseIp } from "../../agent/ipam/cidr.js";
import { evaluateProbe, type ClusterState, type Probe, type ProbeEnd } from "../../agent/policy/evaluator.js";
import { RuleRefTable, formatRuleId } from "../../agent/policy/rule-ref.js";
import { securityLabelsOf } from "../../agent/identity/labels.js";
import { UntrackedSelectorError, compileEndpointPolicy, selectorKeysFor, trackPolicySelectors } from "../../agent/policy/compiler.js";
import { SelectorCache, peerSelector, selectorKey } from "../../agent/policy/selector.js";
import { buildDatapath } from "../fixtures/policy/datapath-sim.js";
import { clusterArb, probeArb } from "../fixtures/policy/arbitraries.js";

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
  }, 60_000);
});

// ---- tricky cases, each checked on both the evaluator and the compiled datapath ----

function pod(ns: string, name: string, ip: string, labels: Record<string, string>, ports: ContainerPort[] = []): Pod {
  return { metadata: { namespace: ns, name, labels }, spec: { containers: [{ name: "c", ports }] }, status: { podIPs: [{ ip }] } };
}
function np(ns: string, name: string, spec: NetworkPolicy["spec"]): NetworkPolicy {
  return { metadata: { namespace: ns, name }, spec };
}
const P = (ns: string, name: string): ProbeEnd => ({ kind: "pod", namespace: ns, name });
const IP = (ip: string): ProbeEnd => ({ kind: "ip", ip });
const tcp = (from: ProbeEnd, to: ProbeEnd, port: number): Probe => ({ from, to, protocol: "TCP", port });

const NAMESPACES: Namespace[] = [
  { metadata: { name: "default", labels: { team: "a" } } },
  { metadata: { name: "prod", labels: { team: "b" } } },
];
const PODS: Pod[] = [
  pod("default", "web", "10.244.0.1", { app: "web" }, [{ name: "http", containerPort: 80 }]),
  pod("default", "db", "10.244.0.2", { app: "db", tier: "be" }, [{ name: "http", containerPort: 8080 }, { name: "dns", containerPort: 53, protocol: "UDP" }]),
  pod("prod", "web", "10.244.0.3", { app: "web" }, [{ name: "http", containerPort: 8080 }]),
  pod("prod", "api", "10.244.0.4", { app: "api", tier: "fe" }),
  // No Namespace object: only kubernetes.io/metadata.name identifies it.
  pod("ghost", "web", "10.244.0.5", { app: "web" }),
];

interface Case {
  name: string;
  policies: NetworkPolicy[];
  probe: Probe;
  allowed: boolean;
}

const intoDb = (from: NetworkPolicy["spec"]["ingress"]): NetworkPolicy[] => [
  np("default", "db-in", { podSelector: { matchLabels: { app: "db" } }, ...(from ? { ingress: from } : {}) }),
];

const cases: Case[] = [
  // AND vs OR peers
  { name: "AND peer: pod+namespace selector, namespace does not match", policies: intoDb([{ from: [{ podSelector: { matchLabels: { app: "web" } }, namespaceSelector: { matchLabels: { team: "a" } } }] }]), probe: tcp(P("prod", "web"), P("default", "db"), 5432), allowed: false },
  { name: "AND peer: both match", policies: intoDb([{ from: [{ podSelector: { matchLabels: { app: "web" } }, namespaceSelector: { matchLabels: { team: "b" } } }] }]), probe: tcp(P("prod", "web"), P("default", "db"), 5432), allowed: true },
  { name: "OR peers: namespace selector alone admits any pod there", policies: intoDb([{ from: [{ podSelector: { matchLabels: { app: "nope" } } }, { namespaceSelector: { matchLabels: { team: "b" } } }] }]), probe: tcp(P("prod", "api"), P("default", "db"), 5432), allowed: true },
  { name: "podSelector alone means the policy's namespace only", policies: intoDb([{ from: [{ podSelector: { matchLabels: { app: "web" } } }] }]), probe: tcp(P("prod", "web"), P("default", "db"), 5432), allowed: false },
  { name: "podSelector alone admits same-namespace pod", policies: intoDb([{ from: [{ podSelector: { matchLabels: { app: "web" } } }] }]), probe: tcp(P("default", "web"), P("default", "db"), 5432), allowed: true },
  { name: "namespaceSelector {} admits pods of every namespace", policies: intoDb([{ from: [{ namespaceSelector: {} }] }]), probe: tcp(P("ghost", "web"), P("default", "db"), 1), allowed: true },
  { name: "namespaceSelector {} does not admit outside IPs", policies: intoDb([{ from: [{ namespaceSelector: {} }] }]), probe: tcp(IP("198.18.0.9"), P("default", "db"), 1), allowed: false },
  { name: "namespace without object matched by metadata.name", policies: intoDb([{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ghost" } } }] }]), probe: tcp(P("ghost", "web"), P("default", "db"), 1), allowed: true },
  // NotIn / DoesNotExist with a missing key
  { name: "NotIn matches a pod without the key", policies: intoDb([{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["fe"] }] } }] }]), probe: tcp(P("prod", "web"), P("default", "db"), 1), allowed: true },
  { name: "NotIn rejects a listed value", policies: intoDb([{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["fe"] }] } }] }]), probe: tcp(P("prod", "api"), P("default", "db"), 1), allowed: false },
  { name: "In rejects a pod without the key", policies: intoDb([{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["fe", "be"] }] } }] }]), probe: tcp(P("prod", "web"), P("default", "db"), 1), allowed: false },
  { name: "DoesNotExist matches a pod without the key", policies: intoDb([{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] } }] }]), probe: tcp(P("prod", "web"), P("default", "db"), 1), allowed: true },
  // Named ports, resolved against the destination pod
  { name: "ingress named port: db's http is 8080", policies: [np("default", "http-in", { podSelector: {}, ingress: [{ ports: [{ port: "http" }] }] })], probe: tcp(P("prod", "api"), P("default", "db"), 8080), allowed: true },
  { name: "ingress named port: web's http is 80, not 8080", policies: [np("default", "http-in", { podSelector: {}, ingress: [{ ports: [{ port: "http" }] }] })], probe: tcp(P("prod", "api"), P("default", "web"), 8080), allowed: false },
  { name: "named port with the wrong protocol does not match", policies: [np("default", "dns-in", { podSelector: {}, ingress: [{ ports: [{ port: "dns" }] }] })], probe: { from: P("prod", "api"), to: P("default", "db"), protocol: "UDP", port: 53 }, allowed: false },
  { name: "named port with its protocol matches", policies: [np("default", "dns-in", { podSelector: {}, ingress: [{ ports: [{ port: "dns", protocol: "UDP" }] }] })], probe: { from: P("prod", "api"), to: P("default", "db"), protocol: "UDP", port: 53 }, allowed: true },
  { name: "egress named port uses the destination's number (8080 on prod/web)", policies: [np("default", "out", { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Egress"], egress: [{ ports: [{ port: "http" }] }] })], probe: tcp(P("default", "web"), P("prod", "web"), 8080), allowed: true },
  { name: "egress named port: source's own http (80) is irrelevant", policies: [np("default", "out", { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Egress"], egress: [{ ports: [{ port: "http" }] }] })], probe: tcp(P("default", "web"), P("prod", "web"), 80), allowed: false },
  { name: "egress named port never matches an outside IP", policies: [np("default", "out", { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Egress"], egress: [{ ports: [{ port: "http" }] }] })], probe: tcp(P("default", "web"), IP("198.18.0.1"), 80), allowed: false },
  // endPort edges
  ...[79, 80, 81, 82].map((port): Case => ({ name: `endPort 80-81, port ${port}`, policies: intoDb([{ ports: [{ port: 80, endPort: 81 }] }]), probe: tcp(P("default", "web"), P("default", "db"), port), allowed: port === 80 || port === 81 })),
  { name: "port without protocol is TCP only", policies: intoDb([{ ports: [{ port: 53 }] }]), probe: { from: P("default", "web"), to: P("default", "db"), protocol: "UDP", port: 53 }, allowed: false },
  { name: "protocol without port allows every port of it", policies: intoDb([{ ports: [{ protocol: "SCTP" }] }]), probe: { from: P("default", "web"), to: P("default", "db"), protocol: "SCTP", port: 65535 }, allowed: true },
  { name: "ports list never allows ICMP", policies: intoDb([{ ports: [{ protocol: "TCP" }, { protocol: "UDP" }, { protocol: "SCTP" }] }]), probe: { from: P("default", "web"), to: P("default", "db"), protocol: "ICMP", port: 0 }, allowed: false },
  { name: "rule without ports allows ICMP", policies: intoDb([{ from: [{ podSelector: {} }] }]), probe: { from: P("default", "web"), to: P("default", "db"), protocol: "ICMP", port: 0 }, allowed: true },
  // Empty rules and policyTypes
  { name: "ingress [{}] allows everything, outside IPs too", policies: intoDb([{}]), probe: tcp(IP("198.18.3.3"), P("default", "db"), 9), allowed: true },
  { name: "ingress [] isolates and allows nothing", policies: intoDb([]), probe: tcp(P("default", "web"), P("default", "db"), 9), allowed: false },
  { name: "no ingress field isolates and allows nothing", policies: intoDb(undefined), probe: tcp(P("default", "web"), P("default", "db"), 9), allowed: false },
  { name: "policy in another namespace does not isolate", policies: [np("prod", "deny", { podSelector: {} })], probe: tcp(P("default", "web"), P("default", "db"), 9), allowed: true },
  { name: "policyTypes [Egress]: ingress rules ignored, ingress open", policies: [np("default", "eg", { podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Egress"], ingress: [] })], probe: tcp(P("default", "web"), P("default", "db"), 9), allowed: true },
  { name: "policyTypes [Egress] with no rules denies egress", policies: [np("default", "eg", { podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Egress"] })], probe: tcp(P("default", "db"), P("default", "web"), 9), allowed: false },
  { name: "egress present without policyTypes isolates egress", policies: [np("default", "eg", { podSelector: { matchLabels: { app: "db" } }, egress: [{ ports: [{ port: 443 }] }] })], probe: tcp(P("default", "db"), IP("198.18.0.7"), 80), allowed: false },
  { name: "egress: [] without policyTypes does not isolate egress", policies: [np("default", "eg", { podSelector: { matchLabels: { app: "db" } }, egress: [] })], probe: tcp(P("default", "db"), IP("198.18.0.7"), 80), allowed: true },
  // Union of policies
  { name: "union: second policy allows what the first does not", policies: [...intoDb([{ ports: [{ port: 1 }] }]), np("default", "more", { podSelector: { matchLabels: { tier: "be" } }, ingress: [{ ports: [{ port: 5432 }] }] })], probe: tcp(P("default", "web"), P("default", "db"), 5432), allowed: true },
  { name: "union: neither allows", policies: [...intoDb([{ ports: [{ port: 1 }] }]), np("default", "more", { podSelector: { matchLabels: { tier: "be" } }, ingress: [{ ports: [{ port: 2 }] }] })], probe: tcp(P("default", "web"), P("default", "db"), 5432), allowed: false },
  { name: "both egress of source and ingress of destination must allow", policies: [...intoDb([{}]), np("default", "web-out", { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Egress"] })], probe: tcp(P("default", "web"), P("default", "db"), 1), allowed: false },
  // ipBlock and except
  { name: "ipBlock admits an address in cidr", policies: intoDb([{ from: [{ ipBlock: { cidr: "198.18.0.0/16", except: ["198.18.1.0/24"] } }] }]), probe: tcp(IP("198.18.2.5"), P("default", "db"), 1), allowed: true },
  { name: "ipBlock except refuses an excepted address", policies: intoDb([{ from: [{ ipBlock: { cidr: "198.18.0.0/16", except: ["198.18.1.0/24"] } }] }]), probe: tcp(IP("198.18.1.5"), P("default", "db"), 1), allowed: false },
  { name: "except still refuses when another policy's narrower block covers the address", policies: [...intoDb([{ from: [{ ipBlock: { cidr: "198.18.0.0/16", except: ["198.18.1.0/24"] } }], ports: [{ port: 1 }] }]), np("default", "narrow", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "198.18.1.128/25" } }], ports: [{ port: 2 }] }] })], probe: tcp(IP("198.18.1.200"), P("default", "db"), 1), allowed: false },
  { name: "a wider block still admits an address another block narrows", policies: [...intoDb([{ from: [{ ipBlock: { cidr: "198.18.0.0/16" } }], ports: [{ port: 1 }] }]), np("default", "narrow", { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "198.18.1.128/25" } }], ports: [{ port: 2 }] }] })], probe: tcp(IP("198.18.1.200"), P("default", "db"), 1), allowed: true },
  { name: "ipBlock does not match pod IPs", policies: intoDb([{ from: [{ ipBlock: { cidr: "10.244.0.0/16" } }] }]), probe: tcp(P("default", "web"), P("default", "db"), 1), allowed: false },
  { name: "ipBlock /32 of a pod's own IP does not match the pod", policies: intoDb([{ from: [{ ipBlock: { cidr: "10.244.0.1/32" } }] }]), probe: tcp(P("default", "web"), P("default", "db"), 1), allowed: false },
  { name: "ipBlock 0.0.0.0/0 admits any outside IPv4 address", policies: intoDb([{ from: [{ ipBlock: { cidr: "0.0.0.0/0" } }] }]), probe: tcp(IP("203.0.113.9"), P("default", "db"), 1), allowed: true },
  { name: "egress ipBlock except", policies: [np("default", "out", { podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "198.18.0.0/15", except: ["198.19.0.0/16"] } }] }] })], probe: tcp(P("default", "db"), IP("198.19.4.4"), 443), allowed: false },
  { name: "IPv6 ipBlock", policies: intoDb([{ from: [{ ipBlock: { cidr: "2001:db8::/32", except: ["2001:db8:1::/48"] } }] }]), probe: tcp(IP("2001:db8:2::1"), P("default", "db"), 1), allowed: true },
  { name: "IPv6 ipBlock except", policies: intoDb([{ from: [{ ipBlock: { cidr: "2001:db8::/32", except: ["2001:db8:1::/48"] } }] }]), probe: tcp(IP("2001:db8:1::1"), P("default", "db"), 1), allowed: false },
];

describe("tricky NetworkPolicy cases", () => {
  it.each(cases)("$name", ({ policies, probe, allowed }) => {
    const state: ClusterState = { namespaces: NAMESPACES, pods: PODS, policies };
    for (const p of policies) expect(validateNetworkPolicy(JSON.parse(JSON.stringify(p)), "case").errors).toEqual([]);
    expect(evaluateProbe(state, probe).allowed).toBe(allowed);
    expect(buildDatapath(state).verdict(probe).allowed).toBe(allowed);
  });

  it("names the allowing rule in the verdict and in the compiled entry", () => {
    const policies = [...intoDb([{ ports: [{ port: 1 }] }, { ports: [{ port: 5432 }] }])];
    const state: ClusterState = { namespaces: NAMESPACES, pods: PODS, policies };
    const probe = tcp(P("default", "web"), P("default", "db"), 5432);
    const v = evaluateProbe(state, probe);
    expect(v.ingress.allowedBy.map(formatRuleId)).toEqual(["default/db-in/ingress[1]"]);
    const rule = buildDatapath(state).verdict(probe).ingressRule;
    expect(rule ? formatRuleId(rule) : null).toBe("default/db-in/ingress[1]");
  });
});

describe("compileEndpointPolicy entries", () => {
  const dbLabels = securityLabelsOf("default", { app: "db" }, {});
  const webLabels = securityLabelsOf("default", { app: "web" }, {});
  const endpoint = { identity: 257, labels: dbLabels, namedPorts: [{ name: "pg", port: 5432, protocol: "TCP" as const }] };
  function compile(policies: NetworkPolicy[]): string[] {
    const cache = new SelectorCache();
    cache.upsertIdentity(256, { kind: "labels", labels: webLabels });
    cache.upsertIdentity(257, { kind: "labels", labels: dbLabels });
    for (const p of policies) trackPolicySelectors(cache, p);
    const entries = compileEndpointPolicy(endpoint, { policies, selectorCache: cache, remoteNamedPorts: new Map(), ruleRefs: new RuleRefTable() });
    return entries.map((e) => `${e.key.identity} dir${e.key.direction} p${e.key.protocol} ${e.key.port}/${e.key.prefixLen} -> ${e.ruleRef}`);
  }

  it.each([
    { name: "no policy: both directions open", policies: [], want: ["0 dir0 p0 0/40 -> 0", "0 dir1 p0 0/40 -> 0"] },
    {
      name: "ingress from web on 80-81 and named port pg",
      policies: intoDb([{ from: [{ podSelector: { matchLabels: { app: "web" } } }], ports: [{ port: 80, endPort: 81 }, { port: "pg" }] }]),
      want: ["0 dir0 p0 0/40 -> 0", "256 dir1 p6 5432/64 -> 1", "256 dir1 p6 80/63 -> 1"],
    },
    { name: "ingress [] leaves only the open egress entry", policies: intoDb([]), want: ["0 dir0 p0 0/40 -> 0"] },
    {
      name: "egress-only policy to UDP, any destination",
      policies: [np("default", "dns", { podSelector: {}, policyTypes: ["Egress"], egress: [{ ports: [{ protocol: "UDP" }] }] })],
      want: ["0 dir0 p17 0/48 -> 1", "0 dir1 p0 0/40 -> 0"],
    },
  ])("$name", ({ policies, want }) => {
    expect(compile(policies)).toEqual(want);
  });

  it("refuses to compile with a selector the cache does not track", () => {
    const policies = intoDb([{ from: [{ podSelector: {} }] }]);
    const ctx = { policies, selectorCache: new SelectorCache(), remoteNamedPorts: new Map(), ruleRefs: new RuleRefTable() };
    expect(() => compileEndpointPolicy(endpoint, ctx)).toThrow(UntrackedSelectorError);
  });

  it("lists the selectors an endpoint depends on, only from policies that select it", () => {
    const policies = [
      ...intoDb([{ from: [{ podSelector: { matchLabels: { app: "web" } } }, { ipBlock: { cidr: "198.18.0.0/15" } }] }]),
      np("default", "other", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ namespaceSelector: {} }] }] }),
    ];
    expect([...selectorKeysFor(endpoint, policies)].sort()).toEqual(
      [selectorKey(peerSelector({ podSelector: { matchLabels: { app: "web" } } }, "default")), selectorKey(peerSelector({ ipBlock: { cidr: "198.18.0.0/15" } }, "default"))].sort(),
    );
  });
});
