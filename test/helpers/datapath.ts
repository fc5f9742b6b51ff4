// SPDX-License-Identifier: Apache-2.0
// Test fixture for the datapath object (bpf/lxc.bpf.c) under
// BPF_PROG_TEST_RUN: compiles the object once per process, loads it with its
// own temporary bpf root (so LIBBPF_PIN_BY_NAME maps are fresh per test and
// never touch /sys/fs/bpf/twill), fills maps from readable specs and reads
// back verdicts, output bytes, counters, conntrack entries and ring events.
//
// API: compileDatapath(), Datapath.open(opts) -> Datapath (.fromPod/.toPod,
// .setEndpoint/.setLxc/.setIpcache/.setPolicy, .metric, .drainEvents,
// .ctLookup, .close), Dir, Reason, Verdict, EventType, CtFlags.
//
// The byte layouts below mirror bpf/lib/*_types.h by hand because
// agent/generated/bpf-types.ts did not exist when this was written; the
// _Static_asserts there pin the sizes used here.
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
import { ipBytes, macBytes } from "./packet.js";

/** tc verdicts. */
export const Verdict = { OK: 0, SHOT: 2, REDIRECT: 7 } as const;
/** enum twill_direction */
export const Dir = { FROM_POD: 0, TO_POD: 1 } as const;
/** enum twill_reason */
export const Reason = {
  FORWARDED: 0,
  REDIRECTED: 1,
  MALFORMED: 8,
  NO_ENDPOINT: 9,
  SPOOFED_IP: 10,
  SPOOFED_MAC: 11,
  POLICY: 12,
  NO_POLICY_MAP: 13,
  FRAGMENT: 14,
  UNSUPPORTED_L3: 15,
  TTL_EXCEEDED: 16,
  REDIRECT_FAILED: 17,
  CT_FULL: 18,
} as const;
const REASON_MAX = 32;
/** enum twill_event_type */
export const EventType = { DROP: 1, NEW_CONN: 2 } as const;
/** enum twill_ct_flags */
export const CtFlags = { SEEN_REPLY: 1, CLOSING: 2, TCP_SYN: 4 } as const;
/** Reserved identities. */
export const Identity = { ANY: 0, HOST: 1, WORLD: 2 } as const;

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
export interface FlowEvent {
  readonly ifindex: number;
  readonly srcIdentity: number;
  readonly dstIdentity: number;
  readonly pktLen: number;
  readonly ruleRef: number;
  readonly type: number;
  readonly direction: number;
  readonly reason: number;
  readonly protocol: number;
  readonly family: number;
  readonly sport: number;
  readonly dport: number;
}

/** A decoded struct ct_entry. */
export interface CtEntry {
  readonly packets: bigint;
  readonly bytes: bigint;
  readonly srcIdentity: number;
  readonly dstIdentity: number;
  readonly flags: number;
  readonly ruleRef: number;
  readonly lastSeenNs: bigint;
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function encodeEndpoint(ep: EndpointSpec): Uint8Array {
  const b = new Uint8Array(44);
  const v = new DataView(b.buffer);
  v.setUint32(0, ep.ifindex, true);
  v.setUint32(4, ep.identity, true);
  if (ep.ipv4 !== undefined) b.set(ipBytes(ep.ipv4), 8);
  v.setUint32(12, (ep.ipv4 !== undefined ? 1 : 0) | (ep.ipv6 !== undefined ? 2 : 0), true);
  if (ep.ipv6 !== undefined) b.set(ipBytes(ep.ipv6), 16);
  b.set(macBytes(ep.mac), 32);
  b.set(macBytes(ep.nodeMac), 38);
  return b;
}

function lxcKey(ip: string): Uint8Array {
  const a = ipBytes(ip);
  const b = new Uint8Array(20);
  b.set(a, 0);
  b[16] = a.length === 4 ? 2 : 10;
  return b;
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
    const a = ipBytes(ip);
    const key = new Uint8Array(24);
    new DataView(key.buffer).setUint32(0, 32 + Number(len ?? a.length * 8), true);
    key[7] = a.length === 4 ? 2 : 10;
    key.set(a, 8);
    const value = new Uint8Array(8);
    new DataView(value.buffer).setUint32(0, identity, true);
    mapUpdate(this.#obj.mapFd("twill_ipcache"), key, value);
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
        const key = new Uint8Array(12);
        const v = new DataView(key.buffer);
        const prefix = e.protocol === undefined ? 40 : e.port === undefined ? 48 : 48 + (e.portBits ?? 16);
        v.setUint32(0, prefix, true);
        v.setUint32(4, e.identity); // big endian
        key[8] = e.direction;
        key[9] = e.protocol ?? 0;
        v.setUint16(10, e.port ?? 0); // big endian
        const value = new Uint8Array(8);
        value.set(u32(e.ruleRef ?? 0), 0);
        mapUpdate(inner, key, value);
      }
      mapUpdate(this.#obj.mapFd("twill_policy"), u32(ifindex), u32(inner));
    } finally {
      closeFd(inner); // the outer map holds its own reference
    }
  }

  /** Packets counted for (direction, reason), summed over CPUs. */
  metric(dir: number, reason: number): number {
    const cpus = numPossibleCpus();
    const v = mapLookup(this.#obj.mapFd("twill_metrics"), u32(dir * REASON_MAX + reason), 16 * cpus);
    if (v === null) return 0;
    const dv = new DataView(v.buffer);
    let n = 0n;
    for (let c = 0; c < cpus; c++) n += dv.getBigUint64(c * 16, true);
    return Number(n);
  }

  /** Events submitted since the last call. */
  drainEvents(): FlowEvent[] {
    this.#ring.consume();
    return this.#events.splice(0);
  }

  /** Conntrack entry for a tuple in the opener's direction, or null. */
  ctLookup(t: { src: string; dst: string; sport: number; dport: number; protocol: number }): CtEntry | null {
    const s = ipBytes(t.src);
    const v4 = s.length === 4;
    const key = new Uint8Array(v4 ? 16 : 40);
    const v = new DataView(key.buffer);
    key.set(s, 0);
    key.set(ipBytes(t.dst), v4 ? 4 : 16);
    v.setUint16(v4 ? 8 : 32, t.sport);
    v.setUint16(v4 ? 10 : 34, t.dport);
    key[v4 ? 12 : 36] = t.protocol;
    const e = mapLookup(this.#obj.mapFd(v4 ? "twill_ct4" : "twill_ct6"), key, 48);
    if (e === null) return null;
    const d = new DataView(e.buffer);
    return {
      lastSeenNs: d.getBigUint64(8, true),
      packets: d.getBigUint64(16, true),
      bytes: d.getBigUint64(24, true),
      srcIdentity: d.getUint32(32, true),
      dstIdentity: d.getUint32(36, true),
      flags: d.getUint32(40, true),
      ruleRef: d.getUint32(44, true),
    };
  }
}

function decodeEvent(b: Uint8Array): FlowEvent {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    ifindex: v.getUint32(8, true),
    srcIdentity: v.getUint32(12, true),
    dstIdentity: v.getUint32(16, true),
    pktLen: v.getUint32(20, true),
    ruleRef: v.getUint32(24, true),
    type: v.getUint8(28),
    direction: v.getUint8(29),
    reason: v.getUint8(30),
    protocol: v.getUint8(31),
    family: v.getUint8(32),
    sport: v.getUint16(34),
    dport: v.getUint16(36),
  };
}
