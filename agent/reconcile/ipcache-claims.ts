// SPDX-License-Identifier: Apache-2.0
// Who claims which ipcache prefix, and which claim is in force.
//
// Several owners can claim one prefix at the same time: the node itself
// (host addresses), a local endpoint (its CNI result), a pod object (status
// IPs, e.g. a deleted pod's address already reused by a new one), and any
// number of policies' ipBlocks (CIDR identities). The entry in force is the
// claim with the lowest rank, ties broken by the smallest owner key, so the
// result depends only on the current claims, never on their order.
//
// The table records, per update batch, the prefixes whose entry in force
// changed; takeDelta() returns them as upserts and deletes and starts a new
// batch. A prefix whose entry goes back to what it was is not reported.
//
// API: `ClaimRank`, `IpcacheClaims` (claim/unclaim/entries/size/takeDelta),
// `IpcacheChange`, `IpcacheDelta`.

/** Lower ranks win. */
export const ClaimRank = { HOST: 0, LOCAL_ENDPOINT: 1, POD: 2, CIDR: 3 } as const;

/** A prefix entry as the datapath needs it. */
export interface IpcacheChange {
  readonly prefix: string;
  readonly identity: number;
  /** The prefix is a local endpoint's address (TWILL_IPCACHE_LOCAL). */
  readonly local: boolean;
}

/** What changed in the entries in force since the last takeDelta(). */
export interface IpcacheDelta {
  readonly upserts: IpcacheChange[];
  readonly deletes: string[];
}

interface Claim {
  readonly owner: string;
  readonly rank: number;
  readonly identity: number;
  /** How many times this owner claimed the prefix (CIDR prefixes are shared by policies). */
  count: number;
}

/** Entry in force: identity and local flag packed as one number (identity * 2 + local). */
type Packed = number;

const pack = (c: Claim): Packed => c.identity * 2 + (c.rank === ClaimRank.LOCAL_ENDPOINT ? 1 : 0);

function winner(claims: Claim | Claim[]): Claim | undefined {
  if (!Array.isArray(claims)) return claims;
  let best: Claim | undefined;
  for (const c of claims) if (!best || c.rank < best.rank || (c.rank === best.rank && c.owner < best.owner)) best = c;
  return best;
}

/** Prefix claims and the ipcache entries they put in force. Prefixes must be canonical texts. */
export class IpcacheClaims {
  // One claim (the common case) is stored bare; arrays only for contested prefixes.
  private readonly claims = new Map<string, Claim | Claim[]>();
  /** Prefix -> entry in force when the batch started (null: none), for prefixes touched in this batch. */
  private touched = new Map<string, Packed | null>();
  /** Off while the table is built from scratch: nobody wants a 100k-entry delta then. */
  private recording = true;

  /** Number of prefixes with an entry in force. */
  get size(): number {
    return this.claims.size;
  }

  private before(prefix: string, current: Claim | Claim[] | undefined): void {
    if (!this.recording || this.touched.has(prefix)) return;
    const w = current === undefined ? undefined : winner(current);
    this.touched.set(prefix, w ? pack(w) : null);
  }

  /** Add one claim of `owner` on `prefix` (claims of one owner on one prefix are counted). */
  claim(prefix: string, owner: string, rank: number, identity: number): void {
    const cur = this.claims.get(prefix);
    this.before(prefix, cur);
    if (cur === undefined) {
      this.claims.set(prefix, { owner, rank, identity, count: 1 });
      return;
    }
    const list = Array.isArray(cur) ? cur : [cur];
    const mine = list.find((c) => c.owner === owner);
    if (mine) {
      if (mine.identity !== identity || mine.rank !== rank) throw new Error(`ipcache claim ${prefix}: owner ${owner} claims it again with another identity`);
      mine.count++;
      return;
    }
    list.push({ owner, rank, identity, count: 1 });
    this.claims.set(prefix, list);
  }

  /** Drop one claim of `owner` on `prefix`; unknown claims are ignored. */
  unclaim(prefix: string, owner: string): void {
    const cur = this.claims.get(prefix);
    if (cur === undefined) return;
    const list = Array.isArray(cur) ? cur : [cur];
    const i = list.findIndex((c) => c.owner === owner);
    const mine = list[i];
    if (!mine) return;
    this.before(prefix, cur);
    if (--mine.count > 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.claims.delete(prefix);
    else this.claims.set(prefix, list.length === 1 ? (list[0] as Claim) : list);
  }

  /** Whether a prefix has an entry in force. */
  has(prefix: string): boolean {
    return this.claims.has(prefix);
  }

  /** Every entry in force (canonical prefix texts). */
  *entries(): Iterable<IpcacheChange> {
    for (const [prefix, claims] of this.claims) {
      const w = winner(claims) as Claim;
      yield { prefix, identity: w.identity, local: w.rank === ClaimRank.LOCAL_ENDPOINT };
    }
  }

  /** Stop recording changes until the next takeDelta(), which then reports none (for a build from scratch). */
  pauseDelta(): void {
    this.recording = false;
    this.touched = new Map();
  }

  /** The changes of the entries in force since the last call (or since pauseDelta(): none). */
  takeDelta(): IpcacheDelta {
    this.recording = true;
    const upserts: IpcacheChange[] = [];
    const deletes: string[] = [];
    for (const [prefix, was] of this.touched) {
      const cur = this.claims.get(prefix);
      const w = cur === undefined ? undefined : winner(cur);
      const now = w ? pack(w) : null;
      if (now === was) continue;
      if (w) upserts.push({ prefix, identity: w.identity, local: w.rank === ClaimRank.LOCAL_ENDPOINT });
      else deletes.push(prefix);
    }
    this.touched = new Map();
    return { upserts, deletes };
  }
}
