// SPDX-License-Identifier: Apache-2.0
// Host-scope IPAM over the node's pod CIDRs.
//
// Every allocation is one file, <dir>/<ip>, created with O_EXCL and fsynced
// before the address is handed out. The file system is therefore the source
// of truth: after a crash (kill -9) the next start rereads the directory and
// can never give an address twice. Release deletes the file.
import * as fs from "node:fs";
import * as path from "node:path";
import { cidrContains, cidrSize, familyBits, formatIp, parseIp, type Cidr } from "./cidr.js";

/** One address held by a container. */
export interface Allocation {
  readonly ip: string;
  readonly family: 4 | 6;
  readonly cidr: Cidr;
  readonly containerId: string;
  readonly ifname: string;
}

/** Every address of a pod CIDR is taken. */
export class IpamExhaustedError extends Error {
  constructor(readonly cidr: string) {
    super(`allocate address: pool ${cidr} is exhausted`);
    this.name = "IpamExhaustedError";
  }
}

/** A specific address was requested but belongs to someone else or no pool. */
export class IpamConflictError extends Error {
  constructor(readonly ip: string, detail: string) {
    super(`allocate address ${ip}: ${detail}`);
    this.name = "IpamConflictError";
  }
}

interface Record_ { containerId: string; ifname: string }

/** Allocator for one node; construct with {@link IpAllocator.open}. */
export class IpAllocator {
  private readonly byIp = new Map<string, Allocation>();
  private readonly cursor = new Map<string, bigint>();

  private constructor(private readonly dir: string, readonly cidrs: readonly Cidr[]) {}

  /** Open (creating) the state directory and load existing allocations. */
  static open(dir: string, cidrs: readonly Cidr[]): IpAllocator {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const a = new IpAllocator(dir, cidrs);
    for (const name of fs.readdirSync(dir)) {
      if (name.endsWith(".tmp")) continue;
      const ipText = name.replace(/_/g, ":");
      let rec: Record_;
      try {
        rec = JSON.parse(fs.readFileSync(path.join(dir, name), "utf8")) as Record_;
      } catch {
        // A half-written file cannot exist (O_EXCL + write + fsync before use),
        // but an empty one can after a crash between open and write: the
        // address was never handed out, so it is free again.
        fs.rmSync(path.join(dir, name), { force: true });
        continue;
      }
      const { family, value } = parseIp(ipText);
      const cidr = cidrs.find((c) => cidrContains(c, family, value));
      // An address outside today's pools (the CIDR changed) stays reserved
      // until its container is deleted, so it is still tracked.
      a.byIp.set(ipText, {
        ip: ipText, family, containerId: rec.containerId, ifname: rec.ifname,
        cidr: cidr ?? { family, base: value, prefixLen: familyBits(family), text: `${ipText}/${familyBits(family)}` },
      });
    }
    return a;
  }

  /** Addresses currently held. */
  list(): Allocation[] {
    return [...this.byIp.values()];
  }

  /** Addresses held by one container. */
  byContainer(containerId: string): Allocation[] {
    return this.list().filter((x) => x.containerId === containerId);
  }

  /**
   * Give the container one address from each pool (v4 and/or v6). Idempotent:
   * a container that already holds an address of a family keeps it.
   * `requested` asks for specific addresses (they must be free and in a pool).
   */
  allocate(containerId: string, ifname: string, requested: readonly string[] = []): Allocation[] {
    for (const r of requested) {
      const { family, value } = parseIp(r);
      if (!this.cidrs.some((c) => cidrContains(c, family, value))) {
        throw new IpamConflictError(r, `not inside any pod CIDR (${this.cidrs.map((c) => c.text).join(", ")})`);
      }
    }
    const out: Allocation[] = [];
    const made: Allocation[] = [];
    try {
      for (const cidr of this.cidrs) {
        const held = this.byContainer(containerId).find((x) => x.family === cidr.family && x.ifname === ifname);
        if (held) { out.push(held); continue; }
        const want = requested.map((r) => parseIp(r)).find((r) => r.family === cidr.family);
        const alloc = want ? this.claimSpecific(containerId, ifname, cidr, want.value) : this.claimNext(containerId, ifname, cidr);
        made.push(alloc);
        out.push(alloc);
      }
    } catch (e: unknown) {
      for (const m of made) this.releaseOne(m.ip);
      throw e;
    }
    return out;
  }

  /** Give back every address of the container (and ifname, if given). Returns what was freed. */
  release(containerId: string, ifname?: string): Allocation[] {
    const freed = this.byContainer(containerId).filter((x) => ifname === undefined || x.ifname === ifname);
    for (const f of freed) this.releaseOne(f.ip);
    return freed;
  }

  /** Release every address whose container is not in `valid`. */
  gc(valid: ReadonlySet<string>): Allocation[] {
    const stale = this.list().filter((x) => !valid.has(x.containerId));
    for (const s of stale) this.releaseOne(s.ip);
    return stale;
  }

  private fileOf(ip: string): string {
    return path.join(this.dir, ip.replace(/:/g, "_"));
  }

  private releaseOne(ip: string): void {
    fs.rmSync(this.fileOf(ip), { force: true });
    this.byIp.delete(ip);
  }

  private usable(cidr: Cidr, value: bigint): boolean {
    const offset = value - cidr.base;
    const size = cidrSize(cidr);
    // Skip the network address, and the broadcast address of v4 pools.
    if (size > 2n && offset === 0n) return false;
    if (cidr.family === 4 && size > 2n && offset === size - 1n) return false;
    return true;
  }

  private claimSpecific(containerId: string, ifname: string, cidr: Cidr, value: bigint): Allocation {
    const ip = formatIp(cidr.family, value);
    if (!cidrContains(cidr, cidr.family, value) || !this.usable(cidr, value)) {
      throw new IpamConflictError(ip, `not a usable address of ${cidr.text}`);
    }
    const owner = this.byIp.get(ip);
    if (owner) throw new IpamConflictError(ip, `already in use by container ${owner.containerId}`);
    const a = this.tryClaim(containerId, ifname, cidr, value);
    if (!a) throw new IpamConflictError(ip, "already in use");
    return a;
  }

  private claimNext(containerId: string, ifname: string, cidr: Cidr): Allocation {
    const size = cidrSize(cidr);
    // Next-fit from the last address handed out, so a released address is not
    // reused at once (a stale peer may still be talking to it).
    const start = this.cursor.get(cidr.text) ?? 0n;
    const limit = size < 1_000_000n ? size : 1_000_000n;
    for (let i = 1n; i <= limit; i++) {
      const offset = (start + i) % size;
      const value = cidr.base + offset;
      if (!this.usable(cidr, value)) continue;
      if (this.byIp.has(formatIp(cidr.family, value))) continue;
      const a = this.tryClaim(containerId, ifname, cidr, value);
      if (a) {
        this.cursor.set(cidr.text, offset);
        return a;
      }
    }
    throw new IpamExhaustedError(cidr.text);
  }

  private tryClaim(containerId: string, ifname: string, cidr: Cidr, value: bigint): Allocation | null {
    const ip = formatIp(cidr.family, value);
    let fd: number;
    try {
      fd = fs.openSync(this.fileOf(ip), "wx", 0o600);
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return null;
      throw e;
    }
    try {
      fs.writeSync(fd, JSON.stringify({ containerId, ifname } satisfies Record_));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    const a: Allocation = { ip, family: cidr.family, cidr, containerId, ifname };
    this.byIp.set(ip, a);
    return a;
  }
}
