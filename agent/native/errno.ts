// SPDX-License-Identifier: Apache-2.0
// errno numbers (Linux x86_64/arm64 generic values) the native layer maps to
// typed errors, and their names for messages. Nothing outside agent/native/
// should need these: callers get BpfError subclasses instead.

/** errno values used by the native layer. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTSUP: 95,
  EOPNOTSUPP: 95,
  ENOTSUPP: 524, // kernel-internal "not supported", leaks out of bpf()
} as const;

const NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(Errno)) {
  if (!NAMES.has(value)) NAMES.set(value, name);
}

/** "ENOENT" for 2, "errno 1234" for unknown values. */
export function errnoName(errno: number): string {
  return NAMES.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}
