// SPDX-License-Identifier: Apache-2.0
// One regeneration's writes: the engine's result into the maps, in the order
// that never opens a window of wrong verdicts (see datapath-sync.ts):
//   1. ipcache additions and changes (peers learn new pods first);
//   2. the policy tries of the endpoints that changed (each swapped whole);
//   3. ipcache deletions.
// After a rebuild of the engine (delta.full) or a failed write, everything is
// compared against the maps (the pinned contents after a restart, or
// whatever a failed write left); otherwise only the delta is written.
//
// API: `DatapathApplier` (`apply(desired, records)`, `forceFull()`).
import type { EndpointRecord } from "../endpoint/endpoint-store.js";
import type { DatapathSync } from "./datapath-sync.js";
import type { IpcacheChange } from "./ipcache-claims.js";
import type { DesiredState } from "./policy-engine.js";

const FULL_SYNC_CHUNK = 8192;

/** What one apply() wrote. */
export interface ApplyResult {
  readonly full: boolean;
  readonly ipcacheWritten: number;
  readonly ipcacheDeleted: number;
  readonly triesChanged: number;
  /** Endpoints whose policy could not be written; their previous policy stays in force. */
  readonly failed: readonly { readonly record: EndpointRecord; readonly error: Error }[];
}

/** Writes engine results into the datapath; remembers what must be retried. */
export class DatapathApplier {
  private full = true;
  /** Endpoints whose last write failed: retried with every later apply. */
  private readonly retry = new Set<string>();
  /** Container id -> host ifindex its policy was written for (a re-created veth needs a write though nothing changed). */
  private readonly written = new Map<string, number>();

  constructor(private readonly sync: DatapathSync) {}

  /** Make the next apply() compare everything (e.g. after a failure outside the applier). */
  forceFull(): void {
    this.full = true;
  }

  /** Write `desired` for `records` (the local endpoints). Throws on an ipcache write failure (next call is full). */
  apply(desired: DesiredState, records: readonly EndpointRecord[]): ApplyResult {
    const full = this.full || desired.delta.full;
    this.full = true; // until this apply completes
    const d = desired.delta;
    let ipcacheWritten = 0;
    let ipcacheDeleted = 0;
    if (full) {
      // In chunks: 150k+ entries as one array of keys and values would be
      // the agent's largest allocation.
      let chunk: IpcacheChange[] = [];
      for (const e of desired.ipcacheEntries()) {
        chunk.push(e);
        if (chunk.length === FULL_SYNC_CHUNK) {
          ipcacheWritten += this.sync.upsertIpcache(chunk);
          chunk = [];
        }
      }
      ipcacheWritten += this.sync.upsertIpcache(chunk);
    } else {
      ipcacheWritten = this.sync.upsertIpcache(d.ipcache.upserts);
    }
    const wanted = full ? null : new Set([...d.endpoints, ...this.retry]);
    const items = records.flatMap((record) => {
      if (wanted && !wanted.has(record.containerId) && this.written.get(record.containerId) === record.hostIfindex) return [];
      const ep = desired.endpoints.get(record.containerId);
      return ep ? [{ record, identity: ep.identity, entries: ep.entries }] : [];
    });
    let changed = 0;
    const failed: { record: EndpointRecord; error: Error }[] = [];
    try {
      // All changed tries in one call (see DatapathSync.syncEndpoints).
      const r = this.sync.syncEndpoints(items);
      changed = r.changed;
      failed.push(...r.failed);
    } catch {
      // Isolate the failing endpoint: one at a time, each keeps its previous policy on error.
      for (const { record, identity, entries } of items) {
        try {
          if (this.sync.syncEndpoint(record, identity, entries)) changed++;
        } catch (e: unknown) {
          failed.push({ record, error: e instanceof Error ? e : new Error(String(e)) });
        }
      }
    }
    this.retry.clear();
    for (const f of failed) this.retry.add(f.record.containerId);
    const live = new Set(records.map((r) => r.containerId));
    for (const id of this.written.keys()) if (!live.has(id)) this.written.delete(id);
    for (const { record } of items) if (!this.retry.has(record.containerId)) this.written.set(record.containerId, record.hostIfindex);
    // Deletions last: what the maps hold beyond the desired state (full), or the delta's.
    const deletes = full ? this.sync.ipcachePrefixes().filter((p) => !desired.hasIpcachePrefix(p)) : d.ipcache.deletes;
    ipcacheDeleted = this.sync.deleteIpcache(deletes);
    this.full = false;
    return { full, ipcacheWritten, ipcacheDeleted, triesChanged: changed, failed };
  }
}
