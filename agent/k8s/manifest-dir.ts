// SPDX-License-Identifier: Apache-2.0
// Standalone mode's source of cluster state: a directory of Kubernetes-format
// manifests (YAML, multi-document, or JSON; `kind: List` is unrolled).
//
// API: `ManifestDir.start(dir, onSnapshot)` reads the directory, then watches
// it; each time the content changes it delivers a complete snapshot of the
// valid objects plus the errors found. A file that fails to parse keeps its
// previous valid objects in force (an operator's half-saved edit must not
// open or close the whole node), and the error names the file.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";

/** A raw Kubernetes object as read from a manifest (kind, metadata, spec...). */
export interface RawObject {
  readonly apiVersion?: unknown;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string> };
  readonly spec?: unknown;
  readonly status?: unknown;
  /** Where it came from, for error messages: "file.yaml#2". */
  readonly source: string;
}

/** A problem with one manifest file or document. */
export interface ManifestError {
  readonly source: string;
  readonly message: string;
}

/** The objects of the directory at one moment. */
export interface ManifestSnapshot {
  readonly objects: readonly RawObject[];
  readonly errors: readonly ManifestError[];
}

const EXTENSIONS = new Set([".yaml", ".yml", ".json"]);

/** Parse one file's text into objects; throws an Error naming the document on bad input. */
export function parseManifestText(text: string, file: string): RawObject[] {
  const out: RawObject[] = [];
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const source = list.length > 1 ? `${file}#${i + 1}` : file;
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0]?.message ?? "invalid YAML"}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    collect(value, source, out);
  });
  return out;
}

function collect(value: unknown, source: string, out: RawObject[]): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${source}: a manifest must be an object with kind and metadata`);
  }
  const v = value as Record<string, unknown>;
  if (v["kind"] === "List" || (typeof v["kind"] === "string" && v["kind"].endsWith("List") && Array.isArray(v["items"]))) {
    (v["items"] as unknown[]).forEach((item, i) => collect(item, `${source}.items[${i}]`, out));
    return;
  }
  if (typeof v["kind"] !== "string" || v["kind"] === "") throw new Error(`${source}: kind: required`);
  const md = v["metadata"];
  if (typeof md !== "object" || md === null) throw new Error(`${source}: metadata: required`);
  const m = md as Record<string, unknown>;
  if (typeof m["name"] !== "string" || m["name"] === "") throw new Error(`${source}: metadata.name: required`);
  if (m["labels"] !== undefined) {
    const labels = m["labels"];
    if (typeof labels !== "object" || labels === null || Object.values(labels).some((x) => typeof x !== "string")) {
      throw new Error(`${source}: metadata.labels: must map strings to strings`);
    }
  }
  out.push({ ...(v as object), kind: v["kind"], metadata: m as RawObject["metadata"], source } as RawObject);
}

/** Watches a manifest directory and delivers snapshots. */
export class ManifestDir {
  private readonly lastGood = new Map<string, RawObject[]>();
  private watcher: fs.FSWatcher | null = null;
  private poll: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastStamp = "";

  private constructor(readonly dir: string, private readonly onSnapshot: (s: ManifestSnapshot) => void, private readonly debounceMs: number) {}

  /** Read the directory now (the first snapshot is delivered synchronously), then watch it. */
  static start(dir: string, onSnapshot: (s: ManifestSnapshot) => void, opts: { debounceMs?: number; pollMs?: number } = {}): ManifestDir {
    const m = new ManifestDir(dir, onSnapshot, opts.debounceMs ?? 50);
    m.reload(true);
    try {
      m.watcher = fs.watch(dir, () => m.schedule());
    } catch (e: unknown) {
      throw new Error(`watch manifests ${dir}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    // fs.watch misses events on some file systems (and for editors that
    // replace the directory entry); a cheap mtime poll backs it up.
    m.poll = setInterval(() => m.reload(false), opts.pollMs ?? 2000);
    m.poll.unref();
    return m;
  }

  /** Stop watching. */
  stop(): void {
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.reload(false), this.debounceMs);
  }

  private files(): string[] {
    return fs.readdirSync(this.dir).filter((f) => EXTENSIONS.has(path.extname(f)) && !f.startsWith(".")).sort();
  }

  private reload(force: boolean): void {
    let files: string[];
    try {
      files = this.files();
    } catch (e: unknown) {
      this.onSnapshot({ objects: [], errors: [{ source: this.dir, message: `read manifests: ${String(e)}` }] });
      return;
    }
    const stamp = files.map((f) => {
      try {
        const st = fs.statSync(path.join(this.dir, f));
        return `${f}:${st.mtimeMs}:${st.size}`;
      } catch {
        return `${f}:gone`;
      }
    }).join("|");
    if (!force && stamp === this.lastStamp) return;
    this.lastStamp = stamp;
    const errors: ManifestError[] = [];
    for (const f of [...this.lastGood.keys()]) if (!files.includes(f)) this.lastGood.delete(f);
    for (const f of files) {
      try {
        this.lastGood.set(f, parseManifestText(fs.readFileSync(path.join(this.dir, f), "utf8"), f));
      } catch (e: unknown) {
        errors.push({ source: f, message: e instanceof Error ? e.message : String(e) });
      }
    }
    this.onSnapshot({ objects: [...this.lastGood.values()].flat(), errors });
  }
}
