// SPDX-License-Identifier: Apache-2.0
// The whole native surface of the agent: libbpf 1.1 (libbpf.so.1) and a few
// libc calls, bound with koffi. This is the only module that imports koffi and
// the only one that sees errno; every failure leaves as a typed error from
// ./errors.ts. Structs are declared with the exact layouts of libbpf 1.1's
// headers (sizes/offsets checked with offsetof, see the comments) and every
// opts struct gets its `sz` set, as libbpf requires.
//
// API: openObject() -> BpfObject (.load/.mapFd/.progFd/.btf*/.close), map ops
// (mapUpdate/mapLookup/mapDelete/mapKeys/mapNextKey + batch), mapCreate,
// objPin/objGet/closeFd, links (linkCreate/linkDetach/linkUpdate), tc hooks
// (tcHookCreate/tcHookDestroy/tcAttach/tcDetach), progLoadTrivial for probes,
// progTestRun, RingBuffer, linkInfo/progId/mapId, ifIndex, numPossibleCpus,
// rcuBarrier/rcuBarrierAsync/rcuBarrierWorks (RCU grace-period waits),
// perCpuValueSize, onLibbpfMessage. (One file on purpose, over the usual size:
// it is the single koffi importer.)
import { readFileSync } from "node:fs";
import koffi from "koffi";
import { Errno } from "./errno.js";
import { BpfError, VerifierError, bpfError } from "./errors.js";

const libbpf = koffi.load("libbpf.so.1");
const libc = koffi.load("libc.so.6");

// --- structs (libbpf 1.1, x86_64; offsets from offsetof on /usr/include/bpf) ---

// struct bpf_object_open_opts: 80 bytes; pin_root_path @24, kconfig @40,
// kernel_log_buf @56, kernel_log_size @64, kernel_log_level @72.
const OpenOpts = koffi.struct("twill_bpf_object_open_opts", {
  sz: "size_t",
  object_name: "const char *",
  relaxed_maps: "bool",
  pin_root_path: "const char *",
  stub_attach_prog_fd: "uint32_t",
  kconfig: "const char *",
  btf_custom_path: "const char *",
  kernel_log_buf: "void *",
  kernel_log_size: "size_t",
  kernel_log_level: "uint32_t",
});
// struct bpf_map_create_opts: 48 bytes.
const MapCreateOpts = koffi.struct("twill_bpf_map_create_opts", {
  sz: "size_t",
  btf_fd: "uint32_t",
  btf_key_type_id: "uint32_t",
  btf_value_type_id: "uint32_t",
  btf_vmlinux_value_type_id: "uint32_t",
  inner_map_fd: "uint32_t",
  map_flags: "uint32_t",
  map_extra: "uint64_t",
  numa_node: "uint32_t",
  map_ifindex: "uint32_t",
});
// struct bpf_map_batch_opts: 24 bytes.
const BatchOpts = koffi.struct("twill_bpf_map_batch_opts", {
  sz: "size_t",
  elem_flags: "uint64_t",
  flags: "uint64_t",
});
// struct bpf_tc_hook: 24 bytes.
const TcHook = koffi.struct("twill_bpf_tc_hook", {
  sz: "size_t",
  ifindex: "int",
  attach_point: "int",
  parent: "uint32_t",
  tail_pad: "uint32_t",
});
// struct bpf_tc_opts: 32 bytes.
const TcOpts = koffi.struct("twill_bpf_tc_opts", {
  sz: "size_t",
  prog_fd: "int",
  flags: "uint32_t",
  prog_id: "uint32_t",
  handle: "uint32_t",
  priority: "uint32_t",
  tail_pad: "uint32_t",
});
// struct bpf_test_run_opts: 80 bytes.
const TestRunOpts = koffi.struct("twill_bpf_test_run_opts", {
  sz: "size_t",
  data_in: "void *",
  data_out: "void *",
  data_size_in: "uint32_t",
  data_size_out: "uint32_t",
  ctx_in: "void *",
  ctx_out: "void *",
  ctx_size_in: "uint32_t",
  ctx_size_out: "uint32_t",
  retval: "uint32_t",
  repeat: "int",
  duration: "uint32_t",
  flags: "uint32_t",
  cpu: "uint32_t",
  batch_size: "uint32_t",
});
const STRUCT_SIZES: ReadonlyArray<[koffi.IKoffiCType, number, string]> = [
  [OpenOpts, 80, "bpf_object_open_opts"],
  [MapCreateOpts, 48, "bpf_map_create_opts"],
  [BatchOpts, 24, "bpf_map_batch_opts"],
  [TcHook, 24, "bpf_tc_hook"],
  [TcOpts, 32, "bpf_tc_opts"],
  [TestRunOpts, 80, "bpf_test_run_opts"],
];
for (const [type, size, name] of STRUCT_SIZES) {
  if (koffi.sizeof(type) !== size) {
    throw new Error(`bind libbpf: struct ${name} is ${koffi.sizeof(type)} bytes, expected ${size}`);
  }
}

const PrintFn = koffi.proto("int twill_libbpf_print_fn(int level, const char *fmt, void *ap)");
const SampleFn = koffi.proto("int twill_ring_buffer_sample_fn(void *ctx, void *data, size_t size)");

