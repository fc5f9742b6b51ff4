// SPDX-License-Identifier: Apache-2.0
// In-memory AgentBackend for the API/CLI unit tests only (test/unit/api-*
// and cli-*): it lets those tests exercise the real grpc server, handlers,
// validation, error mapping and CLI formatting. The real agent core is
// tested end to end elsewhere; nothing outside test/unit may import this.
import {
  AlreadyExistsError,
  NotFoundError,
  UnavailableError,
  type AgentBackend,
  type AgentStatus,
  type CreateEndpointParams,
  type EndpointInfo,
  type IdentityInfo,
  type MapDump,
  type PolicyInfo,
  type PolicyValidation,
  type TraceQuery,
  type TraceResult,
} from "../../agent/api/agent-state.js";
import { IpamExhaustedError } from "../../agent/ipam/allocator.js";
import type { Flow, FlowPeer } from "../../agent/monitor/flow.js";
import { FlowBuffer } from "../../agent/monitor/flow-buffer.js";

/** A flow between two peers with sensible defaults. */
export function makeFlow(over: Partial<Flow> & { src?: Partial<FlowPeer>; dst?: Partial<FlowPeer> } = {}): Flow {
  const { src, dst, ...rest } = over;
  return {
    timeNs: 1_767_225_600_123_456_789n, // 2026-01-01T00:00:00.123456789Z
    type: "new-conn",
    source: { ip: "10.244.0.5", port: 40000, identity: 256, namespace: "default", pod: "client", labels: { app: "client" }, ...src },
    destination: { ip: "10.244.0.6", port: 80, identity: 257, namespace: "default", pod: "web", labels: { app: "web" }, ...dst },
    family: 4,
    protocol: 6,
    direction: "egress",
    verdict: "forwarded",
    dropReason: null,
    ruleRef: 7,
    lengthBytes: 60,
    ifindex: 12,
    ...rest,
  };
}

/** Fixture endpoint. */
export const WEB_ENDPOINT: EndpointInfo = {
  containerId: "c0ffee0000000000000000000000000000000000000000000000000000000001",
  ifname: "eth0",
  netns: "/var/run/netns/web",
  hostIfname: "tw1a2b3c4d5e6",
  hostIfindex: 12,
  hostMac: "02:00:00:00:00:01",
  podMac: "02:00:00:00:00:02",
  pod: { namespace: "default", name: "web" },
  ipv4: { address: "10.244.0.6", prefixLength: 32, gateway: "169.254.1.1", pool: "10.244.0.0/24" },
  ipv6: { address: "fd00:10:244::6", prefixLength: 128, gateway: "fe80::1", pool: "fd00:10:244::/64" },
  identity: 257,
  labels: { app: "web" },
  state: "ready",
  createdAt: "2026-01-01T00:00:00.000Z",
};

const IDENTITIES: IdentityInfo[] = [
  { id: 2, labels: { "reserved:world": "" }, reserved: true, endpointCount: 0 },
  { id: 257, labels: { app: "web", "k8s:io.kubernetes.pod.namespace": "default" }, reserved: false, endpointCount: 1 },
];

const POLICY: PolicyInfo = {
  namespace: "default",
  name: "web-allow-client",
  podSelector: "app=web",
  policyTypes: ["ingress"],
  rules: [{ ruleRef: 7, direction: "ingress", peers: "app=client", ports: "TCP/80" }],
  selectedEndpoints: ["default/web"],
  revision: 3,
};

/** The fake: fixed fixtures plus a small address pool for Create. */
export class FakeBackend implements AgentBackend {
  readonly flows = new FlowBuffer(16);
  readonly endpoints = new Map<string, EndpointInfo>([[WEB_ENDPOINT.containerId, WEB_ENDPOINT]]);
  /** Free IPv4 host numbers left in the fake pool (10.244.0.10 ...). */
  poolFree = 2;
  unavailable = false;
  metricsText = '# HELP twill_drops_total Drops.\n# TYPE twill_drops_total counter\ntwill_drops_total{reason="POLICY"} 3\n';

  status(): AgentStatus {
    if (this.unavailable) throw new UnavailableError("read status: datapath not loaded yet");
    return {
      version: "0.1.0-test",
      nodeName: "node-a",
      uptimeSeconds: 42,
      datapathMode: "tcx",
      podCidrs: ["10.244.0.0/24", "fd00:10:244::/64"],
      endpointCount: this.endpoints.size,
      identityCount: IDENTITIES.length,
      policyCount: 1,
      eventsLost: 5n,
      components: [
        { name: "loader", healthy: true, message: "attached" },
        { name: "k8s", healthy: true, message: "synced" },
      ],
    };
  }

