// SPDX-License-Identifier: Apache-2.0
// The contract between the gRPC API layer and the agent core.
//
// api/ handlers validate requests, call an AgentBackend and convert its plain
// domain values into proto messages. The agent core implements AgentBackend;
// it never sees proto types or grpc-js. It reports failures by throwing the
// typed errors below (or IpamExhaustedError/IpamConflictError from ipam/),
// which api/errors.ts maps to gRPC status codes in one place.
//
// Exports: AgentBackend, the domain types it uses, and the error classes
// NotFoundError, AlreadyExistsError, InvalidArgumentError,
// ResourceExhaustedError, UnavailableError.
import type { Flow, FlowFilter } from "../monitor/flow.js";
import type { FlowSource } from "../monitor/flow-buffer.js";

/** A value or a promise of it: implementations may be synchronous. */
export type Awaitable<T> = T | Promise<T>;

/** Direction from the pod's point of view (egress = datapath from_pod). */
export type Direction = "egress" | "ingress";

/** A pod by namespace and name. */
export interface PodRef {
  readonly namespace: string;
  readonly name: string;
}

/** Families the CNI plugin asks for; null = every family the node has a pool for. */
export type FamilyRequest = "ipv4" | "ipv6" | "dual" | null;

/** What the CNI plugin knows when it asks for an endpoint (all validated). */
export interface CreateEndpointParams {
  readonly containerId: string;
  readonly ifname: string;
  readonly netns: string;
  readonly hostIfname: string;
  readonly hostIfindex: number;
  /** Lowercase aa:bb:cc:dd:ee:ff. */
  readonly hostMac: string;
  readonly podMac: string;
  /** From CNI_ARGS; null when the runtime did not say (not Kubernetes). */
  readonly pod: PodRef | null;
  readonly family: FamilyRequest;
  /** Specific addresses asked for (CNI_ARGS IP=, runtimeConfig ips); at most one per family. */
  readonly requestedIps: readonly string[];
  /** Addresses a delegated IPAM plugin allocated: used as-is, nothing is allocated. */
  readonly assignedIps: readonly string[];
}

/** One address of an endpoint and how the pod routes through the host. */
export interface IpConfigInfo {
  readonly address: string;
  readonly prefixLength: number;
  /** 169.254.1.1 or fe80::1 (docs/architecture.md "Pod wiring"). */
  readonly gateway: string;
  /** The pool CIDR the address came from. */
  readonly pool: string;
}

/** An endpoint as the API shows it. */
export interface EndpointInfo {
  readonly containerId: string;
  readonly ifname: string;
  readonly netns: string;
  readonly hostIfname: string;
  readonly hostIfindex: number;
  readonly hostMac: string;
  readonly podMac: string;
  readonly pod: PodRef | null;
  readonly ipv4: IpConfigInfo | null;
  readonly ipv6: IpConfigInfo | null;
  /** 0 while not resolved. */
  readonly identity: number;
  readonly labels: Readonly<Record<string, string>>;
  /** "ready", "waiting-for-identity", "regenerating", "failed: <why>". */
  readonly state: string;
  /** RFC 3339. */
  readonly createdAt: string;
}

/** A security identity. */
export interface IdentityInfo {
  readonly id: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly reserved: boolean;
  readonly endpointCount: number;
}

/** One compiled allow rule of a policy. */
export interface PolicyRuleInfo {
  readonly ruleRef: number;
  readonly direction: Direction;
  /** Human-readable peers ("app=db in ns prod", "10.0.0.0/8", "any"). */
  readonly peers: string;
  /** "TCP/80, UDP/53" or "any". */
  readonly ports: string;
}

/** A network policy the agent enforces. */
export interface PolicyInfo {
  readonly namespace: string;
  readonly name: string;
  readonly podSelector: string;
  readonly policyTypes: readonly Direction[];
  readonly rules: readonly PolicyRuleInfo[];
  /** "namespace/pod" of the local endpoints it selects. */
  readonly selectedEndpoints: readonly string[];
  readonly revision: number;
}

/** A problem found in a manifest by validatePolicy. */
export interface ValidationIssueInfo {
  /** 0-based YAML document index. */
  readonly document: number;
  /** Field path, e.g. "spec.ingress[0].ports[1].port"; "" for the document. */
  readonly path: string;
  readonly message: string;
}

/** Outcome of validatePolicy; valid iff errors is empty. */
export interface PolicyValidation {
  readonly errors: readonly ValidationIssueInfo[];
  readonly policies: readonly PodRef[];
}

/** One side of a traced flow. */
export type TracePeerQuery =
  | { readonly kind: "pod"; readonly pod: PodRef }
  | { readonly kind: "ip"; readonly ip: string };

/** A flow to evaluate against the current policies. */
export interface TraceQuery {
  readonly from: TracePeerQuery;
  readonly to: TracePeerQuery;
  /** IANA protocol number (6, 17, 132, 1, 58). */
  readonly protocol: number;
  /** Destination port; 0 for ICMP. */
  readonly port: number;
}

/** The rule that allowed a direction. */
export interface DecidingRuleInfo {
  readonly ruleRef: number;
  readonly policyNamespace: string;
  readonly policyName: string;
  readonly ruleIndex: number;
}

