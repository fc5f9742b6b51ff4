// SPDX-License-Identifier: Apache-2.0
// Request validation messages (they name method and field) and the one
// mapping from typed errors to gRPC status codes.
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from "../../agent/api/agent-state.js";
import { RequestValidationError, statusCodeFor, toServiceError } from "../../agent/api/errors.js";
import {
  validateCreateEndpoint,
  validateDeleteEndpoint,
  validateGcEndpoints,
  validateGetEndpoint,
  validateGetIdentity,
  validateObserve,
  validateTracePolicy,
  validateValidatePolicy,
} from "../../agent/api/validate.js";
import type { CreateEndpointRequest__Output } from "../../agent/generated/proto/twill/v1/CreateEndpointRequest.js";
import type { ObserveRequest__Output } from "../../agent/generated/proto/twill/v1/ObserveRequest.js";
import type { TracePolicyRequest__Output } from "../../agent/generated/proto/twill/v1/TracePolicyRequest.js";
import { IpamConflictError, IpamExhaustedError } from "../../agent/ipam/allocator.js";

const goodCreate: CreateEndpointRequest__Output = {
  containerId: "abc123",
  ifname: "eth0",
  netns: "/var/run/netns/x",
  hostIfname: "tw0123456789a",
  hostIfindex: 7,
  hostMac: "02:AA:bb:cc:dd:ee",
  podMac: "02:00:00:00:00:01",
  pod: { namespace: "default", name: "web-0" },
  family: "IP_FAMILY_UNSPECIFIED",
  requestedIps: [],
};

describe("endpoint.create validation", () => {
  it("accepts a full request and normalises MACs to lowercase", () => {
    const p = validateCreateEndpoint(goodCreate);
    expect(p.hostMac).toBe("02:aa:bb:cc:dd:ee");
    expect(p.family).toBeNull();
    expect(p.pod).toEqual({ namespace: "default", name: "web-0" });
  });

  it("treats an empty pod as unknown (runtime without Kubernetes)", () => {
    expect(validateCreateEndpoint({ ...goodCreate, pod: { namespace: "", name: "" } }).pod).toBeNull();
    expect(validateCreateEndpoint({ ...goodCreate, pod: null }).pod).toBeNull();
  });

  it.each([
    { name: "empty container id", patch: { containerId: "" }, msg: "endpoint.create: containerId: must be non-empty" },
    { name: "path in container id", patch: { containerId: "../etc" }, msg: 'endpoint.create: containerId: "../etc" must be alphanumeric' },
    { name: "empty ifname", patch: { ifname: "" }, msg: "endpoint.create: ifname: must be non-empty" },
    { name: "long ifname", patch: { ifname: "eth0123456789abc" }, msg: "endpoint.create: ifname: \"eth0123456789abc\" is longer than 15 characters" },
    { name: "relative netns", patch: { netns: "netns/x" }, msg: 'endpoint.create: netns: "netns/x" must be an absolute path' },
    { name: "zero ifindex", patch: { hostIfindex: 0 }, msg: "endpoint.create: hostIfindex: must be a positive ifindex" },
    { name: "bad MAC", patch: { podMac: "02:00:00:00:00" }, msg: 'endpoint.create: podMac: "02:00:00:00:00" is not a MAC address' },
    { name: "pod without namespace", patch: { pod: { namespace: "", name: "x" } }, msg: "endpoint.create: pod.namespace: must be non-empty when pod.name is set" },
    { name: "bad namespace", patch: { pod: { namespace: "Bad_NS", name: "x" } }, msg: 'endpoint.create: pod.namespace: "Bad_NS" is not a valid namespace name' },
    { name: "requested IP not an address", patch: { requestedIps: ["10.0.0.300"] }, msg: 'endpoint.create: requestedIps: "10.0.0.300" is not an IP address' },
    { name: "two requested IPv4", patch: { requestedIps: ["10.244.0.5", "10.244.0.6"] }, msg: "endpoint.create: requestedIps: more than one IPv4 address" },
  ])("$name", ({ patch, msg }) => {
    const run = (): unknown => validateCreateEndpoint({ ...goodCreate, ...patch });
    expect(run).toThrow(RequestValidationError);
    expect(run).toThrow(msg);
  });
});

