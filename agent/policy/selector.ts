// SPDX-License-Identifier: Apache-2.0
// Label selectors, the identities a policy peer selects, and the cache that
// keeps those selections current as identities come and go.
//
// API: `matchesLabelSelector(selector, labels)` (Kubernetes semantics),
// `IdentitySelector` (what one peer / podSelector selects), `peerSelector`,
// `endpointSelector`, `selectorKey`, `IdentitySource`, `selectorMatches`,
// and `SelectorCache` (add/remove selectors, upsert/remove identities ->
// keys of the selectors whose selection changed).
import type { LabelMap, LabelSelector, NetworkPolicyPeer } from "../k8s/manifest-types.js";
import { parseCidr, type Cidr } from "../ipam/cidr.js";
import type { SecurityLabels } from "../identity/labels.js";

/**
 * Whether `labels` satisfy the selector, exactly as k8s.io/apimachinery
 * labels.Selector: matchLabels and every matchExpressions entry must hold;
 * In needs the key present with a listed value; NotIn holds when the key is
 * absent or its value is not listed; Exists / DoesNotExist test presence.
 * `{}` matches everything.
 */
export function matchesLabelSelector(selector: LabelSelector, labels: LabelMap): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  for (const r of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, r.key);
    const value = labels[r.key];
    const listed = has && value !== undefined && (r.values ?? []).includes(value);
    switch (r.operator) {
      case "In": if (!listed) return false; break;
      case "NotIn": if (listed) return false; break;
      case "Exists": if (!has) return false; break;
      case "DoesNotExist": if (has) return false; break;
    }
  }
  return true;
}

/** What a security identity stands for. */
export type IdentitySource =
  | { readonly kind: "labels"; readonly labels: SecurityLabels }
  | { readonly kind: "cidr"; readonly cidr: string };

/**
 * A set of identities a policy refers to.
 * "endpoints": pods whose labels match `podSelector` (null: any pod), in
 * namespaces whose labels match `namespaceSelector` (null: any namespace) and,
 * if `namespace` is set, in that namespace only.
 * "cidr": CIDR identities whose prefix lies inside `cidr` and inside no
 * `except` prefix (see ipcache.ts for why that is exactly "addresses in cidr
 * minus except" once the trie holds every cidr and except prefix).
 */
export type IdentitySelector =
  | {
      readonly kind: "endpoints";
      readonly podSelector: LabelSelector | null;
      readonly namespaceSelector: LabelSelector | null;
      readonly namespace: string | null;
    }
  | { readonly kind: "cidr"; readonly cidr: string; readonly except: readonly string[] };

/**
 * The selector of one NetworkPolicyPeer of a policy in `policyNamespace`:
 * podSelector alone = pods of the policy's namespace; namespaceSelector alone
 * = every pod of matching namespaces; both = AND; ipBlock = CIDR identities.
 */
export function peerSelector(peer: NetworkPolicyPeer, policyNamespace: string): IdentitySelector {
  if (peer.ipBlock) return { kind: "cidr", cidr: peer.ipBlock.cidr, except: peer.ipBlock.except ?? [] };
  const ns = peer.namespaceSelector ?? null;
  return { kind: "endpoints", podSelector: peer.podSelector ?? null, namespaceSelector: ns, namespace: ns === null ? policyNamespace : null };
}

/** The endpoints spec.podSelector of a policy in `namespace` selects. */
export function endpointSelector(podSelector: LabelSelector, namespace: string): IdentitySelector {
  return { kind: "endpoints", podSelector, namespaceSelector: null, namespace };
}

function canonicalLabelSelector(s: LabelSelector | null): unknown {
  if (s === null) return null;
  const ml = Object.entries(s.matchLabels ?? {}).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const ex = (s.matchExpressions ?? [])
    .map((r) => [r.key, r.operator, [...new Set(r.values ?? [])].sort()] as const)
    .map((r) => JSON.stringify(r))
    .sort();
  return [ml, [...new Set(ex)]];
}

/** Canonical key: selectors that select the same way get the same key. */
export function selectorKey(sel: IdentitySelector): string {
  if (sel.kind === "cidr") {
    const except = [...new Set(sel.except.map((e) => parseCidr(e).text))].sort();
    return JSON.stringify(["cidr", parseCidr(sel.cidr).text, except]);
  }
  return JSON.stringify(["endpoints", sel.namespace, canonicalLabelSelector(sel.podSelector), canonicalLabelSelector(sel.namespaceSelector)]);
}

function within(inner: Cidr, outer: Cidr): boolean {
  if (inner.family !== outer.family || inner.prefixLen < outer.prefixLen) return false;
  const shift = BigInt((outer.family === 4 ? 32 : 128) - outer.prefixLen);
  return inner.base >> shift === outer.base >> shift;
}

/** Whether the selector selects an identity standing for `source`. */
export function selectorMatches(sel: IdentitySelector, source: IdentitySource): boolean {
  if (sel.kind === "cidr") {
    if (source.kind !== "cidr") return false;
    const p = parseCidr(source.cidr);
    return within(p, parseCidr(sel.cidr)) && !sel.except.some((e) => within(p, parseCidr(e)));
  }
  if (source.kind !== "labels") return false;
  const l = source.labels;
  if (sel.namespace !== null && l.namespace !== sel.namespace) return false;
  if (sel.podSelector !== null && !matchesLabelSelector(sel.podSelector, l.podLabels)) return false;
  if (sel.namespaceSelector !== null && !matchesLabelSelector(sel.namespaceSelector, l.namespaceLabels)) return false;
  return true;
}

