// SPDX-License-Identifier: Apache-2.0
// State shared by the command groups during one CLI run: the I/O, the
// global options, the (lazily opened) agent connection and the exit code a
// command wants. API: CliContext, Session, parsePositiveInt(), parsePort().
import type { Command } from "commander";
import { AgentConnection, CliError, EXIT } from "./client.js";
import { colorsFor, type CliIo, type Colors, type OutputFormat } from "./output.js";

/** What an action needs. */
export interface Session {
  readonly conn: AgentConnection;
  readonly format: OutputFormat;
  readonly colors: Colors;
  readonly io: CliIo;
}

/** One CLI run. */
export class CliContext {
  /** Set by a command for a non-error outcome with a non-zero code (trace denied). */
  exitCode: number = EXIT.OK;
  private conn: AgentConnection | null = null;

  constructor(readonly io: CliIo) {}

  /** Session for the action of cmd (reads the global --socket and -o). */
  session(cmd: Command): Session {
    const opts = cmd.optsWithGlobals<{ socket: string; output: OutputFormat }>();
    if (this.conn === null) this.conn = new AgentConnection(opts.socket);
    return { conn: this.conn, format: opts.output, colors: colorsFor(this.io), io: this.io };
  }

  close(): void {
    this.conn?.close();
    this.conn = null;
  }
}

/** commander argParser: a non-negative integer, else a usage error. */
export function parseNonNegativeInt(flag: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new CliError(`${flag}: ${JSON.stringify(v)} is not a non-negative integer`, EXIT.USAGE);
    return Number(v);
  };
}

/** commander argParser for ports. */
export function parsePort(flag: string) {
  return (v: string): number => {
    const n = parseNonNegativeInt(flag)(v);
    if (n < 1 || n > 65535) throw new CliError(`${flag}: ${v} is not a port (1-65535)`, EXIT.USAGE);
    return n;
  };
}

/** Protocol names accepted on the command line -> proto enum names. */
export const PROTOCOLS: Readonly<Record<string, "PROTOCOL_TCP" | "PROTOCOL_UDP" | "PROTOCOL_SCTP" | "PROTOCOL_ICMP" | "PROTOCOL_ICMPV6">> = {
  tcp: "PROTOCOL_TCP",
  udp: "PROTOCOL_UDP",
  sctp: "PROTOCOL_SCTP",
  icmp: "PROTOCOL_ICMP",
  icmpv6: "PROTOCOL_ICMPV6",
};

/** commander argParser for --protocol (case-insensitive). */
export function parseProtocol(v: string): (typeof PROTOCOLS)[string] {
  const p = PROTOCOLS[v.toLowerCase()];
  if (p === undefined) throw new CliError(`--protocol: ${JSON.stringify(v)} is not one of TCP, UDP, SCTP, ICMP, ICMPV6`, EXIT.USAGE);
  return p;
}
