// SPDX-License-Identifier: Apache-2.0
// twill_policy + twill_policy_slot: each endpoint has two LPM tries of
// policy_key -> policy_entry (slots 0 and 1, outer keys ifindex and
// ifindex | POLICY_SLOT1_BIT) and twill_policy_slot says which one is in
// force (bpf/lib/policy_types.h).
//
// A change never edits the trie in force. replaceMany() writes the new
// policy into the other slot (a diff against what it holds), then flips the
// slot entry: one hash-map write, in force when the syscall returns. A
// packet sees the old trie or the new one, never a mix. Unlike swapping a
// new inner map into the outer map, a flip does not wait for an RCU grace
// period (the kernel does that after every map-in-map update from user
// space: 10-20 ms here), so a change reaches the datapath in well under a
// millisecond of map writes.
//
// The catch: a program that read the slot just before a flip may still be
// looking up the old trie. Before that trie is written again (the next
// change of the endpoint), one RCU grace period must have passed since the
// flip. Every batch of flips starts an asynchronous grace-period wait
// (membarrier on a worker thread); a change that comes sooner waits for one
// synchronously. Correctness first, speed when changes are not back to back.
//
// Only a new endpoint (its two tries inserted into the outer map) and a
// deleted one pay the map-in-map wait. A restarted agent adopts what is
// pinned: it reads the slot and both tries back.
//
// API: PolicyMap (replace/replaceMany/get/delete/ifindexes/close),
// PolicyBtf, PolicyMapEntry, PolicyTooLargeError, POLICY_SLOT1_BIT.
import { MAP_SPECS, MapName, PolicyEntry, PolicyKey, PolicySlot, U32 } from "../generated/bpf-types.js";
import { closeFd, mapCreate, mapFdById, mapLookup, rcuBarrier, rcuBarrierAsync } from "../native/libbpf.js";
import { BpfMap } from "./bpf-map.js";

/** TWILL_POLICY_SLOT1_BIT of bpf/lib/policy_types.h (a #define, so not in BTF; the bpf tests pin it). */
export const POLICY_SLOT1_BIT = 0x80000000;

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

const INNER = MAP_SPECS[`${MapName.policy}.inner`];

/** The policy entry count does not fit the inner map template. */
export class PolicyTooLargeError extends Error {
  constructor(ifindex: number, entries: number, max: number) {
    super(`replace policy of ifindex ${ifindex}: ${entries} entries, the map holds ${max}`);
    this.name = "PolicyTooLargeError";
  }
}

type Slot = 0 | 1;

const outerKey = (ifindex: number, slot: Slot): number => (slot === 0 ? ifindex : (ifindex | POLICY_SLOT1_BIT) >>> 0);
const keyText = (k: PolicyKey): string => `${k.prefixlen}/${k.identity}/${k.direction}/${k.protocol}/${k.dport}`;
const valueText = (v: PolicyEntry): string => `${v.ruleRef}/${v.flags}`;

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
  /** Flip epoch at which the inactive trie stopped being in force. */
  retired: number;
}

/** twill_policy and twill_policy_slot. */
export class PolicyMap {
  readonly outer: BpfMap<number, number>;
  readonly slots: BpfMap<number, PolicySlot>;
  private readonly known = new Map<number, EndpointTries>();
  /**
   * Counts batches of flips; `graceDone` is the last one a grace period has
   * passed since. Epoch 1 stands for "before this agent started": tries
   * adopted from the pins may have been flipped just before (see adopt()).
   */
  private flipEpoch = 1;
  private graceDone = 0;
  private graceRunning = false;
  private graceAgain = false;

  /**
   * @param outerFd fd of twill_policy (not owned)
   * @param slotFd fd of twill_policy_slot (not owned)
   * @param btf BTF for the inner maps (Datapath.btfTypeIds("policy_key", "policy_entry")), or null
   */
  constructor(outerFd: number, slotFd: number, private readonly btf: PolicyBtf | null) {
    this.outer = new BpfMap(MapName.policy, outerFd, U32, U32);
    this.slots = new BpfMap(MapName.policySlot, slotFd, U32, PolicySlot);
  }

  /** Atomically replace the whole policy of an endpoint. */
  replace(ifindex: number, entries: readonly PolicyMapEntry[]): void {
    this.replaceMany(new Map([[ifindex, entries]]));
  }

