// SPDX-License-Identifier: Apache-2.0
// The typed, validated view of one reflected collection, kept up to date by
// key so that one watch event costs one validation, not a pass over 100k+
// objects.
//
// Rules (as manifest-dir.ts): an object that fails validation keeps its last
// valid version in force and is reported; a deleted object (or one the
// filter now rejects, e.g. a pod that finished) is removed. An object whose
// resourceVersion did not change is not validated again, so a relist after
// a reconnect reports only what really changed.
//
// API: `ValidatedCollection<T>` (`update(keys | null, get, all)`, `values()`,
// `errors()`, `takeChanges()`).
import type { ObjectChanges, ObjectKey, SourceError } from "./cluster-source.js";
import type { KubeObject } from "./kube-client.js";
import type { Validated } from "./manifest-types.js";

interface Entry<T> {
  readonly value: T;
  /** resourceVersion of the raw object the value came from ("" if it had none: always revalidated). */
  readonly version: string;
}

/** Validated objects of one kind, by reflector key ("namespace/name"). */
export class ValidatedCollection<T> {
  private readonly valid = new Map<string, Entry<T>>();
  private readonly failures = new Map<string, SourceError[]>();
  private upserted = new Map<string, T>();
  private removed = new Set<string>();
  private valuesCache: T[] | null = null;

  /**
   * @param describe "Pod ns/name": how errors name the object
   * @param validate raw object -> typed value or errors
   * @param accept objects the source keeps (others count as absent)
   * @param changeKey key used in ObjectChanges (Namespaces: name only)
   */
  constructor(
    private readonly describe: (o: KubeObject) => string,
    private readonly validate: (o: KubeObject, source: string) => Validated<T>,
    private readonly accept: (o: KubeObject) => boolean,
    private readonly changeKey: (reflectorKey: string) => ObjectKey,
  ) {}

  /**
   * Apply what changed in the reflector: `keys` (or every key when null,
   * after a relist), reading current raw objects with `get`; `all` lists the
   * reflector's keys (needed only when keys is null).
   */
  update(keys: Iterable<string> | null, get: (key: string) => KubeObject | undefined, all: () => Iterable<string>): void {
    if (keys === null) {
      const present = new Set(all());
      for (const k of [...this.valid.keys(), ...this.failures.keys()]) if (!present.has(k)) this.refresh(k, undefined);
      for (const k of present) this.refresh(k, get(k));
      return;
    }
    for (const k of keys) this.refresh(k, get(k));
  }

  private refresh(key: string, raw: KubeObject | undefined): void {
    const old = this.valid.get(key);
    if (raw === undefined || !this.accept(raw)) {
      this.failures.delete(key);
      if (old) this.remove(key);
      return;
    }
    const version = raw.metadata.resourceVersion ?? "";
    if (old && version !== "" && old.version === version && !this.failures.has(key)) return;
    const source = this.describe(raw);
    const v = this.validate(raw, source);
    if (v.value === null) {
      // The last valid version (if any) stays in force.
      this.failures.set(key, v.errors.map((e) => ({ source, message: e.message })));
      return;
    }
    this.failures.delete(key);
    this.valid.set(key, { value: v.value, version });
    this.upserted.set(key, v.value);
    this.removed.delete(key);
    this.valuesCache = null;
  }

  private remove(key: string): void {
    this.valid.delete(key);
    this.upserted.delete(key);
    this.removed.add(key);
    this.valuesCache = null;
  }

  /** The values in force (one array, rebuilt only after a change). */
  values(): readonly T[] {
    this.valuesCache ??= [...this.valid.values()].map((e) => e.value);
    return this.valuesCache;
  }

  /** Objects whose latest version is invalid. */
  errors(): SourceError[] {
    return [...this.failures.values()].flat();
  }

  /** What changed since the last call. */
  takeChanges(): ObjectChanges<T> {
    const out = { upserted: [...this.upserted.values()], removed: [...this.removed].map(this.changeKey) };
    this.upserted = new Map();
    this.removed = new Set();
    return out;
  }
}
