// SPDX-License-Identifier: Apache-2.0
// Bounded history of decoded flows plus live subscribers (`twill observe`).
//
// The ring-buffer reader pushes every decoded Flow with push() and reports
// kernel-side losses (twill_ev_lost deltas) with reportLost(). Readers call
// open(filter, {last, follow}) and iterate the returned FlowSubscription:
// first the last N matching flows from history, then (follow) new ones.
//
// A slow reader never slows the producer or other readers: each
// subscription has its own bounded queue; when it is full the oldest queued
// flow is dropped and counted, and the reader gets a {kind: "lost"} item
// with the count before its next flow.
//
// API: FlowBuffer (implements FlowSource), FlowSubscription, FlowStreamItem,
// DEFAULT_FLOW_HISTORY, DEFAULT_SUBSCRIBER_QUEUE.
import { matchesFilter, type Flow, type FlowFilter } from "./flow.js";

/** Flows kept for replay unless configured otherwise. */
export const DEFAULT_FLOW_HISTORY = 4096;
/** Flows queued per follower before the oldest are dropped. */
export const DEFAULT_SUBSCRIBER_QUEUE = 1024;

/** What a subscription yields. */
export type FlowStreamItem =
  | { readonly kind: "flow"; readonly flow: Flow }
  | {
      readonly kind: "lost";
      readonly count: number;
      /** ring-buffer: the kernel could not queue them; client: this reader was too slow. */
      readonly source: "ring-buffer" | "client";
    };

/** How to open a subscription. */
export interface OpenOptions {
  /** Replay at most this many past matching flows; null = all kept. */
  readonly last: number | null;
  /** Keep streaming new flows after the replay. */
  readonly follow: boolean;
  /** Bound of the per-subscriber queue (default DEFAULT_SUBSCRIBER_QUEUE). */
  readonly queueSize?: number;
}

/** Where the API reads flows from (implemented by FlowBuffer). */
export interface FlowSource {
  open(filter: FlowFilter, options: OpenOptions): FlowSubscription;
}

/** An open reader; iterate it with for-await, close() to stop early. */
export class FlowSubscription implements AsyncIterableIterator<FlowStreamItem> {
  private readonly queue: Flow[] = [];
  private replayIndex = 0;
  private clientLost = 0;
  private ringLost = 0;
  /** No more flows will arrive: close() was called, or the reader does not follow. */
  private closed = false;
  private wake: (() => void) | null = null;

  /** @internal Created by FlowBuffer.open. */
  constructor(
    private readonly replay: readonly Flow[],
    readonly filter: FlowFilter,
    follow: boolean,
    private readonly queueSize: number,
    private readonly onClose: (s: FlowSubscription) => void,
  ) {
    if (!follow) this.closed = true;
  }

  /** @internal Offer a new flow (already known to match). Never blocks. */
  offer(flow: Flow): void {
    if (this.closed) return;
    if (this.queue.length >= this.queueSize) {
      this.queue.shift();
      this.clientLost++;
    }
    this.queue.push(flow);
    this.signal();
  }

  /** @internal Kernel-side loss, reported to every follower. */
  offerLost(count: number): void {
    if (this.closed) return;
    this.ringLost += count;
    this.signal();
  }

  /** Stop: pending items are discarded and the iterator ends. */
  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.replayIndex = this.replay.length;
    this.clientLost = 0;
    this.ringLost = 0;
    this.onClose(this);
    this.signal();
  }

  private signal(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private take(): FlowStreamItem | null {
    if (this.replayIndex < this.replay.length) {
      const flow = this.replay[this.replayIndex++] as Flow;
      return { kind: "flow", flow };
    }
    if (this.clientLost > 0) {
      const count = this.clientLost;
      this.clientLost = 0;
      return { kind: "lost", count, source: "client" };
    }
    if (this.ringLost > 0) {
      const count = this.ringLost;
      this.ringLost = 0;
      return { kind: "lost", count, source: "ring-buffer" };
    }
    const flow = this.queue.shift();
    return flow === undefined ? null : { kind: "flow", flow };
  }

  async next(): Promise<IteratorResult<FlowStreamItem>> {
    for (;;) {
      const item = this.take();
      if (item !== null) return { done: false, value: item };
      if (this.closed) {
        this.onClose(this);
        return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => { this.wake = resolve; });
    }
  }

  async return(): Promise<IteratorResult<FlowStreamItem>> {
    this.close();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** Ring of the most recent flows plus the set of followers. */
export class FlowBuffer implements FlowSource {
  private readonly ring: (Flow | undefined)[];
  private head = 0; // next write position
  private size = 0;
  private readonly subscribers = new Set<FlowSubscription>();
  private lostTotal = 0;

  constructor(readonly capacity: number = DEFAULT_FLOW_HISTORY) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`create flow buffer: capacity ${capacity} must be a positive integer`);
    }
    this.ring = new Array<Flow | undefined>(capacity);
  }

  /** Flows currently kept. */
  get length(): number {
    return this.size;
  }

  /** Followers currently open. */
  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Kernel-side losses reported since creation. */
  get ringLostTotal(): number {
    return this.lostTotal;
  }

  /** Record a flow and hand it to every follower whose filter matches. */
  push(flow: Flow): void {
    this.ring[this.head] = flow;
    this.head = (this.head + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
    for (const s of this.subscribers) {
      if (matchesFilter(flow, s.filter)) s.offer(flow);
    }
  }

  /** Report events the kernel dropped (ring full); followers are told. */
  reportLost(count: number): void {
    if (count <= 0) return;
    this.lostTotal += count;
    for (const s of this.subscribers) s.offerLost(count);
  }

  /** The last `last` (null: all) kept flows matching filter, oldest first. */
  snapshot(filter: FlowFilter, last: number | null): Flow[] {
    const out: Flow[] = [];
    const want = last ?? this.size;
    // Walk newest to oldest so that --last N stops early, then reverse.
    for (let i = 1; i <= this.size && out.length < want; i++) {
      const f = this.ring[(this.head - i + this.capacity) % this.capacity];
      if (f !== undefined && matchesFilter(f, filter)) out.push(f);
    }
    return out.reverse();
  }

  /** Replay then (follow) stream; see the module comment. */
  open(filter: FlowFilter, options: OpenOptions): FlowSubscription {
    const replay = options.last === 0 ? [] : this.snapshot(filter, options.last);
    const sub = new FlowSubscription(
      replay,
      filter,
      options.follow,
      options.queueSize ?? DEFAULT_SUBSCRIBER_QUEUE,
      (s) => this.subscribers.delete(s),
    );
    // Registered synchronously with the snapshot: no flow can fall between.
    if (options.follow) this.subscribers.add(sub);
    return sub;
  }
}
