// SPDX-License-Identifier: Apache-2.0
// How the CLI prints: aligned tables for people, JSON or YAML for scripts,
// and optional colour (TTY only, never when NO_COLOR is set).
//
// API: OutputFormat, OUTPUT_FORMATS, CliIo, formatTable(), formatKeyValues(),
// printResult(), printStreamItem(), Colors, colorsFor(), stripAnsi().
import { stringify as toYaml } from "yaml";

/** Values of -o/--output. */
export const OUTPUT_FORMATS = ["table", "json", "yaml"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Where a command writes; injected so tests capture it. */
export interface CliIo {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
  /** Whether stdout is a terminal (enables colour). */
  readonly isTty: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Aborted on SIGINT: long-running commands (observe --follow) stop cleanly. */
  readonly signal?: AbortSignal;
  /** Read standard input fully (policy validate -). */
  readStdin?(): Promise<string>;
}

/** ANSI colour helpers; identity functions when colour is off. */
export interface Colors {
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  dim(s: string): string;
}

const plain = (s: string): string => s;
const ansi = (code: number) => (s: string): string => `\u001b[${code}m${s}\u001b[0m`;

/** Colours on only for a TTY without NO_COLOR (https://no-color.org). */
export function colorsFor(io: CliIo): Colors {
  const on = io.isTty && (io.env["NO_COLOR"] ?? "") === "";
  return on
    ? { green: ansi(32), red: ansi(31), yellow: ansi(33), dim: ansi(2) }
    : { green: plain, red: plain, yellow: plain, dim: plain };
}

/** Remove ANSI escape sequences (for width computation and tests). */
export function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u001b\[[0-9;]*m/g, "");
}

/**
 * Columns separated by three spaces and padded to the widest cell (colour
 * codes do not count); no trailing spaces. Empty cells print as "-".
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const cells = [headers, ...rows.map((r) => headers.map((_, i) => (r[i] === undefined || r[i] === "" ? "-" : (r[i] as string))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => stripAnsi(r[i] ?? "").length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c + " ".repeat((widths[i] ?? 0) - stripAnsi(c).length)))
        .join("   ")
        .trimEnd(),
    )
    .join("\n") + "\n";
}

/** "Key:   value" lines, keys aligned. */
export function formatKeyValues(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${(k + ":").padEnd(width)}   ${v === "" ? "-" : v}`.trimEnd()).join("\n") + "\n";
}

/**
 * Print a command's result: data as JSON/YAML, or the table renderer's
 * text. data should be the proto message as received, so scripts see the
 * API's field names.
 */
export function printResult(io: CliIo, format: OutputFormat, data: unknown, table: () => string): void {
  if (format === "json") io.stdout.write(JSON.stringify(data, null, 2) + "\n");
  else if (format === "yaml") io.stdout.write(toYaml(data));
  else io.stdout.write(table());
}

/** One element of a stream: a JSON line, a YAML document, or the table line. */
export function printStreamItem(io: CliIo, format: OutputFormat, data: unknown, line: () => string): void {
  if (format === "json") io.stdout.write(JSON.stringify(data) + "\n");
  else if (format === "yaml") io.stdout.write("---\n" + toYaml(data));
  else io.stdout.write(line() + "\n");
}

/** Labels as "k=v, k=v" sorted by key. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k] ?? ""}`)
    .join(", ");
}

/** Strip an enum's type prefix for people: "PROTOCOL_TCP" -> "TCP". */
export function enumLabel(value: string, prefix: string): string {
  return value.startsWith(prefix) ? value.slice(prefix.length) : value;
}
