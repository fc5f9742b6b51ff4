// SPDX-License-Identifier: Apache-2.0
// Generates agent/generated/bpf-types.ts from the BTF of the compiled datapath
// (the C headers bpf/lib/*_types.h are the single source of truth).
// For every key/value type of the maps in bpf/lib/maps.h (inner policy map
// included), plus the explicit EXTRA_STRUCTS, it emits an interface, a codec
// (SIZE, encode, encodeInto, decode over DataView) and a layout entry used by
// the loader's load-time check; for every enum declared in bpf/lib/*_types.h
// an enum object plus a name lookup; and map / program name constants.
// Byte order comes from the type: __be16/__be32 fields are converted so TS
// holds host-order numbers; 64-bit fields are bigint; u8[N] is Uint8Array.
// Implicit holes and bitfields are refused.
//
// Usage: tsx hack/gen-bpf-types.ts [--source bpf/lxc.bpf.c] [--out agent/generated/bpf-types.ts]
import { execFile } from "node:child_process";
import { readFile, readdir, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { compileDatapath } from "../agent/loader/compile-cache.js";
import { openObject } from "../agent/native/libbpf.js";

const run = promisify(execFile);
const EXTRA_STRUCTS = ["flow_event"];
const ANCHOR_MAP = "twill_btf_anchor";

interface BtfType {
  id: number;
  kind: string;
  name: string;
  type_id?: number;
  size?: number;
  nr_elems?: number;
  members?: Array<{ name: string; type_id: number; bits_offset: number; bitfield_size?: number }>;
  values?: Array<{ name: string; val: number }>;
  vars?: Array<{ type_id: number; offset: number; size: number }>;
}

type Field =
  | { name: string; offset: number; size: number; kind: "uint"; be: boolean }
  | { name: string; offset: number; size: number; kind: "bytes" };

interface StructDef {
  cName: string;
  tsName: string;
  size: number;
  fields: Field[];
}

class GenError extends Error {
  constructor(detail: string) {
    super(`generate bpf types: ${detail}`);
    this.name = "GenError";
  }
}

function pascal(cName: string): string {
  return cName
    .split("_")
    .filter((p) => p !== "")
    .map((p) => p[0]!.toUpperCase() + p.slice(1))
    .join("");
}

class Btf {
  readonly byId = new Map<number, BtfType>();
  constructor(types: BtfType[]) {
    for (const t of types) this.byId.set(t.id, t);
  }
  get(id: number): BtfType {
    const t = this.byId.get(id);
    if (!t) throw new GenError(`btf type ${id} missing`);
    return t;
  }
  /** Follow typedef/const/volatile; report whether a __be typedef was passed. */
  resolve(id: number): { t: BtfType; be: boolean } {
    let t = this.get(id);
    let be = false;
    while (["TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"].includes(t.kind)) {
      if (t.kind === "TYPEDEF" && /^__be(16|32|64)$/.test(t.name)) be = true;
      t = this.get(t.type_id!);
    }
    return { t, be };
  }
  structByName(name: string): BtfType {
    const t = [...this.byId.values()].find((x) => x.kind === "STRUCT" && x.name === name);
    if (!t) throw new GenError(`struct ${name} not in BTF (anchor it in maps.h)`);
    return t;
  }
}

function structDef(btf: Btf, t: BtfType): StructDef {
  if (t.kind !== "STRUCT") throw new GenError(`${t.name}: kind ${t.kind} is not a struct`);
  const fields: Field[] = [];
  let cursor = 0;
  for (const m of t.members ?? []) {
    if ((m.bitfield_size ?? 0) !== 0 || m.bits_offset % 8 !== 0) {
      throw new GenError(`struct ${t.name} field ${m.name}: bitfields are not supported`);
    }
    const offset = m.bits_offset / 8;
    if (offset !== cursor) {
      throw new GenError(`struct ${t.name}: implicit hole of ${offset - cursor} bytes before ${m.name} (add a pad field)`);
    }
    const { t: mt, be } = btf.resolve(m.type_id);
    if (mt.kind === "INT" || mt.kind === "ENUM") {
      fields.push({ name: m.name, offset, size: mt.size!, kind: "uint", be });
      cursor = offset + mt.size!;
    } else if (mt.kind === "ARRAY") {
      const elem = btf.resolve(mt.type_id!).t;
      if (elem.kind !== "INT" || elem.size !== 1) {
        throw new GenError(`struct ${t.name} field ${m.name}: only u8 arrays are supported`);
      }
      fields.push({ name: m.name, offset, size: mt.nr_elems!, kind: "bytes" });
      cursor = offset + mt.nr_elems!;
    } else {
      throw new GenError(`struct ${t.name} field ${m.name}: unsupported kind ${mt.kind}`);
    }
  }
  if (cursor !== t.size) throw new GenError(`struct ${t.name}: implicit tail padding of ${t.size! - cursor} bytes`);
  return { cName: t.name, tsName: pascal(t.name), size: t.size!, fields };
}

/** Key/value pointee of a map definition member ("key", "value"). */
function mapMemberType(btf: Btf, mapStruct: BtfType, member: string): BtfType | null {
  const m = mapStruct.members?.find((x) => x.name === member);
  if (!m) return null;
  const ptr = btf.get(m.type_id);
  if (ptr.kind !== "PTR") return null;
  return btf.resolve(ptr.type_id!).t;
}

/** C field name -> TS property name (snake_case -> camelCase). */
function prop(cName: string): string {
  return cName.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** The number in a `__uint(name, N)` member (int (*name)[N]), or 0. */
function mapDefUint(btf: Btf, def: BtfType, member: string): number {
  const m = def.members?.find((x) => x.name === member);
  if (!m) return 0;
  const ptr = btf.get(m.type_id);
  return ptr.kind === "PTR" ? (btf.get(ptr.type_id!).nr_elems ?? 0) : 0;
}

function tsFieldType(f: Field): string {
  if (f.kind === "bytes") return "Uint8Array";
  return f.size === 8 ? "bigint" : "number";
}

function emitStruct(s: StructDef): string {
  const lines: string[] = [];
  lines.push(`/** struct ${s.cName} (${s.size} bytes). */`);
  lines.push(`export interface ${s.tsName} {`);
  for (const f of s.fields) {
    const note = f.kind === "uint" && f.be ? " // __be: host order here, big endian in the map" : "";
    lines.push(`  ${prop(f.name)}: ${tsFieldType(f)};${note}`);
  }
  lines.push("}");
  lines.push(`/** Codec of struct ${s.cName}. */`);
  lines.push(`export const ${s.tsName}: Codec<${s.tsName}> = {`);
  lines.push(`  SIZE: ${s.size},`);
  lines.push(`  encodeInto(v: ${s.tsName}, view: DataView, offset = 0): void {`);
  for (const f of s.fields) lines.push(`    ${encodeField(f)}`);
  lines.push("  },");
  lines.push(`  encode(v: ${s.tsName}): Uint8Array {`);
  lines.push(`    const out = new Uint8Array(${s.size});`);
  lines.push(`    this.encodeInto(v, new DataView(out.buffer), 0);`);
  lines.push("    return out;");
  lines.push("  },");
  lines.push(`  decode(bytes: Uint8Array, offset = 0): ${s.tsName} {`);
  lines.push("    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);");
  lines.push("    return {");
  for (const f of s.fields) lines.push(`      ${prop(f.name)}: ${decodeField(f)},`);
  lines.push("    };");
  lines.push("  },");
  lines.push("};");
  return lines.join("\n");
}

function accessor(f: Field & { kind: "uint" }): string {
  return { 1: "Uint8", 2: "Uint16", 4: "Uint32", 8: "BigUint64" }[f.size] ?? "?";
}

function encodeField(f: Field): string {
  const at = `offset + ${f.offset}`;
  if (f.kind === "bytes") return `putBytes(view, ${at}, ${f.size}, v.${prop(f.name)}, "${f.name}");`;
  const le = f.be ? "false" : "true";
  if (f.size === 1) return `view.setUint8(${at}, v.${prop(f.name)});`;
  if (f.size === 8) return `view.setBigUint64(${at}, v.${prop(f.name)}, ${le});`;
  return `view.set${accessor(f)}(${at}, v.${prop(f.name)}, ${le});`;
}

function decodeField(f: Field): string {
  const at = `offset + ${f.offset}`;
  if (f.kind === "bytes") return `bytes.slice(offset + ${f.offset}, offset + ${f.offset + f.size})`;
  if (f.size === 1) return `view.getUint8(${at})`;
  return `view.get${accessor(f)}(${at}, ${f.be ? "false" : "true"})`;
}

function enumMemberPrefix(names: string[]): string {
  if (names.length === 1) return names[0]!.slice(0, names[0]!.lastIndexOf("_") + 1);
  let p = names[0]!;
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p.slice(0, p.lastIndexOf("_") + 1);
}

function emitEnum(t: BtfType): string {
  const values = t.values ?? [];
  const prefix = enumMemberPrefix(values.map((v) => v.name));
  const ts = pascal(t.name);
  const lines = [`/** enum ${t.name} (members without the "${prefix}" prefix). */`, `export const ${ts} = {`];
  for (const v of values) lines.push(`  ${v.name.slice(prefix.length)}: ${v.val},`);
  lines.push("} as const;");
  lines.push(`export type ${ts} = (typeof ${ts})[keyof typeof ${ts}];`);
  // Aliases such as *_BASE / *_MAX share a value with a real member: prefer the real one.
  const names = new Map<number, string>();
  for (const v of values) {
    const short = v.name.slice(prefix.length);
    if (!names.has(v.val) || /(^|_)(BASE|MAX)$/.test(names.get(v.val)!)) names.set(v.val, short);
  }
  const fn = `${ts[0]!.toLowerCase()}${ts.slice(1)}Name`;
  lines.push(`const ${fn}s: ReadonlyMap<number, string> = new Map([`);
  for (const [val, name] of names) lines.push(`  [${val}, "${name}"],`);
  lines.push("]);");
  lines.push(`/** Name of a ${t.name} value, or "unknown(<n>)". */`);
  lines.push(`export function ${fn}(value: number): string {`);
  lines.push(`  return ${fn}s.get(value) ?? \`unknown(\${value})\`;`);
  lines.push("}");
  return lines.join("\n");
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string): string => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
  };
  const root = resolve(import.meta.dirname, "..");
  const source = opt("--source", join(root, "bpf/lxc.bpf.c"));
  const out = opt("--out", join(root, "agent/generated/bpf-types.ts"));
  const cacheDir = opt("--cache-dir", join(tmpdir(), "twill-bpf-cache"));
  const { objectPath } = await compileDatapath({ source, includeDir: join(root, "bpf"), cacheDir });
  const { stdout } = await run("bpftool", ["-j", "btf", "dump", "file", objectPath], { maxBuffer: 256 * 1024 * 1024 });
  const btf = new Btf((JSON.parse(stdout) as { types: BtfType[] }).types);

  const structs = new Map<string, StructDef>();
  const mapTypes: Array<{ map: string; key: string; value: string }> = [];
  const mapSpecs: Array<{ map: string; type: number; maxEntries: number; flags: number }> = [];
  const spec = (map: string, def: BtfType): void => {
    mapSpecs.push({
      map,
      type: mapDefUint(btf, def, "type"),
      maxEntries: mapDefUint(btf, def, "max_entries"),
      flags: mapDefUint(btf, def, "map_flags"),
    });
  };
  const add = (t: BtfType | null): string => {
    if (t === null) return "none";
    if (t.kind === "INT") return `u${t.size! * 8}`;
    if (!structs.has(t.name)) structs.set(t.name, structDef(btf, t));
    return pascal(t.name);
  };
  const maps = [...btf.byId.values()].find((t) => t.kind === "DATASEC" && t.name === ".maps");
  if (!maps) throw new GenError("object has no .maps section");
  const mapNames: string[] = [];
  for (const v of maps.vars ?? []) {
    const varT = btf.get(v.type_id);
    if (varT.name === ANCHOR_MAP) continue;
    mapNames.push(varT.name);
    const def = btf.resolve(varT.type_id!).t;
    spec(varT.name, def);
    const key = add(mapMemberType(btf, def, "key"));
    let value = add(mapMemberType(btf, def, "value"));
    const inner = def.members?.find((m) => m.name === "values");
    if (inner) {
      // __array(values, struct policy_inner): ARRAY of PTR to the inner definition
      const arr = btf.get(inner.type_id);
      const innerDef = btf.resolve(btf.get(arr.type_id!).type_id!).t;
      spec(`${varT.name}.inner`, innerDef);
      value = `map<${add(mapMemberType(btf, innerDef, "key"))} -> ${add(mapMemberType(btf, innerDef, "value"))}>`;
    }
    mapTypes.push({ map: varT.name, key, value });
  }
  for (const name of EXTRA_STRUCTS) add(btf.structByName(name));

  const typesDir = join(root, "bpf/lib");
  const enumNames: string[] = [];
  for (const file of (await readdir(typesDir)).filter((f) => f.endsWith("_types.h")).sort()) {
    for (const m of (await readFile(join(typesDir, file), "utf8")).matchAll(/^enum\s+(\w+)\s*\{/gm)) enumNames.push(m[1]!);
  }
  const enums = enumNames.map((n) => {
    const t = [...btf.byId.values()].find((x) => x.kind === "ENUM" && x.name === n);
    if (!t) throw new GenError(`enum ${n} not in BTF (anchor it in maps.h)`);
    return t;
  });
  // Programs as libbpf sees them (entry points only, not global subprograms).
  const obj = openObject(objectPath, { pinRootPath: null, rodata: {} });
  const programs = obj.programNames().sort();
  obj.close();

  const rodataSec = [...btf.byId.values()].find((t) => t.kind === "DATASEC" && t.name === ".rodata");
  const rodata = (rodataSec?.vars ?? []).map((v) => btf.get(v.type_id).name).sort();

  const parts: string[] = [
    "// SPDX-License-Identifier: Apache-2.0",
    "// Code generated by hack/gen-bpf-types.ts from the BTF of bpf/lxc.bpf.c. DO NOT EDIT.",
    "// Source of truth: bpf/lib/*_types.h and bpf/lib/maps.h; run `npm run gen:bpf-types`.",
    "",
    "/** Fixed-size binary codec of a C struct. */",
    "export interface Codec<T> {",
    "  readonly SIZE: number;",
    "  encode(v: T): Uint8Array;",
    "  encodeInto(v: T, view: DataView, offset?: number): void;",
    "  decode(bytes: Uint8Array, offset?: number): T;",
    "}",
    "",
    "function putBytes(view: DataView, offset: number, size: number, bytes: Uint8Array, field: string): void {",
    "  if (bytes.length !== size) throw new RangeError(`encode ${field}: expected ${size} bytes, got ${bytes.length}`);",
    "  new Uint8Array(view.buffer, view.byteOffset + offset, size).set(bytes);",
    "}",
    "",
    "/** Codec of a host-order __u32 key or value. */",
    "export const U32: Codec<number> = {",
    "  SIZE: 4,",
    "  encodeInto(v: number, view: DataView, offset = 0): void {",
    "    view.setUint32(offset, v, true);",
    "  },",
    "  encode(v: number): Uint8Array {",
    "    const out = new Uint8Array(4);",
    "    new DataView(out.buffer).setUint32(0, v, true);",
    "    return out;",
    "  },",
    "  decode(bytes: Uint8Array, offset = 0): number {",
    "    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, true);",
    "  },",
    "};",
    "",
    "/** Codec of a host-order __u64 value. */",
    "export const U64: Codec<bigint> = {",
    "  SIZE: 8,",
    "  encodeInto(v: bigint, view: DataView, offset = 0): void {",
    "    view.setBigUint64(offset, v, true);",
    "  },",
    "  encode(v: bigint): Uint8Array {",
    "    const out = new Uint8Array(8);",
    "    new DataView(out.buffer).setBigUint64(0, v, true);",
    "    return out;",
    "  },",
    "  decode(bytes: Uint8Array, offset = 0): bigint {",
    "    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(offset, true);",
    "  },",
    "};",
    "",
  ];
  for (const s of [...structs.values()].sort((a, b) => a.cName.localeCompare(b.cName))) parts.push(emitStruct(s), "");
  for (const e of enums) parts.push(emitEnum(e), "");

  parts.push("/** Map names (pinned by these names under the bpf root). Key -> value per map:");
  for (const m of mapTypes) parts.push(` *   ${m.map}: ${m.key} -> ${m.value}`);
  parts.push(" */");
  parts.push("export const MapName = {");
  for (const n of mapNames) parts.push(`  ${prop(n.replace(/^twill_/, ""))}: "${n}",`);
  parts.push("} as const;");
  parts.push("");
  parts.push("/** Type (enum bpf_map_type), max_entries and map_flags of each map definition; `<map>.inner` is a map-of-maps' inner template. */");
  parts.push("export const MAP_SPECS: Readonly<Record<string, { readonly type: number; readonly maxEntries: number; readonly flags: number }>> = {");
  for (const m of mapSpecs) parts.push(`  "${m.map}": { type: ${m.type}, maxEntries: ${m.maxEntries}, flags: ${m.flags} },`);
  parts.push("};");
  parts.push("");
  parts.push("/** Program names in the object. */");
  parts.push("export const ProgramName = {");
  for (const p of programs) parts.push(`  ${prop(p)}: "${p}",`);
  parts.push("} as const;");
  parts.push("");
  parts.push("/** Names of the `const volatile` settings in .rodata (set by the agent before load). */");
  parts.push("export const RodataName = {");
  for (const v of rodata) parts.push(`  ${prop(v.replace(/^cfg_/, ""))}: "${v}",`);
  parts.push("} as const;");
  parts.push("");
  parts.push("/** Struct layouts [field, offsetBytes, sizeBytes] the codecs assume; checked against the object at load. */");
  parts.push("export const STRUCT_LAYOUTS: Readonly<Record<string, { readonly size: number; readonly fields: ReadonlyArray<readonly [string, number, number]> }>> = {");
  for (const s of [...structs.values()].sort((a, b) => a.cName.localeCompare(b.cName))) {
    const fields = s.fields.map((f) => `["${f.name}", ${f.offset}, ${f.size}]`).join(", ");
    parts.push(`  ${s.cName}: { size: ${s.size}, fields: [${fields}] },`);
  }
  parts.push("};");
  parts.push("");

  const tmp = `${out}.tmp-${process.pid}`;
  await writeFile(tmp, parts.join("\n"));
  await rename(tmp, out);
  process.stdout.write(`wrote ${out}: ${structs.size} structs, ${enums.length} enums, ${mapNames.length} maps\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
