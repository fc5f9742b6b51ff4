// SPDX-License-Identifier: Apache-2.0
// Test fixture for the datapath object (bpf/lxc.bpf.c) under
// BPF_PROG_TEST_RUN: compiles the object once per process, loads it with its
// own temporary bpf root (so LIBBPF_PIN_BY_NAME maps are fresh per test and
// never touch /sys/fs/bpf/twill), fills maps from readable specs and reads
// back verdicts, output bytes, counters, conntrack entries and ring events.
//
// API: compileDatapath(), Datapath.open(opts) -> Datapath (.fromPod/.toPod,
// .setEndpoint/.setLxc/.setIpcache/.setPolicy, .policyMap, .mapFd/.btfTypeIds
// (a MapSource for openDatapathMaps), .metric,
// .drainEvents, .ctLookup, .close), Dir, Reason, Verdict, EventType, CtFlags.
//
// Keys, values and enums come from agent/generated/bpf-types.ts (generated
// from the object's BTF), so a layout change in bpf/lib/*_types.h reaches
// these tests without anyone mirroring it.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  BPF_F_NO_PREALLOC,
  BpfObject,
  MapType,
  RingBuffer,
  closeFd,
  mapCreate,
  mapLookup,
  mapUpdate,
  numPossibleCpus,
  openObject,
  progTestRun,
} from "../../agent/native/libbpf.js";
import {
  CtEntry as CtEntryCodec,
  CtKey4,
  CtKey6,
  EndpointInfo,
  FlowEvent as FlowEventCodec,
  IpcacheEntry,
  IpcacheKey,
  LxcKey,
  MetricsValue,
  PolicyEntry,
  PolicyKey,
  PolicySlot,
  TwillCtFlags,
  TwillDirection,
  TwillEndpointFlags,
  TwillEventType,
  TwillFamily,
  TwillIdentityReserved,
  TwillPolicyLpm,
  TwillReason,
  U32,
} from "../../agent/generated/bpf-types.js";
import { ipBytes, macBytes } from "./packet.js";
import { PolicyMap, policyOuterKey, type PolicyMapOptions } from "../../agent/maps/policy-map.js";

/** tc verdicts (TC_ACT_*: C macros, not in BTF). */
export const Verdict = { OK: 0, SHOT: 2, REDIRECT: 7 } as const;
/** enum twill_direction */
export const Dir = { FROM_POD: TwillDirection.FROM_POD, TO_POD: TwillDirection.TO_POD } as const;
/** enum twill_reason, short names for tables */
export const Reason = {
  FORWARDED: TwillReason.REASON_FORWARDED,
  REDIRECTED: TwillReason.REASON_REDIRECTED,
  MALFORMED: TwillReason.DROP_MALFORMED,
  NO_ENDPOINT: TwillReason.DROP_NO_ENDPOINT,
  SPOOFED_IP: TwillReason.DROP_SPOOFED_IP,
  SPOOFED_MAC: TwillReason.DROP_SPOOFED_MAC,
  POLICY: TwillReason.DROP_POLICY,
  NO_POLICY_MAP: TwillReason.DROP_NO_POLICY_MAP,
  FRAGMENT: TwillReason.DROP_FRAGMENT,
  UNSUPPORTED_L3: TwillReason.DROP_UNSUPPORTED_L3,
  TTL_EXCEEDED: TwillReason.DROP_TTL_EXCEEDED,
  REDIRECT_FAILED: TwillReason.DROP_REDIRECT_FAILED,
  CT_FULL: TwillReason.DROP_CT_FULL,
} as const;
/** enum twill_event_type */
export const EventType = TwillEventType;
/** enum twill_ct_flags */
export const CtFlags = TwillCtFlags;
/** Reserved identities. */
export const Identity = TwillIdentityReserved;

const ROOT = resolve(import.meta.dirname, "../..");
let compiled: string | null = null;

/** Compile bpf/lxc.bpf.c once per process; returns the object path. */
export function compileDatapath(): string {
  if (compiled !== null && statSync(compiled, { throwIfNoEntry: false })) return compiled;
  const out = join(tmpdir(), `twill-test-lxc-${process.pid}-${randomBytes(4).toString("hex")}.o`);
  execFileSync("clang", ["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-I", join(ROOT, "bpf"), "-c", join(ROOT, "bpf/lxc.bpf.c"), "-o", out]);
  compiled = out;
  return out;
}

/** An endpoint (pod) as the agent would write it. */
export interface EndpointSpec {
  readonly ifindex: number;
  readonly identity: number;
  readonly ipv4?: string;
  readonly ipv6?: string;
  readonly mac: string;
  readonly nodeMac: string;
}