/** Verdict of a trace or of one of its steps. */
export type TraceVerdictValue = "allowed" | "denied";

/** Egress of the source pod or ingress of the destination pod. */
export interface TraceStepInfo {
  readonly direction: Direction;
  /** "namespace/pod". */
  readonly endpoint: string;
  readonly isolated: boolean;
  readonly verdict: TraceVerdictValue;
  readonly rule: DecidingRuleInfo | null;
  readonly reason: string;
}

/** Result of tracePolicy. */
export interface TraceResult {
  readonly verdict: TraceVerdictValue;
  readonly fromIdentity: number;
  readonly toIdentity: number;
  /** The rule that decided (for a deny: none; the absence of a rule denies). */
  readonly rule: DecidingRuleInfo | null;
  readonly steps: readonly TraceStepInfo[];
}

/** A map decoded into printable columns. */
export interface MapDump {
  readonly name: string;
  readonly columns: readonly string[];
  /** Each row has one value per column. */
  readonly rows: readonly (readonly string[])[];
}

/** Health of one agent component. */
export interface ComponentHealthInfo {
  readonly name: string;
  readonly healthy: boolean;
  readonly message: string;
}

/** Agent status for `twill status`. */
export interface AgentStatus {
  readonly version: string;
  readonly nodeName: string;
  readonly uptimeSeconds: number;
  readonly datapathMode: "tcx" | "clsact" | "none";
  readonly podCidrs: readonly string[];
  readonly endpointCount: number;
  readonly identityCount: number;
  readonly policyCount: number;
  /** Events lost in the kernel ring buffer since start. */
  readonly eventsLost: bigint;
  readonly components: readonly ComponentHealthInfo[];
}

/**
 * What the API needs from the agent core. Every request is validated
 * before it reaches these methods (api/validate.ts), so implementations may
 * trust shapes (non-empty ids, ports in range, well-formed IPs and MACs).
 * Failures are thrown as the error classes of this module.
 */
export interface AgentBackend {
  status(): Awaitable<AgentStatus>;
  /** Components with their health; the API derives the overall flag. */
  health(): Awaitable<readonly ComponentHealthInfo[]>;
  /** Prometheus text exposition of the agent's registry. */
  metrics(): Awaitable<string>;

  /**
   * Allocate addresses, record and program an endpoint. Must be idempotent
   * for the same containerId + ifname (return the existing endpoint);
   * AlreadyExistsError for the same containerId with another ifname;
   * IpamExhaustedError (or ResourceExhaustedError) when a pool is full.
   */
  createEndpoint(params: CreateEndpointParams): Awaitable<EndpointInfo>;
  /** Remove and release; false (not an error) if there was nothing. */
  deleteEndpoint(containerId: string, ifname: string | null): Awaitable<boolean>;
  listEndpoints(namespace: string | null): Awaitable<readonly EndpointInfo[]>;
  /** id: a container id or "namespace/pod"; NotFoundError if unknown. */
  getEndpoint(id: string): Awaitable<EndpointInfo>;
  /** Delete every endpoint whose container is not in valid; returns the removed ids. */
  gcEndpoints(valid: ReadonlySet<string>): Awaitable<readonly string[]>;

  listIdentities(): Awaitable<readonly IdentityInfo[]>;
  /** NotFoundError if unknown. */
  getIdentity(id: number): Awaitable<IdentityInfo>;

  listPolicies(namespace: string | null): Awaitable<readonly PolicyInfo[]>;
  /** NotFoundError if unknown. */
  getPolicy(namespace: string, name: string): Awaitable<PolicyInfo>;
  /** Problems in the manifest are results, not thrown errors. */
  validatePolicy(manifestYaml: string): Awaitable<PolicyValidation>;
  /** NotFoundError if a pod peer is unknown. */
  tracePolicy(query: TraceQuery): Awaitable<TraceResult>;

  /** NotFoundError for an unknown map or endpoint. */
  dumpMap(name: string, endpoint: string | null): Awaitable<MapDump>;

  /** Decoded flows: normally the agent's FlowBuffer. */
  readonly flows: FlowSource;
}

/** Re-exported so backends import their whole contract from one module. */
export type { Flow, FlowFilter, FlowSource };

/** Something named by a request does not exist. */
export class NotFoundError extends Error {
  constructor(readonly kind: string, readonly id: string) {
    super(`find ${kind}: ${id} not found`);
    this.name = "NotFoundError";
  }
}

/** A create conflicts with an existing object. */
export class AlreadyExistsError extends Error {
  constructor(readonly kind: string, readonly id: string, detail: string) {
    super(`create ${kind} ${id}: ${detail}`);
    this.name = "AlreadyExistsError";
  }
}

/** A request the backend cannot act on (beyond shape validation). */
export class InvalidArgumentError extends Error {
  constructor(readonly field: string, detail: string) {
    super(`${field}: ${detail}`);
    this.name = "InvalidArgumentError";
  }
}

/** A bounded resource (other than an IPAM pool, see IpamExhaustedError) is full. */
export class ResourceExhaustedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ResourceExhaustedError";
  }
}

/** The agent cannot serve this yet (starting, datapath not loaded). */
export class UnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnavailableError";
  }
}