// --- functions ---
const f = {
  setPrint: libbpf.func("void *libbpf_set_print(twill_libbpf_print_fn *fn)"),
  openFile: libbpf.func("void *bpf_object__open_file(const char *path, const twill_bpf_object_open_opts *opts)"),
  objLoad: libbpf.func("int bpf_object__load(void *obj)"),
  objClose: libbpf.func("void bpf_object__close(void *obj)"),
  objBtf: libbpf.func("void *bpf_object__btf(void *obj)"),
  objBtfFd: libbpf.func("int bpf_object__btf_fd(void *obj)"),
  findMap: libbpf.func("void *bpf_object__find_map_by_name(void *obj, const char *name)"),
  nextMap: libbpf.func("void *bpf_object__next_map(void *obj, void *map)"),
  mapName: libbpf.func("const char *bpf_map__name(void *map)"),
  mapFd: libbpf.func("int bpf_map__fd(void *map)"),
  mapSetPinPath: libbpf.func("int bpf_map__set_pin_path(void *map, const char *path)"),
  mapInitialValue: libbpf.func("void *bpf_map__initial_value(void *map, _Out_ size_t *psize)"),
  findProg: libbpf.func("void *bpf_object__find_program_by_name(void *obj, const char *name)"),
  nextProg: libbpf.func("void *bpf_object__next_program(void *obj, void *prog)"),
  progName: libbpf.func("const char *bpf_program__name(void *prog)"),
  progFd: libbpf.func("int bpf_program__fd(void *prog)"),
  btfFindByNameKind: libbpf.func("int btf__find_by_name_kind(void *btf, const char *name, uint32_t kind)"),
  btfTypeById: libbpf.func("void *btf__type_by_id(void *btf, uint32_t id)"),
  btfNameByOffset: libbpf.func("const char *btf__name_by_offset(void *btf, uint32_t offset)"),
  btfResolveSize: libbpf.func("int64_t btf__resolve_size(void *btf, uint32_t id)"),
  mapUpdate: libbpf.func("int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)"),
  mapLookup: libbpf.func("int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)"),
  mapDelete: libbpf.func("int bpf_map_delete_elem(int fd, const void *key)"),
  mapNextKey: libbpf.func("int bpf_map_get_next_key(int fd, const void *key, _Out_ void *next)"),
  lookupBatch: libbpf.func(
    "int bpf_map_lookup_batch(int fd, void *in_batch, _Out_ void *out_batch, _Out_ void *keys, _Out_ void *values, _Inout_ uint32_t *count, const twill_bpf_map_batch_opts *opts)",
  ),
  updateBatch: libbpf.func(
    "int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const twill_bpf_map_batch_opts *opts)",
  ),
  deleteBatch: libbpf.func(
    "int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const twill_bpf_map_batch_opts *opts)",
  ),
  mapCreate: libbpf.func(
    "int bpf_map_create(int type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const twill_bpf_map_create_opts *opts)",
  ),
  objPin: libbpf.func("int bpf_obj_pin(int fd, const char *path)"),
  objGet: libbpf.func("int bpf_obj_get(const char *path)"),
  mapFdById: libbpf.func("int bpf_map_get_fd_by_id(uint32_t id)"),
  progLoad: libbpf.func(
    "int bpf_prog_load(int type, const char *name, const char *license, const void *insns, size_t insn_cnt, void *opts)",
  ),
  linkCreate: libbpf.func("int bpf_link_create(int prog_fd, int target, int attach_type, void *opts)"),
  linkDetach: libbpf.func("int bpf_link_detach(int link_fd)"),
  linkUpdate: libbpf.func("int bpf_link_update(int link_fd, int new_prog_fd, void *opts)"),
  tcHookCreate: libbpf.func("int bpf_tc_hook_create(twill_bpf_tc_hook *hook)"),
  tcHookDestroy: libbpf.func("int bpf_tc_hook_destroy(twill_bpf_tc_hook *hook)"),
  tcAttach: libbpf.func("int bpf_tc_attach(const twill_bpf_tc_hook *hook, _Inout_ twill_bpf_tc_opts *opts)"),
  tcDetach: libbpf.func("int bpf_tc_detach(const twill_bpf_tc_hook *hook, const twill_bpf_tc_opts *opts)"),
  tcQuery: libbpf.func("int bpf_tc_query(const twill_bpf_tc_hook *hook, _Inout_ twill_bpf_tc_opts *opts)"),
  testRun: libbpf.func("int bpf_prog_test_run_opts(int prog_fd, _Inout_ twill_bpf_test_run_opts *opts)"),
  rbNew: libbpf.func("void *ring_buffer__new(int map_fd, twill_ring_buffer_sample_fn *cb, void *ctx, void *opts)"),
  rbPoll: libbpf.func("int ring_buffer__poll(void *rb, int timeout_ms)"),
  rbConsume: libbpf.func("int ring_buffer__consume(void *rb)"),
  rbFree: libbpf.func("void ring_buffer__free(void *rb)"),
  objInfo: libbpf.func("int bpf_obj_get_info_by_fd(int fd, _Inout_ uint8_t *info, _Inout_ uint32_t *info_len)"),
  numCpus: libbpf.func("int libbpf_num_possible_cpus(void)"),
  vsnprintf: libc.func("int vsnprintf(_Out_ uint8_t *buf, size_t n, const char *fmt, void *ap)"),
  close: libc.func("int close(int fd)"),
  // syscall(2) is variadic; declared with fixed integer arguments so koffi can
  // run it on a worker thread (.async); the x86-64/arm64 ABIs pass them alike.
  membarrier: libc.func("long syscall(long number, int cmd, unsigned int flags, int cpu)"),
  ifNameToIndex: libc.func("unsigned int if_nametoindex(const char *name)"),
};

