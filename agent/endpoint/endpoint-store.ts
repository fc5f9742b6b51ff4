// SPDX-License-Identifier: Apache-2.0
// Durable record of the endpoints the CNI plugin registered, one JSON file
// per container under <state-dir>/endpoints. A restarted agent reloads them
// and re-derives map contents from them, so a restart does not need the
// runtime to re-run CNI ADD, and traffic keeps flowing meanwhile (the pinned
// maps and tcx links are untouched by the restart).
import * as fs from "node:fs";
import * as path from "node:path";

/** What the agent knows of one pod interface. */
export interface EndpointRecord {
  readonly containerId: string;
  readonly ifname: string;          // pod-side interface name (CNI_IFNAME)
  readonly netns: string;           // CNI_NETNS path
  readonly hostIfname: string;
  readonly hostIfindex: number;
  readonly hostMac: string;         // aa:bb:cc:dd:ee:ff
  readonly podMac: string;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  readonly namespace: string;       // pod namespace ("" if unknown)
  readonly podName: string;
  readonly createdAt: string;       // ISO time
}

/** File-backed map containerId -> EndpointRecord. */
export class EndpointStore {
  private readonly records = new Map<string, EndpointRecord>();

  constructor(private readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const f of fs.readdirSync(dir)) {
      if (!f.endsWith(".json")) continue;
      try {
        const r = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as EndpointRecord;
        this.records.set(r.containerId, r);
      } catch {
        fs.rmSync(path.join(dir, f), { force: true }); // torn write of a never-acknowledged ADD
      }
    }
  }

  list(): EndpointRecord[] {
    return [...this.records.values()];
  }

  get(containerId: string): EndpointRecord | undefined {
    return this.records.get(containerId);
  }

  /** Write atomically (tmp + fsync + rename) before the change is acknowledged. */
  put(r: EndpointRecord): void {
    const file = path.join(this.dir, `${r.containerId}.json`);
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, "w", 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(r));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    this.records.set(r.containerId, r);
  }

  delete(containerId: string): EndpointRecord | undefined {
    const r = this.records.get(containerId);
    fs.rmSync(path.join(this.dir, `${containerId}.json`), { force: true });
    this.records.delete(containerId);
    return r;
  }
}
