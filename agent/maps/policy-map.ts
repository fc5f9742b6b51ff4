// SPDX-License-Identifier: Apache-2.0
// twill_policy + twill_policy_slot: each endpoint has two LPM tries of
// policy_key -> policy_entry in twill_policy (slots 0 and 1, outer key
// ifindex * 2 + slot) and twill_policy_slot[ifindex] says which one is in
// force (bpf/lib/policy_types.h; no slot entry = drop with NO_POLICY_MAP).
//
// A change never edits the trie in force. replaceMany() writes the new
// policy into the other slot's trie in place (a diff against what this
// object last wrote there), then flips the slot entry: one hash-map write, in
// force when the syscall returns. A packet reads the slot once, so it sees
// the old trie or the new one, never a mix. Unlike swapping a new inner map
// into the outer map, a flip does not wait for an RCU grace period (the
// kernel does that after every map-in-map update from user space: 10-20 ms
// here), so a change costs well under a millisecond of map writes.
//
// The catch: a program that read the slot just before a flip may still be
// looking up the old trie. Before that trie is written again (the next
// change of the endpoint), one RCU grace period must have passed since the
// flip. Every batch of flips starts an asynchronous grace-period wait
// (membarrier on a worker thread) that marks the retired tries reusable; a
// change that comes sooner waits for one synchronously. Correctness first,
// speed when changes are not back to back. Where membarrier is no grace
// period (one online CPU, nohz_full), the wait is a map-in-map update that
// rewrites an outer entry with the trie it already holds, synchronously.
//
// A new endpoint (its two tries inserted into the outer map: a map-in-map
// update) and a deleted one pay the grace-period wait; changes do not. A
// restarted agent adopts what is pinned: it reads the slot and both tries
// back, and its first write waits for one grace period.
//
// API: PolicyMap (replace/replaceMany/get/delete/ifindexes/slotReusable/close,
// stats),
// PolicyMapOptions, PolicyBtf, PolicyMapEntry, PolicyTooLargeError,
// policyOuterKey.
import { MAP_SPECS, MapName, PolicyEntry, PolicyKey, PolicySlot, U32 } from "../generated/bpf-types.js";
import { closeFd, mapCreate, mapFdById, mapLookup, rcuBarrier, rcuBarrierAsync, rcuBarrierWorks } from "../native/libbpf.js";
import { BpfMap } from "./bpf-map.js";

/** BTF of the loaded object: fd and the type ids of policy_key / policy_entry. */
export interface PolicyBtf {
  readonly fd: number;
  readonly keyTypeId: number;
  readonly valueTypeId: number;
}

/** One entry of an endpoint's policy. */
export interface PolicyMapEntry {
  readonly key: PolicyKey;
  readonly value: PolicyEntry;
}

/** How PolicyMap waits for RCU grace periods. */
export interface PolicyMapOptions {
  /**
   * "membarrier": membarrier(GLOBAL), asynchronously after each batch of
   * flips (falls back to "map-update" where it is no grace period).
   * "map-update": a synchronous map-in-map rewrite when a retired trie is
   * needed again (tests use it to cover the fallback). Default "membarrier".
   */
  readonly graceWait?: "membarrier" | "map-update";
}

const INNER = MAP_SPECS[`${MapName.policy}.inner`];

/** The policy entry count does not fit the inner map template. */
export class PolicyTooLargeError extends Error {
  constructor(ifindex: number, entries: number, max: number) {
    super(`replace policy of ifindex ${ifindex}: ${entries} entries, the map holds ${max}`);
    this.name = "PolicyTooLargeError";
  }
}

type Slot = 0 | 1;

/** twill_policy key of one slot's trie: policy_outer_key() of bpf/lib/policy.h. */
export function policyOuterKey(ifindex: number, slot: Slot): number {
  // Host ifindexes are positive ints, so ifindex * 2 + 1 fits a u32.
  if (!Number.isInteger(ifindex) || ifindex <= 0 || ifindex >= 2 ** 31) throw new RangeError(`policy of ifindex ${ifindex}: not a valid ifindex`);
  return ifindex * 2 + slot;
}

const keyText = (k: PolicyKey): string => `${k.prefixlen}/${k.identity}/${k.direction}/${k.protocol}/${k.dport}`;
const valueText = (v: PolicyEntry): string => `${v.ruleRef}/${v.flags}`;
const other = (s: Slot): Slot => (s === 0 ? 1 : 0);

