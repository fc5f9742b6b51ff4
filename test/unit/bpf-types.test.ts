// SPDX-License-Identifier: Apache-2.0
// The generated codecs (agent/generated/bpf-types.ts) against hand-written
// golden bytes (what the C structs hold on x86_64: host order little endian,
// __be fields big endian), plus fast-check round trips for every codec.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CtEntry,
  CtKey4,
  CtKey6,
  EndpointInfo,
  FlowEvent,
  IpcacheEntry,
  IpcacheKey,
  LxcKey,
  MetricsValue,
  PolicyEntry,
  PolicySlot,
  PolicyKey,
  STRUCT_LAYOUTS,
  TwillReason,
  twillReasonName,
  twillDirectionName,
  type Codec,
} from "../../agent/generated/bpf-types.js";

const hex = (s: string): Uint8Array => Uint8Array.from(s.replace(/\s+/g, "").match(/../g) ?? [], (b) => parseInt(b, 16));
const zeros = (n: number): Uint8Array => new Uint8Array(n);
const V4_POD = hex("0af40005 000000000000000000000000"); // 10.244.0.5 in a 16-byte slot
const V6_POD = hex("fd000010024400000000000000000005"); // fd00:10:244::5

interface Golden {
  name: string;
  codec: Codec<unknown>;
  value: unknown;
  bytes: Uint8Array;
}

const goldens: Golden[] = [
  {
    name: "ct_key4",
    codec: CtKey4 as Codec<unknown>,
    value: { saddr: 0x0af40005, daddr: 0x0af40107, sport: 40000, dport: 80, protocol: 6, pad: zeros(3) },
    bytes: hex("0af40005 0af40107 9c40 0050 06 000000"),
  },
  {
    name: "ct_key6",
    codec: CtKey6 as Codec<unknown>,
    value: { saddr: V6_POD, daddr: hex("fd000010024400000000000000000007"), sport: 443, dport: 53, protocol: 17, pad: zeros(3) },
    bytes: hex("fd000010024400000000000000000005 fd000010024400000000000000000007 01bb 0035 11 000000"),
  },
  {
    name: "ct_entry",
    codec: CtEntry as Codec<unknown>,
    value: { createdNs: 1_000_000_000n, lastSeenNs: 2_000_000_000n, packets: 3n, bytes: 1500n, srcIdentity: 256, dstIdentity: 2, flags: 5, ruleRef: 0x01020304 },
    bytes: hex("00ca9a3b00000000 0094357700000000 0300000000000000 dc05000000000000 00010000 02000000 05000000 04030201"),
  },
  {
    name: "endpoint_info",
    codec: EndpointInfo as Codec<unknown>,
    value: {
      ifindex: 12, identity: 300, ipv4: 0x0af40005, flags: 3, ipv6: V6_POD,
      mac: hex("02aabbccddee"), nodeMac: hex("021122334455"),
    },
    bytes: hex("0c000000 2c010000 0af40005 03000000 fd000010024400000000000000000005 02aabbccddee 021122334455"),
  },
  {
    name: "lxc_key",
    codec: LxcKey as Codec<unknown>,
    value: { addr: V4_POD, family: 2, pad: zeros(3) },
    bytes: hex("0af40005000000000000000000000000 02 000000"),
  },
  {
    name: "ipcache_key",
    codec: IpcacheKey as Codec<unknown>,
    value: { prefixlen: 56, pad: zeros(3), family: 2, addr: hex("0af40000000000000000000000000000") },
    bytes: hex("38000000 000000 02 0af40000000000000000000000000000"),
  },
  {
    name: "ipcache_entry",
    codec: IpcacheEntry as Codec<unknown>,
    value: { identity: 0x01000001, flags: 1 },
    bytes: hex("01000001 01000000"),
  },
  {
    name: "policy_key (identity and port big endian)",
    codec: PolicyKey as Codec<unknown>,
    value: { prefixlen: 64, identity: 300, direction: 1, protocol: 6, dport: 8080 },
    bytes: hex("40000000 0000012c 01 06 1f90"),
  },
  {
    name: "policy_entry",
    codec: PolicyEntry as Codec<unknown>,
    value: { ruleRef: 7, flags: 0 },
    bytes: hex("07000000 00000000"),
  },
  {
    name: "policy_slot",
    codec: PolicySlot as Codec<unknown>,
    value: { slot: 1 },
    bytes: hex("01000000"),
  },
  {
    name: "metrics_value",
    codec: MetricsValue as Codec<unknown>,
    value: { packets: 10n, bytes: 0x0102030405060708n },
    bytes: hex("0a00000000000000 0807060504030201"),
  },
  {
    name: "flow_event",
    codec: FlowEvent as Codec<unknown>,
    value: {
      tsNs: 0x1122334455667788n, ifindex: 12, srcIdentity: 256, dstIdentity: 2, pktLen: 98, ruleRef: 0,
      type: 1, direction: 0, reason: TwillReason.DROP_POLICY, protocol: 1, family: 2, pad: zeros(1),
      sport: 0x1234, dport: 0, pad2: zeros(2), saddr: V4_POD, daddr: hex("c6120001000000000000000000000000"),
    },
    bytes: hex(
      "8877665544332211 0c000000 00010000 02000000 62000000 00000000 01 00 0c 01 02 00 1234 0000 0000" +
        "0af40005000000000000000000000000 c6120001000000000000000000000000",
    ),
  },
];

