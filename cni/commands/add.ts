// SPDX-License-Identifier: Apache-2.0
// CNI ADD: addresses (agent IPAM, or a delegated IPAM plugin) -> veth with the
// peer in the pod netns -> endpoint registered with the agent (which attaches
// the datapath and fills the maps before it answers) -> pod and host routes ->
// result. Every step pushes its undo; any failure runs the undos in reverse,
// so a failed ADD leaves no veth, address, allocation or endpoint behind.
//
// API: cmdAdd(req) -> result object (spec version of the config).
import type { Endpoint__Output } from "../../agent/generated/proto/twill/v1/Endpoint.js";
import { AgentClient } from "../client.js";
import { hostVethName, requestedIps } from "../config.js";
import { delegateIpam } from "../delegate-ipam.js";
import { CniError, CniErrorCode } from "../errors.js";
import { formatResult, type CniResult } from "../version.js";
import { configureHost, configurePod, createVeth, POD_GATEWAY4, POD_GATEWAY6, removeVeth, type PodAddresses, type VethPair } from "../wiring.js";
import { datapathError, type CniRequest } from "../request.js";

type Undo = { what: string; run: () => Promise<unknown> | unknown };

function bareIp(cidr: string): string {
  return cidr.split("/")[0] ?? cidr;
}

/** Addresses chosen by a delegated IPAM plugin's result. */
export function addressesFromIpam(result: CniResult): PodAddresses {
  const v4 = result.ips.find((i) => !i.address.includes(":"));
  const v6 = result.ips.find((i) => i.address.includes(":"));
  if (v4 === undefined && v6 === undefined) {
    throw new CniError(CniErrorCode.IpamFailure, "ipam result has no address");
  }
  return { ipv4: v4 ? bareIp(v4.address) : null, ipv6: v6 ? bareIp(v6.address) : null };
}

function addressesFromEndpoint(ep: Endpoint__Output): PodAddresses {
  const v4 = ep.ipv4?.address ?? "";
  const v6 = ep.ipv6?.address ?? "";
  if (v4 === "" && v6 === "") throw new CniError(CniErrorCode.AgentFailure, "create endpoint: agent returned no address");
  return { ipv4: v4 === "" ? null : v4, ipv6: v6 === "" ? null : v6 };
}

/** Our part of the result; merged after any prevResult of earlier plugins. */
export function buildResult(pair: VethPair, addrs: PodAddresses, prev: CniResult | null, ipamDns: CniResult["dns"] | null): CniResult {
  const base = prev?.interfaces.length ?? 0;
  const podIndex = base + 1;
  const ours: CniResult = {
    interfaces: [
      { name: pair.hostIfname, mac: pair.hostMac, mtu: pair.mtu },
      { name: pair.podIfname, mac: pair.podMac, mtu: pair.mtu, sandbox: pair.netns },
    ],
    ips: [],
    routes: [],
    dns: {},
  };
  if (addrs.ipv4 !== null) {
    ours.ips.push({ address: `${addrs.ipv4}/32`, gateway: POD_GATEWAY4, interface: podIndex });
    ours.routes.push({ dst: "0.0.0.0/0", gw: POD_GATEWAY4 });
  }
  if (addrs.ipv6 !== null) {
    ours.ips.push({ address: `${addrs.ipv6}/128`, gateway: POD_GATEWAY6, interface: podIndex });
    ours.routes.push({ dst: "::/0", gw: POD_GATEWAY6 });
  }
  if (prev === null) return { ...ours, dns: ipamDns ?? {} };
  return {
    interfaces: [...prev.interfaces, ...ours.interfaces],
    ips: [...prev.ips, ...ours.ips],
    routes: [...prev.routes, ...ours.routes],
    dns: Object.keys(prev.dns).length > 0 ? prev.dns : ipamDns ?? {},
  };
}

/**
 * The pod named by CNI_ARGS. podman sends only K8S_POD_NAME (the container
 * name), so a name without a namespace means the "default" namespace, as a
 * Pod manifest without one would.
 */
