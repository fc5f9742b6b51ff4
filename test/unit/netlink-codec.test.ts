// SPDX-License-Identifier: Apache-2.0
// The rtnetlink codec against golden bytes derived by hand from the kernel uapi
// layouts (nlmsghdr 16, ifinfomsg 16, ifaddrmsg 8, rtmsg 12, ndmsg 12, rtattr
// 4 + data padded to 4), plus fast-check round-trips.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bytesToIp, bytesToMac, decodeAttrs, decodeIfAddrMsg, decodeIfInfoMsg, decodeMessages, decodeNdMsg, decodeNlError,
  decodeRtMsg, encodeAttrs, encodeIfAddrMsg, encodeIfInfoMsg, encodeMessage, encodeNdMsg, encodeRtMsg, ipToBytes,
  macToBytes, NLM_F, NLMSG, parsePrefix, RTM, strAttr, u32Attr,
} from "../../agent/netlink/codec.js";
import { checkIfName, NetlinkArgumentError, netlinkError, NetlinkNotFoundError, isNotFound } from "../../agent/netlink/errors.js";
import { encodeRoute } from "../../agent/netlink/route.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("golden bytes", () => {
  it.each([
    {
      name: "nlmsghdr + zero ifinfomsg (link dump request)",
      got: () => encodeMessage(RTM.GETLINK, NLM_F.REQUEST | NLM_F.DUMP, 1, 0, Buffer.alloc(16)),
      want: "20000000 1200 0103 01000000 00000000" + "00".repeat(16),
    },
    { name: "string rtattr padded to 4", got: () => encodeAttrs([strAttr(3, "eth0")]), want: "0900 0300 65746830 00 000000" },
    { name: "u32 rtattr", got: () => encodeAttrs([u32Attr(4, 1500)]), want: "0800 0400 dc050000" },
    {
      name: "nested rtattr (IFLA_LINKINFO{KIND veth})",
      got: () => encodeAttrs([{ type: 18, value: [strAttr(1, "veth")] }]),
      want: "1000 1200 0900 0100 76657468 00 000000",
    },
    {
      name: "ifinfomsg",
      got: () => encodeIfInfoMsg({ family: 0, type: 1, index: 5, flags: 1, change: 1 }),
      want: "00 00 0100 05000000 01000000 01000000",
    },
    {
      name: "ifaddrmsg v6 /128 nodad",
      got: () => encodeIfAddrMsg({ family: 10, prefixLen: 128, flags: 2, scope: 0, index: 7 }),
      want: "0a 80 02 00 07000000",
    },
    {
      name: "rtmsg",
      got: () => encodeRtMsg({ family: 2, dstLen: 32, srcLen: 0, tos: 0, table: 254, protocol: 3, scope: 253, type: 1, flags: 4 }),
      want: "02 20 00 00 fe 03 fd 01 04000000",
    },
    {
      name: "ndmsg permanent",
      got: () => encodeNdMsg({ family: 2, ifindex: 3, state: 0x80, flags: 0, type: 0 }),
      want: "02 00 0000 03000000 8000 00 00",
    },
    {
      name: "host route 10.244.0.5/32 dev 7 (scope link)",
      got: () => encodeRoute({ dst: "10.244.0.5/32", ifindex: 7 }),
      want: "02 20 00 00 fe 03 fd 01 00000000" + "0800 0100 0af40005" + "0800 0400 07000000",
    },
    {
      name: "default via fe80::1 dev 2",
      got: () => encodeRoute({ dst: "default", gateway: "fe80::1", ifindex: 2 }),
      want: "0a 00 00 00 fe 03 00 01 00000000" + "1400 0500 fe800000000000000000000000000001" + "0800 0400 02000000",
    },
    {
      name: "default via 169.254.1.1 onlink",
      got: () => encodeRoute({ dst: "default", gateway: "169.254.1.1", ifindex: 2, onlink: true }),
      want: "02 00 00 00 fe 03 00 01 04000000" + "0800 0500 a9fe0101" + "0800 0400 02000000",
    },
  ])("encodes $name", ({ got, want }) => {
    expect(got().toString("hex")).toBe(hex(want).toString("hex"));
  });

  it("decodes family headers from the same bytes", () => {
    expect(decodeIfInfoMsg(hex("00 00 0100 05000000 01000000 01000000"))).toEqual({ family: 0, type: 1, index: 5, flags: 1, change: 1 });
    expect(decodeIfAddrMsg(hex("0a 80 02 00 07000000"))).toEqual({ family: 10, prefixLen: 128, flags: 2, scope: 0, index: 7 });
    expect(decodeRtMsg(hex("02 20 00 00 fe 03 fd 01 04000000"))).toMatchObject({ family: 2, dstLen: 32, table: 254, scope: 253, flags: 4 });
    expect(decodeNdMsg(hex("0a 00 0000 09000000 8000 00 00"))).toEqual({ family: 10, ifindex: 9, state: 0x80, flags: 0, type: 0 });
  });

  it.each([
    { name: "ack", flags: 0x100, payload: "00000000" + "00".repeat(16), errno: 0, extAck: null },
    { name: "EEXIST capped", flags: 0x100, payload: "efffffff" + "00".repeat(16), errno: 17, extAck: null },
    {
      name: "EINVAL with ext-ack message",
      flags: 0x300,
      payload: "eaffffff" + "00".repeat(16) + "0800 0100 62616400",
      errno: 22,
      extAck: "bad",
    },
  ])("decodes NLMSG_ERROR: $name", ({ flags, payload, errno, extAck }) => {
    const [m] = decodeMessages(encodeMessage(NLMSG.ERROR, flags, 9, 0, hex(payload)));
    expect(m).toBeDefined();
    expect(decodeNlError(m!)).toEqual({ errno, extAck });
  });

  it("splits a multipart datagram and rejects a truncated one", () => {
    const a = encodeMessage(16, NLM_F.MULTI, 5, 0, hex("010203"));
    const b = encodeMessage(NLMSG.DONE, NLM_F.MULTI, 5, 0, hex("00000000"));
    const msgs = decodeMessages(Buffer.concat([a, b]));
    expect(msgs.map((m) => [m.type, m.payload.toString("hex")])).toEqual([[16, "010203"], [NLMSG.DONE, "00000000"]]);
    expect(() => decodeMessages(Buffer.concat([a, b]).subarray(0, a.length + 10 + 8))).toThrow(/exceeds datagram/);
  });
});