/** One policy trie entry; omit protocol for "any protocol", port for "any port". */
export interface PolicySpec {
  readonly identity: number;
  readonly direction: number;
  readonly protocol?: number;
  readonly port?: number;
  /** Prefix length of the port in bits (port ranges); default 16. */
  readonly portBits?: number;
  readonly ruleRef?: number;
}

/** A decoded struct flow_event. */
export type FlowEvent = FlowEventCodec;

/** A decoded struct ct_entry. */
export type CtEntry = CtEntryCodec;

const u32 = (n: number): Uint8Array => U32.encode(n);

/** IPv4 text -> host-order number (the codecs convert __be32 fields). */
function ipv4Number(ip: string): number {
  return new DataView(ipBytes(ip).buffer).getUint32(0);
}

/** Address in the 16-byte key layout: IPv4 in the first 4 bytes. */
function addr16(ip: string): { addr: Uint8Array; family: number } {
  const a = ipBytes(ip);
  const addr = new Uint8Array(16);
  addr.set(a);
  return { addr, family: a.length === 4 ? TwillFamily.INET : TwillFamily.INET6 };
}

function encodeEndpoint(ep: EndpointSpec): Uint8Array {
  return EndpointInfo.encode({
    ifindex: ep.ifindex,
    identity: ep.identity,
    ipv4: ep.ipv4 !== undefined ? ipv4Number(ep.ipv4) : 0,
    flags: (ep.ipv4 !== undefined ? TwillEndpointFlags.IPV4 : 0) | (ep.ipv6 !== undefined ? TwillEndpointFlags.IPV6 : 0),
    ipv6: ep.ipv6 !== undefined ? ipBytes(ep.ipv6) : new Uint8Array(16),
    mac: macBytes(ep.mac),
    nodeMac: macBytes(ep.nodeMac),
  });
}

function lxcKey(ip: string): Uint8Array {
  return LxcKey.encode({ ...addr16(ip), pad: new Uint8Array(3) });
}

/** A loaded datapath object with its own bpf root. */
export class Datapath {
  readonly #obj: BpfObject;
  readonly #root: string;
  readonly #events: FlowEvent[] = [];
  readonly #ring: RingBuffer;

  private constructor(obj: BpfObject, root: string) {
    this.#obj = obj;
    this.#root = root;
    this.#ring = new RingBuffer(obj.mapFd("twill_events"), (d) => this.#events.push(decodeEvent(d)));
  }

  /** Load the object under a fresh /sys/fs/bpf/twill-test-<random>. */
  static open(opts: { readonly redirectPeer?: boolean } = {}): Datapath {
    const root = `/sys/fs/bpf/twill-test-${randomBytes(6).toString("hex")}`;
    mkdirSync(root);
    let obj: BpfObject | null = null;
    try {
      obj = openObject(compileDatapath(), {
        pinRootPath: root,
        rodata: { cfg_redirect_peer: opts.redirectPeer === false ? 0 : 1 },
      });
      obj.load();
      return new Datapath(obj, root);
    } catch (e: unknown) {
      obj?.close();
      rmSync(root, { recursive: true, force: true });
      throw e;
    }
  }

