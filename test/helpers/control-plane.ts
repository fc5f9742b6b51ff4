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
//
// There is no scheduler, controller-manager or kubelet: create pods with
// spec.nodeName set and patch their status yourself. The ServiceAccount
// admission plugin is off, so pods need no service account.
//
// The first build of the binaries takes tens of minutes on 2 cores; CI runs
// hack/build-control-plane.sh before the tests, after which this helper's
// build step takes well under a second.

import { execFile } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
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
    await script("start-control-plane.sh", [dir], opts.startTimeoutMs ?? 90_000, "start control plane");
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
    };
  } catch (e: unknown) {
    // Clean up whatever the start script got running before it failed.
    await stop().catch(() => undefined);
    throw e;
  }
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
