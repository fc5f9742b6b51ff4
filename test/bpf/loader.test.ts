// SPDX-License-Identifier: Apache-2.0
// Loader and native map layer against the real kernel (root, no netns):
// compile cache, load + pin under a temporary bpf root, map reuse across
// loads, .rodata, verifier errors, layout check, and map operations/errors.
// Uses test/fixtures/loader-mini.bpf.c (the real maps.h, tiny programs) so
// these tests do not depend on the datapath's logic.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { compileDatapath } from "../../agent/loader/compile-cache.js";
import {
  DatapathLoadError,
  LayoutMismatchError,
  loadDatapath,
  programPinPath,
  removeDatapathPins,
  type Datapath,
  type StructLayouts,
} from "../../agent/loader/datapath-loader.js";
import { EndpointInfo, MapName, PolicyEntry, PolicyKey, STRUCT_LAYOUTS, U32 } from "../../agent/generated/bpf-types.js";
import { BpfError, KeyNotFoundError, VerifierError } from "../../agent/native/errors.js";
import {
  BPF_F_NO_PREALLOC,
  MapType,
  UpdateFlags,
  closeFd,
  mapCreate,
  mapDelete,
  mapDeleteBatch,
  mapId,
  mapKeys,
  mapLookup,
  mapLookupBatch,
  mapUpdate,
  mapUpdateBatch,
  objGet,
  progId,
  progTestRun,
} from "../../agent/native/libbpf.js";

const REPO = resolve(import.meta.dirname, "../..");
const BPF_DIR = join(REPO, "bpf");
const MINI = join(REPO, "test/fixtures/loader-mini.bpf.c");
const BAD = join(REPO, "test/fixtures/loader-bad.bpf.c");

let cacheDir: string;
let miniObject: string;
const roots: string[] = [];
const opened: Datapath[] = [];

function tempRoot(): string {
  const root = `/sys/fs/bpf/twill-test-${randomBytes(5).toString("hex")}`;
  roots.push(root);
  return root;
}

function load(root: string, settings = { hostIdentity: 1, redirectPeer: true }, objectPath = miniObject): Datapath {
  const dp = loadDatapath({ objectPath, bpfRoot: root, settings });
  opened.push(dp);
  return dp;
}

function endpoint(ifindex: number, identity: number): EndpointInfo {
  return {
    ifindex,
    identity,
    ipv4: 0x0af40005,
    flags: 1,
    ipv6: new Uint8Array(16),
    mac: new Uint8Array([2, 0, 0, 0, 0, 1]),
    nodeMac: new Uint8Array([2, 0, 0, 0, 0, 2]),
  };
}

beforeAll(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), "twill-loader-test-"));
  miniObject = (await compileDatapath({ source: MINI, includeDir: BPF_DIR, cacheDir })).objectPath;
});

afterAll(() => {
  rmSync(cacheDir, { recursive: true, force: true });
});

