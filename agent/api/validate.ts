// SPDX-License-Identifier: Apache-2.0
// Request validation: every RPC's decoded request -> the backend's domain
// parameters, or a RequestValidationError (INVALID_ARGUMENT) whose message
// names the method and the field, e.g.
// "endpoint.create: containerId: must be non-empty".
//
// API: one validate<Method>() per RPC taking a message, plus the enum
// conversions protocolNumber()/protocolEnum() shared with the handlers.
import * as net from "node:net";
import type { CreateEndpointRequest__Output } from "../generated/proto/twill/v1/CreateEndpointRequest.js";
import type { DeleteEndpointRequest__Output } from "../generated/proto/twill/v1/DeleteEndpointRequest.js";
import type { DumpMapRequest__Output } from "../generated/proto/twill/v1/DumpMapRequest.js";
import type { GcEndpointsRequest__Output } from "../generated/proto/twill/v1/GcEndpointsRequest.js";
import type { GetEndpointRequest__Output } from "../generated/proto/twill/v1/GetEndpointRequest.js";
import type { GetIdentityRequest__Output } from "../generated/proto/twill/v1/GetIdentityRequest.js";
import type { GetPolicyRequest__Output } from "../generated/proto/twill/v1/GetPolicyRequest.js";
import type { ListEndpointsRequest__Output } from "../generated/proto/twill/v1/ListEndpointsRequest.js";
import type { ListPoliciesRequest__Output } from "../generated/proto/twill/v1/ListPoliciesRequest.js";
import type { ObserveRequest__Output } from "../generated/proto/twill/v1/ObserveRequest.js";
import type { PodRef__Output } from "../generated/proto/twill/v1/PodRef.js";
import type { Protocol__Output } from "../generated/proto/twill/v1/Protocol.js";
import type { TracePeer__Output } from "../generated/proto/twill/v1/TracePeer.js";
import type { TracePolicyRequest__Output } from "../generated/proto/twill/v1/TracePolicyRequest.js";
import type { ValidatePolicyRequest__Output } from "../generated/proto/twill/v1/ValidatePolicyRequest.js";
import type { FlowFilter } from "../monitor/flow.js";
import type { CreateEndpointParams, FamilyRequest, PodRef, TracePeerQuery, TraceQuery } from "./agent-state.js";
import { RequestValidationError } from "./errors.js";

/** Largest manifest policy.validate accepts. */
export const MAX_MANIFEST_BYTES = 1 << 20;

// CNI spec: container ids are alphanumeric plus "_", "." and "-". We also
// use them as file names (endpoint store), so this check is a safety one.
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const MAP_NAME = /^[a-z][a-z0-9_]{0,14}$/;

const PROTOCOL_NUMBERS: Readonly<Record<Protocol__Output, number>> = {
  PROTOCOL_UNSPECIFIED: 0,
  PROTOCOL_ICMP: 1,
  PROTOCOL_TCP: 6,
  PROTOCOL_UDP: 17,
  PROTOCOL_ICMPV6: 58,
  PROTOCOL_SCTP: 132,
};

/** IANA number of a proto Protocol (0 for unspecified). */
export function protocolNumber(p: Protocol__Output): number {
  return PROTOCOL_NUMBERS[p];
}

/** Proto Protocol for an IANA number; unknown numbers are UNSPECIFIED. */
export function protocolEnum(n: number): Protocol__Output {
  for (const [k, v] of Object.entries(PROTOCOL_NUMBERS)) if (v === n) return k as Protocol__Output;
  return "PROTOCOL_UNSPECIFIED";
}

class Checker {
  constructor(readonly method: string) {}

  fail(field: string, detail: string): never {
    throw new RequestValidationError(this.method, field, detail);
  }

  nonEmpty(field: string, v: string): string {
    if (v.length === 0) this.fail(field, "must be non-empty");
    return v;
  }

  containerId(field: string, v: string): string {
    this.nonEmpty(field, v);
    if (!CONTAINER_ID.test(v)) this.fail(field, `${JSON.stringify(v)} must be alphanumeric with "_", "." or "-" (at most 255 characters)`);
    return v;
  }

  ifname(field: string, v: string): string {
    this.nonEmpty(field, v);
    // Linux IFNAMSIZ is 16 including the NUL; "/" and whitespace are refused by the kernel.
    if (v.length > 15) this.fail(field, `${JSON.stringify(v)} is longer than 15 characters`);
    if (/[\s/:]/.test(v) || v === "." || v === "..") this.fail(field, `${JSON.stringify(v)} is not a valid interface name`);
    return v;
  }

  mac(field: string, v: string): string {
    const lower = this.nonEmpty(field, v).toLowerCase();
    if (!MAC.test(lower)) this.fail(field, `${JSON.stringify(v)} is not a MAC address (aa:bb:cc:dd:ee:ff)`);
    return lower;
  }

