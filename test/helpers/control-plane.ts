// SPDX-License-Identifier: Apache-2.0
// A real, throwaway Kubernetes control plane (etcd + kube-apiserver on
// 127.0.0.1) for tests that talk to the API server. Owns the calls to
// hack/build-control-plane.sh, hack/start-control-plane.sh and
// hack/stop-control-plane.sh; nothing else here knows how the processes run.
//
// API:
//   startControlPlane(opts?) → ControlPlane {kubeconfigPath, server, token,
//     caFile, dir, binDir, kubectl(...args), stop()}
//   ControlPlaneError: any failure to build, start or stop.
//   stopApiServer()/startApiServer(): take the kube-apiserver down and bring it
//     back on the same port, etcd and certificates (etcd keeps running).
//
// There is no scheduler, controller-manager or kubelet: create pods with
// spec.nodeName set and patch their status yourself. The ServiceAccount
// admission plugin is off, so pods need no service account.
//
// The first build of the binaries takes tens of minutes on 2 cores; CI runs
// hack/build-control-plane.sh before the tests, after which this helper's
// build step takes well under a second.

import { execFile, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** A failed build, start, stop or kubectl call; `cause` has the script's error and output. */
export class ControlPlaneError extends Error {
  override readonly name = "ControlPlaneError";
}

/** A running control plane. Call `stop()` in `afterAll`/`finally`. */
export interface ControlPlane {
  /** Admin kubeconfig (token auth, group system:masters). */
  readonly kubeconfigPath: string;
  /** API server URL, e.g. https://127.0.0.1:41234. */
  readonly server: string;
  /** Bearer token of the admin user. */
  readonly token: string;
  /** PEM CA that signed the API server's serving certificate. */
  readonly caFile: string;
  /** Directory holding every file and log of this control plane; deleted by `stop()`. */
  readonly dir: string;
  /** Directory with the kube-apiserver, etcd and kubectl binaries. */
  readonly binDir: string;
  /** Run kubectl against this control plane; resolves to stdout, rejects with ControlPlaneError. */
  kubectl(...args: string[]): Promise<string>;
  /** Kill etcd and kube-apiserver and delete `dir`. Safe to call twice. */
  stop(): Promise<void>;
  /** Stop the kube-apiserver only (etcd keeps the data); resolves once it has exited. */
  stopApiServer(): Promise<void>;
  /** Start the kube-apiserver again with the same command line; resolves once /readyz is ok. */
  startApiServer(): Promise<void>;
}

/** Options of {@link startControlPlane}. */
export interface StartControlPlaneOptions {
  /** Skip hack/build-control-plane.sh (the binaries must already be in `binDir`). */
  readonly skipBuild?: boolean;
  /** Time allowed for the build step; the default suits a warm cache only. */
  readonly buildTimeoutMs?: number;
  /** Time allowed for the start script (readyz included). */
  readonly startTimeoutMs?: number;
}

/** Build (if needed) and start a control plane in a fresh temp directory. */
export async function startControlPlane(opts: StartControlPlaneOptions = {}): Promise<ControlPlane> {
  if (!opts.skipBuild) {
    await script("build-control-plane.sh", [], opts.buildTimeoutMs ?? 120_000, "build control plane");
  }
  const dir = await mkdtemp(join(tmpdir(), "twill-cp-"));
  const stop = async (): Promise<void> => {
    await script("stop-control-plane.sh", [dir], 30_000, "stop control plane");
  };
  try {
    // A port found free can still be taken before etcd binds it: retry then.
    for (let attempt = 1; ; attempt++) {
      try {
        await script("start-control-plane.sh", [dir], opts.startTimeoutMs ?? 90_000, "start control plane");
        break;
      } catch (e: unknown) {
        if (attempt >= 3 || !describe(e).includes("address already in use")) throw e;
        await stop().catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
      }
    }
    const env = parseEnv(await readFile(join(dir, "env"), "utf8"));
    const kubeconfigPath = join(dir, "kubeconfig");
    const binDir = need(env, "BIN_DIR");
    return {
      kubeconfigPath,
      server: need(env, "SERVER"),
      token: need(env, "TOKEN"),
      caFile: need(env, "CA_FILE"),
      dir,
      binDir,
      kubectl: async (...args: string[]): Promise<string> => {
        try {
          const { stdout } = await run(join(binDir, "kubectl"), [`--kubeconfig=${kubeconfigPath}`, ...args], {
            timeout: 60_000,
            maxBuffer: 64 << 20,
          });
          return stdout;
        } catch (e: unknown) {
          throw new ControlPlaneError(`run kubectl ${args.join(" ")}: ${describe(e)}`, { cause: e });
        }
      },
      stop,
      ...apiServerControl(dir, need(env, "SERVER"), need(env, "TOKEN"), need(env, "CA_FILE")),
    };
  } catch (e: unknown) {
    // Clean up whatever the start script got running before it failed.
    await stop().catch(() => undefined);
    throw e;
  }
}

/**
 * Stop and restart the apiserver of `dir`. The command line is read from
 * /proc of the running process (start-control-plane.sh owns the flags), and
 * the new pid is written back to DIR/pids so stop-control-plane.sh still
 * finds it.
 */
function apiServerControl(dir: string, server: string, token: string, caFile: string): Pick<ControlPlane, "stopApiServer" | "startApiServer"> {
  let argv: string[] | null = null;
  const pidsFile = join(dir, "pids");
  const currentPid = async (): Promise<number | null> => {
    const m = /^APISERVER_PID=(\d+)$/m.exec(await readFile(pidsFile, "utf8"));
    return m?.[1] ? Number(m[1]) : null;
  };
  const alive = async (pid: number): Promise<boolean> => {
    try {
      return (await readFile(`/proc/${pid}/cmdline`, "utf8")).includes(`${dir}/`);
    } catch {
      return false;
    }
  };
  return {
    stopApiServer: async (): Promise<void> => {
      const pid = await currentPid();
      if (pid === null || !(await alive(pid))) return;
      argv = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").filter((a) => a !== "");
      process.kill(pid, "SIGTERM");
      // Short grace: open watches hold a graceful shutdown for up to a minute, and
      // a crash is the case tests care about anyway.
      for (let i = 0; i < 20 && (await alive(pid)); i++) await sleep(100);
      if (await alive(pid)) process.kill(pid, "SIGKILL");
      for (let i = 0; i < 100 && (await alive(pid)); i++) await sleep(100);
    },
    startApiServer: async (): Promise<void> => {
      if (argv === null) throw new ControlPlaneError("start kube-apiserver: stopApiServer() was not called first");
      const [cmd, ...args] = argv;
      if (cmd === undefined) throw new ControlPlaneError("start kube-apiserver: empty command line");
      const log = openSync(join(dir, "kube-apiserver.log"), "a");
      const child = spawn(cmd, args, { detached: true, stdio: ["ignore", log, log] });
      closeSync(log);
      child.unref();
      const pid = child.pid;
      if (pid === undefined) throw new ControlPlaneError("start kube-apiserver: spawn failed");
      const pids = (await readFile(pidsFile, "utf8")).replace(/^APISERVER_PID=\d+$/m, `APISERVER_PID=${pid}`);
      await writeFile(pidsFile, pids);
      for (let i = 0; i < 600; i++) {
        if ((await readyz(server, token, caFile)) === "ok") return;
        if (!(await alive(pid))) break;
        await sleep(100);
      }
      throw new ControlPlaneError(`start kube-apiserver: not ready after restart (see ${join(dir, "kube-apiserver.log")})`);
    },
  };
}

async function readyz(server: string, token: string, caFile: string): Promise<string> {
  try {
    const { stdout } = await run("curl", ["-sS", "--max-time", "2", "--cacert", caFile, "-H", `Authorization: Bearer ${token}`, `${server}/readyz`]);
    return stdout;
  } catch {
    return "";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function script(name: string, args: string[], timeoutMs: number, what: string): Promise<string> {
  try {
    const { stdout } = await run("bash", [join(repoRoot, "hack", name), ...args], {
      timeout: timeoutMs,
      killSignal: "SIGKILL",
      maxBuffer: 16 << 20,
    });
    return stdout;
  } catch (e: unknown) {
    throw new ControlPlaneError(`${what}: ${describe(e)}`, { cause: e });
  }
}

function parseEnv(text: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) env.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return env;
}

function need(env: Map<string, string>, key: string): string {
  const value = env.get(key);
  if (value === undefined || value === "") {
    throw new ControlPlaneError(`read control plane env: ${key} missing`);
  }
  return value;
}

/** The message of an execFile failure, with the tail of its stderr (where the scripts log). */
function describe(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const stderr = (e as { stderr?: unknown }).stderr;
  const tail = typeof stderr === "string" ? stderr.trim().split("\n").slice(-25).join("\n") : "";
  const first = e.message.split("\n")[0] ?? "";
  return tail === "" ? first : `${first}\n${tail}`;
}
