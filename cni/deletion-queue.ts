// SPDX-License-Identifier: Apache-2.0
// On-disk queue of CNI DELs that could not reach the agent (as Cilium does):
// DEL must succeed while the agent restarts, yet the agent still has to free
// the pod's addresses and map entries. The plugin writes one file per
// container, <dir>/<containerId>.json (tmp + fsync + rename, so a reader never
// sees half a file); the agent calls drainDeletionQueue at start and
// periodically, and a file is removed only after its handler succeeded.
//
// API: DEFAULT_DELETION_QUEUE_DIR, QueuedDeletion, enqueueDeletion,
// listDeletionQueue, drainDeletionQueue, DrainReport.
import * as fs from "node:fs";
import * as path from "node:path";

/** Where the plugin queues DELs and the agent drains them. */
export const DEFAULT_DELETION_QUEUE_DIR = "/var/run/twill/cni-deletion-queue";

/** One DEL the agent still owes. */
export interface QueuedDeletion {
  readonly containerId: string;
  readonly ifname: string;
  /** Null when the runtime gave no CNI_NETNS (netns already gone). */
  readonly netns: string | null;
  readonly podNamespace: string | null;
  readonly podName: string | null;
  /** ISO time of the failed DEL, for logs and age limits. */
  readonly queuedAt: string;
}

// Container IDs reach us validated (config.ts), but the queue is also a public
// API for the agent: never let an ID become a path outside the directory.
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function fileFor(dir: string, containerId: string): string {
  if (!SAFE_ID.test(containerId) || containerId.includes("..")) {
    throw new Error(`queue deletion: container id "${containerId}" is not a safe file name`);
  }
  return path.join(dir, `${containerId}.json`);
}

/**
 * Record a DEL for the agent. Idempotent: a second DEL of the same container
 * replaces the file. The write is durable before this returns.
 */
export function enqueueDeletion(dir: string, entry: QueuedDeletion): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = fileFor(dir, entry.containerId);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, "w", 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(entry) + "\n");
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  return file;
}

function isEntry(x: unknown): x is QueuedDeletion {
  if (typeof x !== "object" || x === null) return false;
  const o = x as Record<string, unknown>;
  const strOrNull = (v: unknown): boolean => v === null || typeof v === "string";
  return typeof o["containerId"] === "string" && typeof o["ifname"] === "string" &&
    strOrNull(o["netns"]) && strOrNull(o["podNamespace"]) && strOrNull(o["podName"]) &&
    typeof o["queuedAt"] === "string";
}

/** Queued entries, oldest first; unreadable files are reported, not thrown. */
export function listDeletionQueue(dir: string): { entries: QueuedDeletion[]; corrupt: string[] } {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { entries: [], corrupt: [] };
    throw e;
  }
  const entries: QueuedDeletion[] = [];
  const corrupt: string[] = [];
  for (const name of names) {
    if (!name.endsWith(".json")) continue;
    const file = path.join(dir, name);
    try {
      const parsed: unknown = JSON.parse(fs.readFileSync(file, "utf8"));
      if (isEntry(parsed) && `${parsed.containerId}.json` === name) entries.push(parsed);
      else corrupt.push(file);
    } catch {
      corrupt.push(file);
    }
  }
  entries.sort((a, b) => a.queuedAt.localeCompare(b.queuedAt));
  return { entries, corrupt };
}

/** Outcome of one drain pass. */
export interface DrainReport {
  /** Container IDs whose deletion the handler completed (files removed). */
  readonly drained: string[];
  /** Failed handlers; their files stay for the next pass. */
  readonly failed: { containerId: string; error: unknown }[];
  /** Files that were not valid entries; removed so they cannot block the queue. */
  readonly discarded: string[];
}

/**
 * Run `handler` for every queued DEL, oldest first, removing each file after
 * its handler resolved. The handler must be idempotent (a crash between the
 * handler and the unlink replays the entry).
 */
export async function drainDeletionQueue(
  dir: string,
  handler: (entry: QueuedDeletion) => Promise<void>,
): Promise<DrainReport> {
  const { entries, corrupt } = listDeletionQueue(dir);
  const drained: string[] = [];
  const failed: { containerId: string; error: unknown }[] = [];
  for (const entry of entries) {
    try {
      await handler(entry);
    } catch (error: unknown) {
      failed.push({ containerId: entry.containerId, error });
      continue;
    }
    fs.rmSync(fileFor(dir, entry.containerId), { force: true });
    drained.push(entry.containerId);
  }
  for (const file of corrupt) fs.rmSync(file, { force: true });
  return { drained, failed, discarded: corrupt };
}
