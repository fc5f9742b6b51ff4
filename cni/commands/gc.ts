// SPDX-License-Identifier: Apache-2.0
// CNI GC (1.1.0): free what belongs to containers the runtime no longer
// knows. The agent owns endpoints and addresses, so it is told the valid
// container IDs; with delegated IPAM the delegate gets the same GC call.
// Stale host veths need no sweep: a veth dies with its pod netns.
//
// API: cmdGc(req).
import { AgentClient } from "../client.js";
import { delegateIpam } from "../delegate-ipam.js";
import type { CniRequest } from "../request.js";

/** Run GC; prints nothing on success. */
export async function cmdGc(req: CniRequest): Promise<void> {
  const { conf, env, log } = req;
  if (conf.ipam !== null) {
    await delegateIpam("GC", conf.ipam["type"] as string, conf.cniVersion, conf.raw, req.processEnv, env.path);
    return;
  }
  const valid = [...new Set(conf.validAttachments.map((a) => a.containerId))];
  const client = new AgentClient(conf.socket);
  try {
    const removed = await client.gcEndpoints(valid);
    log("info", "gc done", { valid: valid.length, removed });
  } finally {
    client.close();
  }
}
