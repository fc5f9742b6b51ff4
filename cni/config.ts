// SPDX-License-Identifier: Apache-2.0
// CNI request parsing: CNI_* environment + stdin network configuration ->
// one validated CniRequest. Every rejection is a CniError with the spec code
// a runtime expects (4 env, 6 JSON, 7 config, 1 version, 2 unsupported field).
//
// API: parseEnv, parseCniArgs, parseNetConf, requestedIps, hostVethName,
// validateIfname, CniEnv, NetConf, DEFAULT_SOCKET, DEFAULT_MTU, CNI_COMMANDS.
// Optional config fields: socket, mtu, logLevel, ipam, deletionQueueDir,
// runtimeConfig.ips (capability "ips").
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { isIP } from "node:net";
import { DEFAULT_DELETION_QUEUE_DIR } from "./deletion-queue.js";
import { CniError, CniErrorCode } from "./errors.js";
import { isSupportedVersion, parseResult, verbAllowed, type CniResult, type CniVersion } from "./version.js";

/** Verbs of spec 1.1.0. */
export const CNI_COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/** Default agent socket (the agent's --socket default). */
export const DEFAULT_SOCKET = "/var/run/twill/agent.sock";
/** Default MTU of both veth ends. */
export const DEFAULT_MTU = 1500;
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type CniLogLevel = (typeof LOG_LEVELS)[number];

/** The CNI_* environment of one invocation. */
export interface CniEnv {
  readonly command: CniCommand;
  /** Empty for VERSION, STATUS and GC. */
  readonly containerId: string;
  /** Null when absent (allowed for DEL, STATUS, GC, VERSION). */
  readonly netns: string | null;
  readonly ifname: string;
  /** Parsed CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, ...). */
  readonly args: ReadonlyMap<string, string>;
  /** CNI_PATH split on ':'; empty when unset. */
  readonly path: readonly string[];
}

/** One attachment of GC's cni.dev/valid-attachments. */
export interface GcAttachment {
  readonly containerId: string;
  readonly ifname: string;
}

/** The validated plugin configuration. */
export interface NetConf {
  readonly cniVersion: CniVersion;
  readonly name: string;
  readonly type: string;
  readonly socket: string;
  readonly mtu: number;
  readonly logLevel: CniLogLevel;
  /** Where DEL queues deletions while the agent is unreachable. */
  readonly deletionQueueDir: string;
  /** The whole ipam object when ipam.type is set (delegated IPAM), else null. */
  readonly ipam: Readonly<Record<string, unknown>> | null;
  /** Parsed prevResult (chained plugins before us), null when absent. */
  readonly prevResult: CniResult | null;
  /** GC only: attachments the runtime still considers alive. */
  readonly validAttachments: readonly GcAttachment[];
  /** runtimeConfig.ips without prefix lengths ("ips" capability), else empty. */
  readonly runtimeIps: readonly string[];
  /** The stdin object as received, for delegation to an IPAM plugin. */
  readonly raw: Readonly<Record<string, unknown>>;
}

function envError(name: string, detail: string): CniError {
  return new CniError(CniErrorCode.InvalidEnvironment, `invalid ${name}: ${detail}`);
}

function confError(field: string, detail: string): CniError {
  return new CniError(CniErrorCode.InvalidNetworkConfig, `invalid network config ${field}: ${detail}`);
}

// Spec: container IDs are alphanumeric plus _ . -, starting alphanumeric.
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Throw InvalidEnvironment unless `name` is a usable Linux interface name. */
export function validateIfname(name: string): void {
  if (name === "") throw envError("CNI_IFNAME", "is empty");
  if (Buffer.byteLength(name) > 15) throw envError("CNI_IFNAME", `"${name}" is longer than 15 bytes`);
  if (name === "." || name === "..") throw envError("CNI_IFNAME", `"${name}" is not a name`);
  if (/[/:\s]/.test(name)) throw envError("CNI_IFNAME", `"${name}" contains '/', ':' or whitespace`);
}

