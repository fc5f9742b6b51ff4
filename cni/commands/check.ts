// SPDX-License-Identifier: Apache-2.0
// CNI CHECK (0.4.0+): compare the pod's live wiring with the prevResult the
// runtime kept from ADD, and ask the agent (or the delegated IPAM plugin) for
// its side. Any difference is CheckFailed (102) naming what differs.
//
// API: cmdCheck(req), diffWiring(expected, state) (pure, for tests).
import { AgentClient } from "../client.js";
import { hostVethName } from "../config.js";
import { delegateIpam } from "../delegate-ipam.js";
import { CniError, CniErrorCode } from "../errors.js";
import { datapathError, type CniRequest } from "../request.js";
import type { CniResult } from "../version.js";
import { inspectWiring, POD_GATEWAY4, POD_GATEWAY6, type WiringState } from "../wiring.js";

/** Every difference between our part of `expected` and the live `state`. */
export function diffWiring(expected: CniResult, hostIfname: string, podIfname: string, state: WiringState): string[] {
  const problems: string[] = [];
  if (state.host === null) problems.push(`host veth ${hostIfname} is missing`);
  else if (!state.host.up) problems.push(`host veth ${hostIfname} is down`);
  if (state.pod === null) {
    problems.push(`pod interface ${podIfname} is missing`);
    return problems;
  }
  if (!state.pod.up) problems.push(`pod interface ${podIfname} is down`);
  const podIdx = expected.interfaces.findIndex((i) => i.name === podIfname && i.sandbox !== undefined);
  if (podIdx < 0) {
    problems.push(`prevResult has no interface ${podIfname} with a sandbox`);
    return problems;
  }
  const want = expected.interfaces[podIdx];
  if (want?.mac !== undefined && state.pod.mac !== want.mac.toLowerCase()) {
    problems.push(`pod interface mac is ${state.pod.mac}, result says ${want.mac}`);
  }
  const hostMac = state.host?.mac ?? null;
  for (const ip of expected.ips.filter((i) => i.interface === podIdx)) {
    if (!state.podAddresses.includes(ip.address)) problems.push(`address ${ip.address} is not on ${podIfname}`);
    const v6 = ip.address.includes(":");
    const gw = v6 ? POD_GATEWAY6 : POD_GATEWAY4;
    if (!state.podDefaultGateways.includes(gw)) problems.push(`default route via ${gw} is missing`);
    const n = state.podNeighbors.find((x) => x.ip === gw);
    if (n === undefined) problems.push(`permanent neighbour ${gw} is missing`);
    else if (hostMac !== null && n.mac !== hostMac) problems.push(`neighbour ${gw} points to ${n.mac}, host veth is ${hostMac}`);
    const hostDst = ip.address.split("/")[0] ?? "";
    if (state.host !== null && !state.hostRoutes.some((d) => d.split("/")[0] === hostDst)) {
      problems.push(`host route to ${ip.address} via ${hostIfname} is missing`);
    }
  }
  return problems;
}

/** Run CHECK; prints nothing on success. */
export async function cmdCheck(req: CniRequest): Promise<void> {
  const { env, conf } = req;
  if (conf.prevResult === null) {
    throw new CniError(CniErrorCode.InvalidNetworkConfig, "invalid network config prevResult: CHECK needs the ADD result");
  }
  const hostIfname = hostVethName(env.containerId);
  let state: WiringState;
  try {
    state = inspectWiring(hostIfname, env.ifname, env.netns as string);
  } catch (e: unknown) {
    throw datapathError(`inspect pod ${env.containerId}`, e);
  }
  const problems = diffWiring(conf.prevResult, hostIfname, env.ifname, state);
  if (problems.length > 0) {
    throw new CniError(CniErrorCode.CheckFailed, `check pod ${env.containerId}: ${problems[0]}`, problems.join("; "));
  }
  if (conf.ipam !== null) {
    await delegateIpam("CHECK", conf.ipam["type"] as string, conf.cniVersion, conf.raw, req.processEnv, env.path);
  }
  const client = new AgentClient(conf.socket);
  try {
    const ep = await client.getEndpoint(env.containerId);
    if (ep === null) throw new CniError(CniErrorCode.CheckFailed, `check pod ${env.containerId}: agent has no endpoint`);
    if (ep.hostIfname !== hostIfname) {
      throw new CniError(CniErrorCode.CheckFailed, `check pod ${env.containerId}: agent endpoint uses ${ep.hostIfname}, not ${hostIfname}`);
    }
  } finally {
    client.close();
  }
}