  namespace(field: string, v: string): string {
    if (!DNS_LABEL.test(v)) this.fail(field, `${JSON.stringify(v)} is not a valid namespace name`);
    return v;
  }

  podName(field: string, v: string): string {
    if (!DNS_SUBDOMAIN.test(v)) this.fail(field, `${JSON.stringify(v)} is not a valid pod name`);
    return v;
  }

  podRef(field: string, p: PodRef__Output | null): PodRef | null {
    if (p === null || (p.namespace === "" && p.name === "")) return null;
    if (p.namespace === "") this.fail(`${field}.namespace`, "must be non-empty when pod.name is set");
    if (p.name === "") this.fail(`${field}.name`, "must be non-empty when pod.namespace is set");
    return { namespace: this.namespace(`${field}.namespace`, p.namespace), name: this.podName(`${field}.name`, p.name) };
  }

  port(field: string, v: number): number {
    if (!Number.isInteger(v) || v < 0 || v > 65535) this.fail(field, `${v} is not a port (0-65535)`);
    return v;
  }
}

/** Endpoints.Create. */
export function validateCreateEndpoint(r: CreateEndpointRequest__Output): CreateEndpointParams {
  const c: Checker = new Checker("endpoint.create");
  const netns = c.nonEmpty("netns", r.netns);
  if (!netns.startsWith("/")) c.fail("netns", `${JSON.stringify(netns)} must be an absolute path`);
  if (r.hostIfindex <= 0) c.fail("hostIfindex", "must be a positive ifindex");
  const families: Record<string, FamilyRequest> = {
    IP_FAMILY_UNSPECIFIED: null,
    IP_FAMILY_IPV4: "ipv4",
    IP_FAMILY_IPV6: "ipv6",
    IP_FAMILY_DUAL: "dual",
  };
  const family = families[r.family];
  if (family === undefined) c.fail("family", `unknown family ${String(r.family)}`);
  return {
    containerId: c.containerId("containerId", r.containerId),
    ifname: c.ifname("ifname", r.ifname),
    netns,
    hostIfname: c.ifname("hostIfname", r.hostIfname),
    hostIfindex: r.hostIfindex,
    hostMac: c.mac("hostMac", r.hostMac),
    podMac: c.mac("podMac", r.podMac),
    pod: c.podRef("pod", r.pod),
    family,
    requestedIps: requestedIps(c, "requestedIps", r.requestedIps),
    assignedIps: requestedIps(c, "assignedIps", r.assignedIps ?? []),
  };
}

function requestedIps(c: Checker, field: string, ips: readonly string[]): string[] {
  const seen = new Set<number>();
  for (const ip of ips) {
    const fam = net.isIP(ip);
    if (fam === 0) c.fail(field, `${JSON.stringify(ip)} is not an IP address`);
    if (seen.has(fam)) c.fail(field, `more than one IPv${fam} address`);
    seen.add(fam);
  }
  return [...ips];
}

/** Endpoints.Delete. */
export function validateDeleteEndpoint(r: DeleteEndpointRequest__Output): { containerId: string; ifname: string | null } {
  const c: Checker = new Checker("endpoint.delete");
  return {
    containerId: c.containerId("containerId", r.containerId),
    ifname: r.ifname === "" ? null : c.ifname("ifname", r.ifname),
  };
}

/** Endpoints.List. */
export function validateListEndpoints(r: ListEndpointsRequest__Output): { namespace: string | null } {
  const c: Checker = new Checker("endpoint.list");
  return { namespace: r.namespace === "" ? null : c.namespace("namespace", r.namespace) };
}

/** Endpoints.Get: a container id or "namespace/pod". */
export function validateGetEndpoint(r: GetEndpointRequest__Output): { id: string } {
  const c: Checker = new Checker("endpoint.get");
  const id = c.nonEmpty("id", r.id);
  const slash = id.indexOf("/");
  if (slash < 0) return { id: c.containerId("id", id) };
  c.namespace("id", id.slice(0, slash));
  c.podName("id", id.slice(slash + 1));
  return { id };
}

/** Endpoints.Gc. */
export function validateGcEndpoints(r: GcEndpointsRequest__Output): { valid: Set<string> } {
  const c: Checker = new Checker("endpoint.gc");
  return { valid: new Set(r.validContainerIds.map((id, i) => c.containerId(`validContainerIds[${i}]`, id))) };
}

/** Identities.Get. */
export function validateGetIdentity(r: GetIdentityRequest__Output): { id: number } {
  const c: Checker = new Checker("identity.get");
  if (r.id === 0) c.fail("id", "must be non-zero (0 means any identity, it names none)");
  return { id: r.id };
}

