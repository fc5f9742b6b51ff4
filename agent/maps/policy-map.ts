// SPDX-License-Identifier: Apache-2.0
// twill_policy: host veth ifindex -> that endpoint's own LPM trie of
// policy_key -> policy_entry. A new policy is never edited in place: replace()
// builds a fresh inner trie aside (with BTF, so `bpftool map dump` shows field
// names), fills it, and swaps it into the outer map with one update, so the
// datapath sees either the old or the new policy, never a mix. The old inner
// map is freed by the kernel when the outer map drops its reference.
//
// replaceMany() does the same for many endpoints with ONE outer-map update
// syscall (a batch): the kernel waits for an RCU grace period after every
// map-in-map update syscall (maybe_wait_bpf_programs, ~10-15 ms), and since
// 6.8 only once per batch, so a regeneration that changes 110 tries waits
// once instead of 110 times. Each element's swap stays atomic.
//
// API: PolicyMap (replace/replaceMany/get/delete/ifindexes), PolicyBtf.
import { MAP_SPECS, MapName, PolicyEntry, PolicyKey, U32 } from "../generated/bpf-types.js";
import { closeFd, mapCreate, mapFdById, mapLookup } from "../native/libbpf.js";
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

const INNER = MAP_SPECS[`${MapName.policy}.inner`];

/** The policy entry count does not fit the inner map template. */
export class PolicyTooLargeError extends Error {
  constructor(ifindex: number, entries: number, max: number) {
    super(`replace policy of ifindex ${ifindex}: ${entries} entries, the map holds ${max}`);
    this.name = "PolicyTooLargeError";
  }
}

/** twill_policy and its per-endpoint inner tries. */
export class PolicyMap {
  readonly outer: BpfMap<number, number>;

  /**
   * @param outerFd fd of twill_policy (not owned)
   * @param btf BTF for the inner maps (Datapath.btfTypeIds("policy_key", "policy_entry")), or null
   */
  constructor(outerFd: number, private readonly btf: PolicyBtf | null) {
    this.outer = new BpfMap(MapName.policy, outerFd, U32, U32);
  }

  /** Atomically replace the whole policy of an endpoint. */
  replace(ifindex: number, entries: readonly PolicyMapEntry[]): void {
    this.replaceMany(new Map([[ifindex, entries]]));
  }

  /**
   * Atomically replace the policies of many endpoints (each endpoint sees its
   * old or its new trie, never a mix); all new tries are built first, then
   * swapped in with one batch update. Throws PolicyTooLargeError before
   * touching anything when one does not fit.
   */
  replaceMany(policies: ReadonlyMap<number, readonly PolicyMapEntry[]>): void {
    if (!INNER) throw new Error("replace policy: generated MAP_SPECS lacks the inner map");
    for (const [ifindex, entries] of policies) {
      if (entries.length > INNER.maxEntries) throw new PolicyTooLargeError(ifindex, entries.length, INNER.maxEntries);
    }
    const fds: Array<readonly [number, number]> = [];
    try {
      for (const [ifindex, entries] of policies) {
        const fd = mapCreate({
          type: INNER.type,
          // BPF_OBJ_NAME_LEN is 16: "tw_pol_" + up to 8 digits
          name: `tw_pol_${ifindex}`.slice(0, 15),
          keySize: PolicyKey.SIZE,
          valueSize: PolicyEntry.SIZE,
          maxEntries: INNER.maxEntries,
          flags: INNER.flags,
          btf: this.btf,
        });
        fds.push([ifindex, fd]);
        new BpfMap(`policy of ifindex ${ifindex}`, fd, PolicyKey, PolicyEntry).setMany(entries.map((e) => [e.key, e.value] as const));
      }
      // The swap: the outer map now references the new tries.
      this.outer.setMany(fds);
    } finally {
      for (const [, fd] of fds) closeFd(fd);
    }
  }

  /** The current policy of an endpoint, or null if it has no inner map. */
  get(ifindex: number): PolicyMapEntry[] | null {
    // A map-of-maps lookup from user space returns the inner map's id.
    const raw = mapLookup(this.outer.fd, U32.encode(ifindex), 4, MapName.policy);
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

  /** Remove an endpoint's policy (its packets then drop with NO_POLICY_MAP). */
  delete(ifindex: number): boolean {
    return this.outer.delete(ifindex);
  }

  /** Endpoints that have a policy map. */
  ifindexes(): number[] {
    return this.outer.keys();
  }
}