// --- libbpf messages ---------------------------------------------------------
// libbpf prints warnings and (on failed loads) verifier logs through one global
// callback. We keep the recent ones so an error can carry what libbpf said
// during the failing call, and forward them to an optional listener.

/** libbpf print levels. */
export type LibbpfLevel = "warn" | "info" | "debug";
const LEVELS: readonly LibbpfLevel[] = ["warn", "info", "debug"];
// Recent warn/info messages, numbered so a capture survives trimming.
let messages: Array<{ seq: number; text: string }> = [];
let seq = 0;
let listener: ((level: LibbpfLevel, message: string) => void) | null = null;
const printBuf = Buffer.alloc(64 * 1024);
const printCb = koffi.register((level: number, fmt: string, ap: unknown): number => {
  const n = f.vsnprintf(printBuf, printBuf.length, fmt, ap) as number;
  const text = printBuf.subarray(0, Math.max(0, Math.min(n, printBuf.length - 1))).toString("utf8");
  const lvl = LEVELS[level] ?? "debug";
  if (lvl !== "debug") {
    messages.push({ seq: ++seq, text });
    if (messages.length > 200) messages = messages.slice(-100);
  }
  listener?.(lvl, text.trimEnd());
  return 0;
}, koffi.pointer(PrintFn));
f.setPrint(printCb);

/** Receive every libbpf message (debug ones included); null to stop. */
export function onLibbpfMessage(fn: ((level: LibbpfLevel, message: string) => void) | null): void {
  listener = fn;
}

/** Run a native call and return the libbpf messages it produced. */
function captured<T>(fn: () => T): { result: T; said: string } {
  const start = seq;
  const result = fn();
  const said = messages.filter((m) => m.seq > start).map((m) => m.text);
  return { result, said: said.join("").trim() };
}

/** Throw the typed error for a negative libbpf return. */
function check(op: string, ret: number, said = ""): number {
  if (ret < 0) throw bpfError(op, -ret, said);
  return ret;
}

// --- objects -----------------------------------------------------------------

/** Options of openObject. */
export interface OpenObjectOptions {
  /** Directory where LIBBPF_PIN_BY_NAME maps are pinned/reused; null = libbpf default. */
  readonly pinRootPath: string | null;
  /** Values of `const volatile` globals in .rodata, by variable name. */
  readonly rodata: Readonly<Record<string, number | bigint>>;
  /** Verifier log buffer size (the log is kept only when a load fails). */
  readonly logSizeBytes?: number;
}

/** One member of a BTF struct, as laid out in the object. */
export interface BtfMember {
  readonly name: string;
  readonly offsetBytes: number;
  readonly sizeBytes: number;
}

const BTF_KIND_STRUCT = 4;
const BTF_KIND_DATASEC = 15;

/** An opened (and, after load(), loaded) BPF ELF object. */
export class BpfObject {
  #ptr: unknown;
  #logBuf: unknown;
  #logSize: number;
  #loaded = false;

  /** @internal use openObject() */
  constructor(ptr: unknown, logBuf: unknown, logSize: number, readonly path: string) {
    this.#ptr = ptr;
    this.#logBuf = logBuf;
    this.#logSize = logSize;
  }

  get #obj(): unknown {
    if (this.#ptr === null) throw new BpfError(`use object ${this.path}`, Errno.EBADF, "", "object is closed");
    return this.#ptr;
  }