/** Policies.List. */
export function validateListPolicies(r: ListPoliciesRequest__Output): { namespace: string | null } {
  const c: Checker = new Checker("policy.list");
  return { namespace: r.namespace === "" ? null : c.namespace("namespace", r.namespace) };
}

/** Policies.Get. */
export function validateGetPolicy(r: GetPolicyRequest__Output): { namespace: string; name: string } {
  const c: Checker = new Checker("policy.get");
  c.nonEmpty("namespace", r.namespace);
  return { namespace: c.namespace("namespace", r.namespace), name: c.podName("name", c.nonEmpty("name", r.name)) };
}

/** Policies.Validate. */
export function validateValidatePolicy(r: ValidatePolicyRequest__Output): { manifestYaml: string } {
  const c: Checker = new Checker("policy.validate");
  if (r.manifestYaml.trim() === "") c.fail("manifestYaml", "must be non-empty");
  if (Buffer.byteLength(r.manifestYaml) > MAX_MANIFEST_BYTES) c.fail("manifestYaml", `larger than ${MAX_MANIFEST_BYTES} bytes`);
  return { manifestYaml: r.manifestYaml };
}

function tracePeer(c: Checker, field: string, p: TracePeer__Output | null): TracePeerQuery {
  if (p === null || p.peer === undefined) c.fail(field, "must be set (a pod or an IP)");
  if (p.peer === "ip") {
    const ip = p.ip ?? "";
    if (net.isIP(ip) === 0) c.fail(`${field}.ip`, `${JSON.stringify(ip)} is not an IP address`);
    return { kind: "ip", ip };
  }
  const pod = c.podRef(`${field}.pod`, p.pod ?? null);
  if (pod === null) c.fail(`${field}.pod`, "must name a namespace and a pod");
  return { kind: "pod", pod };
}

/** Policies.Trace. */
export function validateTracePolicy(r: TracePolicyRequest__Output): TraceQuery {
  const c: Checker = new Checker("policy.trace");
  const from = tracePeer(c, "from", r.from);
  const to = tracePeer(c, "to", r.to);
  const protocol = protocolNumber(r.protocol);
  if (protocol === 0) c.fail("protocol", "must be set (TCP, UDP, SCTP, ICMP or ICMPV6)");
  const port = c.port("port", r.port);
  const icmp = protocol === 1 || protocol === 58;
  if (icmp && port !== 0) c.fail("port", `must be 0 for ${r.protocol.replace("PROTOCOL_", "")}`);
  if (!icmp && port === 0) c.fail("port", `must be 1-65535 for ${r.protocol.replace("PROTOCOL_", "")}`);
  return { from, to, protocol, port };
}

/** Datapath.DumpMap. */
export function validateDumpMap(r: DumpMapRequest__Output): { name: string; endpoint: string | null } {
  const c: Checker = new Checker("datapath.dumpMap");
  const name = c.nonEmpty("name", r.name);
  if (!MAP_NAME.test(name)) c.fail("name", `${JSON.stringify(name)} is not a map name (lowercase, at most 15 characters)`);
  return { name, endpoint: r.endpoint === "" ? null : r.endpoint };
}

/** Observer.Observe: filters plus replay/follow options. */
export function validateObserve(r: ObserveRequest__Output): { filter: FlowFilter; last: number | null; follow: boolean } {
  const c: Checker = new Checker("observe");
  let pod: string | null = null;
  if (r.pod !== "") {
    const slash = r.pod.indexOf("/");
    if (slash >= 0) {
      c.namespace("pod", r.pod.slice(0, slash));
      c.podName("pod", r.pod.slice(slash + 1));
    } else {
      c.podName("pod", r.pod);
    }
    pod = r.pod;
  }
  const verdicts: Record<string, FlowFilter["verdict"]> = {
    VERDICT_UNSPECIFIED: null,
    VERDICT_FORWARDED: "forwarded",
    VERDICT_DROPPED: "dropped",
  };
  const verdict = verdicts[r.verdict];
  if (verdict === undefined) c.fail("verdict", `unknown verdict ${String(r.verdict)}`);
  const protocol = protocolNumber(r.protocol);
  const port = c.port("port", r.port);
  return {
    filter: {
      namespace: r.namespace === "" ? null : c.namespace("namespace", r.namespace),
      pod,
      identity: r.identity === 0 ? null : r.identity,
      verdict,
      protocol: protocol === 0 ? null : protocol,
      port: port === 0 ? null : port,
    },
    // 0: nothing when following (only new flows), everything kept otherwise.
    last: r.last === 0 ? (r.follow ? 0 : null) : r.last,
    follow: r.follow,
  };
}
