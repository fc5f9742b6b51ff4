// SPDX-License-Identifier: Apache-2.0
// A synchronous NETLINK_ROUTE socket: request/ack with sequence numbers, dumps
// (NLM_F_DUMP, multipart until NLMSG_DONE) and NLMSG_ERROR -> NetlinkError.
//
// The socket is bound to the netns it was created in, so NetlinkSocket.open({netns})
// creates it inside that netns (withNetns) and every later request on it acts
// there without switching again.
//
// API: class NetlinkSocket { static open(opts?), request(op, type, flags, body),
// dump(op, type, body), close() }.
import {
  AF_NETLINK, EAGAIN, EINTR, lastErrno, libc, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_ROUTE,
  SO_RCVBUF, SO_RCVTIMEO, SOCK_CLOEXEC, SOCK_RAW, SOL_NETLINK, SOL_SOCKET, strerror,
} from "./libc.js";
import { decodeMessages, decodeNlError, encodeMessage, NLM_F, NLMSG, type NlMessage } from "./codec.js";
import { NetlinkError, netlinkError } from "./errors.js";
import { withNetns } from "./netns.js";

/** Options for NetlinkSocket.open. */
export interface NetlinkSocketOptions {
  /** Netns path to create the socket in; null/absent = the calling thread's netns. */
  readonly netns?: string | null;
  /** Give up on a reply after this long (a kernel always answers; this guards against bugs). */
  readonly timeoutMs?: number;
}

const RECV_BUF_BYTES = 1 << 20;
const DUMP_RETRIES = 5;

/** A synchronous rtnetlink socket. Not shareable across threads; close() when done. */
export class NetlinkSocket {
  private fd: number;
  private seq: number;
  private readonly buf = Buffer.alloc(RECV_BUF_BYTES);
  /** The netns this socket acts in (path it was opened with), or null for the caller's. */
  readonly netns: string | null;

  private constructor(fd: number, netns: string | null) {
    this.fd = fd;
    this.netns = netns;
    // Start from a time-based seq so replies to a previous process's fd reuse cannot match.
    this.seq = (Date.now() & 0x7fffffff) >>> 0;
  }

  /** Open a socket in the current netns or in `opts.netns`. */
  static open(opts: NetlinkSocketOptions = {}): NetlinkSocket {
    const netns = opts.netns ?? null;
    const fd = netns === null ? createSocket() : withNetns(netns, createSocket);
    try {
      configure(fd, opts.timeoutMs ?? 10_000);
    } catch (e: unknown) {
      libc.close(fd);
      throw e;
    }
    return new NetlinkSocket(fd, netns);
  }

  /** Run `fn` with a socket opened in `netns` (or the current one) and always close it. */
  static with<T>(netns: string | null, fn: (nl: NetlinkSocket) => T): T {
    const nl = NetlinkSocket.open({ netns });
    try {
      return fn(nl);
    } finally {
      nl.close();
    }
  }

  /**
   * Send one request with NLM_F_REQUEST|NLM_F_ACK|`flags` and return the replies
   * that came before the ACK (e.g. the RTM_NEWLINK answering an RTM_GETLINK).
   * A non-zero NLMSG_ERROR throws NetlinkError whose message starts with `op`.
   */
  request(op: string, type: number, flags: number, body: Buffer): NlMessage[] {
    const seq = this.send(op, type, NLM_F.REQUEST | NLM_F.ACK | flags, body);
    const replies: NlMessage[] = [];
    for (;;) {
      for (const m of this.receive(op)) {
        if (m.seq !== seq) continue; // stale reply to an earlier, abandoned request
        if (m.type === NLMSG.ERROR) {
          const { errno, extAck } = decodeNlError(m);
          if (errno !== 0) throw netlinkError(op, errno, strerror(errno), extAck);
          return replies;
        }
        if (m.type === NLMSG.DONE) return replies;
        replies.push(m);
      }
    }
  }

