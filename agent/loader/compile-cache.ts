// SPDX-License-Identifier: Apache-2.0
// Content-addressed cache of compiled datapath objects. The key is a sha256
// over the source file, every header under the hashed directories (bpf/lib and
// bpf/include by default), the clang flags and the identity of the clang
// binary (resolved path, size, mtime: so a cache hit runs no clang at all).
// Objects are written to <cacheDir>/<sha256>.o atomically (temp file + rename),
// so concurrent agents or a crash never leave a half-written object.
//
// API: compileDatapath(options) -> {objectPath, hash, cacheHit}; bpfCflags().
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, readFile, readdir, realpath, rename, rm, stat } from "node:fs/promises";
import { delimiter, isAbsolute, join, relative, resolve } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** What to compile and where to cache it. */
export interface CompileOptions {
  /** The .bpf.c file, e.g. bpf/lxc.bpf.c. */
  readonly source: string;
  /** Include root passed as -I (the bpf/ directory). */
  readonly includeDir: string;
  /** Directories whose every file is part of the cache key; default <includeDir>/lib and <includeDir>/include. */
  readonly hashDirs?: readonly string[];
  /** Cache directory, e.g. <state-dir>/bpf-cache. */
  readonly cacheDir: string;
  /** clang binary (name looked up in PATH, or a path); default "clang". */
  readonly clang?: string;
  /** Extra flags appended to bpfCflags(). */
  readonly extraFlags?: readonly string[];
}

/** A compiled object. */
export interface CompileResult {
  readonly objectPath: string;
  /** sha256 (hex) of all inputs; also the file name. */
  readonly hash: string;
  /** True when the object came from the cache and clang did not run. */
  readonly cacheHit: boolean;
}

/** clang failed; stderr carries the compiler's diagnostics. */
export class CompileError extends Error {
  constructor(readonly source: string, readonly stderr: string, options?: { cause?: unknown }) {
    super(`compile ${source}: ${firstError(stderr)}`, options);
    this.name = "CompileError";
  }
}

function firstError(stderr: string): string {
  const line = stderr.split("\n").find((l) => l.includes("error"));
  return (line ?? stderr.split("\n")[0] ?? "clang failed").trim();
}

/** Flags every datapath object is built with (the include dir is added per call). */
export function bpfCflags(): string[] {
  const arch = process.arch === "arm64" ? "arm64" : "x86";
  return ["-O2", "-g", "-target", "bpf", `-D__TARGET_ARCH_${arch}`, "-Wall", "-Wno-unused-function"];
}

/** Compile `source` unless an object with the same inputs is cached. */
export async function compileDatapath(options: CompileOptions): Promise<CompileResult> {
  const includeDir = resolve(options.includeDir);
  const source = resolve(options.source);
  const clang = await resolveBinary(options.clang ?? "clang");
  const flags = [...bpfCflags(), `-I${includeDir}`, ...(options.extraFlags ?? [])];
  const hashDirs = (options.hashDirs ?? [join(includeDir, "lib"), join(includeDir, "include")]).map((d) => resolve(d));

  const hash = createHash("sha256");
  const clangStat = await stat(clang);
  hash.update(`clang ${clang} ${clangStat.size} ${clangStat.mtimeMs}\n`);
  hash.update(`flags ${JSON.stringify(flags.map((fl) => fl.replace(includeDir, "<inc>")))}\n`);
  hash.update(`source ${relative(includeDir, source)}\n`);
  hash.update(await readFile(source));
  for (const dir of hashDirs) {
    for (const file of await listFiles(dir)) {
      hash.update(`\nfile ${relative(includeDir, file)}\n`);
      hash.update(await readFile(file));
    }
  }
  const digest = hash.digest("hex");
  const objectPath = join(resolve(options.cacheDir), `${digest}.o`);
  if (await exists(objectPath)) return { objectPath, hash: digest, cacheHit: true };

  await mkdir(resolve(options.cacheDir), { recursive: true });
  const tmp = `${objectPath}.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`;
  try {
    await run(clang, [...flags, "-c", source, "-o", tmp], { maxBuffer: 16 * 1024 * 1024 });
    await rename(tmp, objectPath);
  } catch (e: unknown) {
    await rm(tmp, { force: true });
    const stderr = typeof e === "object" && e !== null && "stderr" in e ? String(e.stderr) : String(e);
    throw new CompileError(options.source, stderr, { cause: e });
  }
  return { objectPath, hash: digest, cacheHit: false };
}

async function listFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch (e: unknown) {
    if (isErrno(e, "ENOENT")) return [];
    throw e;
  }
  return entries
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name))
    .sort();
}

async function resolveBinary(name: string): Promise<string> {
  if (isAbsolute(name) || name.includes("/")) return realpath(name);
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return await realpath(candidate);
    } catch {
      // not in this PATH entry
    }
  }
  throw new CompileError(name, `${name}: not found in PATH`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === "object" && e !== null && "code" in e && e.code === code;
}
