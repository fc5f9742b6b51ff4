// SPDX-License-Identifier: Apache-2.0
// Opens, checks, loads and pins the datapath object.
// - Maps are LIBBPF_PIN_BY_NAME: libbpf pins them under the bpf root on the
//   first start and reuses the pinned ones on every later start, so endpoint,
//   policy and conntrack state survive an agent restart.
// - Before load, the object's BTF struct layouts are compared with
//   agent/generated/bpf-types.ts; a difference refuses the start and names the
//   struct and field (the generated codecs would corrupt the maps otherwise).
// - Programs are pinned at <root>/prog_<name> (replaced atomically by rename),
//   so links and bpftool can find the programs the agent last loaded.
//
// API: loadDatapath(options) -> Datapath {progFd, mapFd, btf*, close};
// checkLayouts(object, expected); LayoutMismatchError; DEFAULT_BPF_ROOT;
// programPinPath(root, name); removeDatapathPins(root).
import { mkdirSync, renameSync, rmSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BpfObject, objPin, openObject } from "../native/libbpf.js";
import { MapName, ProgramName, RodataName, STRUCT_LAYOUTS } from "../generated/bpf-types.js";

/** Default bpffs directory of the agent's pins. */
export const DEFAULT_BPF_ROOT = "/sys/fs/bpf/twill";

/** Expected layouts, shaped like STRUCT_LAYOUTS. */
export type StructLayouts = Readonly<
  Record<string, { readonly size: number; readonly fields: ReadonlyArray<readonly [string, number, number]> }>
>;

/** Node settings written into .rodata before load. */
export interface NodeSettings {
  /** Identity of the host (cfg_host_identity). */
  readonly hostIdentity: number;
  /** Deliver to local pods with bpf_redirect_peer (true) or bpf_redirect (false). */
  readonly redirectPeer: boolean;
}

/** Options of loadDatapath. */
export interface DatapathLoadOptions {
  /** Compiled object, e.g. from compileDatapath(). */
  readonly objectPath: string;
  /** bpffs directory for map/program pins; created if missing. */
  readonly bpfRoot: string;
  readonly settings: NodeSettings;
  /** Layouts the agent's codecs assume; default the generated STRUCT_LAYOUTS. */
  readonly expectedLayouts?: StructLayouts;
  /** Programs that must exist and get pinned; default every ProgramName. */
  readonly programs?: readonly string[];
}

/** The object's struct layout differs from the generated codecs. */
export class LayoutMismatchError extends Error {
  constructor(readonly struct: string, readonly field: string | null, detail: string) {
    super(`check layout of struct ${struct}${field !== null ? ` field ${field}` : ""}: ${detail} (run npm run gen:bpf-types)`);
    this.name = "LayoutMismatchError";
  }
}

/** A loading or pinning step failed; the cause is the native error. */
export class DatapathLoadError extends Error {
  constructor(step: string, options: { cause: unknown }) {
    super(`${step}: ${options.cause instanceof Error ? options.cause.message : String(options.cause)}`, options);
    this.name = "DatapathLoadError";
  }
}

/** The loaded datapath. Map and program fds belong to it; close() releases them (pins stay). */
export class Datapath {
  constructor(
    readonly object: BpfObject,
    readonly bpfRoot: string,
    readonly objectPath: string,
  ) {}

  /** fd of a program (do not close). */
  progFd(name: string): number {
    return this.object.progFd(name);
  }

  /** fd of a map (do not close). */
  mapFd(name: string): number {
    return this.object.mapFd(name);
  }

  /** BTF fd and type ids, for maps the agent creates itself (policy inner maps). */
  btfTypeIds(keyStruct: string, valueStruct: string): { fd: number; keyTypeId: number; valueTypeId: number } {
    const keyTypeId = this.object.btfStructId(keyStruct);
    const valueTypeId = this.object.btfStructId(valueStruct);
    if (keyTypeId === null || valueTypeId === null) {
      throw new LayoutMismatchError(keyTypeId === null ? keyStruct : valueStruct, null, "struct missing from object BTF");
    }
    return { fd: this.object.btfFd(), keyTypeId, valueTypeId };
  }

  /** Release the object (programs stay alive through their pins and links). */
  close(): void {
    this.object.close();
  }
}