export function podRef(args: ReadonlyMap<string, string>): { namespace: string; name: string } {
  const name = args.get("K8S_POD_NAME") ?? "";
  const namespace = args.get("K8S_POD_NAMESPACE") ?? "";
  return { namespace: namespace === "" && name !== "" ? "default" : namespace, name };
}

/** Run ADD; returns the result JSON object to print. */
export async function cmdAdd(req: CniRequest): Promise<Record<string, unknown>> {
  const { env, conf, log } = req;
  const netns = env.netns as string; // parseEnv guarantees it for ADD
  const hostIfname = hostVethName(env.containerId);
  const undo: Undo[] = [];
  // Validated before anything is made, so a bad IP= leaves nothing behind.
  const wanted = requestedIps(env, conf);
  log("debug", "add started");
  // The agent programs the datapath also when a delegated plugin chose the addresses.
  const client = new AgentClient(conf.socket);
  log("debug", "client ready");
  try {
    let addrs: PodAddresses | null = null;
    let ipamDns: CniResult["dns"] | null = null;
    if (conf.ipam !== null) {
      const type = conf.ipam["type"] as string;
      undo.push({ what: `ipam ${type} DEL`, run: () => delegateIpam("DEL", type, conf.cniVersion, conf.raw, req.processEnv, env.path) });
      const r = await delegateIpam("ADD", type, conf.cniVersion, conf.raw, req.processEnv, env.path);
      if (r === null) throw new CniError(CniErrorCode.IpamFailure, `ipam ${type} ADD: no result`);
      addrs = addressesFromIpam(r);
      ipamDns = r.dns;
      log("debug", "ipam delegated", { type, ...addrs });
    }

    let pair: VethPair;
    try {
      pair = createVeth(hostIfname, env.ifname, netns, conf.mtu);
    } catch (e: unknown) {
      throw datapathError(`create veth ${hostIfname} <-> ${env.ifname} in ${netns}`, e);
    }
    undo.push({ what: `remove veth ${hostIfname}`, run: () => removeVeth(hostIfname) });
    log("debug", "veth created", { hostIfname, hostIfindex: pair.hostIfindex });

    if (client !== null) {
      // The agent answers a repeated Create with the endpoint it already
      // has; after a replaced stale veth that would name a dead ifindex.
      if (pair.replacedStale) await client.deleteEndpoint(env.containerId, env.ifname);
      const ep = await client.createEndpoint({
        containerId: env.containerId, ifname: env.ifname, netns,
        hostIfname, hostIfindex: pair.hostIfindex, hostMac: pair.hostMac, podMac: pair.podMac,
        pod: podRef(env.args),
        family: "IP_FAMILY_UNSPECIFIED", requestedIps: conf.ipam === null ? wanted : [],
        assignedIps: addrs === null ? [] : [addrs.ipv4, addrs.ipv6].filter((x): x is string => !!x).map((a) => a.split("/")[0] ?? a),
      });
      undo.push({ what: "delete endpoint", run: () => client.deleteEndpoint(env.containerId, env.ifname) });
      // With delegated IPAM keep the delegate's prefix lengths and gateways.
      if (addrs === null) addrs = addressesFromEndpoint(ep);
      log("debug", "endpoint created", { containerId: env.containerId, state: ep.state, ...addrs });
    }
    if (addrs === null) throw new CniError(CniErrorCode.Internal, "choose addresses: neither agent nor ipam gave any");

    try {
      configurePod(pair, addrs);
      configureHost(pair, addrs);
    } catch (e: unknown) {
      throw datapathError(`configure pod ${env.containerId}`, e);
    }
    log("debug", "pod configured", { containerId: env.containerId });
    return formatResult(buildResult(pair, addrs, conf.prevResult, ipamDns), conf.cniVersion);
  } catch (e: unknown) {
    for (const u of undo.reverse()) {
      try {
        await u.run();
      } catch (ue: unknown) {
        // Keep undoing: the rest of the rollback still frees what it can.
        log("error", "rollback step failed", { step: u.what, error: ue instanceof Error ? ue.message : String(ue) });
      }
    }
    throw e;
  } finally {
    client.close();
  }
}
