#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// twill-cni entry point: reads the process's CNI_* env and stdin, runs one
// invocation (run.ts), prints the result or spec error JSON on stdout and
// exits 0 or 1. Logs go to stderr. No logic lives here.
import * as fs from "node:fs";
import { errorJson, toCniError } from "./errors.js";
import { runCni, type CniOutcome } from "./run.js";
import { LATEST_VERSION } from "./version.js";

function readStdin(): string {
  if (process.stdin.isTTY) return "";
  try {
    return fs.readFileSync(0, "utf8");
  } catch (e: unknown) {
    // EAGAIN: non-blocking empty stdin; EOF/closed stdin reads as empty.
    if (e instanceof Error && "code" in e && (e.code === "EAGAIN" || e.code === "EOF")) return "";
    throw e;
  }
}

async function main(): Promise<void> {
  let out: CniOutcome;
  try {
    out = await runCni(process.env, readStdin());
  } catch (e: unknown) {
    out = { stdout: JSON.stringify(errorJson(toCniError(e), LATEST_VERSION)), exitCode: 1 };
  }
  // Exit explicitly once stdout is flushed: a gRPC channel or timer must not
  // keep the runtime waiting.
  const text = out.stdout === "" ? "" : out.stdout + "\n";
  process.stdout.write(text, () => process.exit(out.exitCode));
}

void main();
