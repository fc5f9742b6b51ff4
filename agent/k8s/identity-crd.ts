// SPDX-License-Identifier: Apache-2.0
// Cluster-wide security identities, stored as cluster-scoped TwillIdentity
// objects (twill.io/v1) so that every agent maps one label set to one number.
//
// API: `CrdIdentityAllocator` {allocate(labels) -> number, labelsOf(n),
// list(), gc(inUse, graceMs)}; `IdentityCrdError`; the constants
// `TWILL_IDENTITY_PATH`, `LABEL_SET_HASH_LABEL`, `LAST_SEEN_ANNOTATION`.
//
// An object is named by its number ("4711") and holds the canonical label-set
// key (identity/labels.ts labelSetKey) in spec.labels; a label with a hash of
// the key lets an agent find the identity of a label set with one indexed list.
//
// Allocation is create-if-absent, with the API server as the arbiter:
//  1. look the key up (cache, then list by hash label);
//  2. if absent, try numbers in an order derived from the key's hash (so two
//     agents racing for the same label set try the same numbers in the same
//     order and collide on the first one, instead of each taking its own);
//  3. on AlreadyExists, re-read the object: same labels -> use it; other
//     labels -> next number;
//  4. after a successful create, list by hash again: if an identity with the
//     same labels and a lower number exists (a race the ordering could not
//     prevent), the lowest wins everywhere and ours is deleted.
// Garbage collection: every agent stamps the identities still in use with a
// last-seen time (annotation); an identity nobody has stamped for longer than
// the grace period is deleted, with a resourceVersion precondition so a
// concurrent stamp wins over the delete.
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { labelSetKey, parseLabelSetKey, type SecurityLabels } from "../identity/labels.js";
import { IDENTITY_FIRST_LOCAL, IDENTITY_LAST_LOCAL } from "../identity/reserved.js";
import { isKubeApiError, type KubeClient, type KubeList, type KubeObject } from "./kube-client.js";

/** Collection path of the TwillIdentity CRD. */
export const TWILL_IDENTITY_PATH = "/apis/twill.io/v1/twillidentities";
/** Label holding a hash of spec.labels (label values are too short for the key itself). */
export const LABEL_SET_HASH_LABEL = "twill.io/label-set-hash";
/** Annotation: RFC 3339 time an agent last saw the identity in use. */
export const LAST_SEEN_ANNOTATION = "twill.io/last-seen";

/** A failed identity operation (API server refused or unreachable, range exhausted). */
export class IdentityCrdError extends Error {
  override readonly name = "IdentityCrdError";
}

interface TwillIdentityObject extends KubeObject {
  readonly spec?: { readonly labels?: unknown };
}

/** Options of {@link CrdIdentityAllocator}. */
export interface CrdIdentityAllocatorOptions {
  /** Number range (tests use a small one to force collisions); defaults to the local identity range. */
  readonly first?: number;
  readonly last?: number;
  /** Give up after this many taken numbers for one label set; default 64. */
  readonly maxAttempts?: number;
}

/** Label set -> cluster-wide identity number, through TwillIdentity objects. */
export class CrdIdentityAllocator {
  private readonly first: number;
  private readonly last: number;
  private readonly maxAttempts: number;
  /** Known key -> number (ours or found); numbers never change meaning while in use. */
  private readonly byKey = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<number>>();

  constructor(private readonly client: KubeClient, private readonly log: Logger, opts: CrdIdentityAllocatorOptions = {}) {
    this.first = opts.first ?? IDENTITY_FIRST_LOCAL;
    this.last = opts.last ?? IDENTITY_LAST_LOCAL;
    this.maxAttempts = opts.maxAttempts ?? 64;
  }

