// SPDX-License-Identifier: Apache-2.0
// `twill identity list|get`. API: registerIdentityCommands(program, ctx).
import type { Command } from "commander";
import type { Identity__Output } from "../../agent/generated/proto/twill/v1/Identity.js";
import type { ListIdentitiesResponse__Output } from "../../agent/generated/proto/twill/v1/ListIdentitiesResponse.js";
import { parseNonNegativeInt, type CliContext } from "../context.js";
import { formatKeyValues, formatLabels, formatTable, printResult } from "../output.js";

/** Table of identities, lowest id first. */
export function renderIdentityList(list: readonly Identity__Output[]): string {
  const rows = [...list]
    .sort((a, b) => a.id - b.id)
    .map((i) => [String(i.id), formatLabels(i.labels), i.reserved ? "yes" : "no", String(i.endpointCount)]);
  return formatTable(["ID", "LABELS", "RESERVED", "ENDPOINTS"], rows);
}

/** Register identity list|get. */
export function registerIdentityCommands(program: Command, ctx: CliContext): void {
  const id = program.command("identity").description("security identities");
  id.command("list")
    .description("list identities")
    .action(async (_opts: unknown, cmd: Command) => {
      const { conn, format, io } = ctx.session(cmd);
      const r = await conn.call<ListIdentitiesResponse__Output>((cb) => conn.identities.List({}, conn.options(), cb));
      printResult(io, format, r.identities, () => renderIdentityList(r.identities));
    });
  id.command("get")
    .description("show one identity")
    .argument("<id>", "numeric identity", parseNonNegativeInt("<id>"))
    .action(async (num: number, _opts: unknown, cmd: Command) => {
      const { conn, format, io } = ctx.session(cmd);
      const i = await conn.call<Identity__Output>((cb) => conn.identities.Get({ id: num }, conn.options(), cb));
      printResult(io, format, i, () =>
        formatKeyValues([
          ["ID", String(i.id)],
          ["Labels", formatLabels(i.labels)],
          ["Reserved", i.reserved ? "yes" : "no"],
          ["Endpoints", String(i.endpointCount)],
        ]),
      );
    });
}
