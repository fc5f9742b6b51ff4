// SPDX-License-Identifier: Apache-2.0
// Every typed map view of a loaded datapath, built in one place so the agent
// wires maps once. Takes the small MapSource interface (Datapath satisfies it)
// rather than the loader itself, so tests can hand in any fd source.
//
// API: openDatapathMaps(source) -> DatapathMaps; MapSource.
import { MapName, type CtKey4, type CtKey6, type EndpointInfo } from "../generated/bpf-types.js";
import type { BpfMap } from "./bpf-map.js";
import { openCt4, openCt6, type ConntrackMap } from "./conntrack-map.js";
import { openEndpointMap } from "./endpoint-map.js";
import { IpcacheMap } from "./ipcache-map.js";
import { LxcMap } from "./lxc-map.js";
import { MetricsMap } from "./metrics-map.js";
import { PolicyMap } from "./policy-map.js";

/** Where map fds and policy BTF come from (loader's Datapath). */
export interface MapSource {
  mapFd(name: string): number;
  btfTypeIds(keyStruct: string, valueStruct: string): { fd: number; keyTypeId: number; valueTypeId: number };
}

/** Typed views of every datapath map (fds stay owned by the source). */
export interface DatapathMaps {
  readonly endpoints: BpfMap<number, EndpointInfo>;
  readonly lxc: LxcMap;
  readonly ipcache: IpcacheMap;
  readonly policy: PolicyMap;
  readonly ct4: ConntrackMap<CtKey4>;
  readonly ct6: ConntrackMap<CtKey6>;
  readonly metrics: MetricsMap;
  /** fd of twill_events, for an EventsReader. */
  readonly eventsFd: number;
}

/** Build all map views of a loaded datapath. */
export function openDatapathMaps(source: MapSource): DatapathMaps {
  return {
    endpoints: openEndpointMap(source.mapFd(MapName.endpoints)),
    lxc: new LxcMap(source.mapFd(MapName.lxc)),
    ipcache: new IpcacheMap(source.mapFd(MapName.ipcache)),
    policy: new PolicyMap(source.mapFd(MapName.policy), source.mapFd(MapName.policySlot), source.btfTypeIds("policy_key", "policy_entry")),
    ct4: openCt4(source.mapFd(MapName.ct4)),
    ct6: openCt6(source.mapFd(MapName.ct6)),
    metrics: new MetricsMap(source.mapFd(MapName.metrics), source.mapFd(MapName.evLost)),
    eventsFd: source.mapFd(MapName.events),
  };
}