describe("addresses", () => {
  it.each([
    { name: "v4", text: "10.244.0.5", bytes: "0af40005" },
    { name: "v6 link-local", text: "fe80::1", bytes: "fe800000000000000000000000000001" },
    { name: "v6 pod", text: "fd00:10:244::5", bytes: "fd000010024400000000000000000005" },
    { name: "v6 unspecified", text: "::", bytes: "00".repeat(16) },
  ])("converts $name both ways", ({ text, bytes }) => {
    expect(ipToBytes(text).toString("hex")).toBe(bytes);
    expect(bytesToIp(hex(bytes))).toBe(text);
  });

  it.each([
    { name: "v4 cidr", text: "10.244.0.0/16", want: { address: "10.244.0.0", prefixLen: 16, family: 4 } },
    { name: "bare v6 is /128", text: "fd00::1", want: { address: "fd00::1", prefixLen: 128, family: 6 } },
  ])("parses prefix $name", ({ text, want }) => {
    expect(parsePrefix(text)).toEqual(want);
  });

  it.each([
    { name: "v4 /33", text: "10.0.0.0/33" },
    { name: "junk length", text: "10.0.0.0/1x" },
    { name: "not an ip", text: "banana/8" },
  ])("rejects prefix $name", ({ text }) => {
    expect(() => parsePrefix(text)).toThrow();
  });
});

