// SPDX-License-Identifier: Apache-2.0
// Network-namespace switching for the calling thread.
//
// A netns belongs to a thread, not a process. koffi calls and fs.*Sync calls
// run on Node's main JS thread, so setns() there moves exactly the code that
// runs until we switch back; libuv's threadpool (async fs, dns) stays in the
// host netns. Hence the rule: everything inside withNetns() is synchronous, and
// anything that must live on (a netlink socket) is created inside and used
// after, since a socket stays bound to the netns it was created in.
//
// API: withNetns(path, fn), openNetns(path) -> NetnsHandle, sameNetns(a, b),
// CURRENT_NETNS_PATH.
import * as fs from "node:fs";
import { CLONE_NEWNET, lastErrno, libc, strerror } from "./libc.js";
import { errnoName, NetnsError } from "./errors.js";

/** The netns of the calling thread (not /proc/self, which is the main thread's *process*). */
export const CURRENT_NETNS_PATH = "/proc/thread-self/ns/net";

/** An open netns file descriptor; pass `fd` to IFLA_NET_NS_FD, then close(). */
export interface NetnsHandle {
  readonly path: string;
  readonly fd: number;
  close(): void;
}

/** Open a netns by path (/var/run/netns/x, /proc/PID/ns/net) with O_CLOEXEC. */
export function openNetns(path: string): NetnsHandle {
  let fd: number;
  try {
    // fs.openSync always adds O_CLOEXEC and runs on this thread.
    fd = fs.openSync(path, fs.constants.O_RDONLY);
  } catch (e: unknown) {
    const code = e instanceof Error && "code" in e ? String(e.code) : "unknown error";
    throw new NetnsError(`open netns ${path}: ${code === "ENOENT" ? "no such namespace (ENOENT)" : code}`, path, { cause: e });
  }
  let closed = false;
  return {
    path,
    fd,
    close(): void {
      if (closed) return;
      closed = true;
      fs.closeSync(fd);
    },
  };
}

function enter(fd: number, path: string, what: string): void {
  if (libc.setns(fd, CLONE_NEWNET) !== 0) {
    const errno = lastErrno();
    const hint = errnoName(errno) === "EINVAL" ? ": not a network namespace" : "";
    throw new NetnsError(`${what} netns ${path}: ${strerror(errno)} (${errnoName(errno)})${hint}`, path);
  }
}

/**
 * Run `fn` synchronously with the calling thread inside the netns at `path`, and
 * always come back (try/finally). `fn` must not be async: a returned promise
 * would continue in the wrong netns, so it is rejected with an error.
 * Nesting works (each level saves and restores its own previous netns).
 * If switching back fails the thread is in an unknown netns: that NetnsError
 * is fatal and the process should exit.
 */
export function withNetns<T>(path: string, fn: () => T extends PromiseLike<unknown> ? never : T): T {
  const target = openNetns(path);
  let saved: NetnsHandle;
  try {
    saved = openNetns(CURRENT_NETNS_PATH);
  } catch (e: unknown) {
    target.close();
    throw e;
  }
  try {
    enter(target.fd, path, "enter");
    try {
      const result = fn();
      if (result !== null && typeof result === "object" && "then" in result && typeof result.then === "function") {
        throw new NetnsError(`run in netns ${path}: callback returned a promise; only synchronous work may run while switched`, path);
      }
      return result;
    } finally {
      enter(saved.fd, CURRENT_NETNS_PATH, "return from");
    }
  } finally {
    saved.close();
    target.close();
  }
}

/** True if two netns paths name the same namespace (same nsfs inode). */
export function sameNetns(a: string, b: string): boolean {
  const sa = fs.statSync(a);
  const sb = fs.statSync(b);
  return sa.dev === sb.dev && sa.ino === sb.ino;
}
