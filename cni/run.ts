// SPDX-License-Identifier: Apache-2.0
// One CNI invocation: CNI_* env + stdin text -> dispatch -> what to print and
// the exit code (result JSON and 0, or spec error JSON and 1). Kept apart from
// main.ts so tests can run the plugin in-process.
//
// Commands are imported lazily so VERSION (called by every runtime, often)
// loads neither koffi nor gRPC.
//
// API: runCni(env, stdinText) -> CniOutcome.
import { askedVersion, decodeStdin, parseEnv, parseNetConf, type CniEnv } from "./config.js";
import { CniError, CniErrorCode, errorJson, toCniError } from "./errors.js";
import { isSupportedVersion, LATEST_VERSION } from "./version.js";
import { cmdVersion } from "./commands/version.js";

/** What the process prints and how it exits. */
export interface CniOutcome {
  readonly stdout: string;
  readonly exitCode: number;
}

async function dispatch(cniEnv: CniEnv, env: NodeJS.ProcessEnv, stdinText: string): Promise<string> {
  const command = cniEnv.command;
  const raw = decodeStdin(stdinText);
  const conf = parseNetConf(raw, command);
  const { makeLogger } = await import("./request.js");
  const req = { env: cniEnv, conf, processEnv: env, log: makeLogger(conf.logLevel, cniEnv.containerId) };
  req.log("debug", "invoked", { command, netns: cniEnv.netns, ifname: cniEnv.ifname, cniVersion: conf.cniVersion });
  switch (command) {
    case "ADD": {
      const { cmdAdd } = await import("./commands/add.js");
      return JSON.stringify(await cmdAdd(req));
    }
    case "DEL": {
      const { cmdDel } = await import("./commands/del.js");
      await cmdDel(req);
      return "";
    }
    case "CHECK": {
      const { cmdCheck } = await import("./commands/check.js");
      await cmdCheck(req);
      return "";
    }
    case "STATUS": {
      const { cmdStatus } = await import("./commands/status.js");
      await cmdStatus(req);
      return "";
    }
    case "GC": {
      const { cmdGc } = await import("./commands/gc.js");
      await cmdGc(req);
      return "";
    }
    case "VERSION":
      return JSON.stringify(cmdVersion(stdinText));
  }
}

/** Run one CNI invocation without touching process stdout or exit. */
export async function runCni(env: NodeJS.ProcessEnv, stdinText: string): Promise<CniOutcome> {
  let version: string = LATEST_VERSION;
  try {
    const asked = stdinText.trim() === "" ? null : askedVersionSafe(stdinText);
    if (asked !== null && isSupportedVersion(asked)) version = asked;
    const command = env["CNI_COMMAND"];
    if (command === "VERSION") return { stdout: JSON.stringify(cmdVersion(stdinText)), exitCode: 0 };
    if (command === undefined || command === "") {
      throw new CniError(CniErrorCode.InvalidEnvironment, "invalid CNI_COMMAND: is not set");
    }
    return { stdout: await dispatch(parseEnv(env), env, stdinText), exitCode: 0 };
  } catch (e: unknown) {
    return { stdout: JSON.stringify(errorJson(toCniError(e), version)), exitCode: 1 };
  }
}

function askedVersionSafe(text: string): string | null {
  try {
    return askedVersion(decodeStdin(text));
  } catch {
    return null;
  }
}
