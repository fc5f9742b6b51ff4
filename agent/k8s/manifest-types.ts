// SPDX-License-Identifier: Apache-2.0
// Typed views of the Kubernetes objects the policy engine reads, and their
// validation from untyped YAML/JSON.
//
// API: the types `Namespace`, `Pod`, `NetworkPolicy` (networking.k8s.io/v1,
// the whole spec) and their parts; `validateNamespace`, `validatePod`,
// `validateNetworkPolicy` (obj, source) -> `Validated<T>` whose errors are
// `ManifestFieldError`s naming the manifest and the field path, e.g.
// "validate NetworkPolicy default/web (web.yaml): spec.ingress[0].ports[1].endPort:
// 79 is less than port 80"; `policyTypesOf` applies the API server's
// policyTypes defaulting; `podIpsOf`. Only fields the datapath acts on are kept.
import { parseCidr, type Cidr } from "../ipam/cidr.js";

/** Label key -> value. */
export type LabelMap = Readonly<Record<string, string>>;

/** A matchExpressions operator. */
export type SelectorOperator = "In" | "NotIn" | "Exists" | "DoesNotExist";

/** One matchExpressions entry. `values` is non-empty for In/NotIn and absent otherwise. */
export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: SelectorOperator;
  readonly values?: readonly string[];
}

/** metav1.LabelSelector; `{}` selects everything. */
export interface LabelSelector {
  readonly matchLabels?: LabelMap;
  readonly matchExpressions?: readonly LabelSelectorRequirement[];
}

/** L4 protocols a NetworkPolicy port can name. */
export type Protocol = "TCP" | "UDP" | "SCTP";

/** The subset of a Namespace the policy engine reads. */
export interface Namespace {
  readonly metadata: { readonly name: string; readonly labels?: LabelMap };
}

/** A container port; a named one can be referenced from a NetworkPolicy port. */
export interface ContainerPort {
  readonly name?: string;
  readonly containerPort: number;
  /** Defaults to TCP. */
  readonly protocol?: Protocol;
}

/** The subset of a Pod the policy engine reads. */
export interface Pod {
  readonly metadata: { readonly namespace: string; readonly name: string; readonly labels?: LabelMap };
  readonly spec: { readonly containers: readonly { readonly name?: string; readonly ports?: readonly ContainerPort[] }[] };
  readonly status?: { readonly podIP?: string; readonly podIPs?: readonly { readonly ip: string }[] };
}

/** networking.k8s.io/v1 IPBlock. */
export interface IpBlock {
  readonly cidr: string;
  readonly except?: readonly string[];
}

/** One from/to peer; at least one field is set. */
export interface NetworkPolicyPeer {
  readonly podSelector?: LabelSelector;
  readonly namespaceSelector?: LabelSelector;
  readonly ipBlock?: IpBlock;
}

/** One ports entry: protocol (default TCP), port number or name (absent = all), endPort. */
export interface NetworkPolicyPort {
  readonly protocol?: Protocol;
  readonly port?: number | string;
  readonly endPort?: number;
}

/** An ingress rule; absent/empty `from` means every source. */
export interface NetworkPolicyIngressRule {
  readonly from?: readonly NetworkPolicyPeer[];
  readonly ports?: readonly NetworkPolicyPort[];
}

/** An egress rule; absent/empty `to` means every destination. */
export interface NetworkPolicyEgressRule {
  readonly to?: readonly NetworkPolicyPeer[];
  readonly ports?: readonly NetworkPolicyPort[];
}

/** Which directions a policy isolates. */
export type PolicyType = "Ingress" | "Egress";

/** networking.k8s.io/v1 NetworkPolicySpec. */
export interface NetworkPolicySpec {
  readonly podSelector: LabelSelector;
  readonly policyTypes?: readonly PolicyType[];
  readonly ingress?: readonly NetworkPolicyIngressRule[];
  readonly egress?: readonly NetworkPolicyEgressRule[];
}

/** networking.k8s.io/v1 NetworkPolicy. */
export interface NetworkPolicy {
  readonly metadata: { readonly namespace: string; readonly name: string };
  readonly spec: NetworkPolicySpec;
}

