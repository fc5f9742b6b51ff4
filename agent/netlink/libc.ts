// SPDX-License-Identifier: Apache-2.0
// The libc calls behind netlink and netns switching, through koffi. This file is
// the only one in agent/netlink that imports koffi; every call is synchronous
// on the calling (main JS) thread, which matters because a network namespace
// belongs to a thread (see netns.ts).
//
// API: libc.{socket,bind,send,recv,close,setns,setsockopt}, lastErrno(), strerror().
import koffi from "koffi";

const lib = koffi.load("libc.so.6");

/** Raw libc entry points; each returns -1 and sets errno on failure. */
export const libc = {
  socket: lib.func("int socket(int domain, int type, int protocol)") as (domain: number, type: number, protocol: number) => number,
  bind: lib.func("int bind(int fd, const void *addr, uint32_t len)") as (fd: number, addr: Buffer, len: number) => number,
  send: lib.func("intptr_t send(int fd, const void *buf, size_t len, int flags)") as (fd: number, buf: Buffer, len: number, flags: number) => number,
  recv: lib.func("intptr_t recv(int fd, void *buf, size_t len, int flags)") as (fd: number, buf: Buffer, len: number, flags: number) => number,
  close: lib.func("int close(int fd)") as (fd: number) => number,
  setns: lib.func("int setns(int fd, int nstype)") as (fd: number, nstype: number) => number,
  setsockopt: lib.func("int setsockopt(int fd, int level, int name, const void *val, uint32_t len)") as (
    fd: number, level: number, name: number, val: Buffer, len: number) => number,
};

const strerrorFn = lib.func("const char *strerror(int errnum)") as (n: number) => string;

/** errno of the last failed call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** libc's description of an errno, e.g. "File exists". */
export function strerror(errno: number): string {
  return strerrorFn(errno);
}

/** Constants from <sys/socket.h>, <linux/netlink.h> and <sched.h>. */
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0x80000;
export const NETLINK_ROUTE = 0;
export const SOL_SOCKET = 1;
export const SO_RCVTIMEO = 20;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SOL_NETLINK = 270;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
export const CLONE_NEWNET = 0x40000000;
export const EINTR = 4;
export const EAGAIN = 11;