  /**
   * Atomically replace the policies of many endpoints (each endpoint sees its
   * old or its new trie, never a mix). Throws PolicyTooLargeError before
   * touching anything when one does not fit.
   */
  replaceMany(policies: ReadonlyMap<number, readonly PolicyMapEntry[]>): void {
    if (!INNER) throw new Error("replace policy: generated MAP_SPECS lacks the inner map");
    for (const [ifindex, entries] of policies) {
      if (entries.length > INNER.maxEntries) throw new PolicyTooLargeError(ifindex, entries.length, INNER.maxEntries);
    }
    const fresh: Array<[number, readonly PolicyMapEntry[]]> = [];
    const flips: Array<[number, EndpointTries]> = [];
    for (const [ifindex, entries] of policies) {
      const ep = this.known.get(ifindex) ?? this.adopt(ifindex);
      if (!ep) {
        fresh.push([ifindex, entries]);
        continue;
      }
      const next: Slot = ep.active === 0 ? 1 : 0;
      // The trie about to be written may still serve a program that read the slot before its last flip.
      if (ep.retired > this.graceDone) this.waitGrace();
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
    this.slots.setMany(flips.map(([ifindex, ep]) => [ifindex, { slot: ep.active === 0 ? 1 : 0 }] as const));
    const epoch = ++this.flipEpoch;
    for (const [, ep] of flips) {
      ep.active = ep.active === 0 ? 1 : 0;
      ep.retired = epoch;
    }
    this.startGrace();
  }

  /** The policy in force for an endpoint (read from the kernel), or null if it has none. */
  get(ifindex: number): PolicyMapEntry[] | null {
    const slot = this.slots.get(ifindex)?.slot === 1 ? 1 : 0;
    // A map-of-maps lookup from user space returns the inner map's id.
    const raw = mapLookup(this.outer.fd, U32.encode(outerKey(ifindex, slot)), 4, MapName.policy);
    if (raw === null) return null;
    const fd = mapFdById(U32.decode(raw));
    try {
      return new BpfMap(`policy of ifindex ${ifindex}`, fd, PolicyKey, PolicyEntry)
        .entries()
        .map(([key, value]) => ({ key, value }));
    } finally {
      closeFd(fd);
    }
  }

  /** Remove an endpoint's tries and slot (its packets then drop with NO_POLICY_MAP). */
  delete(ifindex: number): boolean {
    let found = false;
    for (const slot of [0, 1] as const) if (this.outer.delete(outerKey(ifindex, slot))) found = true;
    this.slots.delete(ifindex);
    this.forget(ifindex);
    return found;
  }

  /** Endpoints that have a policy map. */
  ifindexes(): number[] {
    return [...new Set(this.outer.keys().map((k) => (k & ~POLICY_SLOT1_BIT) >>> 0))];
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

  /** Read back an endpoint's tries from the maps (after a restart), or null when it has not both. */
  private adopt(ifindex: number): EndpointTries | null {
    const tries: Trie[] = [];
    for (const slot of [0, 1] as const) {
      const raw = mapLookup(this.outer.fd, U32.encode(outerKey(ifindex, slot)), 4, MapName.policy);
      if (raw === null) break;
      const fd = mapFdById(U32.decode(raw));
      const map = new BpfMap(`policy of ifindex ${ifindex} slot ${slot}`, fd, PolicyKey, PolicyEntry);
      tries.push({ fd, map, contents: new Map(map.entries().map(([k, v]) => [keyText(k), valueText(v)])) });
    }
    if (tries.length < 2) {
      for (const t of tries) closeFd(t.fd);
      return null;
    }
    // Unknown when the previous agent flipped last: retired at epoch 1, so the
    // first write after a start waits for one grace period (once for all).
    const ep: EndpointTries = { active: this.slots.get(ifindex)?.slot === 1 ? 1 : 0, tries: tries as [Trie, Trie], retired: 1 };
    this.known.set(ifindex, ep);
    return ep;
  }

  /** New endpoints: both tries created and filled, inserted with one outer-map batch (one grace-period wait), slot 0 in force. */
  private insertFresh(items: readonly (readonly [number, readonly PolicyMapEntry[]])[]): void {
    const created: Array<[number, [Trie, Trie]]> = [];
    try {
      for (const [ifindex, entries] of items) {
        const pair = [this.createTrie(ifindex, 0), this.createTrie(ifindex, 1)] as [Trie, Trie];
        created.push([ifindex, pair]);
        for (const t of pair) writeDiff(t, entries);
      }
      // Slot entries first (a leftover slot 1 entry must not point at a trie that is not there yet).
      this.slots.setMany(items.map(([ifindex]) => [ifindex, { slot: 0 }] as const));
      this.outer.setMany(created.flatMap(([ifindex, pair]) => [[outerKey(ifindex, 0), pair[0].fd], [outerKey(ifindex, 1), pair[1].fd]] as const));
    } catch (e: unknown) {
      for (const [, pair] of created) for (const t of pair) closeFd(t.fd);
      throw e;
    }
    for (const [ifindex, tries] of created) {
      this.forget(ifindex);
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

  /** Wait here for a grace period covering every flip so far. */
  private waitGrace(): void {
    const target = this.flipEpoch;
    rcuBarrier();
    this.graceDone = Math.max(this.graceDone, target);
  }

  /** Start (or queue) an asynchronous grace-period wait covering every flip so far. */
  private startGrace(): void {
    if (this.graceRunning) {
      this.graceAgain = true;
      return;
    }
    this.graceRunning = true;
    const target = this.flipEpoch;
    rcuBarrierAsync((err) => {
      this.graceRunning = false;
      if (!err) this.graceDone = Math.max(this.graceDone, target);
      if (this.graceAgain || err) {
        this.graceAgain = false;
        if (!err) this.startGrace();
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
