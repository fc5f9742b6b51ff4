// SPDX-License-Identifier: Apache-2.0
// Attaches the loaded programs to a pod's host-side veth: from_pod at ingress,
// to_pod at egress. Nothing is loaded here; the program fds come from the
// Datapath.
// - tcx (kernel >= 6.6, probed once): one BPF link per direction, pinned at
//   <root>/links/<ifindex>_{ingress,egress} so the attachment outlives the
//   agent and a restarted agent finds it. Attaching again updates the pinned
//   link to the given program (idempotent; also how a new object is rolled out).
// - clsact fallback (old kernels, or forced): a clsact qdisc and direct-action
//   filters at a fixed handle/priority, replaced in place on re-attach.
// Detach removes whatever exists (links: detach + unpin; filters: delete) and
// is idempotent.
//
// API: attachEndpoint(options) -> AttachMode; detachEndpoint(bpfRoot, ifindex);
// attachedIfindexes(bpfRoot); linkPinPath(bpfRoot, ifindex, direction).
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  AttachType,
  TcAttachPoint,
  closeFd,
  linkCreate,
  linkDetach,
  linkUpdate,
  objGet,
  objPin,
  tcAttach,
  tcDetach,
  tcHookCreate,
  tcQuery,
} from "../native/libbpf.js";
import { NotSupportedError } from "../native/errors.js";
import { TCX_MIN_KERNEL, probeTcx } from "./probes.js";

/** How a program is attached. */
export type AttachMode = "tcx" | "clsact";
/** Hook side on the host veth. */
export type HookDirection = "ingress" | "egress";

/** tc filter handle/priority used in clsact mode ("tw"). */
export const TC_HANDLE = 0x7477;
export const TC_PRIORITY = 1;

/** Options of attachEndpoint. */
export interface AttachOptions {
  readonly bpfRoot: string;
  /** Host-side veth ifindex. */
  readonly ifindex: number;
  /** Interface name, for messages only. */
  readonly ifname: string;
  readonly fromPodFd: number;
  readonly toPodFd: number;
  /** Use clsact even where tcx exists. */
  readonly forceClsact: boolean;
}

/** Attaching failed; the cause is the native error. */
export class AttachError extends Error {
  constructor(what: string, options: { cause: unknown }) {
    super(`${what}: ${options.cause instanceof Error ? options.cause.message : String(options.cause)}`, options);
    this.name = "AttachError";
  }
}

/** Where the tcx link of one direction is pinned. */
export function linkPinPath(bpfRoot: string, ifindex: number, direction: HookDirection): string {
  return join(bpfRoot, "links", `${ifindex}_${direction}`);
}

/** The attach mode this kernel/config uses. */
export function attachMode(forceClsact: boolean): AttachMode {
  return !forceClsact && probeTcx().supported ? "tcx" : "clsact";
}

/** Attach from_pod (ingress) and to_pod (egress) on a veth; idempotent. */
export function attachEndpoint(o: AttachOptions): AttachMode {
  const mode = attachMode(o.forceClsact);
  const hooks: Array<[HookDirection, number, string]> = [
    ["ingress", o.fromPodFd, "from_pod"],
    ["egress", o.toPodFd, "to_pod"],
  ];
  for (const [dir, progFd, prog] of hooks) {
    const what = `attach ${prog} on ${o.ifname}`;
    try {
      if (mode === "tcx") attachTcx(o.bpfRoot, o.ifindex, dir, progFd, what);
      else attachClsact(o.ifindex, dir, progFd);
    } catch (e: unknown) {
      throw new AttachError(what, { cause: e });
    }
  }
  return mode;
}

function attachTcx(root: string, ifindex: number, dir: HookDirection, progFd: number, what: string): void {
  const pin = linkPinPath(root, ifindex, dir);
  if (existsSync(pin)) {
    const link = objGet(pin);
    try {
      linkUpdate(link, progFd, what);
      return;
    } catch {
      // The link is defunct (its device went away and the ifindex was
      // reused): drop it and create a fresh one below.
      rmSync(pin, { force: true });
    } finally {
      closeFd(link);
    }
  }
  mkdirSync(join(root, "links"), { recursive: true });
  let link: number;
  try {
    link = linkCreate(progFd, ifindex, dir === "ingress" ? AttachType.TCX_INGRESS : AttachType.TCX_EGRESS, what);
  } catch (e: unknown) {
    if (!probeTcx().supported) throw new NotSupportedError(what, "tcx", TCX_MIN_KERNEL);
    throw e;
  }
  try {
    objPin(link, pin);
  } catch (e: unknown) {
    linkDetach(link, what);
    throw e;
  } finally {
    closeFd(link);
  }
}

function attachClsact(ifindex: number, dir: HookDirection, progFd: number): void {
  tcHookCreate(ifindex);
  tcAttach(ifindex, dir === "ingress" ? TcAttachPoint.INGRESS : TcAttachPoint.EGRESS, progFd, TC_HANDLE, TC_PRIORITY);
}

/** Remove both programs from a veth, whichever mode attached them. Returns whether anything was removed. */
export function detachEndpoint(bpfRoot: string, ifindex: number): boolean {
  let removed = false;
  for (const dir of ["ingress", "egress"] as const) {
    const pin = linkPinPath(bpfRoot, ifindex, dir);
    if (existsSync(pin)) {
      try {
        const link = objGet(pin);
        try {
          linkDetach(link, `detach ${dir} of ifindex ${ifindex}`);
        } catch {
          // already defunct: unpinning below releases it
        } finally {
          closeFd(link);
        }
      } finally {
        rmSync(pin, { force: true });
      }
      removed = true;
    }
    const point = dir === "ingress" ? TcAttachPoint.INGRESS : TcAttachPoint.EGRESS;
    if (tcQuery(ifindex, point, TC_HANDLE, TC_PRIORITY) !== null) {
      removed = tcDetach(ifindex, point, TC_HANDLE, TC_PRIORITY) || removed;
    }
  }
  return removed;
}

/** ifindexes that have pinned tcx links under bpfRoot (what a restarted agent adopts). */
export function attachedIfindexes(bpfRoot: string): number[] {
  let names: string[];
  try {
    names = readdirSync(join(bpfRoot, "links"));
  } catch {
    return [];
  }
  const set = new Set<number>();
  for (const n of names) {
    const m = /^(\d+)_(ingress|egress)$/.exec(n);
    if (m) set.add(Number(m[1]));
  }
  return [...set].sort((a, b) => a - b);
}