/** Parse CNI_ARGS ("K1=V1;K2=V2"). */
export function parseCniArgs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (text.trim() === "") return out;
  for (const pair of text.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) throw envError("CNI_ARGS", `"${pair}" is not KEY=VALUE`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/** Read and validate the CNI_* variables for the verb they name. */
export function parseEnv(env: NodeJS.ProcessEnv, pathExists: (p: string) => boolean = fs.existsSync): CniEnv {
  const command = env["CNI_COMMAND"];
  if (command === undefined || command === "") throw envError("CNI_COMMAND", "is not set");
  if (!(CNI_COMMANDS as readonly string[]).includes(command)) {
    throw envError("CNI_COMMAND", `unknown command "${command}"`);
  }
  const cmd = command as CniCommand;
  const perContainer = cmd === "ADD" || cmd === "DEL" || cmd === "CHECK";
  const containerId = env["CNI_CONTAINERID"] ?? "";
  const ifname = env["CNI_IFNAME"] ?? "";
  const netnsRaw = env["CNI_NETNS"] ?? "";
  const netns = netnsRaw === "" ? null : netnsRaw;
  if (perContainer) {
    if (containerId === "") throw envError("CNI_CONTAINERID", "is not set");
    if (!CONTAINER_ID_RE.test(containerId)) {
      throw envError("CNI_CONTAINERID", `"${containerId}" must be alphanumeric, '_', '.' or '-'`);
    }
    validateIfname(ifname);
  }
  if (cmd === "ADD" || cmd === "CHECK") {
    if (netns === null) throw envError("CNI_NETNS", "is not set");
    if (!pathExists(netns)) throw envError("CNI_NETNS", `${netns} does not exist`);
  }
  const args = parseCniArgs(env["CNI_ARGS"] ?? "");
  const path = (env["CNI_PATH"] ?? "").split(":").filter((p) => p !== "");
  return { command: cmd, containerId, netns, ifname, args, path };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Decode stdin as a JSON object; DecodingFailure (6) otherwise. */
export function decodeStdin(text: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e: unknown) {
    throw new CniError(CniErrorCode.DecodingFailure, "decode network config: stdin is not JSON",
      e instanceof Error ? e.message : String(e));
  }
  if (!isObject(json)) throw new CniError(CniErrorCode.DecodingFailure, "decode network config: stdin is not a JSON object");
  return json;
}

/** The cniVersion a request names, or null (used before full validation). */
export function askedVersion(raw: Record<string, unknown>): string | null {
  const v = raw["cniVersion"];
  return typeof v === "string" && v !== "" ? v : null;
}

function parseAttachments(raw: Record<string, unknown>): GcAttachment[] {
  const v = raw["cni.dev/valid-attachments"] ?? raw["cni.dev/attachments"];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw confError("cni.dev/valid-attachments", "is not a list");
  return v.map((a, n) => {
    if (!isObject(a) || typeof a["containerID"] !== "string" || typeof a["ifname"] !== "string") {
      throw confError(`cni.dev/valid-attachments[${n}]`, "needs string containerID and ifname");
    }
    return { containerId: a["containerID"], ifname: a["ifname"] };
  });
}

/**
 * Validate the stdin network configuration for `command`. cniVersion, name
 * and type are required; socket, mtu, logLevel and ipam are optional.
 */
export function parseNetConf(raw: Record<string, unknown>, command: CniCommand): NetConf {
  const version = raw["cniVersion"];
  if (version === undefined) throw confError("cniVersion", "is missing");
  if (typeof version !== "string") throw confError("cniVersion", "is not a string");
  if (!isSupportedVersion(version)) {
    throw new CniError(CniErrorCode.IncompatibleVersion, `incompatible CNI version ${version}`,
      "supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
  }
  verbAllowed(command, version);
  const type = raw["type"];
  if (type === undefined) throw confError("type", "is missing");
  if (typeof type !== "string" || type === "") throw confError("type", "must be a non-empty string");
  // Required by the spec; libcni fills it in for every plugin of a conflist,
  // so a plugin entry there still needs nothing but "type".
  const name = raw["name"];
  if (name === undefined) throw confError("name", "is missing");
  if (typeof name !== "string" || name === "") throw confError("name", "must be a non-empty string");
  const socket = raw["socket"] ?? DEFAULT_SOCKET;
  if (typeof socket !== "string" || socket === "") throw confError("socket", "must be a non-empty path");
  const mtu = raw["mtu"] ?? DEFAULT_MTU;
  if (typeof mtu !== "number" || !Number.isInteger(mtu) || mtu < 576 || mtu > 65535) {
    throw confError("mtu", `${JSON.stringify(mtu)} is not an integer in 576..65535`);
  }
  const logLevel = raw["logLevel"] ?? "warn";
  if (typeof logLevel !== "string" || !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw confError("logLevel", `${JSON.stringify(logLevel)} is not one of ${LOG_LEVELS.join(", ")}`);
  }
  const deletionQueueDir = raw["deletionQueueDir"] ?? DEFAULT_DELETION_QUEUE_DIR;
  if (typeof deletionQueueDir !== "string" || !deletionQueueDir.startsWith("/")) {
    throw confError("deletionQueueDir", "must be an absolute path");
  }
  // We never masquerade: the node's routing decides. Saying yes silently
  // would let a user believe pods are NATed when they are not.
  if (raw["ipMasq"] === true) {
    throw new CniError(CniErrorCode.UnsupportedField, "unsupported field ipMasq: twill-cni does not masquerade");
  }
  let ipam: Record<string, unknown> | null = null;
  const ipamRaw = raw["ipam"];
  if (ipamRaw !== undefined && ipamRaw !== null) {
    if (!isObject(ipamRaw)) throw confError("ipam", "is not an object");
    const t = ipamRaw["type"];
    if (t !== undefined && (typeof t !== "string" || t === "" || t.includes("/"))) {
      throw confError("ipam.type", "must be a plugin file name");
    }
    if (t !== undefined) ipam = ipamRaw;
  }
  const prevRaw = raw["prevResult"];
  const prevResult = prevRaw === undefined || prevRaw === null ? null : parseResult(prevRaw, version);
  const validAttachments = command === "GC" ? parseAttachments(raw) : [];
  const runtimeIps = parseRuntimeIps(raw["runtimeConfig"]);
  return {
    cniVersion: version, name, type, socket, mtu, logLevel: logLevel as CniLogLevel, deletionQueueDir,
    ipam, prevResult, validAttachments, runtimeIps, raw,
  };
}

function bareAddress(field: string, text: string): string {
  const ip = text.split("/")[0] ?? "";
  if (isIP(ip) === 0) throw confError(field, `${JSON.stringify(text)} is not an IP address`);
  return ip;
}

// The "ips" capability (spec CONVENTIONS.md): runtimeConfig.ips is a list of
// addresses, with or without a prefix length.
function parseRuntimeIps(rc: unknown): string[] {
  if (!isObject(rc) || rc["ips"] === undefined || rc["ips"] === null) return [];
  const ips = rc["ips"];
  if (!Array.isArray(ips)) throw confError("runtimeConfig.ips", "is not a list");
  return ips.map((x, n) => {
    if (typeof x !== "string") throw confError(`runtimeConfig.ips[${n}]`, "is not a string");
    return bareAddress(`runtimeConfig.ips[${n}]`, x);
  });
}

/**
 * Addresses the runtime asks for: CNI_ARGS IP= (comma-separated, as
 * host-local reads it) and runtimeConfig.ips, at most one per family.
 */
export function requestedIps(env: CniEnv, conf: NetConf): string[] {
  const fromArgs = (env.args.get("IP") ?? "").split(",").filter((x) => x !== "")
    .map((x) => {
      const ip = x.split("/")[0] ?? "";
      if (isIP(ip) === 0) throw envError("CNI_ARGS", `IP=${x} is not an IP address`);
      return ip;
    });
  const out: string[] = [];
  for (const ip of [...fromArgs, ...conf.runtimeIps]) {
    if (out.includes(ip)) continue;
    if (out.some((o) => isIP(o) === isIP(ip))) {
      throw envError("CNI_ARGS", `more than one IPv${isIP(ip)} address requested (${[...out, ip].join(", ")})`);
    }
    out.push(ip);
  }
  return out;
}

/** Host-side veth name: "tw" + first 11 hex chars of sha256(containerId). */
export function hostVethName(containerId: string): string {
  return "tw" + createHash("sha256").update(containerId).digest("hex").slice(0, 11);
}
