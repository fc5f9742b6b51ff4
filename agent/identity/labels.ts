// SPDX-License-Identifier: Apache-2.0
// Security-relevant labels of a pod and their canonical form.
//
// API: `SecurityLabels` (structured: namespace name, pod labels, namespace
// labels), `securityLabelsOf(namespace, podLabels, namespaceLabels)`,
// `labelSetKey` / `parseLabelSetKey` (canonical, invertible string key),
// `formatSecurityLabels` (sorted "source:key=value" strings), the dropped
// keys `IRRELEVANT_POD_LABELS`.
//
// Flattened, a label set reads like Cilium's:
//   k8s:<pod label key>=<value>
//   k8s:ns-label:<namespace label key>=<value>
//   k8s:io.kubernetes.pod.namespace=<namespace>
// Label keys cannot contain ':', so the prefixes cannot collide with pod
// labels; a pod label literally named io.kubernetes.pod.namespace is dropped
// so that a pod cannot claim another namespace's identity.
import type { LabelMap } from "../k8s/manifest-types.js";

/** The labels a security identity is derived from. */
export interface SecurityLabels {
  readonly namespace: string;
  /** Pod labels minus IRRELEVANT_POD_LABELS. */
  readonly podLabels: LabelMap;
  /** Namespace labels, always including kubernetes.io/metadata.name. */
  readonly namespaceLabels: LabelMap;
}

/** Label key holding the pod's namespace in the flattened form. */
export const POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace";
/** Namespace label the API server sets on every namespace (immutable, = its name). */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

/**
 * Pod labels that controllers stamp per replica or per revision. Keeping them
 * would give every rollout (or every StatefulSet pod) its own identity; as in
 * Cilium they are dropped, so a selector on them never matches in the datapath.
 */
export const IRRELEVANT_POD_LABELS: ReadonlySet<string> = new Set([
  "pod-template-hash",
  "controller-revision-hash",
  "pod-template-generation",
  "statefulset.kubernetes.io/pod-name",
  "apps.kubernetes.io/pod-index",
  "controller-uid",
  "batch.kubernetes.io/controller-uid",
  POD_NAMESPACE_LABEL,
]);

const POD_PREFIX = "k8s:";
const NS_PREFIX = "k8s:ns-label:";

function sortedRecord(m: LabelMap, keep: (k: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(m).filter(keep).sort()) out[k] = m[k] ?? "";
  return out;
}

/**
 * The security labels of a pod in `namespace`. `namespaceLabels` may be
 * undefined when the Namespace object is unknown; kubernetes.io/metadata.name
 * is added as the API server would.
 */
export function securityLabelsOf(namespace: string, podLabels: LabelMap | undefined, namespaceLabels: LabelMap | undefined): SecurityLabels {
  return {
    namespace,
    podLabels: sortedRecord(podLabels ?? {}, (k) => !IRRELEVANT_POD_LABELS.has(k)),
    namespaceLabels: sortedRecord({ ...(namespaceLabels ?? {}), [NAMESPACE_NAME_LABEL]: namespace }, () => true),
  };
}

/** Sorted flattened labels, e.g. ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=default", "k8s:ns-label:team=a"]. */
export function formatSecurityLabels(l: SecurityLabels): string[] {
  const out = [`${POD_PREFIX}${POD_NAMESPACE_LABEL}=${l.namespace}`];
  for (const [k, v] of Object.entries(l.podLabels)) out.push(`${POD_PREFIX}${k}=${v}`);
  for (const [k, v] of Object.entries(l.namespaceLabels)) out.push(`${NS_PREFIX}${k}=${v}`);
  return out.sort();
}

/**
 * Canonical key of a label set: equal label sets give equal keys whatever
 * the insertion order. It is JSON of the sorted [key, value] pairs of the
 * flattened form, so it survives any value and parses back.
 */
export function labelSetKey(l: SecurityLabels): string {
  const pairs: [string, string][] = [[`${POD_PREFIX}${POD_NAMESPACE_LABEL}`, l.namespace]];
  for (const [k, v] of Object.entries(l.podLabels)) {
    if (!IRRELEVANT_POD_LABELS.has(k)) pairs.push([`${POD_PREFIX}${k}`, v]);
  }
  for (const [k, v] of Object.entries(l.namespaceLabels)) pairs.push([`${NS_PREFIX}${k}`, v]);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return JSON.stringify(pairs);
}

/** A key that is not the output of labelSetKey. */
export class LabelSetKeyError extends Error {
  constructor(readonly key: string, detail: string) {
    super(`parse label set key: ${detail}`);
    this.name = "LabelSetKeyError";
  }
}

/** Inverse of labelSetKey (used when identities are restored from storage). */
export function parseLabelSetKey(key: string): SecurityLabels {
  let pairs: unknown;
  try {
    pairs = JSON.parse(key);
  } catch (e: unknown) {
    throw new LabelSetKeyError(key, e instanceof Error ? e.message : String(e));
  }
  if (!Array.isArray(pairs)) throw new LabelSetKeyError(key, "not a list of pairs");
  let namespace: string | null = null;
  const pod: Record<string, string> = {};
  const ns: Record<string, string> = {};
  for (const p of pairs as unknown[]) {
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== "string" || typeof p[1] !== "string") {
      throw new LabelSetKeyError(key, "not a list of [key, value] string pairs");
    }
    const [k, v] = p as [string, string];
    if (k === `${POD_PREFIX}${POD_NAMESPACE_LABEL}`) namespace = v;
    else if (k.startsWith(NS_PREFIX)) ns[k.slice(NS_PREFIX.length)] = v;
    else if (k.startsWith(POD_PREFIX)) pod[k.slice(POD_PREFIX.length)] = v;
    else throw new LabelSetKeyError(key, `unknown label source in "${k}"`);
  }
  if (namespace === null) throw new LabelSetKeyError(key, `no ${POD_NAMESPACE_LABEL} label`);
  return securityLabelsOf(namespace, pod, ns);
}