/** One invalid field of one manifest. */
export class ManifestFieldError extends Error {
  constructor(
    readonly source: string,
    readonly kind: string,
    /** "namespace/name" (or "name" for cluster-scoped objects). */
    readonly objectName: string,
    /** e.g. "spec.ingress[0].ports[1].endPort". */
    readonly path: string,
    readonly detail: string,
  ) {
    super(`validate ${kind} ${objectName} (${source}): ${path}: ${detail}`);
    this.name = "ManifestFieldError";
  }
}

/** A validation outcome: the typed object, or null and at least one error. */
export type Validated<T> =
  | { readonly value: T; readonly errors: readonly [] }
  | { readonly value: null; readonly errors: readonly ManifestFieldError[] };

/**
 * The effective policyTypes, defaulted as the API server does: when absent or
 * empty, "Ingress" always, plus "Egress" if spec.egress has at least one rule.
 */
export function policyTypesOf(spec: NetworkPolicySpec): ReadonlySet<PolicyType> {
  if (spec.policyTypes && spec.policyTypes.length > 0) return new Set(spec.policyTypes);
  const out = new Set<PolicyType>(["Ingress"]);
  if (spec.egress && spec.egress.length > 0) out.add("Egress");
  return out;
}

/** The pod's IPs (status.podIPs, else status.podIP), deduplicated. */
export function podIpsOf(pod: Pod): string[] {
  const list = pod.status?.podIPs;
  if (!list || list.length === 0) return pod.status?.podIP ? [pod.status.podIP] : [];
  const ips = list.map((p) => p.ip);
  if (pod.status?.podIP) ips.push(pod.status.podIP);
  return [...new Set(ips)];
}

// ---- validation ---------------------------------------------------------

const PROTOCOLS: ReadonlySet<string> = new Set(["TCP", "UDP", "SCTP"]);
const OPERATORS: ReadonlySet<string> = new Set(["In", "NotIn", "Exists", "DoesNotExist"]);
const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// IANA_SVC_NAME: 1-15 chars, lowercase alphanumerics and '-', at least one letter, no "--", no edge '-'.
const SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Collects errors for one manifest. */
class Checker {
  readonly errors: ManifestFieldError[] = [];
  constructor(readonly source: string, readonly kind: string, public objectName: string) {}
  fail(path: string, detail: string): void {
    this.errors.push(new ManifestFieldError(this.source, this.kind, this.objectName, path, detail));
  }
  result<T>(value: T): Validated<T> {
    return this.errors.length === 0 ? { value, errors: [] } : { value: null, errors: this.errors };
  }
  /** The outcome when the object could not be read at all (errors already recorded). */
  failed<T>(): Validated<T> {
    return { value: null, errors: this.errors };
  }
}

function labelKeyProblem(key: string): string | null {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : null;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== null && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return `"${key}" has an invalid prefix`;
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) return `"${key}" is not a valid label key`;
  return null;
}

function labelValueProblem(value: string): string | null {
  if (value === "") return null;
  return value.length > 63 || !LABEL_NAME.test(value) ? `"${value}" is not a valid label value` : null;
}

function readLabels(v: unknown, path: string, c: Checker): LabelMap {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) {
    c.fail(path, "must map strings to strings");
    return {};
  }
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    const kp = labelKeyProblem(k);
    if (kp) c.fail(path, kp);
    if (typeof val !== "string") {
      c.fail(`${path}.${k}`, "must be a string");
      continue;
    }
    const vp = labelValueProblem(val);
    if (vp) c.fail(`${path}.${k}`, vp);
    out[k] = val;
  }
  return out;
}

function readSelector(v: unknown, path: string, c: Checker): LabelSelector {
  if (v === null) return {};
  if (!isObj(v)) {
    c.fail(path, "must be a label selector object");
    return {};
  }
  const out: { matchLabels?: LabelMap; matchExpressions?: LabelSelectorRequirement[] } = {};
  if (v["matchLabels"] !== undefined && v["matchLabels"] !== null) {
    out.matchLabels = readLabels(v["matchLabels"], `${path}.matchLabels`, c);
  }
  const exprs = v["matchExpressions"];
  if (exprs !== undefined && exprs !== null) {
    if (!Array.isArray(exprs)) {
      c.fail(`${path}.matchExpressions`, "must be a list");
    } else {
      out.matchExpressions = [];
      exprs.forEach((e: unknown, i) => {
        const r = readRequirement(e, `${path}.matchExpressions[${i}]`, c);
        if (r) out.matchExpressions?.push(r);
      });
    }
  }
  return out;
}