/** One trie of an endpoint: its fd (kept open) and what it holds. */
interface Trie {
  readonly fd: number;
  readonly map: BpfMap<PolicyKey, PolicyEntry>;
  /** key text -> value text */
  readonly contents: Map<string, string>;
}

/** What the agent knows of one endpoint's two tries. */
interface EndpointTries {
  active: Slot;
  readonly tries: [Trie, Trie];
  /** Epoch at which the inactive trie stopped being (possibly) in use; 0 = never was. */
  retired: number;
}

/** twill_policy and twill_policy_slot. */
export class PolicyMap {
  readonly outer: BpfMap<number, number>;
  readonly slots: BpfMap<number, PolicySlot>;
  /** Counters, for tests and debugging: flips written, synchronous grace-period waits. */
  readonly stats = { flips: 0, syncGraceWaits: 0 };
  private readonly known = new Map<number, EndpointTries>();
  /**
   * Epochs order flips and grace periods: each batch of flips (and each
   * adoption of pinned tries) gets a new epoch; `graceDone` is the last
   * epoch a grace period has passed since. A trie retired at epoch e may be
   * written once graceDone >= e.
   */
  private epoch = 0;
  private graceDone = 0;
  private graceRunning = false;
  private graceAgain = false;
  private useMembarrier: boolean;

  /**
   * @param outerFd fd of twill_policy (not owned)
   * @param slotFd fd of twill_policy_slot (not owned)
   * @param btf BTF for the inner maps (Datapath.btfTypeIds("policy_key", "policy_entry")), or null
   */
  constructor(outerFd: number, slotFd: number, private readonly btf: PolicyBtf | null, options: PolicyMapOptions = {}) {
    this.outer = new BpfMap(MapName.policy, outerFd, U32, U32);
    this.slots = new BpfMap(MapName.policySlot, slotFd, U32, PolicySlot);
    this.useMembarrier = (options.graceWait ?? "membarrier") === "membarrier" && rcuBarrierWorks();
  }

  /** Atomically replace the whole policy of an endpoint. */
  replace(ifindex: number, entries: readonly PolicyMapEntry[]): void {
    this.replaceMany(new Map([[ifindex, entries]]));
  }

  /**
   * Atomically replace the policies of many endpoints (each endpoint sees its
   * old or its new trie, never a mix). Throws PolicyTooLargeError (or a
   * RangeError for a bad ifindex) before touching anything.
   */
  replaceMany(policies: ReadonlyMap<number, readonly PolicyMapEntry[]>): void {
    if (!INNER) throw new Error("replace policy: generated MAP_SPECS lacks the inner map");
    for (const [ifindex, entries] of policies) {
      policyOuterKey(ifindex, 1);
      if (entries.length > INNER.maxEntries) throw new PolicyTooLargeError(ifindex, entries.length, INNER.maxEntries);
    }
    // Adopt pinned tries first, so that one grace-period wait covers them all.
    const fresh: Array<[number, readonly PolicyMapEntry[]]> = [];
    const known: Array<[number, EndpointTries, readonly PolicyMapEntry[]]> = [];
    for (const [ifindex, entries] of policies) {
      const ep = this.known.get(ifindex) ?? this.adopt(ifindex);
      if (ep) known.push([ifindex, ep, entries]);
      else fresh.push([ifindex, entries]);
    }
    const flips: Array<[number, EndpointTries]> = [];
    for (const [ifindex, ep, entries] of known) {
      const next = other(ep.active);
      // The trie about to be written may still serve a program that read the
      // slot before its last flip: never write it before a grace period has
      // passed since. Normally the asynchronous wait started by that flip has
      // done it; back-to-back changes wait here.
      if (ep.retired > this.graceDone) this.waitGrace(ifindex, ep);
      try {
        writeDiff(ep.tries[next], entries);
      } catch (e: unknown) {
        this.forget(ifindex); // not in force, but its contents are unknown now: re-read next time
        throw e;
      }
      flips.push([ifindex, ep]);
    }
    if (fresh.length > 0) this.insertFresh(fresh);
    if (flips.length === 0) return;
    // The flips: one batch of hash-map writes, in force on return.
    try {
      this.slots.setMany(flips.map(([ifindex, ep]) => [ifindex, { slot: other(ep.active) }] as const));
    } catch (e: unknown) {
      // Some flips may have landed: re-read the slots (and wait a grace period) next time.
      for (const [ifindex] of flips) this.forget(ifindex);
      throw e;
    }
    const epoch = ++this.epoch;
    for (const [, ep] of flips) {
      ep.active = other(ep.active);
      ep.retired = epoch;
    }
    this.stats.flips += flips.length;
    this.startGrace();
  }

