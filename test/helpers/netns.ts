// SPDX-License-Identifier: Apache-2.0
// Throwaway network namespaces and veths for privileged tests, built with the
// `ip` tool (tests may shell out; production code speaks netlink directly).
// Everything made here is registered in a Cleanup so afterEach removes it even
// when the test failed half-way.
//
// API: class Cleanup { add(fn), run() }, randomName(prefix, hexChars),
// createNetns(cleanup) -> TestNetns, createVeth(cleanup, opts) -> TestVeth,
// nsExec(netns, cmd, args), ip(args, netns?), ipJson<T>(args, netns?).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

/** Undo actions, run newest first; every action runs even if an earlier one throws. */
export class Cleanup {
  private readonly actions: Array<{ what: string; fn: () => void }> = [];

  /** Register an undo action; `what` names it in the error if it fails. */
  add(what: string, fn: () => void): void {
    this.actions.push({ what, fn });
  }

  /** Run and forget all actions; throws one AggregateError listing every failure. */
  run(): void {
    const errors: Error[] = [];
    for (const a of this.actions.splice(0).reverse()) {
      try {
        a.fn();
      } catch (e: unknown) {
        errors.push(new Error(`cleanup ${a.what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, errors.map((e) => e.message).join("; "));
  }
}

/** prefix + random lowercase hex, e.g. randomName("twt", 8) -> "twt1a2b3c4d". */
export function randomName(prefix: string, hexChars: number): string {
  return prefix + randomBytes(Math.ceil(hexChars / 2)).toString("hex").slice(0, hexChars);
}

/** A netns made by createNetns. */
export interface TestNetns {
  /** e.g. "twt-1a2b3c4d" */
  readonly name: string;
  /** e.g. "/var/run/netns/twt-1a2b3c4d" (what withNetns/NetlinkSocket.open take). */
  readonly path: string;
}

/** Run `ip` (optionally `-n netns`) and return stdout. */
export function ip(args: readonly string[], netns?: string): string {
  const full = netns ? ["-n", netns, ...args] : [...args];
  return execFileSync("ip", full, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Run `ip -j ...` and parse its JSON (empty output parses as []). */
export function ipJson<T>(args: readonly string[], netns?: string): T {
  const out = ip(["-j", ...args], netns).trim();
  return JSON.parse(out === "" ? "[]" : out) as T;
}

/** Run a command inside a netns (`ip netns exec`) and return stdout; throws on non-zero exit. */
export function nsExec(netns: string, cmd: string, args: readonly string[], timeoutMs = 30_000): string {
  return execFileSync("ip", ["netns", "exec", netns, cmd, ...args], {
    encoding: "utf8", timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Make a uniquely named netns (prefix twt-) with lo up; removed by `cleanup`. */
export function createNetns(cleanup: Cleanup): TestNetns {
  const name = randomName("twt-", 8);
  execFileSync("ip", ["netns", "add", name]);
  cleanup.add(`netns ${name}`, () => {
    execFileSync("ip", ["netns", "del", name], { stdio: "ignore" });
  });
  ip(["link", "set", "lo", "up"], name);
  return { name, path: `/var/run/netns/${name}` };
}

/** Options for createVeth. */
export interface VethOptions {
  /** Netns of the first end; absent = the test process's netns. */
  readonly netns?: TestNetns;
  /** Netns the peer goes into. */
  readonly peerNetns: TestNetns;
  /** Defaults: random "twt" + 8 hex and "eth0". */
  readonly name?: string;
  readonly peerName?: string;
}

/** A veth made by createVeth. */
export interface TestVeth {
  readonly name: string;
  readonly peerName: string;
}

/** Make a veth pair with `ip link add`; its deletion is registered in `cleanup`. */
export function createVeth(cleanup: Cleanup, o: VethOptions): TestVeth {
  const name = o.name ?? randomName("twt", 8);
  const peerName = o.peerName ?? "eth0";
  ip(["link", "add", name, "type", "veth", "peer", "name", peerName, "netns", o.peerNetns.name], o.netns?.name);
  cleanup.add(`link ${name}`, () => {
    // Already gone with its netns or a test's own delete: fine.
    try {
      ip(["link", "del", name], o.netns?.name);
    } catch {
      /* absent */
    }
  });
  return { name, peerName };
}
