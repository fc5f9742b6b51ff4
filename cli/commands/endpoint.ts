// SPDX-License-Identifier: Apache-2.0
// `twill endpoint list|get`. API: registerEndpointCommands(program, ctx).
import type { Command } from "commander";
import type { Endpoint__Output } from "../../agent/generated/proto/twill/v1/Endpoint.js";
import type { ListEndpointsResponse__Output } from "../../agent/generated/proto/twill/v1/ListEndpointsResponse.js";
import type { CliContext } from "../context.js";
import { formatKeyValues, formatLabels, formatTable, printResult } from "../output.js";

function podName(e: Endpoint__Output): string {
  return e.pod === null || e.pod.name === "" ? "" : `${e.pod.namespace}/${e.pod.name}`;
}

/** Table of endpoints (container ids shortened to 12 characters, like docker). */
export function renderEndpointList(list: readonly Endpoint__Output[]): string {
  const rows = list.map((e) => [
    e.containerId.slice(0, 12),
    podName(e),
    e.ipv4?.address ?? "",
    e.ipv6?.address ?? "",
    e.identity === 0 ? "" : String(e.identity),
    e.hostIfname,
    e.state,
  ]);
  return formatTable(["CONTAINER", "POD", "IPV4", "IPV6", "IDENTITY", "HOST-IF", "STATE"], rows);
}

/** Details of one endpoint. */
export function renderEndpoint(e: Endpoint__Output): string {
  return formatKeyValues([
    ["Container", e.containerId],
    ["Pod", podName(e)],
    ["State", e.state],
    ["Identity", e.identity === 0 ? "" : String(e.identity)],
    ["Labels", formatLabels(e.labels)],
    ["IPv4", e.ipv4 === null ? "" : `${e.ipv4.address}/${e.ipv4.prefixLength} via ${e.ipv4.gateway}`],
    ["IPv6", e.ipv6 === null ? "" : `${e.ipv6.address}/${e.ipv6.prefixLength} via ${e.ipv6.gateway}`],
    ["Interface", `${e.ifname} (${e.podMac})`],
    ["Host interface", `${e.hostIfname} ifindex ${e.hostIfindex} (${e.hostMac})`],
    ["Netns", e.netns],
    ["Created", e.createdAt],
  ]);
}

/** Register endpoint list|get. */
export function registerEndpointCommands(program: Command, ctx: CliContext): void {
  const ep = program.command("endpoint").alias("ep").description("pod endpoints on this node");
  ep.command("list")
    .description("list endpoints")
    .option("-n, --namespace <ns>", "only pods of this namespace", "")
    .action(async (opts: { namespace: string }, cmd: Command) => {
      const { conn, format, io } = ctx.session(cmd);
      const r = await conn.call<ListEndpointsResponse__Output>((cb) =>
        conn.endpoints.List({ namespace: opts.namespace }, conn.options(), cb),
      );
      printResult(io, format, r.endpoints, () => renderEndpointList(r.endpoints));
    });
  ep.command("get")
    .description("show one endpoint")
    .argument("<id>", "container id or namespace/pod")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const { conn, format, io } = ctx.session(cmd);
      const e = await conn.call<Endpoint__Output>((cb) => conn.endpoints.Get({ id }, conn.options(), cb));
      printResult(io, format, e, () => renderEndpoint(e));
    });
}
