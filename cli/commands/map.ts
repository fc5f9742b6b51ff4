// SPDX-License-Identifier: Apache-2.0
// `twill map dump <name> [--endpoint ID]`. API: registerMapCommands(program, ctx).
import type { Command } from "commander";
import type { DumpMapResponse__Output } from "../../agent/generated/proto/twill/v1/DumpMapResponse.js";
import type { CliContext } from "../context.js";
import { formatTable, printResult } from "../output.js";

/** Register map dump. */
export function registerMapCommands(program: Command, ctx: CliContext): void {
  const map = program.command("map").description("datapath BPF maps");
  map
    .command("dump")
    .description("print a map's decoded entries")
    .argument("<name>", "map name, e.g. twill_ipcache, twill_ct4, twill_policy")
    .option("--endpoint <id>", "endpoint (container id or namespace/pod) for per-endpoint maps", "")
    .action(async (name: string, opts: { endpoint: string }, cmd: Command) => {
      const { conn, format, io } = ctx.session(cmd);
      const d = await conn.call<DumpMapResponse__Output>((cb) =>
        conn.datapath.DumpMap({ name, endpoint: opts.endpoint }, conn.options(), cb),
      );
      // JSON/YAML: one object per row keyed by column, easier to query than arrays.
      const data = {
        name: d.name,
        entries: d.rows.map((r) => Object.fromEntries(d.columns.map((c, i) => [c, r.values[i] ?? ""]))),
      };
      printResult(io, format, data, () => formatTable(d.columns.map((c) => c.toUpperCase()), d.rows.map((r) => r.values)));
    });
}
