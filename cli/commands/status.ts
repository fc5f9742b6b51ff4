// SPDX-License-Identifier: Apache-2.0
// `twill status` and `twill metrics`. API: registerStatusCommands(program, ctx).
import type { Command } from "commander";
import type { StatusResponse__Output } from "../../agent/generated/proto/twill/v1/StatusResponse.js";
import type { CliContext } from "../context.js";
import { formatKeyValues, formatTable, printResult, type Colors } from "../output.js";

/** Human form of `twill status`. */
export function renderStatus(s: StatusResponse__Output, colors: Colors): string {
  const healthy = s.components.every((c) => c.healthy);
  const head = formatKeyValues([
    ["Health", healthy ? colors.green("OK") : colors.red("DEGRADED")],
    ["Version", s.version],
    ["Node", s.nodeName],
    ["Uptime", `${s.uptimeSeconds}s`],
    ["Datapath", s.datapathMode],
    ["Pod CIDRs", s.podCidrs.join(", ")],
    ["Endpoints", String(s.endpointCount)],
    ["Identities", String(s.identityCount)],
    ["Policies", String(s.policyCount)],
    ["Events lost", s.eventsLost],
  ]);
  if (s.components.length === 0) return head;
  const rows = s.components.map((c) => [c.name, c.healthy ? colors.green("ok") : colors.red("failing"), c.message]);
  return head + "\n" + formatTable(["COMPONENT", "STATE", "MESSAGE"], rows);
}

/** Register status and metrics. */
export function registerStatusCommands(program: Command, ctx: CliContext): void {
  program
    .command("status")
    .description("show the agent's state and health")
    .action(async (_opts: unknown, cmd: Command) => {
      const { conn, format, colors, io } = ctx.session(cmd);
      const s = await conn.call<StatusResponse__Output>((cb) => conn.agent.Status({}, conn.options(), cb));
      printResult(io, format, s, () => renderStatus(s, colors));
    });

  program
    .command("metrics")
    .description("print the agent's Prometheus metrics")
    .action(async (_opts: unknown, cmd: Command) => {
      const { conn, format, io } = ctx.session(cmd);
      const m = await conn.call<{ text: string }>((cb) => conn.agent.Metrics({}, conn.options(), cb));
      printResult(io, format, m, () => (m.text.endsWith("\n") || m.text === "" ? m.text : m.text + "\n"));
    });
}