/** Pin path of a program under the bpf root. */
export function programPinPath(bpfRoot: string, program: string): string {
  return join(bpfRoot, `prog_${program}`);
}

/** Compare the object's BTF with the expected layouts; throws LayoutMismatchError. */
export function checkLayouts(object: BpfObject, expected: StructLayouts): void {
  for (const [struct, want] of Object.entries(expected)) {
    const got = object.btfStruct(struct);
    if (got === null) throw new LayoutMismatchError(struct, null, "struct missing from object BTF");
    const gotNames = got.members.map((m) => m.name);
    for (const [field, offset, size] of want.fields) {
      const m = got.members.find((x) => x.name === field);
      if (!m) throw new LayoutMismatchError(struct, field, "field missing from the object");
      if (m.offsetBytes !== offset) {
        throw new LayoutMismatchError(struct, field, `offset ${m.offsetBytes} in the object, ${offset} in the agent`);
      }
      if (m.sizeBytes !== size) {
        throw new LayoutMismatchError(struct, field, `size ${m.sizeBytes} in the object, ${size} in the agent`);
      }
    }
    const extra = gotNames.find((n) => !want.fields.some(([f]) => f === n));
    if (extra !== undefined) throw new LayoutMismatchError(struct, extra, "field unknown to the agent");
    if (got.sizeBytes !== want.size) {
      throw new LayoutMismatchError(struct, null, `size ${got.sizeBytes} in the object, ${want.size} in the agent`);
    }
  }
}

/**
 * Open the object with pin_root_path = bpfRoot, check layouts, set .rodata,
 * load (reusing pinned maps) and pin every program. Throws
 * LayoutMismatchError, VerifierError (through DatapathLoadError's cause) or
 * DatapathLoadError.
 */
export function loadDatapath(options: DatapathLoadOptions): Datapath {
  const root = options.bpfRoot;
  mkdirSync(root, { recursive: true });
  const rodata = {
    [RodataName.hostIdentity]: options.settings.hostIdentity,
    [RodataName.redirectPeer]: options.settings.redirectPeer ? 1 : 0,
  };
  let object: BpfObject;
  try {
    object = openObject(options.objectPath, { pinRootPath: root, rodata });
  } catch (e: unknown) {
    throw new DatapathLoadError(`open datapath ${options.objectPath}`, { cause: e });
  }
  try {
    checkLayouts(object, options.expectedLayouts ?? STRUCT_LAYOUTS);
    const programs = options.programs ?? Object.values(ProgramName);
    const have = object.programNames();
    const missing = programs.find((p) => !have.includes(p));
    if (missing !== undefined) throw new DatapathLoadError(`open datapath ${options.objectPath}`, { cause: new Error(`program ${missing} missing`) });
    try {
      object.load();
    } catch (e: unknown) {
      throw new DatapathLoadError(`load datapath ${options.objectPath}`, { cause: e });
    }
    for (const p of programs) pinReplace(object.progFd(p), programPinPath(root, p));
  } catch (e: unknown) {
    object.close();
    throw e;
  }
  return new Datapath(object, root, options.objectPath);
}

/** Pin fd at path, replacing an older pin atomically (pin aside + rename). */
function pinReplace(fd: number, path: string): void {
  // bpffs refuses names with a dot
  const tmp = `${path}_new_${process.pid}`;
  rmSync(tmp, { force: true });
  try {
    objPin(fd, tmp);
    renameSync(tmp, path);
  } catch (e: unknown) {
    rmSync(tmp, { force: true });
    throw new DatapathLoadError(`pin program at ${path}`, { cause: e });
  }
}

/**
 * Remove every pin the datapath made under bpfRoot (maps, programs, links
 * directory) and the root itself if it is then empty. For `--cleanup` and tests.
 */
export function removeDatapathPins(bpfRoot: string): void {
  for (const name of Object.values(MapName)) rmSync(join(bpfRoot, name), { force: true });
  for (const name of Object.values(ProgramName)) rmSync(programPinPath(bpfRoot, name), { force: true });
  rmSync(join(bpfRoot, "links"), { recursive: true, force: true });
  try {
    if (readdirSync(bpfRoot).length === 0) rmSync(bpfRoot, { recursive: true });
  } catch (e: unknown) {
    if (!(typeof e === "object" && e !== null && "code" in e && e.code === "ENOENT")) throw e;
  }
}