describe("generated codecs: golden bytes", () => {
  it("covers every generated struct", () => {
    expect(goldens.map((g) => g.name.split(" ")[0]).sort()).toEqual(Object.keys(STRUCT_LAYOUTS).sort());
  });

  it.each(goldens)("$name encodes to the C layout", ({ codec, value, bytes }) => {
    expect(codec.SIZE).toBe(bytes.length);
    expect(codec.encode(value)).toEqual(bytes);
  });

  it.each(goldens)("$name decodes the C layout, also at an offset", ({ codec, value, bytes }) => {
    expect(codec.decode(bytes)).toEqual(value);
    const shifted = new Uint8Array(bytes.length + 5);
    shifted.set(bytes, 5);
    expect(codec.decode(shifted, 5)).toEqual(value);
  });
});

describe("generated codecs: round trips", () => {
  it.each(goldens)("$name: encode(decode(bytes)) is the identity for any bytes", ({ codec }) => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: codec.SIZE, maxLength: codec.SIZE }), (bytes) => {
        expect(codec.encode(codec.decode(bytes))).toEqual(bytes);
      }),
    );
  });

  it("endpoint_info: decode(encode(value)) is the identity", () => {
    const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    fc.assert(
      fc.property(
        fc.record({ ifindex: u32, identity: u32, ipv4: u32, flags: u32, ipv6: bytes(16), mac: bytes(6), nodeMac: bytes(6) }),
        (v) => {
          expect(EndpointInfo.decode(EndpointInfo.encode(v))).toEqual(v);
        },
      ),
    );
  });

  it("rejects a byte field of the wrong length", () => {
    expect(() => LxcKey.encode({ addr: zeros(4), family: 2, pad: zeros(3) })).toThrow(/encode addr: expected 16 bytes, got 4/);
  });
});

describe("generated enums", () => {
  it.each([
    { name: "drop reason sharing its value with DROP_BASE", fn: twillReasonName, value: 8, want: "DROP_MALFORMED" },
    { name: "policy drop", fn: twillReasonName, value: 12, want: "DROP_POLICY" },
    { name: "direction", fn: twillDirectionName, value: 1, want: "TO_POD" },
    { name: "unknown value", fn: twillReasonName, value: 99, want: "unknown(99)" },
  ])("names $name", ({ fn, value, want }) => {
    expect(fn(value)).toBe(want);
  });
});
