// SPDX-License-Identifier: Apache-2.0
// Part (a) of bench:datapath: per-packet cost under BPF_PROG_TEST_RUN.
// from_pod itself is measured by bench/datapath-prog.ts (owned with the BPF
// fixture, run here as a child so its method stays in one place); this module
// adds the floor: a program that only returns TC_ACT_OK (bench/tc-ok.bpf.c),
// measured the same way as the established case, in the same run.
//
// API: measureFloor() -> ns, measureFromPod() -> { establishedNs, newConnNs }.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { openObject, progTestRun } from "../../agent/native/libbpf.js";
import { TcpFlags, buildPacket } from "../../test/helpers/packet.js";

const ROOT = resolve(import.meta.dirname, "../..");
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** Thrown when the from_pod benchmark's output cannot be read. */
export class BenchOutputError extends Error {
  constructor(detail: string) {
    super(`read datapath-prog output: ${detail}`);
    this.name = "BenchOutputError";
  }
}

/**
 * ns per packet of tc_ok on a TCP ACK frame: median of `runs` test runs of
 * `repeat` packets each (the same shape as datapath-prog's established case).
 */
export function measureFloor(runs = 200, repeat = 240): number {
  const obj = join(tmpdir(), `twill-bench-tc-ok-${randomBytes(4).toString("hex")}.o`);
  execFileSync("clang", ["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-c", join(ROOT, "bench/tc-ok.bpf.c"), "-o", obj]);
  const o = openObject(obj, { pinRootPath: null, rodata: {} });
  try {
    o.load();
    const frame = buildPacket({ srcMac: "02:00:00:00:00:02", dstMac: "02:00:00:00:01:02", src: "10.244.0.2", dst: "10.244.0.3", ttl: 255, l4: { proto: "tcp", sport: 2000, dport: 80, flags: TcpFlags.ACK } });
    const fd = o.progFd("tc_ok");
    const ns: number[] = [];
    for (let i = 0; i < runs; i++) ns.push(progTestRun(fd, { data: frame, repeat }).durationNs);
    return median(ns);
  } finally {
    o.close();
    rmSync(obj, { force: true });
  }
}

/** from_pod's cost per packet, from bench/datapath-prog.ts (policy entries per endpoint: ~300). */
export function measureFromPod(): { establishedNs: number; newConnNs: number; report: string } {
  const out = execFileSync(process.execPath, ["--import", "tsx", join(ROOT, "bench/datapath-prog.ts")], { cwd: ROOT, encoding: "utf8" });
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (!m?.[1]) throw new BenchOutputError(`no match for ${re.source} in:\n${out}`);
    return Number(m[1]);
  };
  return {
    establishedNs: num(/established tcp to local pod:\s+([\d.]+) ns/),
    newConnNs: num(/first syn to local pod:\s+([\d.-]+) ns/),
    report: out.trim(),
  };
}