  /** The policy in force for an endpoint (read from the kernel), or null if it has none. */
  get(ifindex: number): PolicyMapEntry[] | null {
    const slot = this.slots.get(ifindex)?.slot;
    if (slot !== 0 && slot !== 1) return null; // no slot entry: the datapath drops (NO_POLICY_MAP)
    const fd = this.innerFd(ifindex, slot);
    if (fd === null) return null;
    try {
      return new BpfMap(`policy of ifindex ${ifindex}`, fd, PolicyKey, PolicyEntry)
        .entries()
        .map(([key, value]) => ({ key, value }));
    } finally {
      closeFd(fd);
    }
  }

  /**
   * Remove an endpoint's slot entry and tries. The slot goes first: new
   * connections of the endpoint drop with NO_POLICY_MAP from then on.
   */
  delete(ifindex: number): boolean {
    let found = this.slots.delete(ifindex);
    for (const slot of [0, 1] as const) if (this.outer.delete(policyOuterKey(ifindex, slot))) found = true;
    this.forget(ifindex);
    return found;
  }

  /**
   * Whether the endpoint's trie not in force can be written now without a
   * grace-period wait (the asynchronous wait after its last flip is done),
   * or the endpoint is unknown to this object.
   */
  slotReusable(ifindex: number): boolean {
    const ep = this.known.get(ifindex);
    return !ep || ep.retired <= this.graceDone;
  }

  /** Endpoints that have a policy trie or a slot entry. */
  ifindexes(): number[] {
    return [...new Set([...this.outer.keys().map((k) => Math.floor(k / 2)), ...this.slots.keys()])];
  }

  /** Close the inner-map fds this object holds (the maps stay, the outer map references them). */
  close(): void {
    for (const ifindex of [...this.known.keys()]) this.forget(ifindex);
  }

  private forget(ifindex: number): void {
    const ep = this.known.get(ifindex);
    if (!ep) return;
    for (const t of ep.tries) closeFd(t.fd);
    this.known.delete(ifindex);
  }

  /** fd of one slot's trie (caller closes it), or null. */
  private innerFd(ifindex: number, slot: Slot): number | null {
    // A map-of-maps lookup from user space returns the inner map's id.
    const raw = mapLookup(this.outer.fd, U32.encode(policyOuterKey(ifindex, slot)), 4, MapName.policy);
    return raw === null ? null : mapFdById(U32.decode(raw));
  }

  /**
   * Read back an endpoint's tries from the maps (a restarted agent, or after
   * a failed write), or null when it has not both.
   */
  private adopt(ifindex: number): EndpointTries | null {
    const tries: Trie[] = [];
    for (const slot of [0, 1] as const) {
      const fd = this.innerFd(ifindex, slot);
      if (fd === null) break;
      const map = new BpfMap(`policy of ifindex ${ifindex} slot ${slot}`, fd, PolicyKey, PolicyEntry);
      tries.push({ fd, map, contents: new Map(map.entries().map(([k, v]) => [keyText(k), valueText(v)])) });
    }
    if (tries.length < 2) {
      for (const t of tries) closeFd(t.fd);
      return null;
    }
    // No slot entry (an agent stopped between inserting the tries and
    // writing it): nothing is in force; write slot 1, then flip to it.
    const active: Slot = this.slots.get(ifindex)?.slot === 1 ? 1 : 0;
    // Unknown when the slot last flipped (the previous agent may have done it
    // just before it stopped): a new epoch, so the first write waits for a
    // grace period that starts after now (one wait covers every adoption of
    // a replaceMany, they come first).
    const ep: EndpointTries = { active, tries: tries as [Trie, Trie], retired: ++this.epoch };
    this.known.set(ifindex, ep);
    return ep;
  }