function readRequirement(e: unknown, p: string, c: Checker): LabelSelectorRequirement | null {
  if (!isObj(e)) {
    c.fail(p, "must be an object with key and operator");
    return null;
  }
  const key = e["key"];
  const op = e["operator"];
  const values = e["values"];
  let ok = true;
  if (typeof key !== "string") {
    c.fail(`${p}.key`, "required");
    ok = false;
  } else {
    const kp = labelKeyProblem(key);
    if (kp) { c.fail(`${p}.key`, kp); ok = false; }
  }
  if (typeof op !== "string" || !OPERATORS.has(op)) {
    c.fail(`${p}.operator`, `${JSON.stringify(op ?? null)} is not one of In, NotIn, Exists, DoesNotExist`);
    return null;
  }
  const list = values === undefined || values === null ? [] : values;
  if (!Array.isArray(list) || list.some((x) => typeof x !== "string")) {
    c.fail(`${p}.values`, "must be a list of strings");
    return null;
  }
  const strs = list as string[];
  if ((op === "In" || op === "NotIn") && strs.length === 0) {
    c.fail(`${p}.values`, `must be non-empty when operator is ${op}`);
    ok = false;
  }
  if ((op === "Exists" || op === "DoesNotExist") && strs.length > 0) {
    c.fail(`${p}.values`, `must be empty when operator is ${op}`);
    ok = false;
  }
  strs.forEach((s, i) => {
    const vp = labelValueProblem(s);
    if (vp) { c.fail(`${p}.values[${i}]`, vp); ok = false; }
  });
  if (!ok || typeof key !== "string") return null;
  const operator = op as SelectorOperator;
  return strs.length > 0 ? { key, operator, values: strs } : { key, operator };
}

function readProtocol(v: unknown, path: string, c: Checker): Protocol | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string" || !PROTOCOLS.has(v)) {
    c.fail(path, `${JSON.stringify(v)} is not one of TCP, UDP, SCTP`);
    return undefined;
  }
  return v as Protocol;
}

function isPortNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 65535;
}

function readPort(v: unknown, p: string, c: Checker): NetworkPolicyPort {
  if (!isObj(v)) {
    c.fail(p, "must be an object");
    return {};
  }
  const out: { protocol?: Protocol; port?: number | string; endPort?: number } = {};
  const protocol = readProtocol(v["protocol"], `${p}.protocol`, c);
  if (protocol) out.protocol = protocol;
  const port = v["port"];
  if (port !== undefined && port !== null) {
    if (typeof port === "number") {
      if (isPortNumber(port)) out.port = port;
      else c.fail(`${p}.port`, `${port} is not in 1..65535`);
    } else if (typeof port === "string") {
      if (port.length > 15 || !SVC_NAME.test(port) || !/[a-z]/.test(port) || port.includes("--")) {
        c.fail(`${p}.port`, `"${port}" is neither a port number nor a valid port name`);
      } else {
        out.port = port;
      }
    } else {
      c.fail(`${p}.port`, "must be a number or a port name");
    }
  }
  const endPort = v["endPort"];
  if (endPort !== undefined && endPort !== null) {
    if (!isPortNumber(endPort)) {
      c.fail(`${p}.endPort`, `${JSON.stringify(endPort)} is not in 1..65535`);
    } else if (port === undefined || port === null) {
      c.fail(`${p}.endPort`, "may not be set without port");
    } else if (typeof port === "string") {
      c.fail(`${p}.endPort`, `may not be set with the named port "${port}"`);
    } else if (typeof port === "number" && endPort < port) {
      c.fail(`${p}.endPort`, `${endPort} is less than port ${port}`);
    } else {
      out.endPort = endPort;
    }
  }
  return out;
}

function cidrOrFail(v: unknown, path: string, c: Checker): Cidr | null {
  if (typeof v !== "string") {
    c.fail(path, "must be a CIDR string");
    return null;
  }
  try {
    return parseCidr(v);
  } catch (e: unknown) {
    c.fail(path, e instanceof Error ? e.message : String(e));
    return null;
  }
}