describe("interface names and errors", () => {
  it.each([
    { name: "16 bytes", ifname: "tw0123456789abcd", err: /is 16 bytes, at most 15 allowed/ },
    { name: "empty", ifname: "", err: /empty/ },
    { name: "slash", ifname: "a/b", err: /refuses/ },
    { name: "multibyte over 15 bytes", ifname: "éééééééé", err: /is 16 bytes/ },
  ])("rejects $name before any syscall", ({ ifname, err }) => {
    expect(() => checkIfName("create link x", ifname)).toThrow(NetlinkArgumentError);
    expect(() => checkIfName("create link x", ifname)).toThrow(err);
  });

  it("accepts a 15-byte name", () => {
    expect(() => checkIfName("op", "tw0123456789abc")).not.toThrow();
  });

  it.each([
    { name: "EEXIST", errno: 17, notFound: false, msg: "create link tw1234: File exists (EEXIST)" },
    { name: "ENODEV", errno: 19, notFound: true, msg: "delete link tw1234: No such device (ENODEV)" },
  ])("maps $name", ({ errno, notFound, msg }) => {
    const op = msg.split(":")[0]!;
    const e = netlinkError(op, errno, msg.split(": ")[1]!.replace(/ \(.*/, ""));
    expect(e.message).toBe(msg);
    expect(isNotFound(e)).toBe(notFound);
    expect(e instanceof NetlinkNotFoundError).toBe(notFound);
  });
});

describe("round-trips", () => {
  const attrArb: fc.Arbitrary<{ type: number; value: Buffer }> = fc.record({
    type: fc.integer({ min: 0, max: 0x3fff }),
    value: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  });

  it("attributes", () => {
    fc.assert(fc.property(fc.array(attrArb, { maxLength: 20 }), (attrs) => {
      const got = decodeAttrs(encodeAttrs(attrs)).map((a) => ({ type: a.type, value: Buffer.from(a.value) }));
      expect(got).toEqual(attrs);
    }));
  });

  it("messages", () => {
    const msgArb = fc.record({
      type: fc.integer({ min: 0, max: 0xffff }),
      flags: fc.integer({ min: 0, max: 0xffff }),
      seq: fc.nat(),
      pid: fc.nat(),
      payload: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    });
    fc.assert(fc.property(fc.array(msgArb, { maxLength: 8 }), (msgs) => {
      const buf = Buffer.concat(msgs.map((m) => encodeMessage(m.type, m.flags, m.seq, m.pid, m.payload)));
      expect(decodeMessages(buf).map((m) => ({ ...m, payload: Buffer.from(m.payload) }))).toEqual(msgs);
    }));
  });

  it("family headers", () => {
    const u8 = fc.integer({ min: 0, max: 255 });
    const u32 = fc.nat().map((n) => n >>> 0);
    const i32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
    fc.assert(fc.property(fc.record({ family: u8, type: fc.integer({ min: 0, max: 0xffff }), index: i32, flags: u32, change: u32 }),
      (m) => { expect(decodeIfInfoMsg(encodeIfInfoMsg(m))).toEqual(m); }));
    fc.assert(fc.property(fc.record({ family: u8, prefixLen: u8, flags: u8, scope: u8, index: u32 }),
      (m) => { expect(decodeIfAddrMsg(encodeIfAddrMsg(m))).toEqual(m); }));
    fc.assert(fc.property(fc.record({ family: u8, dstLen: u8, srcLen: u8, tos: u8, table: u8, protocol: u8, scope: u8, type: u8, flags: u32 }),
      (m) => { expect(decodeRtMsg(encodeRtMsg(m))).toEqual(m); }));
    fc.assert(fc.property(fc.record({ family: u8, ifindex: i32, state: fc.integer({ min: 0, max: 0xffff }), flags: u8, type: u8 }),
      (m) => { expect(decodeNdMsg(encodeNdMsg(m))).toEqual(m); }));
  });

  it("ip and mac bytes", () => {
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (a) => {
      const b = Buffer.from(a);
      expect(ipToBytes(bytesToIp(b))).toEqual(b);
    }));
    fc.assert(fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (a) => {
      const b = Buffer.from(a);
      expect(macToBytes(bytesToMac(b))).toEqual(b);
    }));
  });
});
