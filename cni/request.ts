// SPDX-License-Identifier: Apache-2.0
// What every command receives: the parsed CNI_* environment, the validated
// config, the raw process environment (passed on to delegated plugins) and a
// stderr logger; plus the one place kernel errors become CniErrors.
//
// API: CniRequest, LogFn, makeLogger, datapathError.
import { NetlinkArgumentError, NetlinkError, NetnsError, SysctlError } from "../agent/netlink/index.js";
import type { CniEnv, CniLogLevel, NetConf } from "./config.js";
import { CniError, CniErrorCode } from "./errors.js";

/** Structured log line to stderr (stdout belongs to the result). */
export type LogFn = (level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

/** One invocation of the plugin. */
export interface CniRequest {
  readonly env: CniEnv;
  readonly conf: NetConf;
  readonly processEnv: NodeJS.ProcessEnv;
  readonly log: LogFn;
}

const RANK: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 };

/** A logger that writes JSON lines at or above `level` to stderr. */
export function makeLogger(level: CniLogLevel, containerId: string): LogFn {
  const min = RANK[level] ?? RANK["warn"] ?? 40;
  return (lvl, msg, fields = {}) => {
    if ((RANK[lvl] ?? 0) < min) return;
    process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level: lvl, plugin: "twill-cni", containerId, msg, ...fields }) + "\n");
  };
}

/**
 * Wrap a failure of kernel wiring as a CniError: a vanished netns is an I/O
 * failure (5), a kernel refusal is DatapathFailure (100); CniErrors pass through.
 */
export function datapathError(op: string, e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof NetnsError) return new CniError(CniErrorCode.IoFailure, `${op}: ${e.message}`, null, { cause: e });
  if (e instanceof NetlinkError || e instanceof SysctlError || e instanceof NetlinkArgumentError) {
    return new CniError(CniErrorCode.DatapathFailure, `${op}: ${e.message}`, null, { cause: e });
  }
  return new CniError(CniErrorCode.Internal, `${op}: ${e instanceof Error ? e.message : String(e)}`, null, { cause: e });
}
