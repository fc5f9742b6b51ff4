// SPDX-License-Identifier: Apache-2.0
// Security identity numbers: label sets -> 256.., CIDRs -> 1<<24.. .
//
// API: `IdentityStore` (injected persistence: load()/save(map of key -> number)),
// `IdentityAllocator` (label sets), `CidrIdentityAllocator` (ipBlock CIDRs),
// `IdentityExhaustedError`, `memoryIdentityStore()`.
//
// Both allocators are reference counted: every allocate() is paired with a
// release() of the same number, and a number becomes free only when its last
// holder releases it. Numbers are stable: the same key always gets the same
// number while anyone holds it, and across restarts through the store.
// Entries loaded from the store are "restored": they keep their number with
// no holder until pruneRestored() (call it once the first full sync has
// re-claimed what still exists), so a restart does not renumber live pods.
// Free numbers are handed out from a cursor that moves forward and wraps,
// so a just-released number is reused as late as possible (stale conntrack
// or ipcache entries on other nodes then do not alias a new label set).
import { parseCidr } from "../ipam/cidr.js";
import { labelSetKey, parseLabelSetKey, type SecurityLabels } from "./labels.js";
import { IDENTITY_CIDR_BASE, IDENTITY_CIDR_LAST, IDENTITY_FIRST_LOCAL, IDENTITY_LAST_LOCAL } from "./reserved.js";

/** Where allocations survive restarts; save() receives the whole table each time it changes. */
export interface IdentityStore {
  load(): ReadonlyMap<string, number>;
  save(table: ReadonlyMap<string, number>): void;
}

/** An in-memory store (tests, or when persistence is not wanted). */
export function memoryIdentityStore(initial?: ReadonlyMap<string, number>): IdentityStore & { table: Map<string, number> } {
  const s = {
    table: new Map(initial ?? []),
    load: (): ReadonlyMap<string, number> => new Map(s.table),
    save: (t: ReadonlyMap<string, number>): void => { s.table = new Map(t); },
  };
  return s;
}

/** No free number is left in the range. */
export class IdentityExhaustedError extends Error {
  constructor(readonly first: number, readonly last: number) {
    super(`allocate identity: range ${first}..${last} is exhausted`);
    this.name = "IdentityExhaustedError";
  }
}

/** The outcome of allocate(). */
export interface Allocation {
  readonly identity: number;
  /** True when the number was not in use before (a new identity appeared). */
  readonly created: boolean;
}

/** Key -> number with reference counts; the shared engine of both allocators. */
class RefCountedNumbers {
  private readonly byKey = new Map<string, number>();
  private readonly byNumber = new Map<number, string>();
  private readonly refs = new Map<number, number>();
  private readonly restored = new Set<number>();
  private cursor: number;

  constructor(private readonly store: IdentityStore | null, private readonly first: number, private readonly last: number, validKey: (k: string) => boolean) {
    this.cursor = first;
    for (const [key, n] of store?.load() ?? []) {
      if (n < first || n > last || this.byNumber.has(n) || this.byKey.has(key) || !validKey(key)) continue;
      this.byKey.set(key, n);
      this.byNumber.set(n, key);
      this.restored.add(n);
      if (n >= this.cursor) this.cursor = n + 1 > last ? first : n + 1;
    }
  }

  allocate(key: string): Allocation {
    const known = this.byKey.get(key);
    if (known !== undefined) {
      this.refs.set(known, (this.refs.get(known) ?? 0) + 1);
      this.restored.delete(known);
      return { identity: known, created: false };
    }
    const n = this.nextFree();
    this.byKey.set(key, n);
    this.byNumber.set(n, key);
    this.refs.set(n, 1);
    this.save();
    return { identity: n, created: true };
  }

  /** Drop one reference; true when it was the last one and the number is now free. */
  release(n: number): boolean {
    const r = this.refs.get(n);
    if (r === undefined) return false;
    if (r > 1) {
      this.refs.set(n, r - 1);
      return false;
    }
    this.refs.delete(n);
    this.forget(n);
    this.save();
    return true;
  }

  pruneRestored(): number[] {
    const gone = [...this.restored];
    for (const n of gone) this.forget(n);
    this.restored.clear();
    if (gone.length > 0) this.save();
    return gone.sort((a, b) => a - b);
  }

  numberOf(key: string): number | null {
    return this.byKey.get(key) ?? null;
  }
  keyOf(n: number): string | null {
    return this.byNumber.get(n) ?? null;
  }
  refCount(n: number): number {
    return this.refs.get(n) ?? 0;
  }
  restoredNumbers(): number[] {
    return [...this.restored].sort((a, b) => a - b);
  }
  entries(): [string, number][] {
    return [...this.byKey].sort((a, b) => a[1] - b[1]);
  }

