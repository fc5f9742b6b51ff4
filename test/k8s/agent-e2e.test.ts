// SPDX-License-Identifier: Apache-2.0
// twill-agent in Kubernetes mode against a real kube-apiserver: the agent
// (npx tsx agent/main.ts) watches the cluster and the twill CLI, over the
// agent's socket, shows identities for the label sets of the cluster's pods.
// Needs root (the agent loads BPF into its own temp bpf root).
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { apply, createPod, waitFor } from "./k8s-fixture.js";

const run = promisify(execFile);
const NODE = "twt-node-e2e";
let cp: ControlPlane;
let dir: string;
let bpfRoot: string;
let agent: ChildProcess | null = null;
let agentLog = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "twt-k8s-e2e-"));
  bpfRoot = `/sys/fs/bpf/twill-test-${randomBytes(4).toString("hex")}`;
  cp = await startControlPlane();
  // The install manifest brings the TwillIdentity CRD the agent allocates identities through.
  await cp.kubectl("create", "-f", resolve("deploy/twill.yaml"));
  await apply(cp, JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: NODE }, spec: { podCIDRs: ["10.244.11.0/24"] } }), dir);
  await createPod(cp, dir, "default", "web", NODE, { app: "web" }, "10.244.11.5");
  await createPod(cp, dir, "default", "db", "twt-node-other", { app: "db" }, "10.244.12.5");
  // node itself (not npx/tsx wrappers) so that killing this pid stops the agent.
  agent = spawn(process.execPath, ["--import", "tsx", "agent/main.ts", "--kubeconfig", cp.kubeconfigPath, "--node-name", NODE, "--bpf-root", bpfRoot,
    "--state-dir", join(dir, "state"), "--socket", join(dir, "agent.sock"), "--pod-cidr", "10.244.11.0/24"], { cwd: resolve("."), stdio: ["ignore", "pipe", "pipe"] });
  agent.stdout?.on("data", (d: Buffer) => { agentLog += d.toString(); });
  agent.stderr?.on("data", (d: Buffer) => { agentLog += d.toString(); });
});

afterAll(async () => {
  if (agent && agent.exitCode === null) {
    agent.kill("SIGTERM");
    await new Promise((r) => { agent?.once("exit", r); setTimeout(r, 10_000); });
    if (agent.exitCode === null) agent.kill("SIGKILL");
  }
  await run("rm", ["-rf", bpfRoot]).catch(() => undefined);
  await cp?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function twill(...args: string[]): Promise<string> {
  const { stdout } = await run("npx", ["tsx", "cli/main.ts", "--socket", join(dir, "agent.sock"), ...args], { cwd: resolve("."), timeout: 30_000 });
  return stdout;
}

describe("twill-agent in kubernetes mode", () => {
  it("shows identities for the label sets of local and remote pods", async () => {
    const out = await waitFor("identities of both pods in `twill identity list`", async () => {
      if (agent?.exitCode !== null) throw new Error(`agent exited (${String(agent?.exitCode)}):\n${agentLog.slice(-3000)}`);
      const text = await twill("identity", "list").catch(() => "");
      return text.includes("app=web") && text.includes("app=db") ? text : undefined;
    }, 60_000);
    expect(out).toContain("io.kubernetes.pod.namespace=default");
  });
});