function readIpBlock(v: unknown, p: string, c: Checker): IpBlock | null {
  if (!isObj(v)) {
    c.fail(p, "must be an object with cidr");
    return null;
  }
  const cidr = cidrOrFail(v["cidr"], `${p}.cidr`, c);
  const exc = v["except"];
  const except: string[] = [];
  if (exc !== undefined && exc !== null) {
    if (!Array.isArray(exc)) c.fail(`${p}.except`, "must be a list of CIDRs");
    else {
      exc.forEach((e: unknown, i) => {
        const ec = cidrOrFail(e, `${p}.except[${i}]`, c);
        if (!ec || !cidr) return;
        const shift = BigInt((cidr.family === 4 ? 32 : 128) - cidr.prefixLen);
        if (ec.family !== cidr.family || ec.prefixLen <= cidr.prefixLen || ec.base >> shift !== cidr.base >> shift) {
          c.fail(`${p}.except[${i}]`, `${ec.text} is not strictly inside ${cidr.text}`);
          return;
        }
        except.push(ec.text);
      });
    }
  }
  if (!cidr) return null;
  return except.length > 0 ? { cidr: cidr.text, except } : { cidr: cidr.text };
}

function readPeer(v: unknown, p: string, c: Checker): NetworkPolicyPeer | null {
  if (!isObj(v)) {
    c.fail(p, "must be an object");
    return null;
  }
  const has = (k: string): boolean => v[k] !== undefined && v[k] !== null;
  const out: { podSelector?: LabelSelector; namespaceSelector?: LabelSelector; ipBlock?: IpBlock } = {};
  if (has("ipBlock")) {
    if (has("podSelector") || has("namespaceSelector")) {
      c.fail(p, "ipBlock may not be combined with podSelector or namespaceSelector");
    }
    const b = readIpBlock(v["ipBlock"], `${p}.ipBlock`, c);
    if (b) out.ipBlock = b;
    return out;
  }
  if (has("podSelector")) out.podSelector = readSelector(v["podSelector"], `${p}.podSelector`, c);
  if (has("namespaceSelector")) out.namespaceSelector = readSelector(v["namespaceSelector"], `${p}.namespaceSelector`, c);
  if (!has("podSelector") && !has("namespaceSelector")) {
    c.fail(p, "must set podSelector, namespaceSelector or ipBlock");
    return null;
  }
  return out;
}

function readList<T>(v: unknown, path: string, c: Checker, each: (x: unknown, p: string) => T | null): T[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) {
    c.fail(path, "must be a list");
    return undefined;
  }
  const out: T[] = [];
  v.forEach((x: unknown, i) => {
    const r = each(x, `${path}[${i}]`);
    if (r !== null) out.push(r);
  });
  return out;
}

function readRule(v: unknown, p: string, c: Checker, peerField: "from" | "to"): { peers?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] } | null {
  if (v === null) return {};
  if (!isObj(v)) {
    c.fail(p, "must be an object");
    return null;
  }
  const peers = readList(v[peerField], `${p}.${peerField}`, c, (x, q) => readPeer(x, q, c));
  const ports = readList(v["ports"], `${p}.ports`, c, (x, q) => readPort(x, q, c));
  return { ...(peers ? { peers } : {}), ...(ports ? { ports } : {}) };
}

function metaOf(obj: unknown, c: Checker, namespaced: boolean): { name: string; namespace: string; labels: LabelMap; raw: Obj } | null {
  if (!isObj(obj)) {
    c.fail("", "must be an object");
    return null;
  }
  const md = obj["metadata"];
  if (!isObj(md) || typeof md["name"] !== "string" || md["name"] === "") {
    c.fail("metadata.name", "required");
    return null;
  }
  const name = md["name"];
  const namespace = namespaced ? (typeof md["namespace"] === "string" && md["namespace"] !== "" ? md["namespace"] : "default") : "";
  c.objectName = namespaced ? `${namespace}/${name}` : name;
  return { name, namespace, labels: readLabels(md["labels"], "metadata.labels", c), raw: obj };
}

/**
 * Validate a NetworkPolicy object as parsed from YAML/JSON. `source` names
 * where it came from (file#doc). A missing metadata.namespace means "default".
 */