  /** Unload and remove the pins. Idempotent. */
  close(): void {
    this.#ring.close();
    this.#obj.close();
    rmSync(this.#root, { recursive: true, force: true });
  }

  #run(prog: string, frame: Uint8Array, repeat = 1): { verdict: number; data: Uint8Array; durationNs: number } {
    // No ctx: the kernel runs the skb on loopback, so skb->ifindex is 1.
    const r = progTestRun(this.#obj.progFd(prog), { data: frame, repeat });
    return { verdict: r.retval, data: r.data, durationNs: r.durationNs };
  }

  /** Run from_pod on a frame (skb->ifindex = 1). */
  fromPod(frame: Uint8Array, repeat = 1): { verdict: number; data: Uint8Array; durationNs: number } {
    return this.#run("from_pod", frame, repeat);
  }

  /** Run to_pod on a frame (skb->ifindex = 1). */
  toPod(frame: Uint8Array, repeat = 1): { verdict: number; data: Uint8Array; durationNs: number } {
    return this.#run("to_pod", frame, repeat);
  }

  /** twill_endpoints[ep.ifindex] = ep (keyed by keyIfindex when given). */
  setEndpoint(ep: EndpointSpec, keyIfindex = ep.ifindex): void {
    mapUpdate(this.#obj.mapFd("twill_endpoints"), u32(keyIfindex), encodeEndpoint(ep));
  }

  /** twill_lxc[ip] = ep for each of the endpoint's addresses. */
  setLxc(ep: EndpointSpec): void {
    for (const ip of [ep.ipv4, ep.ipv6]) {
      if (ip !== undefined) mapUpdate(this.#obj.mapFd("twill_lxc"), lxcKey(ip), encodeEndpoint(ep));
    }
  }

  /** twill_ipcache[cidr] = identity. */
  setIpcache(cidr: string, identity: number): void {
    const [ip = "", len] = cidr.split("/");
    const { addr, family } = addr16(ip);
    const bits = len !== undefined ? Number(len) : family === TwillFamily.INET ? 32 : 128;
    const key = IpcacheKey.encode({ prefixlen: 32 + bits, pad: new Uint8Array(3), family, addr });
    mapUpdate(this.#obj.mapFd("twill_ipcache"), key, IpcacheEntry.encode({ identity, flags: 0 }));
  }

  /** Give the endpoint at ifindex a fresh policy trie holding entries. */
  setPolicy(ifindex: number, entries: readonly PolicySpec[]): void {
    const inner = mapCreate({
      type: MapType.LPM_TRIE,
      name: "twt_policy",
      keySize: 12,
      valueSize: 8,
      maxEntries: 16384,
      flags: BPF_F_NO_PREALLOC,
      btf: null,
    });
    try {
      for (const e of entries) {
        const prefixlen =
          e.protocol === undefined
            ? TwillPolicyLpm.DIR
            : e.port === undefined
              ? TwillPolicyLpm.PROTO
              : TwillPolicyLpm.PROTO + (e.portBits ?? 16);
        const key = PolicyKey.encode({ prefixlen, identity: e.identity, direction: e.direction, protocol: e.protocol ?? 0, dport: e.port ?? 0 });
        mapUpdate(inner, key, PolicyEntry.encode({ ruleRef: e.ruleRef ?? 0, flags: 0 }));
      }
      // Slot 0's trie (outer key ifindex * 2 + 0), then the slot entry that puts it in force.
      mapUpdate(this.#obj.mapFd("twill_policy"), u32(policyOuterKey(ifindex, 0)), u32(inner));
      mapUpdate(this.#obj.mapFd("twill_policy_slot"), u32(ifindex), PolicySlot.encode({ slot: 0 }));
    } finally {
      closeFd(inner); // the outer map holds its own reference
    }
  }

  /** The agent's PolicyMap over this datapath's twill_policy / twill_policy_slot (no BTF). */
  policyMap(options: PolicyMapOptions = {}): PolicyMap {
    return new PolicyMap(this.#obj.mapFd("twill_policy"), this.#obj.mapFd("twill_policy_slot"), null, options);
  }

  /** fd of one of the object's maps (owned by the object), for agent/maps views. */
  mapFd(name: string): number {
    return this.#obj.mapFd(name);
  }

  /** BTF fd and struct type ids (with mapFd, a MapSource for openDatapathMaps). */
  btfTypeIds(keyStruct: string, valueStruct: string): { fd: number; keyTypeId: number; valueTypeId: number } {
    const keyTypeId = this.#obj.btfStructId(keyStruct);
    const valueTypeId = this.#obj.btfStructId(valueStruct);
    if (keyTypeId === null || valueTypeId === null) throw new Error(`btf type ids of ${keyStruct}/${valueStruct}: missing`);
    return { fd: this.#obj.btfFd(), keyTypeId, valueTypeId };
  }

  /** Packets counted for (direction, reason), summed over CPUs. */
  metric(dir: number, reason: number): number {
    const cpus = numPossibleCpus();
    const key = u32(dir * TwillReason.REASON_MAX + reason);
    const v = mapLookup(this.#obj.mapFd("twill_metrics"), key, MetricsValue.SIZE * cpus);
    if (v === null) return 0;
    let n = 0n;
    for (let c = 0; c < cpus; c++) n += MetricsValue.decode(v, c * MetricsValue.SIZE).packets;
    return Number(n);
  }

  /** Events submitted since the last call. */
  drainEvents(): FlowEvent[] {
    this.#ring.consume();
    return this.#events.splice(0);
  }

  /** Conntrack entry for a tuple in the opener's direction, or null. */
  ctLookup(t: { src: string; dst: string; sport: number; dport: number; protocol: number }): CtEntry | null {
    const v4 = !t.src.includes(":");
    const pad = new Uint8Array(3);
    const key = v4
      ? CtKey4.encode({ saddr: ipv4Number(t.src), daddr: ipv4Number(t.dst), sport: t.sport, dport: t.dport, protocol: t.protocol, pad })
      : CtKey6.encode({ saddr: ipBytes(t.src), daddr: ipBytes(t.dst), sport: t.sport, dport: t.dport, protocol: t.protocol, pad });
    const e = mapLookup(this.#obj.mapFd(v4 ? "twill_ct4" : "twill_ct6"), key, CtEntryCodec.SIZE);
    return e === null ? null : CtEntryCodec.decode(e);
  }
}

function decodeEvent(b: Uint8Array): FlowEvent {
  return FlowEventCodec.decode(b);
}
