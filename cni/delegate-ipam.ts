// SPDX-License-Identifier: Apache-2.0
// Delegated IPAM: when the config has ipam.type (e.g. "host-local"), the
// plugin of that name is found in CNI_PATH and executed as the spec's
// "delegated plugin protocol" says: same environment (CNI_COMMAND set to the
// verb being delegated), same stdin config, result or error JSON on stdout.
//
// API: findPlugin, execDelegate, delegateIpam (ADD -> CniResult, others -> void).
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { CniError, CniErrorCode } from "./errors.js";
import { parseResult, type CniResult } from "./version.js";

/** Locate `type` in the CNI_PATH directories; IoFailure (5) if absent. */
export function findPlugin(type: string, cniPath: readonly string[]): string {
  if (cniPath.length === 0) {
    throw new CniError(CniErrorCode.InvalidEnvironment, `invalid CNI_PATH: is not set (needed to find ipam plugin ${type})`);
  }
  for (const dir of cniPath) {
    const file = path.join(dir, type);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not in this directory; try the next one
    }
  }
  throw new CniError(CniErrorCode.IoFailure, `find ipam plugin ${type}: not in CNI_PATH ${cniPath.join(":")}`);
}

/** Raw outcome of running a delegate. */
export interface DelegateOutput {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run `file` with `env` and `stdin`; resolves when it exits. */
export function execDelegate(file: string, env: NodeJS.ProcessEnv, stdin: string, timeoutMs = 60_000): Promise<DelegateOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env, stdio: ["pipe", "pipe", "pipe"], timeout: timeoutMs });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => reject(new CniError(CniErrorCode.IoFailure, `exec ${file}: ${e.message}`, null, { cause: e })));
    child.on("close", (code, signal) => {
      resolve({
        exitCode: code ?? (signal !== null ? 128 : 1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
    child.stdin.on("error", () => undefined); // a delegate may exit without reading stdin
    child.stdin.end(stdin);
  });
}

function delegateError(type: string, verb: string, o: DelegateOutput): CniError {
  let msg = o.stdout.trim() || o.stderr.trim() || `exit code ${o.exitCode}`;
  let details: string | null = o.stderr.trim() || null;
  let code: number = CniErrorCode.IpamFailure;
  try {
    const j = JSON.parse(o.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof j.msg === "string") msg = j.msg;
    if (typeof j.details === "string" && j.details !== "") details = j.details;
    // The delegate's well-known codes mean the same thing for our caller (an
    // incompatible version stays 1, "try again" stays 11); its private
    // codes (100+) do not, so they become IpamFailure.
    if (typeof j.code === "number" && j.code > 0 && j.code < 100) code = j.code;
  } catch {
    // not JSON: keep the raw text
  }
  return new CniError(code, `ipam ${type} ${verb}: ${msg}`, details);
}

/**
 * Run the IPAM plugin `ipam.type` for `verb`. ADD returns its result parsed
 * in the config's version; DEL, CHECK, GC and STATUS return null.
 */
export async function delegateIpam(
  verb: "ADD" | "DEL" | "CHECK" | "GC" | "STATUS",
  type: string,
  cniVersion: string,
  stdinConfig: Readonly<Record<string, unknown>>,
  env: NodeJS.ProcessEnv,
  cniPath: readonly string[],
): Promise<CniResult | null> {
  const file = findPlugin(type, cniPath);
  const o = await execDelegate(file, { ...env, CNI_COMMAND: verb }, JSON.stringify(stdinConfig));
  if (o.exitCode !== 0) throw delegateError(type, verb, o);
  if (verb !== "ADD") return null;
  let json: unknown;
  try {
    json = JSON.parse(o.stdout);
  } catch {
    throw new CniError(CniErrorCode.DecodingFailure, `decode ipam ${type} result: not JSON`, o.stdout.slice(0, 500));
  }
  return parseResult(json, cniVersion);
}
