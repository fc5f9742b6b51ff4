// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ManifestFieldError, policyTypesOf, validateNetworkPolicy, validatePod } from "../../agent/k8s/manifest-types.js";

const base = (spec: unknown): unknown => ({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "web", namespace: "shop" }, spec });
const ingressPorts = (ports: unknown[]): unknown => base({ podSelector: {}, ingress: [{ ports }] });

describe("validateNetworkPolicy", () => {
  it.each([
    { name: "endPort below port", obj: ingressPorts([{ port: 1 }, { port: 80, endPort: 79 }]), msg: "validate NetworkPolicy shop/web (web.yaml): spec.ingress[0].ports[1].endPort: 79 is less than port 80" },
    { name: "endPort with a named port", obj: ingressPorts([{ port: "http", endPort: 90 }]), msg: 'spec.ingress[0].ports[0].endPort: may not be set with the named port "http"' },
    { name: "endPort without port", obj: ingressPorts([{ endPort: 90 }]), msg: "spec.ingress[0].ports[0].endPort: may not be set without port" },
    { name: "port 0", obj: ingressPorts([{ port: 0 }]), msg: "spec.ingress[0].ports[0].port: 0 is not in 1..65535" },
    { name: "port 65536", obj: ingressPorts([{ port: 65536 }]), msg: "spec.ingress[0].ports[0].port: 65536 is not in 1..65535" },
    { name: "endPort 65536", obj: ingressPorts([{ port: 1, endPort: 65536 }]), msg: "spec.ingress[0].ports[0].endPort: 65536 is not in 1..65535" },
    { name: "digits as a port name", obj: ingressPorts([{ port: "80" }]), msg: 'spec.ingress[0].ports[0].port: "80" is neither a port number nor a valid port name' },
    { name: "unknown protocol", obj: ingressPorts([{ protocol: "ICMP", port: 1 }]), msg: 'spec.ingress[0].ports[0].protocol: "ICMP" is not one of TCP, UDP, SCTP' },
    { name: "bad operator", obj: base({ podSelector: { matchExpressions: [{ key: "a", operator: "Equals", values: ["x"] }] } }), msg: 'spec.podSelector.matchExpressions[0].operator: "Equals" is not one of In, NotIn, Exists, DoesNotExist' },
    { name: "values with Exists", obj: base({ podSelector: {}, egress: [{ to: [{ podSelector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] } }] }] }), msg: "spec.egress[0].to[0].podSelector.matchExpressions[0].values: must be empty when operator is Exists" },
    { name: "no values with In", obj: base({ podSelector: { matchExpressions: [{ key: "a", operator: "In" }] } }), msg: "spec.podSelector.matchExpressions[0].values: must be non-empty when operator is In" },
    { name: "bad CIDR", obj: base({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] }), msg: "spec.ingress[0].from[0].ipBlock.cidr:" },
    { name: "CIDR with host bits", obj: base({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.1/8" } }] }] }), msg: "host bits are set" },
    { name: "except outside cidr", obj: base({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.1.0.0/24"] } }] }] }), msg: "spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/24 is not strictly inside 10.0.0.0/16" },
    { name: "except equal to cidr", obj: base({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.0.0/16"] } }] }] }), msg: "is not strictly inside" },
    { name: "except of the other family", obj: base({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["fd00::/8"] } }] }] }), msg: "is not strictly inside" },
    { name: "ipBlock with a selector", obj: base({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] }] }), msg: "spec.ingress[0].from[0]: ipBlock may not be combined" },
    { name: "empty peer", obj: base({ podSelector: {}, ingress: [{ from: [{}] }] }), msg: "spec.ingress[0].from[0]: must set podSelector, namespaceSelector or ipBlock" },
    { name: "bad policyType", obj: base({ podSelector: {}, policyTypes: ["Inbound"] }), msg: 'spec.policyTypes[0]: "Inbound" is not one of Ingress, Egress' },
    { name: "missing podSelector", obj: base({}), msg: "spec.podSelector: required" },
    { name: "bad label key", obj: base({ podSelector: { matchLabels: { "-bad": "x" } } }), msg: 'spec.podSelector.matchLabels: "-bad" is not a valid label key' },
  ])("rejects $name", ({ obj, msg }) => {
    const r = validateNetworkPolicy(obj, "web.yaml");
    expect(r.value).toBeNull();
    expect(r.errors[0]).toBeInstanceOf(ManifestFieldError);
    expect(r.errors.map((e) => e.message).join("\n")).toContain(msg);
  });

  it("reports every bad field, not just the first", () => {
    const r = validateNetworkPolicy(ingressPorts([{ port: 0 }, { port: 90, endPort: 80 }, { protocol: "tcp" }]), "f.yaml");
    expect(r.errors.map((e) => e.path)).toEqual(["spec.ingress[0].ports[0].port", "spec.ingress[0].ports[1].endPort", "spec.ingress[0].ports[2].protocol"]);
  });

  it("accepts a full policy read from YAML and keeps its meaning", () => {
    const obj: unknown = parse(
      `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
      namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [x]}]}
    - ipBlock: {cidr: 198.18.0.0/15, except: [198.19.0.0/16]}
    ports:
    - {port: 5432}
    - {protocol: UDP, port: 1000, endPort: 2000}
    - {port: metrics}
  egress:
  - {}
`,
    );
    const r = validateNetworkPolicy(obj, "db.yaml");
    expect(r.errors).toEqual([]);
    expect(r.value?.spec.ingress?.[0]?.from?.[1]).toEqual({ ipBlock: { cidr: "198.18.0.0/15", except: ["198.19.0.0/16"] } });
    expect(r.value?.spec.ingress?.[0]?.ports).toEqual([{ port: 5432 }, { protocol: "UDP", port: 1000, endPort: 2000 }, { port: "metrics" }]);
    expect(r.value?.spec.egress).toEqual([{}]);
    expect(r.value ? [...policyTypesOf(r.value.spec)] : null).toEqual(["Ingress", "Egress"]);
  });

  it("defaults the namespace to default", () => {
    const r = validateNetworkPolicy({ metadata: { name: "x" }, spec: { podSelector: {} } }, "x.yaml");
    expect(r.value?.metadata).toEqual({ namespace: "default", name: "x" });
  });
});

