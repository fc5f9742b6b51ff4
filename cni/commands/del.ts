// SPDX-License-Identifier: Apache-2.0
// CNI DEL. Idempotent and forgiving, as the spec asks: a container that was
// never added, a netns that is already gone or a veth already removed all
// succeed. If the agent is unreachable the deletion is queued on disk for the
// agent to drain (deletion-queue.ts) and DEL still succeeds, so a restarting
// agent never blocks pod teardown.
//
// API: cmdDel(req).
import { AgentClient, isAgentUnreachable } from "../client.js";
import { hostVethName } from "../config.js";
import { delegateIpam } from "../delegate-ipam.js";
import { enqueueDeletion } from "../deletion-queue.js";
import { CniError, CniErrorCode } from "../errors.js";
import { datapathError, type CniRequest } from "../request.js";
import { removeVeth } from "../wiring.js";

/**
 * Tell the agent; queue the deletion if nobody answers. Returns an error the
 * agent answered with (thrown by the caller once the veth is gone), or null.
 */
async function deleteFromAgent(req: CniRequest): Promise<unknown> {
  const { env, conf, log } = req;
  const client = new AgentClient(conf.socket);
  try {
    const existed = await client.deleteEndpoint(env.containerId, env.ifname);
    log("debug", "endpoint deleted", { existed });
    return null;
  } catch (e: unknown) {
    if (!isAgentUnreachable(e)) return e;
  } finally {
    client.close();
  }
  try {
    const file = enqueueDeletion(conf.deletionQueueDir, {
      containerId: env.containerId, ifname: env.ifname, netns: env.netns,
      podNamespace: env.args.get("K8S_POD_NAMESPACE") ?? null, podName: env.args.get("K8S_POD_NAME") ?? null,
      queuedAt: new Date().toISOString(),
    });
    log("warn", "agent unreachable, deletion queued", { file, socket: conf.socket });
    return null;
  } catch (qe: unknown) {
    return new CniError(CniErrorCode.IoFailure, `queue deletion of ${env.containerId}: ${qe instanceof Error ? qe.message : String(qe)}`,
      `agent unreachable at ${conf.socket}`, { cause: qe });
  }
}

/** Run DEL; prints nothing on success. */
export async function cmdDel(req: CniRequest): Promise<void> {
  const { env, conf, log } = req;
  // An agent error fails the DEL (the runtime retries it), but only after
  // the veth is gone, so the retry has less left to do.
  const agentError = await deleteFromAgent(req);
  try {
    const removed = removeVeth(hostVethName(env.containerId));
    log("debug", "veth removed", { removed });
  } catch (e: unknown) {
    throw datapathError(`remove veth of ${env.containerId}`, e);
  }
  if (conf.ipam !== null) {
    await delegateIpam("DEL", conf.ipam["type"] as string, conf.cniVersion, conf.raw, req.processEnv, env.path);
  }
  if (agentError !== null) throw agentError;
}