  /** The cluster-wide identity of `labels`, creating it if no agent has yet. */
  allocate(labels: SecurityLabels): Promise<number> {
    const key = labelSetKey(labels);
    const known = this.byKey.get(key);
    if (known !== undefined) return Promise.resolve(known);
    // Concurrent callers for one label set share one round of API calls.
    let p = this.inflight.get(key);
    if (!p) {
      p = this.allocateKey(key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** The labels of an identity number, or null when no TwillIdentity has that number. */
  async labelsOf(identity: number): Promise<SecurityLabels | null> {
    const obj = await this.get(identity);
    const key = obj ? labelsKeyOf(obj) : null;
    return key === null ? null : parseLabelSetKey(key);
  }

  /** Every valid TwillIdentity, by number. */
  async list(): Promise<{ identity: number; labels: SecurityLabels }[]> {
    const out: { identity: number; labels: SecurityLabels }[] = [];
    for (const o of await this.listObjects("")) {
      const n = numberOf(o);
      const key = labelsKeyOf(o);
      if (n === null || key === null) continue;
      try {
        out.push({ identity: n, labels: parseLabelSetKey(key) });
      } catch {
        // Not written by an agent (hand-made object); ignore it.
      }
    }
    return out.sort((a, b) => a.identity - b.identity);
  }

  /**
   * Stamp the identities in `inUse` as seen now (at most every graceMs/4) and
   * delete the others once nobody has stamped them for `graceMs`. `inUse`
   * should hold the identities of every pod in the cluster this agent knows
   * of, not only local ones. Returns the deleted numbers.
   */
  async gc(inUse: ReadonlySet<number>, graceMs: number, now: number = Date.now()): Promise<number[]> {
    const deleted: number[] = [];
    for (const o of await this.listObjects("")) {
      const n = numberOf(o);
      if (n === null || n < this.first || n > this.last) continue;
      const seen = lastSeenOf(o);
      const name = String(n);
      if (inUse.has(n)) {
        if (now - seen < graceMs / 4) continue;
        const patch = { metadata: { annotations: { [LAST_SEEN_ANNOTATION]: new Date(now).toISOString() } } };
        await this.client
          .request("PATCH", `${TWILL_IDENTITY_PATH}/${name}`, patch, { contentType: "application/merge-patch+json" })
          .catch((e: unknown) => this.log.warn({ identity: n, err: errText(e) }, "stamp identity last-seen failed"));
        continue;
      }
      if (now - seen <= graceMs) continue;
      const body = { apiVersion: "v1", kind: "DeleteOptions", preconditions: { resourceVersion: o.metadata.resourceVersion } };
      try {
        await this.client.request("DELETE", `${TWILL_IDENTITY_PATH}/${name}`, body);
        deleted.push(n);
        const key = labelsKeyOf(o);
        if (key !== null && this.byKey.get(key) === n) this.byKey.delete(key);
      } catch (e: unknown) {
        // 409: another agent stamped it meanwhile (still in use); 404: already gone.
        if (!isKubeApiError(e, 409) && !isKubeApiError(e, 404)) throw wrap(`delete identity ${name}`, e);
      }
    }
    if (deleted.length > 0) this.log.info({ deleted }, "garbage-collected unused identities");
    return deleted.sort((a, b) => a - b);
  }

  private async allocateKey(key: string): Promise<number> {
    const hash = hashOf(key);
    const found = await this.lowestWithKey(key, hash);
    if (found !== null) return this.remember(key, found);
    const size = this.last - this.first + 1;
    const start = Number(BigInt(`0x${hash}`) % BigInt(size));
    for (let attempt = 0; attempt < this.maxAttempts && attempt < size; attempt++) {
      const n = this.first + ((start + attempt) % size);
      const got = await this.tryCreate(n, key, hash);
      if (got === "taken") continue;
      if (got === "ours") {
        // Someone may have created the same label set under another number
        // between our lookup and our create: converge on the lowest.
        const lowest = (await this.lowestWithKey(key, hash)) ?? n;
        if (lowest !== n) {
          this.log.info({ identity: n, winner: lowest }, "identity raced with another agent; keeping the lowest");
          await this.client.request("DELETE", `${TWILL_IDENTITY_PATH}/${n}`).catch(() => undefined);
        }
        return this.remember(key, lowest);
      }
      return this.remember(key, got);
    }
    throw new IdentityCrdError(`allocate identity: no free number after ${Math.min(this.maxAttempts, size)} attempts in ${this.first}..${this.last}`);
  }

  /** Create identity `n`: "ours" when created, the number when it already holds `key`, "taken" otherwise. */
  private async tryCreate(n: number, key: string, hash: string): Promise<"ours" | "taken" | number> {
    const body = {
      apiVersion: "twill.io/v1",
      kind: "TwillIdentity",
      metadata: { name: String(n), labels: { [LABEL_SET_HASH_LABEL]: hash }, annotations: { [LAST_SEEN_ANNOTATION]: new Date().toISOString() } },
      spec: { labels: key },
    };
    for (;;) {
      try {
        await this.client.request("POST", TWILL_IDENTITY_PATH, body);
        return "ours";
      } catch (e: unknown) {
        if (!isKubeApiError(e, 409)) throw wrap(`create identity ${n}`, e);
      }
      const existing = await this.get(n);
      if (existing === null) continue; // deleted between our create and our read: try it again
      return labelsKeyOf(existing) === key ? n : "taken";
    }
  }

  private async lowestWithKey(key: string, hash: string): Promise<number | null> {
    let lowest: number | null = null;
    for (const o of await this.listObjects(`${LABEL_SET_HASH_LABEL}=${hash}`)) {
      const n = numberOf(o);
      if (n !== null && labelsKeyOf(o) === key && (lowest === null || n < lowest)) lowest = n;
    }
    return lowest;
  }

  private async listObjects(labelSelector: string): Promise<TwillIdentityObject[]> {
    const q = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : "";
    try {
      const list = await this.client.request<KubeList<TwillIdentityObject>>("GET", `${TWILL_IDENTITY_PATH}${q}`);
      return [...list.items];
    } catch (e: unknown) {
      throw wrap("list identities", e);
    }
  }

  private async get(n: number): Promise<TwillIdentityObject | null> {
    try {
      return await this.client.request<TwillIdentityObject>("GET", `${TWILL_IDENTITY_PATH}/${n}`);
    } catch (e: unknown) {
      if (isKubeApiError(e, 404)) return null;
      throw wrap(`get identity ${n}`, e);
    }
  }

  private remember(key: string, n: number): number {
    this.byKey.set(key, n);
    return n;
  }
}

function hashOf(key: string): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 32);
}

function numberOf(o: KubeObject): number | null {
  const name = o.metadata.name ?? "";
  return /^[1-9][0-9]{0,9}$/.test(name) ? Number(name) : null;
}

function labelsKeyOf(o: TwillIdentityObject): string | null {
  const l = o.spec?.labels;
  return typeof l === "string" ? l : null;
}

function lastSeenOf(o: KubeObject): number {
  const stamp = o.metadata.annotations?.[LAST_SEEN_ANNOTATION] ?? o.metadata.creationTimestamp ?? "";
  const t = Date.parse(stamp);
  return Number.isNaN(t) ? 0 : t;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function wrap(what: string, e: unknown): IdentityCrdError {
  return new IdentityCrdError(`${what}: ${errText(e)}`, { cause: e });
}
