// SPDX-License-Identifier: Apache-2.0
// Typed errors of the native (libbpf/libc) boundary. errno never escapes
// agent/native/: every failing call becomes one of these classes, built by
// bpfError() so the mapping lives in one place.
//   BpfError          any failed bpf/libbpf operation {op, errno, libbpfMessage}
//   KeyNotFoundError  map lookup/delete of a missing key (ENOENT)
//   NotSupportedError a kernel feature is missing {feature, minKernel}
//   VerifierError     program load rejected; message is a summary, log is the full log
import { Errno, errnoName } from "./errno.js";

/** A failed bpf()/libbpf operation. */
export class BpfError extends Error {
  /**
   * @param op what was attempted, e.g. "update map twill_lxc"
   * @param errno positive errno value (0 if unknown)
   * @param libbpfMessage what libbpf printed while the call ran ("" if nothing)
   */
  constructor(
    readonly op: string,
    readonly errno: number,
    readonly libbpfMessage: string,
    detail?: string,
  ) {
    super(`${op}: ${detail ?? errnoName(errno)}${libbpfMessage ? ` (libbpf: ${lastLine(libbpfMessage)})` : ""}`);
    this.name = "BpfError";
  }
}

/** The key is not in the map. */
export class KeyNotFoundError extends BpfError {
  constructor(op: string) {
    super(op, Errno.ENOENT, "", "key not found");
    this.name = "KeyNotFoundError";
  }
}

/** A kernel feature the operation needs is missing. */
export class NotSupportedError extends BpfError {
  /**
   * @param feature short feature name, e.g. "tcx"
   * @param minKernel first kernel version that has it, e.g. "6.6"
   */
  constructor(
    op: string,
    readonly feature: string,
    readonly minKernel: string,
    errno: number = Errno.EOPNOTSUPP,
  ) {
    super(op, errno, "", `${feature} not supported (requires >= ${minKernel})`);
    this.name = "NotSupportedError";
  }
}

/** The verifier (or the kernel's BTF check) rejected the object. */
export class VerifierError extends BpfError {
  /** @param log the full kernel log; the message only carries its summary */
  constructor(op: string, errno: number, readonly log: string, libbpfMessage: string) {
    super(op, errno, libbpfMessage, `verifier rejected program: ${verifierSummary(log)}`);
    this.name = "VerifierError";
  }
}

/** Build the right error class for a failed call. */
export function bpfError(op: string, errno: number, libbpfMessage = ""): BpfError {
  const e = Math.abs(errno);
  if (e === Errno.ENOENT && /^(lookup|delete)/.test(op)) return new KeyNotFoundError(op);
  return new BpfError(op, e, libbpfMessage);
}

/** The last non-empty line that is not a statistics line: usually the reason. */
export function verifierSummary(log: string): string {
  const lines = log
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/^(processed \d+ insns|verification time|stack depth|-- END)/.test(l));
  return lines[lines.length - 1] ?? "no log";
}

function lastLine(s: string): string {
  const lines = s.trim().split("\n");
  return (lines[lines.length - 1] ?? "").trim().replace(/^libbpf: /, "");
}