  /** Dump: send with NLM_F_REQUEST|NLM_F_DUMP and collect all parts up to NLMSG_DONE. */
  dump(op: string, type: number, body: Buffer): NlMessage[] {
    for (let attempt = 0; ; attempt++) {
      const seq = this.send(op, type, NLM_F.REQUEST | NLM_F.DUMP, body);
      const out: NlMessage[] = [];
      let interrupted = false;
      let done = false;
      while (!done) {
        for (const m of this.receive(op)) {
          if (m.seq !== seq) continue;
          if (m.flags & NLM_F.DUMP_INTR) interrupted = true;
          if (m.type === NLMSG.ERROR) {
            const { errno, extAck } = decodeNlError(m);
            if (errno !== 0) throw netlinkError(op, errno, strerror(errno), extAck);
            done = true;
            break;
          }
          if (m.type === NLMSG.DONE) {
            // NLMSG_DONE carries an int: a negative errno if the dump failed part-way.
            const err = m.payload.length >= 4 ? -m.payload.readInt32LE(0) : 0;
            if (err > 0) throw netlinkError(op, err, strerror(err));
            done = true;
            break;
          }
          out.push(m);
        }
      }
      // The table changed while dumping: the result may be inconsistent, so dump again.
      if (!interrupted) return out;
      if (attempt >= DUMP_RETRIES) throw new NetlinkError(op, EINTR, "dump interrupted by concurrent changes too often");
    }
  }

  /** Close the socket; further use throws. Idempotent. */
  close(): void {
    if (this.fd >= 0) {
      libc.close(this.fd);
      this.fd = -1;
    }
  }

  private send(op: string, type: number, flags: number, body: Buffer): number {
    if (this.fd < 0) throw new Error(`${op}: netlink socket is closed`);
    this.seq = (this.seq + 1) >>> 0;
    const msg = encodeMessage(type, flags, this.seq, 0, body);
    for (;;) {
      const n = libc.send(this.fd, msg, msg.length, 0);
      if (n === msg.length) return this.seq;
      const errno = n < 0 ? lastErrno() : 0;
      if (errno === EINTR) continue;
      throw new NetlinkError(op, errno || EAGAIN, n < 0 ? `send: ${strerror(errno)}` : `short send of ${n} bytes`);
    }
  }

  private receive(op: string): NlMessage[] {
    for (;;) {
      const n = libc.recv(this.fd, this.buf, this.buf.length, 0);
      if (n >= 0) return decodeMessages(Buffer.from(this.buf.subarray(0, n)));
      const errno = lastErrno();
      if (errno === EINTR) continue;
      const what = errno === EAGAIN ? "timed out waiting for the kernel's reply" : `recv: ${strerror(errno)}`;
      throw new NetlinkError(op, errno, what);
    }
  }
}

function createSocket(): number {
  const fd = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) {
    const errno = lastErrno();
    throw new NetlinkError("open netlink socket", errno, strerror(errno));
  }
  // struct sockaddr_nl {u16 family; u16 pad; u32 pid; u32 groups}: pid 0 lets the kernel pick.
  const sa = Buffer.alloc(12);
  sa.writeUInt16LE(AF_NETLINK, 0);
  if (libc.bind(fd, sa, sa.length) !== 0) {
    const errno = lastErrno();
    libc.close(fd);
    throw new NetlinkError("bind netlink socket", errno, strerror(errno));
  }
  return fd;
}

function configure(fd: number, timeoutMs: number): void {
  const one = Buffer.alloc(4);
  one.writeInt32LE(1, 0);
  // Extended acks give the kernel's reason ("Invalid prefix for given prefix length") in errors;
  // CAP_ACK keeps error replies small. Both are best-effort: old kernels lack them.
  libc.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
  libc.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
  const rcvbuf = Buffer.alloc(4);
  rcvbuf.writeInt32LE(RECV_BUF_BYTES, 0);
  libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf, 4);
  // struct timeval {i64 sec; i64 usec} on 64-bit Linux.
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
  tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
  if (libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) !== 0) {
    const errno = lastErrno();
    throw new NetlinkError("set netlink socket timeout", errno, strerror(errno));
  }
}