  private forget(n: number): void {
    const key = this.byNumber.get(n);
    if (key !== undefined) this.byKey.delete(key);
    this.byNumber.delete(n);
  }

  private nextFree(): number {
    const size = this.last - this.first + 1;
    if (this.byNumber.size >= size) throw new IdentityExhaustedError(this.first, this.last);
    let n = this.cursor;
    while (this.byNumber.has(n)) n = n >= this.last ? this.first : n + 1;
    this.cursor = n >= this.last ? this.first : n + 1;
    return n;
  }

  private save(): void {
    this.store?.save(new Map(this.byKey));
  }
}

/** Options for tests (small ranges to exercise wrap-around and exhaustion). */
export interface AllocatorRange {
  readonly first?: number;
  readonly last?: number;
}

/**
 * Label set -> identity number in IDENTITY_FIRST_LOCAL..IDENTITY_LAST_LOCAL.
 * The store key is labelSetKey(labels).
 */
export class IdentityAllocator {
  private readonly core: RefCountedNumbers;

  constructor(store: IdentityStore | null = null, range: AllocatorRange = {}) {
    this.core = new RefCountedNumbers(store, range.first ?? IDENTITY_FIRST_LOCAL, range.last ?? IDENTITY_LAST_LOCAL, (k) => {
      try {
        parseLabelSetKey(k);
        return true;
      } catch {
        return false;
      }
    });
  }

  /** Take a reference on the identity of `labels`, allocating it if new. */
  allocate(labels: SecurityLabels): Allocation {
    return this.core.allocate(labelSetKey(labels));
  }

  /** Drop one reference; returns true when the identity is gone (caller removes it from selector caches). */
  release(identity: number): boolean {
    return this.core.release(identity);
  }

  /** Forget restored identities nobody re-claimed since load; returns their numbers. */
  pruneRestored(): number[] {
    return this.core.pruneRestored();
  }

  /** Restored identities not yet re-claimed (they still hold their numbers). */
  restored(): number[] {
    return this.core.restoredNumbers();
  }

  /** The identity of a label set, if allocated or restored. */
  identityOf(labels: SecurityLabels): number | null {
    return this.core.numberOf(labelSetKey(labels));
  }

  /** The labels of an identity, if allocated or restored. */
  labelsOf(identity: number): SecurityLabels | null {
    const k = this.core.keyOf(identity);
    return k === null ? null : parseLabelSetKey(k);
  }

  /** Current holders of an identity (0 for restored or unknown ones). */
  refCount(identity: number): number {
    return this.core.refCount(identity);
  }

  /** Every known identity with its labels, by number. */
  entries(): { identity: number; labels: SecurityLabels }[] {
    return this.core.entries().map(([k, identity]) => ({ identity, labels: parseLabelSetKey(k) }));
  }
}

/**
 * CIDR -> identity number from IDENTITY_CIDR_BASE up, one per distinct CIDR
 * (ipBlock cidr or except entry), keyed by the canonical CIDR text.
 */
export class CidrIdentityAllocator {
  private readonly core: RefCountedNumbers;

  constructor(store: IdentityStore | null = null, range: AllocatorRange = {}) {
    this.core = new RefCountedNumbers(store, range.first ?? IDENTITY_CIDR_BASE, range.last ?? IDENTITY_CIDR_LAST, (k) => {
      try {
        return parseCidr(k).text === k;
      } catch {
        return false;
      }
    });
  }

  /** Take a reference on the identity of `cidr` (any spelling; throws on a bad CIDR). */
  allocate(cidr: string): Allocation {
    return this.core.allocate(parseCidr(cidr).text);
  }

  /** Drop one reference; true when the CIDR identity is gone. */
  release(identity: number): boolean {
    return this.core.release(identity);
  }

  /** Forget restored identities nobody re-claimed since load; returns their numbers. */
  pruneRestored(): number[] {
    return this.core.pruneRestored();
  }

  /** The identity of a CIDR, if allocated or restored. */
  identityOf(cidr: string): number | null {
    return this.core.numberOf(parseCidr(cidr).text);
  }

  /** The canonical CIDR of an identity. */
  cidrOf(identity: number): string | null {
    return this.core.keyOf(identity);
  }

  /** Every known CIDR identity, by number. */
  entries(): { identity: number; cidr: string }[] {
    return this.core.entries().map(([cidr, identity]) => ({ identity, cidr }));
  }
}
