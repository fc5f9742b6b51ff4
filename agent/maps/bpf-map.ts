// SPDX-License-Identifier: Apache-2.0
// Typed view of one BPF map: an fd plus the generated key/value codecs
// (agent/generated/bpf-types.ts). Batch calls are used where the map type has
// them and fall back to per-element syscalls where it does not (LPM tries,
// older kernels), so callers never care.
//
// API: BpfMap<K,V> (get/set/delete/keys/entries/setMany/deleteMany/close,
// BpfMap.openPinned), PerCpuMap<K,V> (get -> V[] per CPU, entries), UpdateMode.
import {
  UpdateFlags,
  closeFd,
  mapDelete,
  mapDeleteBatch,
  mapKeys,
  mapLookup,
  mapLookupBatch,
  mapUpdate,
  mapUpdateBatch,
  numPossibleCpus,
  objGet,
} from "../native/libbpf.js";
import { BpfError } from "../native/errors.js";
import { Errno } from "../native/errno.js";
import type { Codec } from "../generated/bpf-types.js";

/** How set() treats an existing/missing key. */
export type UpdateMode = "any" | "noexist" | "exist";
const FLAGS: Record<UpdateMode, number> = { any: UpdateFlags.ANY, noexist: UpdateFlags.NOEXIST, exist: UpdateFlags.EXIST };

/** errno values meaning "this map type has no batch operations". */
const BATCH_UNSUPPORTED: readonly number[] = [Errno.EINVAL, Errno.ENOTSUPP, Errno.EOPNOTSUPP];
function isBatchUnsupported(e: unknown): boolean {
  return e instanceof BpfError && BATCH_UNSUPPORTED.includes(e.errno);
}

/** A BPF map with typed keys and values. */
export class BpfMap<K, V> {
  #fd: number;
  #ownsFd: boolean;
  #batch = true;

  /**
   * @param name map name, for messages
   * @param fd map fd; closed by close() only if ownsFd
   */
  constructor(
    readonly name: string,
    fd: number,
    readonly key: Codec<K>,
    readonly value: Codec<V>,
    ownsFd = false,
  ) {
    this.#fd = fd;
    this.#ownsFd = ownsFd;
  }

  /** Open a pinned map (e.g. /sys/fs/bpf/twill/twill_lxc); the BpfMap owns the fd. */
  static openPinned<K, V>(path: string, name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return new BpfMap(name, objGet(path), key, value, true);
  }

  get fd(): number {
    return this.#fd;
  }

  /** Value of key, or null. */
  get(key: K): V | null {
    const raw = mapLookup(this.#fd, this.key.encode(key), this.value.SIZE, this.name);
    return raw === null ? null : this.value.decode(raw);
  }

  /** Insert or replace (mode "any"), insert only ("noexist") or replace only ("exist"). */
  set(key: K, value: V, mode: UpdateMode = "any"): void {
    mapUpdate(this.#fd, this.key.encode(key), this.value.encode(value), FLAGS[mode], this.name);
  }

  /** Delete key; false if it was absent. */
  delete(key: K): boolean {
    return mapDelete(this.#fd, this.key.encode(key), this.name);
  }

  /** All keys. */
  keys(): K[] {
    return mapKeys(this.#fd, this.key.SIZE, this.name).map((k) => this.key.decode(k));
  }

  /** All entries (one batch syscall per 256 where supported). */
  entries(): Array<[K, V]> {
    if (this.#batch) {
      try {
        return mapLookupBatch(this.#fd, this.key.SIZE, this.value.SIZE, 256, this.name).map(({ key, value }) => [
          this.key.decode(key),
          this.value.decode(value),
        ]);
      } catch (e: unknown) {
        if (!isBatchUnsupported(e)) throw e;
        this.#batch = false;
      }
    }
    const out: Array<[K, V]> = [];
    for (const k of mapKeys(this.#fd, this.key.SIZE, this.name)) {
      const v = mapLookup(this.#fd, k, this.value.SIZE, this.name);
      if (v !== null) out.push([this.key.decode(k), this.value.decode(v)]); // deleted meanwhile: skip
    }
    return out;
  }

  /** Insert or replace many entries. */
  setMany(entries: ReadonlyArray<readonly [K, V]>): void {
    if (entries.length === 0) return;
    if (this.#batch) {
      const keys = new Uint8Array(this.key.SIZE * entries.length);
      const values = new Uint8Array(this.value.SIZE * entries.length);
      const kv = new DataView(keys.buffer);
      const vv = new DataView(values.buffer);
      entries.forEach(([k, v], i) => {
        this.key.encodeInto(k, kv, i * this.key.SIZE);
        this.value.encodeInto(v, vv, i * this.value.SIZE);
      });
      try {
        mapUpdateBatch(this.#fd, keys, values, entries.length, UpdateFlags.ANY, this.name);
        return;
      } catch (e: unknown) {
        if (!isBatchUnsupported(e)) throw e;
        this.#batch = false;
      }
    }
    for (const [k, v] of entries) this.set(k, v);
  }

  /**
   * setMany for keys and values already encoded back to back (`count` of
   * each): no per-entry objects, for 100k+ entry syncs.
   */
  setEncoded(keys: Uint8Array, values: Uint8Array, count: number): void {
    if (count === 0) return;
    if (this.#batch) {
      try {
        mapUpdateBatch(this.#fd, keys, values, count, UpdateFlags.ANY, this.name);
        return;
      } catch (e: unknown) {
        if (!isBatchUnsupported(e)) throw e;
        this.#batch = false;
      }
    }
    const ks = this.key.SIZE;
    const vs = this.value.SIZE;
    for (let i = 0; i < count; i++) {
      mapUpdate(this.#fd, keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs), UpdateFlags.ANY, this.name);
    }
  }

  /** Delete many keys; absent keys are ignored. Returns how many were deleted. */
  deleteMany(keys: readonly K[]): number {
    // Per element on purpose: a batch delete stops at the first absent key.
    let n = 0;
    for (const k of keys) if (this.delete(k)) n++;
    return n;
  }

  /** Close the fd if this BpfMap owns it. Idempotent. */
  close(): void {
    if (this.#ownsFd && this.#fd >= 0) closeFd(this.#fd);
    this.#fd = -1;
  }
}

/** A per-CPU map (PERCPU_ARRAY/HASH): each value is one V per possible CPU. */
export class PerCpuMap<K, V> {
  readonly cpus = numPossibleCpus();
  /** The kernel rounds each CPU's slot up to 8 bytes. */
  readonly stride: number;

  constructor(
    readonly name: string,
    readonly fd: number,
    readonly key: Codec<K>,
    readonly value: Codec<V>,
  ) {
    this.stride = Math.ceil(value.SIZE / 8) * 8;
  }

  /** One value per CPU, or null if the key is absent. */
  get(key: K): V[] | null {
    const raw = mapLookup(this.fd, this.key.encode(key), this.stride * this.cpus, this.name);
    return raw === null ? null : this.#split(raw);
  }

  /** All entries, one value per CPU each. */
  entries(): Array<[K, V[]]> {
    return mapLookupBatch(this.fd, this.key.SIZE, this.stride * this.cpus, 64, this.name).map(({ key, value }) => [
      this.key.decode(key),
      this.#split(value),
    ]);
  }

  #split(raw: Uint8Array): V[] {
    const out: V[] = [];
    for (let cpu = 0; cpu < this.cpus; cpu++) out.push(this.value.decode(raw, cpu * this.stride));
    return out;
  }
}