/** The one namespace whose identities a selector can select, or null. */
function boundNamespace(sel: IdentitySelector): string | null {
  return sel.kind === "endpoints" ? sel.namespace : null;
}

function addToIndex<T>(index: Map<string, Set<T>>, ns: string, v: T): void {
  const set = index.get(ns);
  if (set) set.add(v);
  else index.set(ns, new Set([v]));
}

function removeFromIndex<T>(index: Map<string, Set<T>>, ns: string, v: T): void {
  const set = index.get(ns);
  if (!set) return;
  set.delete(v);
  if (set.size === 0) index.delete(ns);
}

interface CachedSelector {
  readonly selector: IdentitySelector;
  refs: number;
  readonly selected: Set<number>;
}

/**
 * The identities each selector in use selects. Policies add() the selectors
 * of their peers (reference counted by key); the identity layer reports
 * identities with upsertIdentity/removeIdentity, which return the keys of
 * the selectors whose selection changed so that only the endpoints whose
 * policy uses them are recompiled.
 */
export class SelectorCache {
  private readonly selectors = new Map<string, CachedSelector>();
  private readonly identities = new Map<number, IdentitySource>();
  // Indexes by namespace: a selector bound to one namespace (a podSelector
  // without namespaceSelector) can only select that namespace's identities,
  // so matching skips the rest (5k namespaced selectors x 10k identities
  // would otherwise be 50M matches on a full sync).
  private readonly identitiesByNs = new Map<string, Set<number>>();
  private readonly selectorsByNs = new Map<string, Set<string>>();
  /** Label selectors not bound to one namespace (with a namespaceSelector). */
  private readonly unboundSelectors = new Set<string>();
  /** CIDR selectors: only they can select CIDR identities, and only CIDR identities. */
  private readonly cidrSelectors = new Set<string>();

  /** Start (or keep) tracking a selector; returns its key. */
  add(sel: IdentitySelector): string {
    const key = selectorKey(sel);
    const known = this.selectors.get(key);
    if (known) {
      known.refs++;
      return key;
    }
    const selected = new Set<number>();
    const ns = boundNamespace(sel);
    if (ns === null) {
      for (const [id, src] of this.identities) if (selectorMatches(sel, src)) selected.add(id);
      (sel.kind === "cidr" ? this.cidrSelectors : this.unboundSelectors).add(key);
    } else {
      for (const id of this.identitiesByNs.get(ns) ?? []) {
        const src = this.identities.get(id);
        if (src && selectorMatches(sel, src)) selected.add(id);
      }
      addToIndex(this.selectorsByNs, ns, key);
    }
    this.selectors.set(key, { selector: sel, refs: 1, selected });
    return key;
  }

  /** Drop one reference to a selector; true when it is no longer tracked. */
  remove(key: string): boolean {
    const s = this.selectors.get(key);
    if (!s) return false;
    if (--s.refs > 0) return false;
    this.selectors.delete(key);
    const ns = boundNamespace(s.selector);
    if (ns === null) (s.selector.kind === "cidr" ? this.cidrSelectors : this.unboundSelectors).delete(key);
    else removeFromIndex(this.selectorsByNs, ns, key);
    return true;
  }

  /** The selectors that could select an identity of `source` (each once: the sets are disjoint). */
  private *candidates(source: IdentitySource): Iterable<string> {
    if (source.kind === "cidr") {
      yield* this.cidrSelectors;
      return;
    }
    yield* this.unboundSelectors;
    const bound = this.selectorsByNs.get(source.labels.namespace);
    if (bound) yield* bound;
  }

  /** Add or replace an identity; returns the keys of selectors whose selection changed. */
  upsertIdentity(identity: number, source: IdentitySource): string[] {
    const old = this.identities.get(identity);
    if (old?.kind === "labels") removeFromIndex(this.identitiesByNs, old.labels.namespace, identity);
    this.identities.set(identity, source);
    if (source.kind === "labels") addToIndex(this.identitiesByNs, source.labels.namespace, identity);
    // A replaced identity may leave selectors the new source cannot reach.
    const keys: Iterable<string> = old ? new Set([...this.candidates(source), ...this.candidates(old)]) : this.candidates(source);
    const changed: string[] = [];
    for (const key of keys) {
      const s = this.selectors.get(key);
      if (!s) continue;
      const now = selectorMatches(s.selector, source);
      if (now !== s.selected.has(identity)) {
        if (now) s.selected.add(identity);
        else s.selected.delete(identity);
        changed.push(key);
      }
    }
    return changed;
  }

  /** Forget an identity; returns the keys of selectors that had selected it. */
  removeIdentity(identity: number): string[] {
    const source = this.identities.get(identity);
    if (!source) return [];
    this.identities.delete(identity);
    if (source.kind === "labels") removeFromIndex(this.identitiesByNs, source.labels.namespace, identity);
    const changed: string[] = [];
    for (const key of this.candidates(source)) if (this.selectors.get(key)?.selected.delete(identity)) changed.push(key);
    return changed;
  }

  /** The identities a tracked selector selects (empty for an unknown key). */
  selections(key: string): ReadonlySet<number> {
    return this.selectors.get(key)?.selected ?? new Set<number>();
  }

  /** What an identity stands for, if known. */
  sourceOf(identity: number): IdentitySource | null {
    return this.identities.get(identity) ?? null;
  }

  /** Whether a selector key is tracked. */
  has(key: string): boolean {
    return this.selectors.has(key);
  }

  /** Keys of every tracked selector. */
  keys(): string[] {
    return [...this.selectors.keys()];
  }
}
