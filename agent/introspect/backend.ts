// SPDX-License-Identifier: Apache-2.0
// AgentBackend (the API's contract) implemented over the Daemon: converts
// records and engine state into the API's plain domain values.
import type { Registry } from "prom-client";
import { parseAllDocuments } from "yaml";
import type { Daemon } from "../daemon.js";
import type { EndpointRecord } from "../endpoint/endpoint-store.js";
import { validateNetworkPolicy } from "../k8s/manifest-types.js";
import { formatSecurityLabels, type SecurityLabels } from "../identity/labels.js";
import { ReservedIdentity } from "../identity/reserved.js";
import { selectsEndpoint } from "../policy/compiler.js";
import { securityLabelsOf } from "../identity/labels.js";
import { tracePolicy } from "./trace.js";
import { dumpMap } from "./map-dump.js";
import {
  NotFoundError,
  type AgentBackend, type AgentStatus, type ComponentHealthInfo, type CreateEndpointParams, type EndpointInfo,
  type IdentityInfo, type MapDump, type PolicyInfo, type PolicyValidation, type TraceQuery, type TraceResult,
} from "../api/agent-state.js";

const VERSION = "0.1.0";

function labelsRecord(l: SecurityLabels): Record<string, string> {
  return Object.fromEntries(formatSecurityLabels(l).map((s) => {
    const i = s.indexOf("=");
    return [s.slice(0, i), s.slice(i + 1)];
  }));
}

const RESERVED: Array<[number, string]> = [
  [ReservedIdentity.HOST, "host"], [ReservedIdentity.WORLD, "world"], [ReservedIdentity.UNMANAGED, "unmanaged"],
  [ReservedIdentity.REMOTE_NODE, "remote-node"], [ReservedIdentity.KUBE_APISERVER, "kube-apiserver"],
];

/** The API's view of the running daemon. */
export class DaemonBackend implements AgentBackend {
  constructor(private readonly d: Daemon, private readonly registry: Registry) {}

  get flows(): AgentBackend["flows"] {
    return this.d.flows;
  }

  status(): AgentStatus {
    const d = this.d;
    return {
      version: VERSION,
      nodeName: d.config.nodeName,
      uptimeSeconds: Math.round((Date.now() - d.startedAt) / 1000),
      datapathMode: d.mode,
      podCidrs: d.config.podCidrs.map((c) => c.text),
      endpointCount: d.store.list().length,
      identityCount: d.engine.labelIdentities().length + d.engine.cidrIdentities.entries().length,
      policyCount: d.snapshot.policies.length,
      eventsLost: d.maps.metrics.eventsLost(),
      components: this.health(),
    };
  }