export function validateNetworkPolicy(obj: unknown, source: string): Validated<NetworkPolicy> {
  const c = new Checker(source, "NetworkPolicy", "?");
  const m = metaOf(obj, c, true);
  if (!m) return c.failed<NetworkPolicy>();
  const spec = m.raw["spec"];
  if (!isObj(spec)) {
    c.fail("spec", "required");
    return c.failed<NetworkPolicy>();
  }
  let podSelector: LabelSelector = {};
  if (spec["podSelector"] === undefined) c.fail("spec.podSelector", "required (use {} to select every pod)");
  else podSelector = readSelector(spec["podSelector"], "spec.podSelector", c);
  const policyTypes = readList(spec["policyTypes"], "spec.policyTypes", c, (x, p) => {
    if (x === "Ingress" || x === "Egress") return x;
    c.fail(p, `${JSON.stringify(x)} is not one of Ingress, Egress`);
    return null;
  });
  const ingress = readList(spec["ingress"], "spec.ingress", c, (x, p) => {
    const r = readRule(x, p, c, "from");
    return r ? { ...(r.peers ? { from: r.peers } : {}), ...(r.ports ? { ports: r.ports } : {}) } : null;
  });
  const egress = readList(spec["egress"], "spec.egress", c, (x, p) => {
    const r = readRule(x, p, c, "to");
    return r ? { ...(r.peers ? { to: r.peers } : {}), ...(r.ports ? { ports: r.ports } : {}) } : null;
  });
  const out: NetworkPolicySpec = {
    podSelector,
    ...(policyTypes ? { policyTypes } : {}),
    ...(ingress ? { ingress } : {}),
    ...(egress ? { egress } : {}),
  };
  return c.result({ metadata: { namespace: m.namespace, name: m.name }, spec: out });
}

/** Validate a Namespace object (name and labels). */
export function validateNamespace(obj: unknown, source: string): Validated<Namespace> {
  const c = new Checker(source, "Namespace", "?");
  const m = metaOf(obj, c, false);
  if (!m) return c.failed<Namespace>();
  return c.result({ metadata: { name: m.name, labels: m.labels } });
}

/** Validate a Pod object (name, namespace, labels, container ports, pod IPs). */
export function validatePod(obj: unknown, source: string): Validated<Pod> {
  const c = new Checker(source, "Pod", "?");
  const m = metaOf(obj, c, true);
  if (!m) return c.failed<Pod>();
  const spec = isObj(m.raw["spec"]) ? m.raw["spec"] : {};
  const containers = readList(spec["containers"], "spec.containers", c, (x, p) => {
    if (!isObj(x)) {
      c.fail(p, "must be an object");
      return null;
    }
    const ports = readList(x["ports"], `${p}.ports`, c, (y, q): ContainerPort | null => {
      if (!isObj(y)) {
        c.fail(q, "must be an object");
        return null;
      }
      const n = y["containerPort"];
      if (!isPortNumber(n)) {
        c.fail(`${q}.containerPort`, `${JSON.stringify(n ?? null)} is not in 1..65535`);
        return null;
      }
      const protocol = readProtocol(y["protocol"], `${q}.protocol`, c);
      const name = y["name"];
      if (name !== undefined && (typeof name !== "string" || name.length > 15 || !SVC_NAME.test(name))) {
        c.fail(`${q}.name`, `${JSON.stringify(name)} is not a valid port name`);
        return null;
      }
      return { containerPort: n, ...(protocol ? { protocol } : {}), ...(typeof name === "string" ? { name } : {}) };
    });
    return { ...(typeof x["name"] === "string" ? { name: x["name"] } : {}), ...(ports ? { ports } : {}) };
  }) ?? [];
  const st = isObj(m.raw["status"]) ? m.raw["status"] : {};
  const ips: { ip: string }[] = [];
  const addIp = (ip: unknown, p: string): void => {
    if (typeof ip !== "string" || ips.some((x) => x.ip === ip)) return;
    try {
      parseCidr(`${ip}/${ip.includes(":") ? 128 : 32}`);
      ips.push({ ip });
    } catch {
      c.fail(p, `"${ip}" is not an IP address`);
    }
  };
  if (Array.isArray(st["podIPs"])) st["podIPs"].forEach((x: unknown, i) => addIp(isObj(x) ? x["ip"] : x, `status.podIPs[${i}].ip`));
  if (st["podIP"] !== undefined) addIp(st["podIP"], "status.podIP");
  return c.result({
    metadata: { namespace: m.namespace, name: m.name, labels: m.labels },
    spec: { containers },
    ...(ips.length > 0 ? { status: { podIPs: ips } } : {}),
  });
}
