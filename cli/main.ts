#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// `twill`: the command-line client of twill-agent (gRPC over the agent's
// unix socket). This file wires the command groups (cli/commands/*.ts) into
// commander and maps outcomes to exit codes (cli/README.md):
// 0 ok, 1 agent error, 2 usage, 3 agent unreachable, 4 trace denied.
//
// API: run(argv, io) -> exit code (used by tests); executed directly it
// runs with the process's argv/stdio and exits.
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, Option } from "commander";
import { CliError, DEFAULT_SOCKET, EXIT } from "./client.js";
import { registerEndpointCommands } from "./commands/endpoint.js";
import { registerIdentityCommands } from "./commands/identity.js";
import { registerMapCommands } from "./commands/map.js";
import { registerObserveCommand } from "./commands/observe.js";
import { registerPolicyCommands } from "./commands/policy.js";
import { registerStatusCommands } from "./commands/status.js";
import { CliContext } from "./context.js";
import { OUTPUT_FORMATS, type CliIo } from "./output.js";

/** Build the commander program for one run. */
function buildProgram(ctx: CliContext): Command {
  const io = ctx.io;
  const program = new Command("twill")
    .description("inspect and query the Twill agent on this node")
    // Settings before .command(): subcommands copy them when created.
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
    })
    .exitOverride()
    .showSuggestionAfterError()
    .addOption(
      new Option("--socket <path>", "agent API socket (env TWILL_SOCKET)").default(io.env["TWILL_SOCKET"] ?? DEFAULT_SOCKET),
    )
    .addOption(new Option("-o, --output <format>", "output format").choices(OUTPUT_FORMATS).default("table"));
  registerStatusCommands(program, ctx);
  registerEndpointCommands(program, ctx);
  registerIdentityCommands(program, ctx);
  registerPolicyCommands(program, ctx);
  registerMapCommands(program, ctx);
  registerObserveCommand(program, ctx);
  return program;
}

/** Run the CLI with argv (without node and script); resolves to the exit code. */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const ctx = new CliContext(io);
  const program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return ctx.exitCode;
  } catch (e: unknown) {
    if (e instanceof CommanderError) {
      // commander already printed the message or the help text.
      return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    if (e instanceof CliError) {
      io.stderr.write(`twill: ${e.message}\n`);
      return e.exitCode;
    }
    io.stderr.write(`twill: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT.AGENT_ERROR;
  } finally {
    ctx.close();
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === "string" ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    // npm installs bin entries as symlinks.
    return fs.realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  const abort = new AbortController();
  process.on("SIGINT", () => {
    if (abort.signal.aborted) process.exit(130); // second ctrl-C: give up waiting
    abort.abort();
  });
  const code = await run(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    isTty: process.stdout.isTTY === true,
    env: process.env,
    signal: abort.signal,
    readStdin,
  });
  // Let piped stdout drain before exiting.
  process.stdout.write("", () => process.exit(code));
}
