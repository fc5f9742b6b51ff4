// SPDX-License-Identifier: Apache-2.0
// CNI spec versions and the result format of each.
//
// Internally every result is held in the 1.1.0 shape (CniResult). Results
// leave the plugin through formatResult(result, version), which drops what the
// target version does not know; prevResults (and delegate IPAM results) enter
// through parseResult(json, version), which accepts the given version's shape.
//
// Differences that matter here:
// - 0.3.x/0.4.0: every ips[] entry carries "version": "4" | "6" (required).
// - 1.0.0: "version" removed from ips[]; nothing else changed in the result.
// - 1.1.0: interfaces[] may carry mtu/socketPath/pciID, routes[] may carry
//   mtu/advmss/priority/table/scope.
// Results of 0.1.0/0.2.0 (ip4/ip6 objects) are not supported at all.
//
// API: SUPPORTED_VERSIONS, isSupportedVersion, compareVersions, verbAllowed,
// CniResult and friends, formatResult, parseResult, versionJson.
import { CniError, CniErrorCode } from "./errors.js";

/** Versions this plugin speaks, oldest first (reported by VERSION). */
export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
/** The newest version; used when a request names none we can echo. */
export const LATEST_VERSION: CniVersion = "1.1.0";

/** A network interface of a result. */
export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

/** An IP configuration of a result; interface indexes interfaces[]. */
export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

/** A route of a result. */
export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

/** DNS settings of a result. */
export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A result in the 1.1.0 shape, without cniVersion (set on output). */
export interface CniResult {
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns: CniDns;
}

/** True when `v` is one of SUPPORTED_VERSIONS. */
export function isSupportedVersion(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compare two "a.b.c" versions numerically (-1, 0, 1). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(".").map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/** The first spec version that has each verb. */
const VERB_SINCE: Record<string, string> = {
  ADD: "0.1.0", DEL: "0.1.0", VERSION: "0.1.0", CHECK: "0.4.0", STATUS: "1.1.0", GC: "1.1.0",
};

/** Throw IncompatibleVersion unless `verb` exists in spec `version`. */
export function verbAllowed(verb: string, version: string): void {
  const since = VERB_SINCE[verb];
  if (since !== undefined && compareVersions(version, since) < 0) {
    throw new CniError(
      CniErrorCode.IncompatibleVersion,
      `config version ${version} does not allow ${verb}`,
      `${verb} needs cniVersion >= ${since}`,
    );
  }
}

function ipFamily(cidrOrIp: string): "4" | "6" {
  return cidrOrIp.includes(":") ? "6" : "4";
}

/** Render `result` as the JSON object of spec `version`. */
export function formatResult(result: CniResult, version: CniVersion): Record<string, unknown> {
  const v11 = compareVersions(version, "1.1.0") >= 0;
  const v1 = compareVersions(version, "1.0.0") >= 0;
  const interfaces = result.interfaces.map((i) => {
    const o: CniInterface = { name: i.name };
    if (i.mac !== undefined) o.mac = i.mac;
    if (v11 && i.mtu !== undefined) o.mtu = i.mtu;
    if (i.sandbox !== undefined) o.sandbox = i.sandbox;
    if (v11 && i.socketPath !== undefined) o.socketPath = i.socketPath;
    if (v11 && i.pciID !== undefined) o.pciID = i.pciID;
    return o;
  });
  const ips = result.ips.map((ip) => {
    const o: Record<string, unknown> = {};
    if (!v1) o["version"] = ipFamily(ip.address);
    o["address"] = ip.address;
    if (ip.gateway !== undefined) o["gateway"] = ip.gateway;
    if (ip.interface !== undefined) o["interface"] = ip.interface;
    return o;
  });
  const routes = result.routes.map((r) => {
    const o: CniRoute = { dst: r.dst };
    if (r.gw !== undefined) o.gw = r.gw;
    if (v11) {
      for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) {
        if (r[k] !== undefined) o[k] = r[k];
      }
    }
    return o;
  });
  const out: Record<string, unknown> = { cniVersion: version, interfaces, ips, routes, dns: { ...result.dns } };
  return out;
}

function decodeFail(what: string): never {
  throw new CniError(CniErrorCode.DecodingFailure, `decode result: ${what}`);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function optString(o: Record<string, unknown>, k: string, where: string): string | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== "string") decodeFail(`${where}.${k} is not a string`);
  return v;
}

