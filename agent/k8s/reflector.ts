// SPDX-License-Identifier: Apache-2.0
// List-then-watch mirror of one API collection (client-go's Reflector): the
// local store follows the server through a list and a watch from the list's
// resourceVersion; a 410 Gone (the version was compacted away) relists; any
// other failure (server down, connection reset, 5xx) retries with capped
// exponential backoff and jitter, keeping the store as it was, so the agent's
// view freezes at the last good state instead of emptying.
//
// We do not use client-node's ListWatch: it stops for good on any error other
// than 410 and has no backoff, and a stopped informer is exactly the failure a
// datapath agent cannot afford.
//
// API: `new Reflector(client, {path, fieldSelector?}, onChange, log)`,
// `start()`, `stop()`, `items()`, `synced()` (listed at least once),
// `healthy()` (the last list/watch attempt connected).
import type { Logger } from "pino";
import { isKubeApiError, type KubeClient, type KubeList, type KubeObject, type WatchEvent } from "./kube-client.js";

/** What to mirror. */
export interface ReflectorTarget {
  /** Collection path, e.g. /api/v1/pods or /apis/networking.k8s.io/v1/networkpolicies. */
  readonly path: string;
  readonly fieldSelector?: string;
  /** Backoff bounds; defaults 200 ms .. 10 s. */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /**
   * Keep only what the agent reads of each object (e.g. pods: 150k full Pod
   * objects would hold most of the agent's memory). Default: keep all.
   */
  readonly slim?: (o: KubeObject) => KubeObject;
}

/** Raised inside the loop when a watch reports 410 Gone. */
class GoneError extends Error {
  override readonly name = "GoneError";
}

/** Keeps a local copy of one collection in sync with the API server. */
export class Reflector {
  private readonly store = new Map<string, KubeObject>();
  private resourceVersion = "";
  private listed = false;
  private connected = false;
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;

  constructor(
    private readonly client: KubeClient,
    private readonly target: ReflectorTarget,
    /** Called after every change of the store: the keys a watch event changed, or null when a list replaced it. */
    private readonly onChange: (keys: readonly string[] | null) => void,
    private readonly log: Logger,
  ) {}

  /** Begin listing and watching in the background. */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stop the loop and close the watch; resolves when the loop has exited. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  /** Current objects (in no particular order). */
  items(): KubeObject[] {
    return [...this.store.values()];
  }

  /** The current object under a key ("namespace/name"; cluster-scoped: "/name"). */
  get(key: string): KubeObject | undefined {
    return this.store.get(key);
  }

  /** Every current key. */
  keys(): IterableIterator<string> {
    return this.store.keys();
  }

  /** True once the first list succeeded. */
  synced(): boolean {
    return this.listed;
  }

  /** True while the last list or watch connected (false during backoff). */
  healthy(): boolean {
    return this.listed && this.connected;
  }

  private async run(): Promise<void> {
    const min = this.target.minBackoffMs ?? 200;
    const max = this.target.maxBackoffMs ?? 10_000;
    let backoff = min;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === "") await this.list();
        this.connected = true;
        backoff = min;
        await this.watchOnce(signal);
      } catch (e: unknown) {
        if (signal.aborted) break;
        if (e instanceof GoneError || isKubeApiError(e, 410)) {
          // Our version was compacted: relist at once; a relist is cheap next to a stale view.
          this.log.info({ path: this.target.path }, "watch expired (410 Gone); relisting");
          this.resourceVersion = "";
          continue;
        }
        if (this.connected) this.log.warn({ path: this.target.path, err: describeError(e) }, "list/watch failed; keeping the last state and retrying");
        this.connected = false;
        await sleep(backoff * (0.5 + Math.random() / 2), signal);
        backoff = Math.min(max, backoff * 2);
      }
    }
  }

  private query(): Record<string, string> {
    return this.target.fieldSelector ? { fieldSelector: this.target.fieldSelector } : {};
  }

  private async list(): Promise<void> {
    const items: KubeObject[] = [];
    let cont = "";
    let rv = "";
    do {
      const q = new URLSearchParams({ ...this.query(), limit: "500", ...(cont ? { continue: cont } : {}) });
      const page = await this.client.request<KubeList>("GET", `${this.target.path}?${q.toString()}`, undefined, { timeoutMs: 60_000 });
      items.push(...page.items);
      cont = page.metadata.continue ?? "";
      rv = page.metadata.resourceVersion ?? "";
    } while (cont !== "");
    this.store.clear();
    const slim = this.target.slim ?? ((o: KubeObject) => o);
    for (const o of items) this.store.set(keyOf(o), slim(o));
    this.resourceVersion = rv;
    this.listed = true;
    this.connected = true;
    this.onChange(null);
  }

  private async watchOnce(signal: AbortSignal): Promise<void> {
    const query = {
      ...this.query(),
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: "true",
      // The server ends the watch after this long; we then re-watch from the
      // last version, which also proves the connection is alive.
      timeoutSeconds: String(240 + Math.floor(Math.random() * 120)),
    };
    let gone: GoneError | null = null;
    await this.client.watch(this.target.path, query, (ev: WatchEvent) => {
      if (gone) return;
      if (ev.type === "ERROR") {
        if (ev.object.code === 410) gone = new GoneError(ev.object.message ?? "gone");
        else this.log.warn({ path: this.target.path, status: ev.object }, "watch error event");
        return;
      }
      const rv = ev.object.metadata?.resourceVersion;
      if (rv) this.resourceVersion = rv;
      if (ev.type === "BOOKMARK") return;
      const key = keyOf(ev.object);
      if (ev.type === "DELETED") this.store.delete(key);
      else this.store.set(key, this.target.slim ? this.target.slim(ev.object) : ev.object);
      this.onChange([key]);
    }, signal);
    if (gone) throw gone;
  }
}

function keyOf(o: KubeObject): string {
  return `${o.metadata.namespace ?? ""}/${o.metadata.name ?? ""}`;
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
