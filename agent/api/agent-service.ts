// SPDX-License-Identifier: Apache-2.0
// twill.v1.Agent handlers: Status, Health, Metrics.
// API: agentHandlers(backend) -> AgentHandlers.
import type { AgentHandlers } from "../generated/proto/twill/v1/Agent.js";
import type { ComponentHealth } from "../generated/proto/twill/v1/ComponentHealth.js";
import type { AgentBackend, ComponentHealthInfo } from "./agent-state.js";
import { unary } from "./unary.js";

function component(c: ComponentHealthInfo): ComponentHealth {
  return { name: c.name, healthy: c.healthy, message: c.message };
}

/** Handlers of the Agent service over backend. */
export function agentHandlers(backend: AgentBackend): AgentHandlers {
  return {
    Status: unary("agent.status", async () => {
      const s = await backend.status();
      return {
        version: s.version,
        nodeName: s.nodeName,
        uptimeSeconds: String(Math.floor(s.uptimeSeconds)),
        datapathMode: s.datapathMode,
        podCidrs: [...s.podCidrs],
        endpointCount: s.endpointCount,
        identityCount: s.identityCount,
        policyCount: s.policyCount,
        eventsLost: s.eventsLost.toString(),
        components: s.components.map(component),
      };
    }),
    Health: unary("agent.health", async () => {
      const components = await backend.health();
      return { healthy: components.every((c) => c.healthy), components: components.map(component) };
    }),
    Metrics: unary("agent.metrics", async () => ({ text: await backend.metrics() })),
  };
}
