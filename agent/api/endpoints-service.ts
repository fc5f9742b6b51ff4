// SPDX-License-Identifier: Apache-2.0
// twill.v1.Endpoints handlers: Create, Delete, List, Get, Gc (the CNI
// plugin's and `twill endpoint`'s entry points).
// API: endpointsHandlers(backend), endpointToProto(info).
import type { Endpoint } from "../generated/proto/twill/v1/Endpoint.js";
import type { EndpointsHandlers } from "../generated/proto/twill/v1/Endpoints.js";
import type { IpConfig } from "../generated/proto/twill/v1/IpConfig.js";
import type { AgentBackend, EndpointInfo, IpConfigInfo } from "./agent-state.js";
import { unary } from "./unary.js";
import {
  validateCreateEndpoint,
  validateDeleteEndpoint,
  validateGcEndpoints,
  validateGetEndpoint,
  validateListEndpoints,
} from "./validate.js";

function ipConfig(c: IpConfigInfo | null): IpConfig | null {
  if (c === null) return null;
  return { address: c.address, prefixLength: c.prefixLength, gateway: c.gateway, pool: c.pool };
}

/** Domain endpoint -> proto message. */
export function endpointToProto(e: EndpointInfo): Endpoint {
  return {
    containerId: e.containerId,
    ifname: e.ifname,
    netns: e.netns,
    hostIfname: e.hostIfname,
    hostIfindex: e.hostIfindex,
    hostMac: e.hostMac,
    podMac: e.podMac,
    pod: e.pod === null ? null : { namespace: e.pod.namespace, name: e.pod.name },
    ipv4: ipConfig(e.ipv4),
    ipv6: ipConfig(e.ipv6),
    identity: e.identity,
    labels: { ...e.labels },
    state: e.state,
    createdAt: e.createdAt,
  };
}

/** Handlers of the Endpoints service over backend. */
export function endpointsHandlers(backend: AgentBackend): EndpointsHandlers {
  return {
    Create: unary("endpoint.create", async (req) => {
      const params = validateCreateEndpoint(req);
      return { endpoint: endpointToProto(await backend.createEndpoint(params)) };
    }),
    Delete: unary("endpoint.delete", async (req) => {
      const { containerId, ifname } = validateDeleteEndpoint(req);
      return { existed: await backend.deleteEndpoint(containerId, ifname) };
    }),
    List: unary("endpoint.list", async (req) => {
      const { namespace } = validateListEndpoints(req);
      const list = await backend.listEndpoints(namespace);
      return { endpoints: list.map(endpointToProto) };
    }),
    Get: unary("endpoint.get", async (req) => {
      const { id } = validateGetEndpoint(req);
      return endpointToProto(await backend.getEndpoint(id));
    }),
    Gc: unary("endpoint.gc", async (req) => {
      const { valid } = validateGcEndpoints(req);
      return { removedContainerIds: [...(await backend.gcEndpoints(valid))] };
    }),
  };
}