  /** Load programs and create (or reuse pinned) maps. Throws VerifierError on rejection. */
  load(): void {
    const op = `load object ${this.path}`;
    const { result, said } = captured(() => f.objLoad(this.#obj) as number);
    const log = this.#readLog();
    this.#freeLog();
    if (result < 0) {
      if (log !== "") throw new VerifierError(op, -result, log, said);
      throw bpfError(op, -result, said);
    }
    this.#loaded = true;
  }

  /** Names of all maps in the object. */
  mapNames(): string[] {
    const names: string[] = [];
    for (let m = f.nextMap(this.#obj, null); m !== null; m = f.nextMap(this.#obj, m)) {
      names.push(f.mapName(m) as string);
    }
    return names;
  }

  /** Names of all programs in the object. */
  programNames(): string[] {
    const names: string[] = [];
    for (let p = f.nextProg(this.#obj, null); p !== null; p = f.nextProg(this.#obj, p)) {
      names.push(f.progName(p) as string);
    }
    return names;
  }

  /** fd of a map (owned by the object: do not close it). */
  mapFd(name: string): number {
    return check(`get fd of map ${name}`, f.mapFd(this.#map(name)) as number);
  }

  /** Pin path for a map before load (overrides pin_root_path/<name>). */
  setMapPinPath(name: string, path: string): void {
    check(`set pin path of map ${name}`, f.mapSetPinPath(this.#map(name), path) as number);
  }

  /** fd of a loaded program (owned by the object: do not close it). */
  progFd(name: string): number {
    const p = f.findProg(this.#obj, name);
    if (p === null) throw new BpfError(`find program ${name}`, Errno.ENOENT, "", "no such program in object");
    return check(`get fd of program ${name}`, f.progFd(p) as number);
  }

  /** fd of the object's BTF in the kernel (valid after load, owned by the object). */
  btfFd(): number {
    return check(`get btf fd of ${this.path}`, f.objBtfFd(this.#obj) as number);
  }

  /** BTF type id of a named struct, or null. */
  btfStructId(name: string): number | null {
    const id = f.btfFindByNameKind(this.#btf(), name, BTF_KIND_STRUCT) as number;
    return id > 0 ? id : null;
  }

  /** Size and members of a named struct in the object's BTF, or null if absent. */
  btfStruct(name: string): { sizeBytes: number; members: BtfMember[] } | null {
    const btf = this.#btf();
    const id = this.btfStructId(name);
    if (id === null) return null;
    const t = f.btfTypeById(btf, id);
    // struct btf_type {u32 name_off; u32 info; u32 size;} then vlen x
    // struct btf_member {u32 name_off; u32 type; u32 offset;}
    const head = new DataView(koffi.view(t, 12));
    const info = head.getUint32(4, true);
    const vlen = info & 0xffff;
    const kflag = info >>> 31;
    const body = new DataView(koffi.view(t, 12 + 12 * vlen));
    const members: BtfMember[] = [];
    for (let i = 0; i < vlen; i++) {
      const o = 12 + 12 * i;
      const type = body.getUint32(o + 4, true);
      const off = body.getUint32(o + 8, true);
      const bitOffset = kflag ? off & 0xffffff : off;
      members.push({
        name: f.btfNameByOffset(btf, body.getUint32(o, true)) as string,
        offsetBytes: bitOffset / 8,
        sizeBytes: Number(f.btfResolveSize(btf, type) as bigint | number),
      });
    }
    return { sizeBytes: head.getUint32(8, true), members };
  }

  /** Unload and free everything the object owns (fds included). Idempotent. */
  close(): void {
    if (this.#ptr !== null) f.objClose(this.#ptr);
    this.#ptr = null;
    this.#freeLog();
  }

  /** True once load() succeeded. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** @internal set a .rodata variable before load */
  setRodata(name: string, value: number | bigint): void {
    const op = `set rodata ${name}`;
    const btf = this.#btf();
    const secId = f.btfFindByNameKind(btf, ".rodata", BTF_KIND_DATASEC) as number;
    if (secId <= 0) throw new BpfError(op, Errno.ENOENT, "", "object has no .rodata section");
    const sec = f.btfTypeById(btf, secId);
    const vlen = new DataView(koffi.view(sec, 12)).getUint32(4, true) & 0xffff;
    // struct btf_var_secinfo {u32 type; u32 offset; u32 size;} after the header
    const infos = new DataView(koffi.view(sec, 12 + 12 * vlen));
    for (let i = 0; i < vlen; i++) {
      const o = 12 + 12 * i;
      const varType = f.btfTypeById(btf, infos.getUint32(o, true));
      const varName = f.btfNameByOffset(btf, new DataView(koffi.view(varType, 4)).getUint32(0, true)) as string;
      if (varName !== name) continue;
      const offset = infos.getUint32(o + 4, true);
      const size = infos.getUint32(o + 8, true);
      const psize = [0];
      const data = f.mapInitialValue(this.#map(".rodata"), psize);
      const total = Number(psize[0]);
      if (data === null || offset + size > total) throw new BpfError(op, Errno.ERANGE, "", "variable outside .rodata");
      writeInt(new DataView(koffi.view(data, total)), offset, size, value, op);
      return;
    }
    throw new BpfError(op, Errno.ENOENT, "", "no such variable in .rodata");
  }

  #map(name: string): unknown {
    const m = f.findMap(this.#obj, name);
    if (m === null) throw new BpfError(`find map ${name}`, Errno.ENOENT, "", "no such map in object");
    return m;
  }

  #btf(): unknown {
    const btf = f.objBtf(this.#obj);
    if (btf === null) throw new BpfError(`read btf of ${this.path}`, Errno.ENOENT, "", "object has no BTF");
    return btf;
  }

  #readLog(): string {
    if (this.#logBuf === null) return "";
    const bytes = new Uint8Array(koffi.view(this.#logBuf, this.#logSize));
    const end = bytes.indexOf(0);
    return Buffer.from(bytes.subarray(0, end < 0 ? bytes.length : end)).toString("utf8");
  }

  #freeLog(): void {
    if (this.#logBuf !== null) koffi.free(this.#logBuf);
    this.#logBuf = null;
  }
}

function writeInt(view: DataView, offset: number, size: number, value: number | bigint, op: string): void {
  switch (size) {
    case 1: view.setUint8(offset, Number(value)); return;
    case 2: view.setUint16(offset, Number(value), true); return;
    case 4: view.setUint32(offset, Number(value) >>> 0, true); return;
    case 8: view.setBigUint64(offset, BigInt.asUintN(64, BigInt(value)), true); return;
    default: throw new BpfError(op, Errno.EINVAL, "", `unsupported variable size ${size}`);
  }
}

/**
 * Open a BPF ELF object and set its .rodata; call .load() next.
 * Maps with LIBBPF_PIN_BY_NAME are pinned under pinRootPath at load, or reused
 * if already pinned there with compatible attributes.
 */
export function openObject(path: string, opts: OpenObjectOptions): BpfObject {
  const logSize = opts.logSizeBytes ?? 8 * 1024 * 1024;
  const logBuf = koffi.alloc("uint8_t", logSize);
  new Uint8Array(koffi.view(logBuf, 1))[0] = 0;
  const { result: ptr, said } = captured(() =>
    f.openFile(path, {
      sz: koffi.sizeof(OpenOpts),
      object_name: null,
      relaxed_maps: false,
      pin_root_path: opts.pinRootPath,
      stub_attach_prog_fd: 0,
      kconfig: null,
      btf_custom_path: null,
      kernel_log_buf: logBuf,
      kernel_log_size: logSize,
      // 0: no log on success; libbpf retries a failing load with level 1
      // into our buffer, which is what VerifierError.log reports.
      kernel_log_level: 0,
    }),
  );
  if (ptr === null) {
    koffi.free(logBuf);
    throw bpfError(`open object ${path}`, koffi.errno(), said);
  }
  const obj = new BpfObject(ptr, logBuf, logSize, path);
  try {
    for (const [name, value] of Object.entries(opts.rodata)) obj.setRodata(name, value);
  } catch (e: unknown) {
    obj.close();
    throw e;
  }
  return obj;
}

// --- maps --------------------------------------------------------------------

/** BPF_ANY / BPF_NOEXIST / BPF_EXIST */
export const UpdateFlags = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;

/** Insert or replace one element. */
export function mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags = 0, what = `fd ${fd}`): void {
  check(`update map ${what}`, f.mapUpdate(fd, key, value, flags) as number);
}

/** Value of key, or null if absent. valueSize includes all CPUs for per-CPU maps. */
export function mapLookup(fd: number, key: Uint8Array, valueSize: number, what = `fd ${fd}`): Uint8Array | null {
  const out = new Uint8Array(valueSize);
  const ret = f.mapLookup(fd, key, out) as number;
  if (ret === -Errno.ENOENT) return null;
  check(`lookup map ${what}`, ret);
  return out;
}

/** Delete key; false if it was absent. */
export function mapDelete(fd: number, key: Uint8Array, what = `fd ${fd}`): boolean {
  const ret = f.mapDelete(fd, key) as number;
  if (ret === -Errno.ENOENT) return false;
  check(`delete map ${what}`, ret);
  return true;
}

/** Key after `key` (the first key if null), or null at the end. */
export function mapNextKey(fd: number, key: Uint8Array | null, keySize: number, what = `fd ${fd}`): Uint8Array | null {
  const out = new Uint8Array(keySize);
  const ret = f.mapNextKey(fd, key, out) as number;
  if (ret === -Errno.ENOENT) return null;
  check(`iterate map ${what}`, ret);
  return out;
}

/** All keys (a snapshot; concurrent updates may add or skip keys). */
export function mapKeys(fd: number, keySize: number, what = `fd ${fd}`): Uint8Array[] {
  const keys: Uint8Array[] = [];
  for (let k = mapNextKey(fd, null, keySize, what); k !== null; k = mapNextKey(fd, k, keySize, what)) keys.push(k);
  return keys;
}

function batchOpts(): Record<string, number> {
  return { sz: koffi.sizeof(BatchOpts), elem_flags: 0, flags: 0 };
}

/** Every entry via BPF_MAP_LOOKUP_BATCH, chunkSize entries per syscall. */
export function mapLookupBatch(
  fd: number,
  keySize: number,
  valueSize: number,
  chunkSize = 256,
  what = `fd ${fd}`,
): Array<{ key: Uint8Array; value: Uint8Array }> {
  const out: Array<{ key: Uint8Array; value: Uint8Array }> = [];
  // The batch token is a u32 bucket for hashes and a key for arrays.
  const tokenSize = Math.max(keySize, 8);
  let inBatch: Uint8Array | null = null;
  for (;;) {
    const outBatch = new Uint8Array(tokenSize);
    const keys = new Uint8Array(keySize * chunkSize);
    const values = new Uint8Array(valueSize * chunkSize);
    const count = [chunkSize];
    const ret = f.lookupBatch(fd, inBatch, outBatch, keys, values, count, batchOpts()) as number;
    if (ret < 0 && ret !== -Errno.ENOENT) check(`lookup batch map ${what}`, ret);
    const n = count[0] ?? 0;
    for (let i = 0; i < n; i++) {
      out.push({
        key: keys.slice(i * keySize, (i + 1) * keySize),
        value: values.slice(i * valueSize, (i + 1) * valueSize),
      });
    }
    if (ret === -Errno.ENOENT) return out;
    inBatch = outBatch;
  }
}

/** Update many entries in one syscall (keys and values concatenated). Returns how many were written. */
export function mapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number, flags = 0, what = `fd ${fd}`): number {
  if (count === 0) return 0;
  const n = [count];
  check(`update batch map ${what}`, f.updateBatch(fd, keys, values, n, { ...batchOpts(), elem_flags: flags }) as number);
  return n[0] ?? 0;
}

/** Delete many keys in one syscall (keys concatenated). Fails with KeyNotFoundError on a missing key. */
export function mapDeleteBatch(fd: number, keys: Uint8Array, count: number, what = `fd ${fd}`): number {
  if (count === 0) return 0;
  const n = [count];
  check(`delete batch map ${what}`, f.deleteBatch(fd, keys, n, batchOpts()) as number);
  return n[0] ?? 0;
}

/** Map types this agent creates itself. */
export const MapType = { HASH: 1, ARRAY: 2, LPM_TRIE: 11, HASH_OF_MAPS: 13 } as const;
/** BPF_F_NO_PREALLOC */
export const BPF_F_NO_PREALLOC = 1;

/** Attributes of mapCreate. */
export interface MapCreateSpec {
  readonly type: number;
  readonly name: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  /** BTF (fd + type ids) so bpftool prints field names; null = no BTF. */
  readonly btf: { readonly fd: number; readonly keyTypeId: number; readonly valueTypeId: number } | null;
}

/** Create a map; returns its fd (the caller closes it). */
export function mapCreate(spec: MapCreateSpec): number {
  const { result, said } = captured(
    () =>
      f.mapCreate(spec.type, spec.name, spec.keySize, spec.valueSize, spec.maxEntries, {
        sz: koffi.sizeof(MapCreateOpts),
        btf_fd: spec.btf?.fd ?? 0,
        btf_key_type_id: spec.btf?.keyTypeId ?? 0,
        btf_value_type_id: spec.btf?.valueTypeId ?? 0,
        btf_vmlinux_value_type_id: 0,
        inner_map_fd: 0,
        map_flags: spec.flags,
        map_extra: 0,
        numa_node: 0,
        map_ifindex: 0,
      }) as number,
  );
  return check(`create map ${spec.name}`, result, said);
}

// --- fds, pins, links, tc ------------------------------------------------------

/** Pin an fd (map, program or link) at a bpffs path. */
export function objPin(fd: number, path: string): void {
  check(`pin ${path}`, f.objPin(fd, path) as number);
}

/** Open a pinned object; returns a new fd the caller closes. Absent: BpfError errno ENOENT. */
export function objGet(path: string): number {
  return check(`open pinned ${path}`, f.objGet(path) as number);
}

/** Open a map by kernel id (e.g. an inner map found in a map-of-maps); the caller closes it. */
export function mapFdById(id: number): number {
  return check(`open map id ${id}`, f.mapFdById(id) as number);
}

/** Close an fd returned by this module. */
export function closeFd(fd: number): void {
  if (fd >= 0) f.close(fd);
}

const SYS_MEMBARRIER = process.arch === "arm64" ? 283 : 324;
const MEMBARRIER_CMD_QUERY = 0;
const MEMBARRIER_CMD_GLOBAL = 1;

let rcuBarrierOk: boolean | null = null;

/** Online CPUs from /sys/devices/system/cpu/online ("0-3,6"), or 0 when unreadable. */
function onlineCpus(): number {
  try {
    let n = 0;
    for (const part of readFileSync("/sys/devices/system/cpu/online", "utf8").trim().split(",")) {
      const [lo, hi] = part.split("-").map(Number);
      if (lo === undefined || Number.isNaN(lo)) continue;
      n += hi === undefined || Number.isNaN(hi) ? 1 : hi - lo + 1;
    }
    return n;
  } catch {
    return 0;
  }
}

/**
 * Whether rcuBarrier() really waits for an RCU grace period here (probed
 * once). membarrier(GLOBAL) calls synchronize_rcu() only when more than one
 * CPU is online (on one CPU it returns at once, which does not cover a tc
 * program preempted on a PREEMPT_RT kernel), and the kernel refuses it
 * (EINVAL, not listed by QUERY) under nohz_full. When false, callers need
 * another way to wait (PolicyMap rewrites a twill_policy entry: the kernel
 * waits for a grace period after every map-in-map update).
 */
export function rcuBarrierWorks(): boolean {
  if (rcuBarrierOk === null) {
    const supported = f.membarrier(SYS_MEMBARRIER, MEMBARRIER_CMD_QUERY, 0, 0) as number;
    rcuBarrierOk = supported >= 0 && (supported & MEMBARRIER_CMD_GLOBAL) !== 0 && onlineCpus() > 1;
  }
  return rcuBarrierOk;
}

/**
 * Wait until every BPF program running now has finished: membarrier(GLOBAL)
 * waits for an RCU grace period (synchronize_rcu), and tc programs run
 * inside RCU read-side sections. 5-20 ms; blocks the calling thread. Only a
 * grace period where rcuBarrierWorks().
 */
export function rcuBarrier(): void {
  if ((f.membarrier(SYS_MEMBARRIER, MEMBARRIER_CMD_GLOBAL, 0, 0) as number) < 0) throw bpfError("membarrier", koffi.errno(), "");
}

/** rcuBarrier on a worker thread; `done` runs on the JS thread afterwards. */
export function rcuBarrierAsync(done: (err: Error | null) => void): void {
  (f.membarrier as unknown as { async: (...a: unknown[]) => void }).async(SYS_MEMBARRIER, MEMBARRIER_CMD_GLOBAL, 0, 0, (err: unknown, res: unknown) => {
    if (err) done(err instanceof Error ? err : new Error(String(err)));
    // errno belongs to the worker thread: only the failure is known here.
    else if (typeof res === "number" && res < 0) done(new Error("membarrier: failed"));
    else done(null);
  });
}

/** Interface index by name, or null. */
export function ifIndex(name: string): number | null {
  const idx = f.ifNameToIndex(name) as number;
  return idx === 0 ? null : idx;
}

/** Attach types used with linkCreate. */
export const AttachType = { TCX_INGRESS: 46, TCX_EGRESS: 47 } as const;

/** Create a BPF link (e.g. tcx on an ifindex); returns the link fd. */
export function linkCreate(progFd: number, target: number, attachType: number, what: string): number {
  const { result, said } = captured(() => f.linkCreate(progFd, target, attachType, null) as number);
  return check(`create link ${what}`, result, said);
}

/** Raw errno of a failed linkCreate (for probes); 0 on success (the link is closed). */
export function linkCreateErrno(progFd: number, target: number, attachType: number): number {
  const ret = f.linkCreate(progFd, target, attachType, null) as number;
  if (ret >= 0) {
    f.close(ret);
    return 0;
  }
  return -ret;
}

/** Detach a link from its hook (works for pinned links too). */
export function linkDetach(linkFd: number, what: string): void {
  check(`detach link ${what}`, f.linkDetach(linkFd) as number);
}

/** Point an existing link at another program atomically. */
export function linkUpdate(linkFd: number, progFd: number, what: string): void {
  check(`update link ${what}`, f.linkUpdate(linkFd, progFd, null) as number);
}

function objInfo(fd: number, what: string): DataView {
  // Larger than any bpf_*_info of this kernel; the kernel accepts a longer
  // zeroed buffer and reports what it filled in.
  const buf = new Uint8Array(512);
  const len = [buf.length];
  check(`get info of ${what}`, f.objInfo(fd, buf, len) as number);
  return new DataView(buf.buffer);
}

/** What the kernel reports about a link (tcx links: target ifindex and attach type). */
export interface LinkInfo {
  readonly id: number;
  /** enum bpf_link_type (11 = tcx). */
  readonly type: number;
  readonly progId: number;
  /** For tcx links; 0 otherwise. */
  readonly ifindex: number;
  readonly attachType: number;
}

/** Describe a link fd. */
export function linkInfo(linkFd: number): LinkInfo {
  // struct bpf_link_info: type@0 id@4 prog_id@8, union@16 (tcx: ifindex@16 attach_type@20)
  const v = objInfo(linkFd, `link fd ${linkFd}`);
  const type = v.getUint32(0, true);
  const tcx = type === 11;
  return {
    type,
    id: v.getUint32(4, true),
    progId: v.getUint32(8, true),
    ifindex: tcx ? v.getUint32(16, true) : 0,
    attachType: tcx ? v.getUint32(20, true) : 0,
  };
}

/** Kernel id of a program fd (struct bpf_prog_info: id@4). */
export function progId(progFd: number): number {
  return objInfo(progFd, `program fd ${progFd}`).getUint32(4, true);
}

/** Kernel id of a map fd (struct bpf_map_info: id@4). */
export function mapId(mapFd: number): number {
  return objInfo(mapFd, `map fd ${mapFd}`).getUint32(4, true);
}

/** BPF_PROG_TYPE_SCHED_CLS */
export const PROG_TYPE_SCHED_CLS = 3;

/** Load "r0 = 0; exit" as a program of the given type (feature probes). */
export function progLoadTrivial(progType: number): number {
  // BPF_MOV64_IMM(r0, 0) = b7 00 .. ; BPF_EXIT_INSN = 95 00 ..
  const insns = new Uint8Array([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
  return check("load probe program", f.progLoad(progType, "twill_probe", "GPL", insns, 2, null) as number);
}

/** tc hook points (enum bpf_tc_attach_point). */
export const TcAttachPoint = { INGRESS: 1, EGRESS: 2 } as const;

function tcHook(ifindex: number, point: number): Record<string, number> {
  return { sz: koffi.sizeof(TcHook), ifindex, attach_point: point, parent: 0, tail_pad: 0 };
}

/** Create the clsact qdisc on ifindex (EEXIST is fine: it is shared). */
export function tcHookCreate(ifindex: number): void {
  const ret = f.tcHookCreate(tcHook(ifindex, TcAttachPoint.INGRESS | TcAttachPoint.EGRESS)) as number;
  if (ret === -Errno.EEXIST) return;
  check(`create clsact on ifindex ${ifindex}`, ret);
}

/** Remove the clsact qdisc (and every filter on it). */
export function tcHookDestroy(ifindex: number): void {
  const ret = f.tcHookDestroy(tcHook(ifindex, TcAttachPoint.INGRESS | TcAttachPoint.EGRESS)) as number;
  if (ret === -Errno.ENOENT || ret === -Errno.EINVAL) return;
  check(`destroy clsact on ifindex ${ifindex}`, ret);
}

/** Attach (or replace) a direct-action filter at handle/priority; returns the prog id. */
export function tcAttach(ifindex: number, point: number, progFd: number, handle: number, priority: number): number {
  const opts = { sz: koffi.sizeof(TcOpts), prog_fd: progFd, flags: 1 /* BPF_TC_F_REPLACE */, prog_id: 0, handle, priority, tail_pad: 0 };
  const { result, said } = captured(() => f.tcAttach(tcHook(ifindex, point), opts) as number);
  check(`attach tc filter on ifindex ${ifindex}`, result, said);
  return opts.prog_id;
}

/** Id of the program at handle/priority, or null if there is none. */
export function tcQuery(ifindex: number, point: number, handle: number, priority: number): number | null {
  const opts = { sz: koffi.sizeof(TcOpts), prog_fd: 0, flags: 0, prog_id: 0, handle, priority, tail_pad: 0 };
  const ret = f.tcQuery(tcHook(ifindex, point), opts) as number;
  // no qdisc (EINVAL), no filter (ENOENT) or no device any more (ENODEV)
  if (ret === -Errno.ENOENT || ret === -Errno.EINVAL || ret === -Errno.ENODEV) return null;
  check(`query tc filter on ifindex ${ifindex}`, ret);
  return opts.prog_id;
}

/** Remove the filter at handle/priority; false if it was not there. */
export function tcDetach(ifindex: number, point: number, handle: number, priority: number): boolean {
  const opts = { sz: koffi.sizeof(TcOpts), prog_fd: 0, flags: 0, prog_id: 0, handle, priority, tail_pad: 0 };
  const ret = f.tcDetach(tcHook(ifindex, point), opts) as number;
  if (ret === -Errno.ENOENT || ret === -Errno.EINVAL || ret === -Errno.ENODEV) return false;
  check(`detach tc filter on ifindex ${ifindex}`, ret);
  return true;
}

// --- test run ------------------------------------------------------------------

/** Input of progTestRun. */
export interface TestRunInput {
  readonly data: Uint8Array;
  readonly repeat?: number;
  /** Optional __sk_buff context (e.g. to set ifindex). */
  readonly ctx?: Uint8Array;
  /** Room for the output packet; defaults to data.length + 256. */
  readonly dataOutSizeBytes?: number;
}

/** Output of progTestRun. */
export interface TestRunResult {
  readonly retval: number;
  readonly data: Uint8Array;
  readonly ctx: Uint8Array | null;
  readonly durationNs: number;
}

/** Run a program on a packet with BPF_PROG_TEST_RUN. */
export function progTestRun(progFd: number, input: TestRunInput): TestRunResult {
  const outSize = input.dataOutSizeBytes ?? input.data.length + 256;
  const ctxSize = input.ctx?.length ?? 0;
  const dataIn = koffi.alloc("uint8_t", Math.max(1, input.data.length));
  const dataOut = koffi.alloc("uint8_t", outSize);
  const ctxIn = ctxSize > 0 ? koffi.alloc("uint8_t", ctxSize) : null;
  const ctxOut = ctxSize > 0 ? koffi.alloc("uint8_t", ctxSize) : null;
  try {
    new Uint8Array(koffi.view(dataIn, input.data.length)).set(input.data);
    if (ctxIn !== null && input.ctx) new Uint8Array(koffi.view(ctxIn, ctxSize)).set(input.ctx);
    const opts = {
      sz: koffi.sizeof(TestRunOpts),
      data_in: dataIn,
      data_out: dataOut,
      data_size_in: input.data.length,
      data_size_out: outSize,
      ctx_in: ctxIn,
      ctx_out: ctxOut,
      ctx_size_in: ctxSize,
      ctx_size_out: ctxSize,
      retval: 0,
      repeat: input.repeat ?? 1,
      duration: 0,
      flags: 0,
      cpu: 0,
      batch_size: 0,
    };
    check(`test run program fd ${progFd}`, f.testRun(progFd, opts) as number);
    return {
      retval: opts.retval | 0,
      data: new Uint8Array(koffi.view(dataOut, opts.data_size_out)).slice(),
      ctx: ctxOut !== null ? new Uint8Array(koffi.view(ctxOut, opts.ctx_size_out)).slice() : null,
      durationNs: opts.duration,
    };
  } finally {
    koffi.free(dataIn);
    koffi.free(dataOut);
    if (ctxIn !== null) koffi.free(ctxIn);
    if (ctxOut !== null) koffi.free(ctxOut);
  }
}

// --- ring buffer -----------------------------------------------------------------

/**
 * A libbpf ring buffer reader. Records are delivered synchronously from
 * poll()/consume() as copies (the ring memory is reused right after).
 */
export class RingBuffer {
  #rb: unknown;
  #cb: koffi.IKoffiRegisteredCallback | null;

  constructor(mapFd: number, onRecord: (data: Uint8Array) => void) {
    this.#cb = koffi.register((_ctx: unknown, data: unknown, size: number | bigint): number => {
      const n = Number(size);
      onRecord(new Uint8Array(koffi.view(data, n)).slice());
      return 0;
    }, koffi.pointer(SampleFn));
    const { result, said } = captured(() => f.rbNew(mapFd, this.#cb, null, null));
    if (result === null) {
      koffi.unregister(this.#cb);
      this.#cb = null;
      throw bpfError(`open ring buffer fd ${mapFd}`, koffi.errno(), said);
    }
    this.#rb = result;
  }

  /** Deliver every available record without blocking; returns how many. */
  consume(): number {
    if (this.#rb === null) return 0;
    return check("consume ring buffer", f.rbConsume(this.#rb) as number);
  }

  /** Wait up to timeoutMs for records (blocks the thread: keep it short). */
  poll(timeoutMs: number): number {
    if (this.#rb === null) return 0;
    const ret = f.rbPoll(this.#rb, timeoutMs) as number;
    if (ret === -Errno.EINTR) return 0;
    return check("poll ring buffer", ret);
  }

  /** Free the reader. Idempotent. */
  close(): void {
    if (this.#rb !== null) f.rbFree(this.#rb);
    this.#rb = null;
    if (this.#cb !== null) koffi.unregister(this.#cb);
    this.#cb = null;
  }
}

/** Number of possible CPUs (the stride of per-CPU map values). */
export function numPossibleCpus(): number {
  return check("count possible cpus", f.numCpus() as number);
}

/** Per-CPU value size as the kernel lays it out: each CPU's value rounded up to 8 bytes. */
export function perCpuValueSize(valueSize: number): number {
  return Math.ceil(valueSize / 8) * 8 * numPossibleCpus();
}
