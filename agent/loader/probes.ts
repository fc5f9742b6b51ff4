// SPDX-License-Identifier: Apache-2.0
// Kernel feature probes, run once per process and cached. A probe never
// touches an interface: tcx is probed by creating a tcx link for a trivial
// program on ifindex 0, which a tcx-capable kernel rejects with ENODEV (no
// such device) and an older one with EINVAL (unknown attach type).
//
// API: probeTcx() -> TcxProbe; kernelRelease().
import { release } from "node:os";
import { AttachType, PROG_TYPE_SCHED_CLS, closeFd, linkCreateErrno, progLoadTrivial } from "../native/libbpf.js";
import { Errno } from "../native/errno.js";

/** Result of the tcx probe. */
export interface TcxProbe {
  readonly supported: boolean;
  /** Why, for the log line that says which attach mode is used. */
  readonly reason: string;
}

/** First kernel with tcx links. */
export const TCX_MIN_KERNEL = "6.6";

let tcx: TcxProbe | null = null;

/** Does the kernel have tcx (BPF_TCX_INGRESS/EGRESS links)? Cached. */
export function probeTcx(): TcxProbe {
  if (tcx !== null) return tcx;
  let prog = -1;
  try {
    prog = progLoadTrivial(PROG_TYPE_SCHED_CLS);
    const errno = linkCreateErrno(prog, 0, AttachType.TCX_INGRESS);
    tcx =
      errno === Errno.ENODEV
        ? { supported: true, reason: `kernel ${kernelRelease()} has tcx` }
        : { supported: false, reason: `tcx link probe failed with errno ${errno} (requires >= ${TCX_MIN_KERNEL})` };
  } catch (e: unknown) {
    tcx = { supported: false, reason: `tcx probe failed: ${e instanceof Error ? e.message : String(e)}` };
  } finally {
    closeFd(prog);
  }
  return tcx;
}

/** uname -r */
export function kernelRelease(): string {
  return release();
}
