// SPDX-License-Identifier: Apache-2.0
// CNI errors: the one typed error the plugin's commands throw, the spec's
// well-known codes, and the mapping of any thrown value to the error JSON the
// runtime reads from stdout.
//
// API: CniErrorCode, CniError, toCniError(e), errorJson(err, cniVersion).

/** Error codes. 0-99 are the spec's well-known codes; 100+ are ours. */
export const CniErrorCode = {
  /** The config's cniVersion is not supported, or the verb does not exist in it. */
  IncompatibleVersion: 1,
  /** A config field is known but not supported by this plugin. */
  UnsupportedField: 2,
  /** The container does not exist; the runtime need not call DEL. */
  UnknownContainer: 3,
  /** A required CNI_* environment variable is missing or malformed. */
  InvalidEnvironment: 4,
  /** Reading or writing a file, socket or netns failed. */
  IoFailure: 5,
  /** stdin (or a delegate's stdout) is not the JSON it should be. */
  DecodingFailure: 6,
  /** The network configuration is well-formed JSON but not valid. */
  InvalidNetworkConfig: 7,
  /** Transient: the agent is not reachable right now; the runtime may retry. */
  TryAgainLater: 11,
  /** STATUS (1.1.0): the plugin cannot serve ADD right now. */
  PluginNotAvailable: 50,
  /** STATUS (1.1.0): not available, and existing pods may have limited connectivity. */
  PluginNotAvailableLimited: 51,
  /** Plugin-specific: the kernel refused a veth/address/route/sysctl change. */
  DatapathFailure: 100,
  /** Plugin-specific: the agent answered with an error. */
  AgentFailure: 101,
  /** Plugin-specific: CHECK found the pod's wiring different from the result. */
  CheckFailed: 102,
  /** Plugin-specific: the delegated IPAM plugin failed. */
  IpamFailure: 103,
  /** Plugin-specific: anything not foreseen (a bug). */
  Internal: 199,
} as const;

export type CniErrorCodeValue = (typeof CniErrorCode)[keyof typeof CniErrorCode];

/** An error meant for the runtime: spec code, short message, optional details. */
export class CniError extends Error {
  constructor(
    readonly code: CniErrorCodeValue | number,
    msg: string,
    readonly details: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(msg, options);
    this.name = "CniError";
  }
}

/** Spec error JSON, as printed on stdout. */
export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** Turn anything thrown into a CniError; unforeseen errors become Internal. */
export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof Error) {
    return new CniError(CniErrorCode.Internal, e.message, e.stack ?? null, { cause: e });
  }
  return new CniError(CniErrorCode.Internal, `unexpected failure: ${String(e)}`);
}

/** Build the spec error object; details fall back to the cause chain. */
export function errorJson(err: CniError, cniVersion: string): CniErrorJson {
  const out: CniErrorJson = { cniVersion, code: err.code, msg: err.message };
  const details = err.details ?? causeChain(err);
  if (details) out.details = details;
  return out;
}

function causeChain(err: Error): string | null {
  const parts: string[] = [];
  let c: unknown = err.cause;
  while (c !== undefined && c !== null && parts.length < 8) {
    parts.push(c instanceof Error ? c.message : String(c));
    c = c instanceof Error ? c.cause : undefined;
  }
  return parts.length > 0 ? parts.join(": ") : null;
}