function optInt(o: Record<string, unknown>, k: string, where: string): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) decodeFail(`${where}.${k} is not an integer`);
  return v;
}

function optStrings(o: Record<string, unknown>, k: string, where: string): string[] | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) decodeFail(`${where}.${k} is not a list of strings`);
  return v as string[];
}

function list(o: Record<string, unknown>, k: string): unknown[] {
  const v = o[k];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) decodeFail(`${k} is not a list`);
  return v;
}

/**
 * Parse a result (prevResult, or a delegate IPAM plugin's stdout) written in
 * spec `version` into the internal shape. Throws DecodingFailure (6) on a
 * malformed result and IncompatibleVersion (1) on a pre-0.3 result.
 */
export function parseResult(json: unknown, version: string): CniResult {
  if (!isObject(json)) decodeFail("not a JSON object");
  if (compareVersions(version, "0.3.0") < 0 || "ip4" in json || "ip6" in json) {
    throw new CniError(CniErrorCode.IncompatibleVersion, `decode result: version ${version} results are not supported`);
  }
  const interfaces = list(json, "interfaces").map((x, n) => {
    const w = `interfaces[${n}]`;
    if (!isObject(x)) decodeFail(`${w} is not an object`);
    const name = optString(x, "name", w);
    if (name === undefined) decodeFail(`${w}.name is missing`);
    const i: CniInterface = { name };
    const mac = optString(x, "mac", w);
    if (mac !== undefined) i.mac = mac;
    const mtu = optInt(x, "mtu", w);
    if (mtu !== undefined) i.mtu = mtu;
    const sandbox = optString(x, "sandbox", w);
    if (sandbox !== undefined) i.sandbox = sandbox;
    const socketPath = optString(x, "socketPath", w);
    if (socketPath !== undefined) i.socketPath = socketPath;
    const pciID = optString(x, "pciID", w);
    if (pciID !== undefined) i.pciID = pciID;
    return i;
  });
  const ips = list(json, "ips").map((x, n) => {
    const w = `ips[${n}]`;
    if (!isObject(x)) decodeFail(`${w} is not an object`);
    const address = optString(x, "address", w);
    if (address === undefined || !address.includes("/")) decodeFail(`${w}.address is not an address/prefix`);
    const ip: CniIpConfig = { address };
    const gateway = optString(x, "gateway", w);
    if (gateway !== undefined) ip.gateway = gateway;
    const iface = optInt(x, "interface", w);
    if (iface !== undefined) {
      if (iface < 0 || iface >= interfaces.length) decodeFail(`${w}.interface ${iface} is not an index of interfaces`);
      ip.interface = iface;
    }
    return ip;
  });
  const routes = list(json, "routes").map((x, n) => {
    const w = `routes[${n}]`;
    if (!isObject(x)) decodeFail(`${w} is not an object`);
    const dst = optString(x, "dst", w);
    if (dst === undefined) decodeFail(`${w}.dst is missing`);
    const r: CniRoute = { dst };
    const gw = optString(x, "gw", w);
    if (gw !== undefined) r.gw = gw;
    for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) {
      const v = optInt(x, k, w);
      if (v !== undefined) r[k] = v;
    }
    return r;
  });
  const dns: CniDns = {};
  if (json["dns"] !== undefined && json["dns"] !== null) {
    const d = json["dns"];
    if (!isObject(d)) decodeFail("dns is not an object");
    const ns = optStrings(d, "nameservers", "dns");
    if (ns !== undefined) dns.nameservers = ns;
    const domain = optString(d, "domain", "dns");
    if (domain !== undefined) dns.domain = domain;
    const search = optStrings(d, "search", "dns");
    if (search !== undefined) dns.search = search;
    const options = optStrings(d, "options", "dns");
    if (options !== undefined) dns.options = options;
  }
  return { interfaces, ips, routes, dns };
}

/** The VERSION command's output; echoes the asked version when we speak it. */
export function versionJson(asked: string | null): { cniVersion: string; supportedVersions: string[] } {
  const cniVersion = asked !== null && isSupportedVersion(asked) ? asked : LATEST_VERSION;
  return { cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] };
}
