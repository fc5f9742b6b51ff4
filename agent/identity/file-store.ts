// SPDX-License-Identifier: Apache-2.0
// IdentityStore backed by one JSON file (standalone mode): identities keep
// their numbers across agent restarts. Written atomically (tmp + rename).
import * as fs from "node:fs";
import type { IdentityStore } from "./allocator.js";

/** A store persisted at `file`. */
export function fileIdentityStore(file: string): IdentityStore {
  return {
    load(): ReadonlyMap<string, number> {
      try {
        const obj = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, number>;
        return new Map(Object.entries(obj));
      } catch (e: unknown) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return new Map();
        throw new Error(`load identities ${file}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    },
    save(table: ReadonlyMap<string, number>): void {
      const tmp = `${file}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(Object.fromEntries(table)), { mode: 0o600 });
      fs.renameSync(tmp, file);
    },
  };
}
