// SPDX-License-Identifier: Apache-2.0
// sysctl reads and writes through /proc/sys, optionally inside another netns.
//
// /proc/sys/net/* resolves against the netns of the *calling thread* at open
// time, and fs.*Sync runs on the main thread, so writing while withNetns()
// has switched us in reaches the pod's netns (test/privileged/netlink.test.ts
// checks this). Async fs would run on a libuv worker in the host netns: never use it here.
//
// API: sysctlPath, writeSysctl, readSysctl; class SysctlError.
import * as fs from "node:fs";
import { withNetns } from "./netns.js";

/** A sysctl read or write failed; names the key and netns. */
export class SysctlError extends Error {
  override readonly name: string = "SysctlError";
}

/**
 * "net.ipv6.conf.eth0.disable_ipv6" -> "/proc/sys/net/ipv6/conf/eth0/disable_ipv6".
 * A key containing "/" is taken as a path below /proc/sys (use it for interface names with dots).
 */
export function sysctlPath(key: string): string {
  const rel = key.includes("/") ? key.replace(/^\/+/, "") : key.replace(/\./g, "/");
  if (rel.split("/").some((p) => p === ".." || p === "")) throw new SysctlError(`sysctl ${key}: invalid key`);
  return `/proc/sys/${rel}`;
}

/** Write a sysctl, in the current netns or in `opts.netns`. */
export function writeSysctl(key: string, value: string | number, opts: { netns?: string | null } = {}): void {
  const path = sysctlPath(key);
  const write = (): void => {
    try {
      fs.writeFileSync(path, `${value}\n`);
    } catch (e: unknown) {
      throw new SysctlError(`write sysctl ${key}=${value}${where(opts.netns)}: ${describe(e)}`, { cause: e });
    }
  };
  if (opts.netns) withNetns(opts.netns, write);
  else write();
}

/** Read a sysctl (trimmed), in the current netns or in `opts.netns`. */
export function readSysctl(key: string, opts: { netns?: string | null } = {}): string {
  const path = sysctlPath(key);
  const read = (): string => {
    try {
      return fs.readFileSync(path, "utf8").trim();
    } catch (e: unknown) {
      throw new SysctlError(`read sysctl ${key}${where(opts.netns)}: ${describe(e)}`, { cause: e });
    }
  };
  return opts.netns ? withNetns(opts.netns, read) : read();
}

function where(netns: string | null | undefined): string {
  return netns ? ` in netns ${netns}` : "";
}

function describe(e: unknown): string {
  if (e instanceof Error && "code" in e) return e.code === "ENOENT" ? "no such key (ENOENT)" : String(e.code);
  return e instanceof Error ? e.message : String(e);
}