afterEach(() => {
  for (const dp of opened.splice(0)) dp.close();
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

describe("compile cache", () => {
  it("compiles once, then serves the object without running clang; a header edit recompiles", async () => {
    const work = mkdtempSync(join(tmpdir(), "twill-cc-"));
    try {
      // A private copy of bpf/ so the header edit cannot disturb anyone else.
      cpSync(join(BPF_DIR, "lib"), join(work, "bpf/lib"), { recursive: true });
      cpSync(join(BPF_DIR, "include"), join(work, "bpf/include"), { recursive: true });
      cpSync(MINI, join(work, "bpf/mini.bpf.c"));
      const count = join(work, "clang-runs");
      const clang = join(work, "clang-wrapper");
      writeFileSync(clang, `#!/bin/sh\necho run >> ${count}\nexec clang "$@"\n`);
      chmodSync(clang, 0o755);
      const opts = { source: join(work, "bpf/mini.bpf.c"), includeDir: join(work, "bpf"), cacheDir: join(work, "cache"), clang };
      const runs = (): number => (existsSync(count) ? readFileSync(count, "utf8").split("\n").filter(Boolean).length : 0);

      const first = await compileDatapath(opts);
      expect(first).toMatchObject({ cacheHit: false });
      expect(first.objectPath).toBe(join(work, "cache", `${first.hash}.o`));
      expect(runs()).toBe(1);

      const second = await compileDatapath(opts);
      expect(second).toEqual({ ...first, cacheHit: true });
      expect(runs()).toBe(1);

      appendFileSync(join(work, "bpf/lib/policy_types.h"), "\n/* edited */\n");
      const third = await compileDatapath(opts);
      expect(third.cacheHit).toBe(false);
      expect(third.hash).not.toBe(first.hash);
      expect(runs()).toBe(2);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("reports clang's error for a broken source", async () => {
    const work = mkdtempSync(join(tmpdir(), "twill-cc-"));
    try {
      writeFileSync(join(work, "broken.bpf.c"), "int x = ;\n");
      await expect(compileDatapath({ source: join(work, "broken.bpf.c"), includeDir: BPF_DIR, cacheDir: join(work, "c") }))
        .rejects.toThrow(/compile .*broken\.bpf\.c: .*error/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe("loadDatapath", () => {
  it("pins every map and both programs under the bpf root", () => {
    const root = tempRoot();
    const dp = load(root);
    for (const name of Object.values(MapName)) expect(existsSync(join(root, name)), name).toBe(true);
    for (const prog of ["from_pod", "to_pod"]) {
      const fd = objGet(programPinPath(root, prog));
      try {
        expect(progId(fd)).toBe(progId(dp.progFd(prog)));
      } finally {
        closeFd(fd);
      }
    }
  });

  it("reuses the pinned maps and their contents on a second load", () => {
    const root = tempRoot();
    const first = load(root);
    const key = U32.encode(7);
    mapUpdate(first.mapFd(MapName.endpoints), key, EndpointInfo.encode(endpoint(7, 4242)));
    const id = mapId(first.mapFd(MapName.endpoints));
    first.close();

    const second = load(root);
    expect(mapId(second.mapFd(MapName.endpoints))).toBe(id);
    const raw = mapLookup(second.mapFd(MapName.endpoints), key, EndpointInfo.SIZE);
    expect(raw && EndpointInfo.decode(raw).identity).toBe(4242);
  });

  it.each([
    { name: "redirect peer on, host identity 1", settings: { hostIdentity: 1, redirectPeer: true }, retval: 101 },
    { name: "redirect peer off, host identity 3", settings: { hostIdentity: 3, redirectPeer: false }, retval: 300 },
  ])("writes .rodata before load: $name", ({ settings, retval }) => {
    const dp = load(tempRoot(), settings);
    expect(progTestRun(dp.progFd("to_pod"), { data: new Uint8Array(64) }).retval).toBe(retval);
  });

  it("turns a verifier rejection into a VerifierError carrying the log", async () => {
    const bad = (await compileDatapath({ source: BAD, includeDir: BPF_DIR, cacheDir })).objectPath;
    const root = tempRoot();
    let err: unknown;
    try {
      loadDatapath({ objectPath: bad, bpfRoot: root, settings: { hostIdentity: 1, redirectPeer: true }, programs: ["from_pod"] });
    } catch (e: unknown) {
      err = e;
    }
    expect(err).toBeInstanceOf(DatapathLoadError);
    const cause = (err as DatapathLoadError).cause;
    expect(cause).toBeInstanceOf(VerifierError);
    const v = cause as VerifierError;
    expect(v.message).toMatch(/verifier rejected program: .*invalid mem access/);
    expect(v.log).toMatch(/R0 invalid mem access 'map_value_or_null'/);
    expect(v.log.split("\n").length).toBeGreaterThan(3);
    expect(existsSync(programPinPath(root, "from_pod"))).toBe(false);
  });

  const layoutCases: Array<{ name: string; edit: (l: Record<string, { size: number; fields: Array<[string, number, number]> }>) => void; struct: string; field: string | null; detail: RegExp }> = [
    {
      name: "moved field",
      edit: (l) => { l.ct_key4!.fields[2] = ["sport", 10, 2]; },
      struct: "ct_key4", field: "sport", detail: /offset 8 in the object, 10 in the agent/,
    },
    {
      name: "field the object lacks",
      edit: (l) => { l.policy_entry!.fields.push(["extra", 8, 4]); },
      struct: "policy_entry", field: "extra", detail: /field missing from the object/,
    },
    {
      name: "field the agent lacks",
      edit: (l) => { l.ipcache_entry!.fields.pop(); },
      struct: "ipcache_entry", field: "flags", detail: /field unknown to the agent/,
    },
    {
      name: "struct size",
      edit: (l) => { l.metrics_value!.size = 24; },
      struct: "metrics_value", field: null, detail: /size 16 in the object, 24 in the agent/,
    },
  ];
  it.each(layoutCases)("refuses to load when the layout differs: $name", ({ edit, struct, field, detail }) => {
    const layouts = JSON.parse(JSON.stringify(STRUCT_LAYOUTS)) as Record<string, { size: number; fields: Array<[string, number, number]> }>;
    edit(layouts);
    const root = tempRoot();
    let err: unknown;
    try {
      loadDatapath({ objectPath: miniObject, bpfRoot: root, settings: { hostIdentity: 1, redirectPeer: true }, expectedLayouts: layouts as StructLayouts });
    } catch (e: unknown) {
      err = e;
    }
    expect(err).toBeInstanceOf(LayoutMismatchError);
    expect(err).toMatchObject({ struct, field });
    expect((err as Error).message).toMatch(detail);
    expect(existsSync(join(root, MapName.endpoints))).toBe(false);
  });

  it("removeDatapathPins removes every pin and the root", () => {
    const root = tempRoot();
    load(root).close();
    opened.splice(0);
    removeDatapathPins(root);
    expect(existsSync(root)).toBe(false);
  });
});

describe("map operations", () => {
  it("updates, looks up, iterates and deletes; absent keys are null/false", () => {
    const dp = load(tempRoot());
    const fd = dp.mapFd(MapName.endpoints);
    mapUpdate(fd, U32.encode(1), EndpointInfo.encode(endpoint(1, 300)));
    mapUpdate(fd, U32.encode(2), EndpointInfo.encode(endpoint(2, 301)));
    expect(mapKeys(fd, 4).map((k) => U32.decode(k)).sort()).toEqual([1, 2]);
    expect(EndpointInfo.decode(mapLookup(fd, U32.encode(2), EndpointInfo.SIZE)!)).toEqual(endpoint(2, 301));
    expect(mapDelete(fd, U32.encode(1))).toBe(true);
    expect(mapDelete(fd, U32.encode(1))).toBe(false);
    expect(mapLookup(fd, U32.encode(1), EndpointInfo.SIZE)).toBeNull();
  });

  it.each([
    { name: "NOEXIST on an existing key", flags: UpdateFlags.NOEXIST, key: 1, errno: 17 },
    { name: "EXIST on a missing key", flags: UpdateFlags.EXIST, key: 9, errno: 2 },
  ])("update with $name fails with a BpfError naming the errno", ({ flags, key, errno }) => {
    const dp = load(tempRoot());
    const fd = dp.mapFd(MapName.endpoints);
    mapUpdate(fd, U32.encode(1), EndpointInfo.encode(endpoint(1, 300)));
    let err: unknown;
    try {
      mapUpdate(fd, U32.encode(key), EndpointInfo.encode(endpoint(key, 1)), flags, MapName.endpoints);
    } catch (e: unknown) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ errno, op: `update map ${MapName.endpoints}` });
  });

  it("batch update, lookup and delete; deleting a missing key is a KeyNotFoundError", () => {
    const dp = load(tempRoot());
    const fd = dp.mapFd(MapName.endpoints);
    const n = 600; // more than one lookup chunk
    const keys = new Uint8Array(4 * n);
    const values = new Uint8Array(EndpointInfo.SIZE * n);
    for (let i = 0; i < n; i++) {
      U32.encodeInto(i + 1, new DataView(keys.buffer), 4 * i);
      EndpointInfo.encodeInto(endpoint(i + 1, 1000 + i), new DataView(values.buffer), EndpointInfo.SIZE * i);
    }
    expect(mapUpdateBatch(fd, keys, values, n)).toBe(n);
    const all = mapLookupBatch(fd, 4, EndpointInfo.SIZE);
    expect(all).toHaveLength(n);
    for (const { key, value } of all) expect(EndpointInfo.decode(value).identity).toBe(1000 + U32.decode(key) - 1);
    expect(mapDeleteBatch(fd, keys.subarray(0, 40), 10)).toBe(10);
    expect(mapKeys(fd, 4)).toHaveLength(n - 10);
    expect(() => mapDeleteBatch(fd, keys.subarray(0, 4), 1)).toThrow(KeyNotFoundError);
  });

  it("creates a BTF-typed policy trie that bpftool prints with field names, and stores it in twill_policy", () => {
    const dp = load(tempRoot());
    const inner = mapCreate({
      type: MapType.LPM_TRIE, name: "twt_policy", keySize: PolicyKey.SIZE, valueSize: PolicyEntry.SIZE,
      maxEntries: 16, flags: BPF_F_NO_PREALLOC, btf: dp.btfTypeIds("policy_key", "policy_entry"),
    });
    try {
      mapUpdate(inner, PolicyKey.encode({ prefixlen: 64, identity: 300, direction: 0, protocol: 6, dport: 80 }),
        PolicyEntry.encode({ ruleRef: 42, flags: 0 }));
      const dump = JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", "id", String(mapId(inner))], { encoding: "utf8" })) as Array<{ formatted?: { key: Record<string, unknown>; value: Record<string, unknown> } }>;
      expect(dump[0]?.formatted?.key).toMatchObject({ prefixlen: 64, direction: 0, protocol: 6 });
      expect(dump[0]?.formatted?.value).toMatchObject({ rule_ref: 42 });
      mapUpdate(dp.mapFd(MapName.policy), U32.encode(5), U32.encode(inner));
      expect(U32.decode(mapLookup(dp.mapFd(MapName.policy), U32.encode(5), 4)!)).toBe(mapId(inner));
    } finally {
      closeFd(inner);
    }
  });
});
