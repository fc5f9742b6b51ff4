// SPDX-License-Identifier: Apache-2.0
// CNI STATUS (1.1.0): can this plugin serve ADD right now? With agent IPAM it
// asks the agent's Health; with delegated IPAM it asks the delegate (the spec
// says a plugin must pass STATUS on to its delegates).
//
// API: cmdStatus(req).
import { AgentClient, isAgentUnreachable } from "../client.js";
import { delegateIpam } from "../delegate-ipam.js";
import { CniError, CniErrorCode } from "../errors.js";
import type { CniRequest } from "../request.js";

/** Run STATUS; prints nothing when available. */
export async function cmdStatus(req: CniRequest): Promise<void> {
  const { conf, env } = req;
  if (conf.ipam !== null) {
    try {
      await delegateIpam("STATUS", conf.ipam["type"] as string, conf.cniVersion, conf.raw, req.processEnv, env.path);
    } catch (e: unknown) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new CniError(CniErrorCode.PluginNotAvailable, `plugin not available: ${msg}`, null, { cause: e });
    }
    return;
  }
  const client = new AgentClient(conf.socket);
  try {
    const h = await client.health();
    if (!h.healthy) {
      const bad = h.components.filter((c) => !c.healthy).map((c) => `${c.name}: ${c.message}`);
      throw new CniError(CniErrorCode.PluginNotAvailable, "plugin not available: agent is unhealthy", bad.join("; ") || null);
    }
  } catch (e: unknown) {
    if (isAgentUnreachable(e)) {
      throw new CniError(CniErrorCode.PluginNotAvailable, `plugin not available: agent unreachable at ${conf.socket}`, null, { cause: e.cause });
    }
    throw e;
  } finally {
    client.close();
  }
}
