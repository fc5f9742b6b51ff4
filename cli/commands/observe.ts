// SPDX-License-Identifier: Apache-2.0
// `twill observe`: print flows (drops and new connections) as they were
// decoded by the agent, optionally following new ones until interrupted.
// Verdicts are coloured on a TTY. JSON output is one object per line.
// API: registerObserveCommand(program, ctx), renderFlowLine(), renderLostLine().
import type { Command } from "commander";
import type * as grpc from "@grpc/grpc-js";
import type { Flow__Output } from "../../agent/generated/proto/twill/v1/Flow.js";
import type { FlowPeer__Output } from "../../agent/generated/proto/twill/v1/FlowPeer.js";
import type { LostEvents__Output } from "../../agent/generated/proto/twill/v1/LostEvents.js";
import type { ObserveRequest } from "../../agent/generated/proto/twill/v1/ObserveRequest.js";
import type { ObserveResponse__Output } from "../../agent/generated/proto/twill/v1/ObserveResponse.js";
import { CliError, EXIT } from "../client.js";
import { parseNonNegativeInt, parsePort, parseProtocol, type CliContext } from "../context.js";
import { enumLabel, printStreamItem, type Colors } from "../output.js";

function peerText(p: FlowPeer__Output | null, withPort: boolean): string {
  if (p === null) return "?";
  const who = p.pod !== "" ? `${p.namespace}/${p.pod}` : p.ip;
  const port = withPort ? `:${p.port}` : "";
  return `${who}${port} (id ${p.identity})`;
}

/** One human line per flow. */
export function renderFlowLine(f: Flow__Output, colors: Colors): string {
  const proto = enumLabel(f.protocol, "PROTOCOL_");
  const withPort = proto !== "ICMP" && proto !== "ICMPV6";
  // Second precision is enough to read; JSON keeps the nanoseconds.
  const time = f.time.length >= 23 ? `${f.time.slice(0, 23)}Z` : f.time;
  const verdict =
    f.verdict === "VERDICT_DROPPED"
      ? colors.red(`DROPPED (${f.dropReason === "" ? "unknown" : f.dropReason})`)
      : colors.green("FORWARDED");
  return [
    time,
    `${peerText(f.source, withPort)} -> ${peerText(f.destination, withPort)}`,
    proto,
    enumLabel(f.direction, "DIRECTION_"),
    verdict,
  ].join("  ");
}

/** The notice for lost events. */
export function renderLostLine(l: LostEvents__Output, colors: Colors): string {
  const why = l.source === "LOST_SOURCE_CLIENT" ? "this client read too slowly" : "kernel ring buffer was full";
  return colors.yellow(`EVENTS LOST: ${l.count} (${why})`);
}

const VERDICTS: Readonly<Record<string, "VERDICT_FORWARDED" | "VERDICT_DROPPED">> = {
  forwarded: "VERDICT_FORWARDED",
  dropped: "VERDICT_DROPPED",
};

function parseVerdict(v: string): "VERDICT_FORWARDED" | "VERDICT_DROPPED" {
  const r = VERDICTS[v.toLowerCase()];
  if (r === undefined) throw new CliError(`--verdict: ${JSON.stringify(v)} is not FORWARDED or DROPPED`, EXIT.USAGE);
  return r;
}

interface ObserveOptions {
  follow: boolean;
  last: number;
  namespace: string;
  pod: string;
  identity: number;
  verdict?: "VERDICT_FORWARDED" | "VERDICT_DROPPED";
  protocol?: ReturnType<typeof parseProtocol>;
  port: number;
}

/** Register observe. */
export function registerObserveCommand(program: Command, ctx: CliContext): void {
  program
    .command("observe")
    .description("show datapath flows (drops and new connections)")
    .option("-f, --follow", "keep printing new flows until interrupted", false)
    .option("--last <n>", "at most the last N past flows (default: all kept, none with --follow)", parseNonNegativeInt("--last"), 0)
    .option("-n, --namespace <ns>", "either side in this namespace", "")
    .option("--pod <pod>", "either side is this pod (NAME or NAMESPACE/NAME)", "")
    .option("--identity <id>", "either side has this identity", parseNonNegativeInt("--identity"), 0)
    .option("--verdict <v>", "FORWARDED or DROPPED", parseVerdict)
    .option("--protocol <proto>", "TCP, UDP, SCTP, ICMP or ICMPV6", parseProtocol)
    .option("--port <n>", "source or destination port", parsePort("--port"), 0)
    .action(async (opts: ObserveOptions, cmd: Command) => {
      const { conn, format, io, colors } = ctx.session(cmd);
      const req: ObserveRequest = {
        follow: opts.follow,
        last: opts.last,
        namespace: opts.namespace,
        pod: opts.pod,
        identity: opts.identity,
        verdict: opts.verdict ?? "VERDICT_UNSPECIFIED",
        protocol: opts.protocol ?? "PROTOCOL_UNSPECIFIED",
        port: opts.port,
      };
      await conn.ensureReachable();
      const call = conn.observer.Observe(req);
      // Under a flood one write per flow (a syscall each: stdout pipes are
      // synchronous in Node) limits throughput; collect what arrives in one
      // turn of the event loop and write it at once.
      let pending = "";
      const out = { ...io, stdout: { write: (s: string): boolean => { if (pending === "") setImmediate(flush); pending += s; return true; } } };
      const flush = (): void => { const s = pending; pending = ""; if (s !== "") io.stdout.write(s); };
      const onAbort = (): void => call.cancel();
      io.signal?.addEventListener("abort", onAbort);
      try {
        await new Promise<void>((resolve, reject) => {
          call.on("data", (m: ObserveResponse__Output) => {
            if (m.flow != null) {
              const f = m.flow;
              printStreamItem(out, format, { flow: f }, () => renderFlowLine(f, colors));
            } else if (m.lost != null) {
              const l = m.lost;
              printStreamItem(out, format, { lost: l }, () => renderLostLine(l, colors));
            }
          });
          call.on("end", () => resolve());
          call.on("error", (e: grpc.ServiceError) => {
            // Our own cancel (ctrl-C) is a normal end.
            if (io.signal?.aborted === true) resolve();
            else reject(conn.toCliError(e));
          });
        });
      } finally {
        flush();
        io.signal?.removeEventListener("abort", onAbort);
      }
    });
}
