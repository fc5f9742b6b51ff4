// SPDX-License-Identifier: Apache-2.0
// twill_endpoints: host-side veth ifindex -> endpoint_info (the from_pod
// lookup of the sending endpoint).
//
// API: openEndpointMap(fd) -> BpfMap<number, EndpointInfo>.
import { EndpointInfo, MapName, U32 } from "../generated/bpf-types.js";
import { BpfMap } from "./bpf-map.js";

/** View twill_endpoints through fd (not owned). */
export function openEndpointMap(fd: number): BpfMap<number, EndpointInfo> {
  return new BpfMap(MapName.endpoints, fd, U32, EndpointInfo);
}