  health() {
    return this.status().components;
  }

  metrics(): string {
    return this.metricsText;
  }

  createEndpoint(p: CreateEndpointParams): EndpointInfo {
    const existing = this.endpoints.get(p.containerId);
    if (existing !== undefined) {
      if (existing.ifname === p.ifname) return existing;
      throw new AlreadyExistsError("endpoint", p.containerId, `already has interface ${existing.ifname}`);
    }
    if (this.poolFree === 0) throw new IpamExhaustedError("10.244.0.8/30");
    const host = 10 + this.endpoints.size;
    this.poolFree--;
    const ep: EndpointInfo = {
      ...p,
      ipv4: { address: `10.244.0.${host}`, prefixLength: 32, gateway: "169.254.1.1", pool: "10.244.0.0/24" },
      ipv6: null,
      identity: 0,
      labels: {},
      state: "waiting-for-identity",
      createdAt: "2026-01-01T00:00:00.000Z",
    };
    this.endpoints.set(p.containerId, ep);
    return ep;
  }

  deleteEndpoint(containerId: string): boolean {
    return this.endpoints.delete(containerId);
  }

  listEndpoints(namespace: string | null): EndpointInfo[] {
    return [...this.endpoints.values()].filter((e) => namespace === null || e.pod?.namespace === namespace);
  }

  getEndpoint(id: string): EndpointInfo {
    for (const e of this.endpoints.values()) {
      if (e.containerId === id || (e.pod !== null && `${e.pod.namespace}/${e.pod.name}` === id)) return e;
    }
    throw new NotFoundError("endpoint", id);
  }

  gcEndpoints(valid: ReadonlySet<string>): string[] {
    const removed = [...this.endpoints.keys()].filter((id) => !valid.has(id));
    for (const id of removed) this.endpoints.delete(id);
    return removed;
  }

  listIdentities(): IdentityInfo[] {
    return IDENTITIES;
  }

  getIdentity(id: number): IdentityInfo {
    const i = IDENTITIES.find((x) => x.id === id);
    if (i === undefined) throw new NotFoundError("identity", String(id));
    return i;
  }

  listPolicies(): PolicyInfo[] {
    return [POLICY];
  }

  getPolicy(namespace: string, name: string): PolicyInfo {
    if (namespace === POLICY.namespace && name === POLICY.name) return POLICY;
    throw new NotFoundError("policy", `${namespace}/${name}`);
  }

  validatePolicy(yaml: string): PolicyValidation {
    if (yaml.includes("port: http-typo")) {
      return { errors: [{ document: 0, path: "spec.ingress[0].ports[0].port", message: 'named port "http-typo" is not defined' }], policies: [] };
    }
    return { errors: [], policies: [{ namespace: "default", name: "web-allow-client" }] };
  }

  /** Allows default/client -> default/web on TCP/80 only. */
  tracePolicy(q: TraceQuery): TraceResult {
    const name = (p: TraceQuery["from"]): string => (p.kind === "pod" ? `${p.pod.namespace}/${p.pod.name}` : p.ip);
    if (name(q.to) !== "default/web") throw new NotFoundError("pod", name(q.to));
    const allowed = name(q.from) === "default/client" && q.protocol === 6 && q.port === 80;
    const rule = allowed ? { ruleRef: 7, policyNamespace: "default", policyName: "web-allow-client", ruleIndex: 0 } : null;
    return {
      verdict: allowed ? "allowed" : "denied",
      fromIdentity: name(q.from) === "default/client" ? 256 : 2,
      toIdentity: 257,
      rule,
      steps: [
        {
          direction: "ingress",
          endpoint: "default/web",
          isolated: true,
          verdict: allowed ? "allowed" : "denied",
          rule,
          reason: allowed ? "allowed by rule" : "no rule matches",
        },
      ],
    };
  }

  dumpMap(name: string): MapDump {
    if (name !== "twill_ipcache") throw new NotFoundError("map", name);
    return {
      name,
      columns: ["prefix", "identity", "flags"],
      rows: [
        ["10.244.0.6/32", "257", "local"],
        ["0.0.0.0/0", "2", ""],
      ],
    };
  }
}
