// SPDX-License-Identifier: Apache-2.0
// Typed errors of the netlink layer. errno never escapes agent/netlink as a bare
// number: a failed request becomes NetlinkError {op, errno, code}, a missing
// object a NotFound subclass (callers doing idempotent deletes test for it), a
// bad argument is rejected before any syscall, and namespace trouble names the path.
import { constants } from "node:os";

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, n]) => [n, name] as [number, string]),
);

/** Symbolic name of an errno ("EEXIST"), or "E<n>" if unknown. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/** A kernel error for one netlink request or one syscall on the netlink path. */
export class NetlinkError extends Error {
  override readonly name: string = "NetlinkError";
  /** The operation, e.g. "create link tw1234". */
  readonly op: string;
  /** Positive errno. */
  readonly errno: number;
  /** Symbolic errno, e.g. "EEXIST". */
  readonly code: string;
  /** The kernel's extended-ack text, when it sent one. */
  readonly extAck: string | null;

  constructor(op: string, errno: number, description: string, extAck: string | null = null) {
    const code = errnoName(errno);
    super(`${op}: ${description} (${code})${extAck ? `: ${extAck}` : ""}`);
    this.op = op;
    this.errno = errno;
    this.code = code;
    this.extAck = extAck;
  }
}

/** The link, address, route or neighbour does not exist (ENODEV, EADDRNOTAVAIL, ESRCH, ENOENT). */
export class NetlinkNotFoundError extends NetlinkError {
  override readonly name: string = "NetlinkNotFoundError";
}

/** errnos that mean "the object is not there" for rtnetlink deletes and gets. */
const NOT_FOUND = new Set<number>([constants.errno.ENODEV, constants.errno.EADDRNOTAVAIL, constants.errno.ESRCH, constants.errno.ENOENT]);

/** Build the right error class for an errno. */
export function netlinkError(op: string, errno: number, description: string, extAck: string | null = null): NetlinkError {
  return NOT_FOUND.has(errno)
    ? new NetlinkNotFoundError(op, errno, description, extAck)
    : new NetlinkError(op, errno, description, extAck);
}

/** True if `e` says the object was absent; use it to make deletes idempotent. */
export function isNotFound(e: unknown): e is NetlinkNotFoundError {
  return e instanceof NetlinkNotFoundError;
}

/** An argument the kernel would reject (or misread), caught before the syscall. */
export class NetlinkArgumentError extends Error {
  override readonly name: string = "NetlinkArgumentError";
}

/** Entering, leaving or opening a network namespace failed. */
export class NetnsError extends Error {
  override readonly name: string = "NetnsError";
  /** The namespace path involved. */
  readonly path: string;
  constructor(message: string, path: string, options?: { cause?: unknown }) {
    super(message, options);
    this.path = path;
  }
}

/** Linux IFNAMSIZ is 16 including the NUL. */
export const IFNAME_MAX_BYTES = 15;

/**
 * Reject interface names the kernel would refuse (too long, empty, "/", ":",
 * whitespace, "." and ".."), naming the operation so the caller sees which call failed.
 */
export function checkIfName(op: string, name: string): void {
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes === 0) throw new NetlinkArgumentError(`${op}: interface name is empty`);
  if (bytes > IFNAME_MAX_BYTES) {
    throw new NetlinkArgumentError(`${op}: interface name "${name}" is ${bytes} bytes, at most ${IFNAME_MAX_BYTES} allowed`);
  }
  if (name === "." || name === ".." || /[/:\s]/.test(name)) {
    throw new NetlinkArgumentError(`${op}: interface name "${name}" contains a character the kernel refuses`);
  }
}