describe("policyTypesOf", () => {
  it.each([
    { name: "absent, no egress", spec: { podSelector: {} }, want: ["Ingress"] },
    { name: "absent, egress rules", spec: { podSelector: {}, egress: [{}] }, want: ["Ingress", "Egress"] },
    { name: "absent, empty egress", spec: { podSelector: {}, egress: [] }, want: ["Ingress"] },
    { name: "empty list is absent", spec: { podSelector: {}, policyTypes: [] }, want: ["Ingress"] },
    { name: "explicit Egress only", spec: { podSelector: {}, policyTypes: ["Egress" as const], ingress: [{}] }, want: ["Egress"] },
  ])("$name", ({ spec, want }) => {
    expect([...policyTypesOf(spec)]).toEqual(want);
  });
});

describe("validatePod", () => {
  it("reads labels, named ports and pod IPs", () => {
    const r = validatePod({ metadata: { name: "p", namespace: "n", labels: { app: "web" } }, spec: { containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }] }, status: { podIP: "10.244.0.9", podIPs: [{ ip: "10.244.0.9" }, { ip: "fd00:10:244::9" }] } }, "p.yaml");
    expect(r.errors).toEqual([]);
    expect(r.value?.status?.podIPs).toEqual([{ ip: "10.244.0.9" }, { ip: "fd00:10:244::9" }]);
    expect(r.value?.spec.containers[0]?.ports).toEqual([{ name: "http", containerPort: 8080 }]);
  });
  it("rejects a container port out of range", () => {
    const r = validatePod({ metadata: { name: "p" }, spec: { containers: [{ ports: [{ containerPort: 70000 }] }] } }, "p.yaml");
    expect(r.errors.map((e) => e.message)).toEqual(["validate Pod default/p (p.yaml): spec.containers[0].ports[0].containerPort: 70000 is not in 1..65535"]);
  });
});
