// SPDX-License-Identifier: Apache-2.0
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { drainDeletionQueue, enqueueDeletion, listDeletionQueue, type QueuedDeletion } from "../../cni/deletion-queue.js";

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "twill-cniq-"));
  dirs.push(d);
  return path.join(d, "queue"); // not yet created: enqueue must create it
}
afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }); });

function entry(containerId: string, queuedAt: string): QueuedDeletion {
  return { containerId, ifname: "eth0", netns: null, podNamespace: "default", podName: "web", queuedAt };
}

describe("deletion queue", () => {
  it("stores one file per container, replaces on a repeated DEL, lists oldest first", () => {
    const dir = tmp();
    enqueueDeletion(dir, entry("b", "2026-01-01T00:00:02Z"));
    enqueueDeletion(dir, entry("a", "2026-01-01T00:00:01Z"));
    enqueueDeletion(dir, entry("b", "2026-01-01T00:00:03Z"));
    expect(fs.readdirSync(dir).sort()).toEqual(["a.json", "b.json"]);
    expect(listDeletionQueue(dir).entries.map((e) => e.containerId)).toEqual(["a", "b"]);
  });

  it("drains: removes handled entries, keeps failed ones for the next pass, discards corrupt files", async () => {
    const dir = tmp();
    enqueueDeletion(dir, entry("ok", "2026-01-01T00:00:01Z"));
    enqueueDeletion(dir, entry("fails", "2026-01-01T00:00:02Z"));
    fs.writeFileSync(path.join(dir, "junk.json"), "{");
    const seen: string[] = [];
    const report = await drainDeletionQueue(dir, async (e) => {
      seen.push(e.containerId);
      if (e.containerId === "fails") throw new Error("agent busy");
    });
    expect(seen).toEqual(["ok", "fails"]);
    expect(report.drained).toEqual(["ok"]);
    expect(report.failed.map((f) => f.containerId)).toEqual(["fails"]);
    expect(report.discarded).toEqual([path.join(dir, "junk.json")]);
    expect(fs.readdirSync(dir)).toEqual(["fails.json"]);
    const again = await drainDeletionQueue(dir, async () => undefined);
    expect(again.drained).toEqual(["fails"]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("drains a missing directory as empty", async () => {
    expect((await drainDeletionQueue(tmp(), async () => undefined)).drained).toEqual([]);
  });

  it.each([
    { name: "path traversal", id: "../../etc/passwd" },
    { name: "dot-dot inside", id: "a..b" },
    { name: "empty", id: "" },
  ])("refuses an unsafe container id ($name)", ({ id }) => {
    expect(() => enqueueDeletion(tmp(), entry(id, "t"))).toThrow(/not a safe file name/);
  });
});