describe("other requests", () => {
  const trace = (patch: Partial<TracePolicyRequest__Output>): TracePolicyRequest__Output => ({
    from: { pod: { namespace: "default", name: "client" }, peer: "pod" },
    to: { ip: "10.244.0.6", peer: "ip" },
    protocol: "PROTOCOL_TCP",
    port: 80,
    ...patch,
  });
  const observe = (patch: Partial<ObserveRequest__Output>): ObserveRequest__Output => ({
    namespace: "",
    pod: "",
    identity: 0,
    verdict: "VERDICT_UNSPECIFIED",
    protocol: "PROTOCOL_UNSPECIFIED",
    port: 0,
    follow: false,
    last: 0,
    ...patch,
  });

  it.each([
    { name: "delete without id", run: () => validateDeleteEndpoint({ containerId: "", ifname: "" }), msg: "endpoint.delete: containerId: must be non-empty" },
    { name: "get without id", run: () => validateGetEndpoint({ id: "" }), msg: "endpoint.get: id: must be non-empty" },
    { name: "get with bad pod", run: () => validateGetEndpoint({ id: "default/Web" }), msg: 'endpoint.get: id: "Web" is not a valid pod name' },
    { name: "gc with a bad id names its index", run: () => validateGcEndpoints({ validContainerIds: ["ok", ""] }), msg: "endpoint.gc: validContainerIds[1]: must be non-empty" },
    { name: "identity 0", run: () => validateGetIdentity({ id: 0 }), msg: "identity.get: id: must be non-zero" },
    { name: "empty manifest", run: () => validateValidatePolicy({ manifestYaml: "  \n" }), msg: "policy.validate: manifestYaml: must be non-empty" },
    { name: "trace without from", run: () => validateTracePolicy(trace({ from: null })), msg: "policy.trace: from: must be set (a pod or an IP)" },
    { name: "trace with bad IP", run: () => validateTracePolicy(trace({ to: { ip: "10.0.0.300", peer: "ip" } })), msg: 'policy.trace: to.ip: "10.0.0.300" is not an IP address' },
    { name: "trace without protocol", run: () => validateTracePolicy(trace({ protocol: "PROTOCOL_UNSPECIFIED" })), msg: "policy.trace: protocol: must be set" },
    { name: "trace TCP without port", run: () => validateTracePolicy(trace({ port: 0 })), msg: "policy.trace: port: must be 1-65535 for TCP" },
    { name: "trace ICMP with port", run: () => validateTracePolicy(trace({ protocol: "PROTOCOL_ICMP", port: 8 })), msg: "policy.trace: port: must be 0 for ICMP" },
    { name: "trace port out of range", run: () => validateTracePolicy(trace({ port: 70000 })), msg: "policy.trace: port: 70000 is not a port" },
    { name: "observe bad pod", run: () => validateObserve(observe({ pod: "a/b/c" })), msg: 'observe: pod: "b/c" is not a valid pod name' },
  ])("$name", ({ run, msg }) => {
    expect(run).toThrow(msg);
  });

  it("trace converts the protocol to its IANA number", () => {
    expect(validateTracePolicy(trace({}))).toEqual({
      from: { kind: "pod", pod: { namespace: "default", name: "client" } },
      to: { kind: "ip", ip: "10.244.0.6" },
      protocol: 6,
      port: 80,
    });
  });

  it.each([
    { name: "no history requested, not following: all kept", follow: false, last: 0, want: null },
    { name: "following without --last: only new flows", follow: true, last: 0, want: 0 },
    { name: "explicit last", follow: true, last: 20, want: 20 },
  ])("observe last: $name", ({ follow, last, want }) => {
    expect(validateObserve(observe({ follow, last })).last).toBe(want);
  });
});

describe("error mapping", () => {
  it.each([
    { name: "validation", err: new RequestValidationError("m", "f", "bad"), code: grpc.status.INVALID_ARGUMENT },
    { name: "backend invalid argument", err: new InvalidArgumentError("spec", "bad"), code: grpc.status.INVALID_ARGUMENT },
    { name: "not found", err: new NotFoundError("endpoint", "x"), code: grpc.status.NOT_FOUND },
    { name: "already exists", err: new AlreadyExistsError("endpoint", "x", "other ifname"), code: grpc.status.ALREADY_EXISTS },
    { name: "IP conflict", err: new IpamConflictError("10.244.0.5", "taken"), code: grpc.status.ALREADY_EXISTS },
    { name: "pool exhausted", err: new IpamExhaustedError("10.244.0.0/24"), code: grpc.status.RESOURCE_EXHAUSTED },
    { name: "other exhaustion", err: new ResourceExhaustedError("too many"), code: grpc.status.RESOURCE_EXHAUSTED },
    { name: "unavailable", err: new UnavailableError("not loaded"), code: grpc.status.UNAVAILABLE },
    { name: "a bug", err: new TypeError("x is undefined"), code: grpc.status.INTERNAL },
    { name: "a non-error throw", err: "boom", code: grpc.status.INTERNAL },
  ])("$name", ({ err, code }) => {
    expect(statusCodeFor(err)).toBe(code);
    expect(toServiceError("endpoint.create", err).code).toBe(code);
  });

  it("prefixes backend messages with the method, keeps validation messages as they are", () => {
    expect(toServiceError("endpoint.create", new IpamExhaustedError("10.244.0.0/24")).details).toBe(
      "endpoint.create: allocate address: pool 10.244.0.0/24 is exhausted",
    );
    expect(toServiceError("endpoint.create", new RequestValidationError("endpoint.create", "ifname", "must be non-empty")).details).toBe(
      "endpoint.create: ifname: must be non-empty",
    );
  });
});
