// SPDX-License-Identifier: Apache-2.0
// Reader of the twill_events ring buffer: decodes each record as a
// flow_event. Node cannot wait on the ring's epoll fd without blocking the
// event loop, so the reader drains the ring on a timer (ring_buffer__consume
// never blocks); records are delivered synchronously from drain().
//
// API: EventsReader (start(intervalMs)/stop()/drain()/close()).
import { FlowEvent } from "../generated/bpf-types.js";
import { RingBuffer } from "../native/libbpf.js";

/** Decodes twill_events records and hands them to a callback. */
export class EventsReader {
  #ring: RingBuffer;
  #timer: NodeJS.Timeout | null = null;
  #malformed = 0;

  /**
   * @param fd fd of twill_events (not owned)
   * @param onEvent called for every event, in ring order
   */
  constructor(fd: number, onEvent: (e: FlowEvent) => void) {
    this.#ring = new RingBuffer(fd, (data) => {
      if (data.length < FlowEvent.SIZE) {
        this.#malformed++;
        return;
      }
      onEvent(FlowEvent.decode(data));
    });
  }

  /** Records shorter than a flow_event that were skipped. */
  get malformed(): number {
    return this.#malformed;
  }

  /** Deliver every pending record now; returns how many were consumed. */
  drain(): number {
    return this.#ring.consume();
  }

  /** Drain every intervalMs until stop(). */
  start(intervalMs: number): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => this.drain(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Stop and free the ring reader. */
  close(): void {
    this.stop();
    this.#ring.close();
  }
}