  /**
   * New endpoints: slot 0 filled, slot 1 created with the same contents,
   * both inserted with one outer-map batch (a map-in-map update: one
   * grace-period wait), then the slot entries, last. Until then the
   * endpoint has no slot entry and drops (NO_POLICY_MAP). A leftover slot
   * entry (an agent stopped while removing the endpoint) may point at either
   * slot meanwhile: both hold the new policy.
   */
  private insertFresh(items: readonly (readonly [number, readonly PolicyMapEntry[]])[]): void {
    const created: Array<[number, [Trie, Trie]]> = [];
    try {
      for (const [ifindex, entries] of items) {
        const pair = [this.createTrie(ifindex, 0), this.createTrie(ifindex, 1)] as [Trie, Trie];
        created.push([ifindex, pair]);
        for (const t of pair) writeDiff(t, entries);
      }
      this.outer.setMany(created.flatMap(([ifindex, pair]) => [[policyOuterKey(ifindex, 0), pair[0].fd], [policyOuterKey(ifindex, 1), pair[1].fd]] as const));
      this.slots.setMany(items.map(([ifindex]) => [ifindex, { slot: 0 }] as const));
    } catch (e: unknown) {
      for (const [, pair] of created) for (const t of pair) closeFd(t.fd);
      throw e;
    }
    for (const [ifindex, tries] of created) {
      this.forget(ifindex);
      // Slot 1 was never in force: writable at once.
      this.known.set(ifindex, { active: 0, tries, retired: 0 });
    }
  }

  private createTrie(ifindex: number, slot: Slot): Trie {
    if (!INNER) throw new Error("create policy trie: generated MAP_SPECS lacks the inner map");
    const fd = mapCreate({
      type: INNER.type,
      // BPF_OBJ_NAME_LEN is 16: "tw_pol_" + up to 8 chars
      name: `tw_pol_${ifindex}${slot === 1 ? "b" : ""}`.slice(0, 15),
      keySize: PolicyKey.SIZE,
      valueSize: PolicyEntry.SIZE,
      maxEntries: INNER.maxEntries,
      flags: INNER.flags,
      btf: this.btf,
    });
    return { fd, map: new BpfMap(`policy of ifindex ${ifindex} slot ${slot}`, fd, PolicyKey, PolicyEntry), contents: new Map() };
  }

  /**
   * Wait here for a grace period covering every flip so far (`ep`, about to
   * be written, is the endpoint that needs it).
   */
  private waitGrace(ifindex: number, ep: EndpointTries): void {
    const target = this.epoch;
    this.stats.syncGraceWaits++;
    if (this.useMembarrier) {
      try {
        rcuBarrier();
        this.graceDone = Math.max(this.graceDone, target);
        return;
      } catch {
        this.useMembarrier = false; // refused after all: wait the other way from now on
      }
    }
    // The kernel waits for a grace period (synchronize_rcu) after every
    // map-in-map update from user space. Rewriting the retired slot's outer
    // entry with the trie it already holds changes nothing a packet can see.
    const next = other(ep.active);
    this.outer.set(policyOuterKey(ifindex, next), ep.tries[next].fd);
    this.graceDone = Math.max(this.graceDone, target);
  }

  /** Start (or queue) an asynchronous grace-period wait covering every flip so far. */
  private startGrace(): void {
    if (!this.useMembarrier) return; // the next write that needs one waits synchronously
    if (this.graceRunning) {
      this.graceAgain = true;
      return;
    }
    this.graceRunning = true;
    const target = this.epoch;
    rcuBarrierAsync((err) => {
      this.graceRunning = false;
      if (err) {
        this.useMembarrier = false;
        return;
      }
      this.graceDone = Math.max(this.graceDone, target);
      if (this.graceAgain) {
        this.graceAgain = false;
        this.startGrace();
      }
    });
  }
}

/** Make a trie hold exactly `entries`: deletions first (room under max_entries), then one batch of writes. */
function writeDiff(t: Trie, entries: readonly PolicyMapEntry[]): void {
  const want = new Map<string, PolicyMapEntry>();
  for (const e of entries) want.set(keyText(e.key), e);
  for (const [k] of t.contents) {
    if (want.has(k)) continue;
    const [prefixlen, identity, direction, protocol, dport] = k.split("/").map(Number) as [number, number, number, number, number];
    t.map.delete({ prefixlen, identity, direction, protocol, dport });
    t.contents.delete(k);
  }
  const writes: Array<readonly [PolicyKey, PolicyEntry]> = [];
  for (const [k, e] of want) {
    const v = valueText(e.value);
    if (t.contents.get(k) === v) continue;
    writes.push([e.key, e.value]);
    t.contents.set(k, v);
  }
  t.map.setMany(writes);
}