  health(): ComponentHealthInfo[] {
    const d = this.d;
    return [
      { name: "datapath", healthy: true, message: `loaded, ${d.mode} attach, pinned under ${d.config.bpfRoot}` },
      { name: "policy", healthy: d.lastRegenerateError === null, message: d.lastRegenerateError ?? `${d.regenerations} regenerations, last ${(d.desired?.computeMs ?? 0).toFixed(1)} ms` },
      {
        name: "cluster-source",
        // Disconnected from the API server is unhealthy, but enforcement goes on with the last state.
        healthy: (d.source?.healthy() ?? true) && d.snapshot.errors.length === 0,
        message: [
          d.source ? `${d.source.description}: ${d.source.healthy() ? "connected" : "disconnected, enforcing the last known state"}` : "",
          ...d.snapshot.errors.map((e) => `${e.source}: ${e.message}`),
        ].filter((x) => x !== "").join("; "),
      },
    ];
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  private info(r: EndpointRecord): EndpointInfo {
    const ep = this.d.desired?.endpoints.get(r.containerId);
    const pool = (ip: string): string => this.d.ipam.byContainer(r.containerId).find((a) => a.ip === ip)?.cidr.text ?? "";
    return {
      containerId: r.containerId, ifname: r.ifname, netns: r.netns, hostIfname: r.hostIfname, hostIfindex: r.hostIfindex,
      hostMac: r.hostMac, podMac: r.podMac, pod: { namespace: r.namespace, name: r.podName },
      ipv4: r.ipv4 ? { address: r.ipv4, prefixLength: 32, gateway: "169.254.1.1", pool: pool(r.ipv4) } : null,
      ipv6: r.ipv6 ? { address: r.ipv6, prefixLength: 128, gateway: "fe80::1", pool: pool(r.ipv6) } : null,
      identity: ep?.identity ?? 0,
      labels: ep ? labelsRecord(ep.labels) : {},
      state: !ep ? "waiting-for-identity" : ep.podKnown ? "ready" : "ready (no Pod manifest: namespace labels only)",
      createdAt: r.createdAt,
    };
  }

  async createEndpoint(p: CreateEndpointParams): Promise<EndpointInfo> {
    return this.info(await this.d.createEndpoint(p));
  }

  deleteEndpoint(containerId: string, ifname: string | null): Promise<boolean> {
    return this.d.deleteEndpoint(containerId, ifname);
  }

  listEndpoints(namespace: string | null): EndpointInfo[] {
    return this.d.store.list().filter((r) => namespace === null || r.namespace === namespace).map((r) => this.info(r));
  }

  getEndpoint(id: string): EndpointInfo {
    const r = this.d.store.get(id) ?? this.d.store.list().find((x) => `${x.namespace}/${x.podName}` === id);
    if (!r) throw new NotFoundError("endpoint", id);
    return this.info(r);
  }

  gcEndpoints(valid: ReadonlySet<string>): Promise<string[]> {
    return this.d.gcEndpoints(valid);
  }

  listIdentities(): IdentityInfo[] {
    const counts = new Map<number, number>();
    for (const ep of this.d.desired?.endpoints.values() ?? []) counts.set(ep.identity, (counts.get(ep.identity) ?? 0) + 1);
    return [
      ...RESERVED.map(([id, name]) => ({ id, labels: { [`reserved:${name}`]: "" }, reserved: true, endpointCount: 0 })),
      ...this.d.engine.labelIdentities().map((e) => ({ id: e.identity, labels: labelsRecord(e.labels), reserved: false, endpointCount: counts.get(e.identity) ?? 0 })),
      ...this.d.engine.cidrIdentities.entries().map((e) => ({ id: e.identity, labels: { [`cidr:${e.cidr}`]: "" }, reserved: false, endpointCount: 0 })),
    ];
  }

  getIdentity(id: number): IdentityInfo {
    const i = this.listIdentities().find((x) => x.id === id);
    if (!i) throw new NotFoundError("identity", String(id));
    return i;
  }

  listPolicies(namespace: string | null): PolicyInfo[] {
    const d = this.d;
    const nsLabels = new Map(d.snapshot.namespaces.map((n) => [n.metadata.name, n.metadata.labels]));
    return d.snapshot.policies.filter((p) => namespace === null || p.metadata.namespace === namespace).map((p) => {
      const selected = d.store.list().filter((r) => {
        const pod = d.snapshot.pods.find((x) => x.metadata.namespace === r.namespace && x.metadata.name === r.podName);
        const labels = securityLabelsOf(r.namespace, pod?.metadata.labels, nsLabels.get(r.namespace));
        return selectsEndpoint(p, { identity: 0, labels, namedPorts: [] });
      });
      const types = p.spec.policyTypes ?? (p.spec.egress ? ["Ingress", "Egress"] : ["Ingress"]);
      const peers = (xs: readonly { podSelector?: unknown; namespaceSelector?: unknown; ipBlock?: { cidr: string } }[] | undefined): string =>
        !xs || xs.length === 0 ? "any" : xs.map((x) => x.ipBlock ? x.ipBlock.cidr : JSON.stringify({ pod: x.podSelector, ns: x.namespaceSelector })).join(" | ");
      const ports = (xs: readonly { protocol?: string; port?: number | string; endPort?: number }[] | undefined): string =>
        !xs || xs.length === 0 ? "any" : xs.map((x) => `${x.protocol ?? "TCP"}/${x.port ?? "any"}${x.endPort ? `-${x.endPort}` : ""}`).join(", ");
      return {
        namespace: p.metadata.namespace, name: p.metadata.name,
        podSelector: JSON.stringify(p.spec.podSelector ?? {}),
        policyTypes: types.map((t) => (t === "Ingress" ? "ingress" : "egress")),
        rules: [
          ...(p.spec.ingress ?? []).map((r, i) => ({ ruleRef: i, direction: "ingress" as const, peers: peers(r.from), ports: ports(r.ports) })),
          ...(p.spec.egress ?? []).map((r, i) => ({ ruleRef: i, direction: "egress" as const, peers: peers(r.to), ports: ports(r.ports) })),
        ],
        selectedEndpoints: selected.map((r) => `${r.namespace}/${r.podName}`),
        revision: d.regenerations,
      };
    });
  }

  getPolicy(namespace: string, name: string): PolicyInfo {
    const p = this.listPolicies(namespace).find((x) => x.name === name);
    if (!p) throw new NotFoundError("policy", `${namespace}/${name}`);
    return p;
  }

  validatePolicy(manifestYaml: string): PolicyValidation {
    const errors: PolicyValidation["errors"][number][] = [];
    const policies: { namespace: string; name: string }[] = [];
    parseAllDocuments(manifestYaml).forEach((doc, i) => {
      if (doc.errors.length > 0) {
        errors.push({ document: i, path: "", message: doc.errors[0]?.message ?? "invalid YAML" });
        return;
      }
      const v = validateNetworkPolicy(doc.toJS(), `document ${i}`);
      if (v.value) policies.push({ namespace: v.value.metadata.namespace, name: v.value.metadata.name });
      for (const e of v.errors) errors.push({ document: i, path: e.path, message: e.message });
    });
    return { errors, policies };
  }

  tracePolicy(q: TraceQuery): TraceResult {
    return tracePolicy(this.d, q);
  }

  dumpMap(name: string, endpoint: string | null): MapDump {
    return dumpMap(this.d, name, endpoint);
  }
}
