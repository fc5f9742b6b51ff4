// SPDX-License-Identifier: Apache-2.0
// The CLI against the real gRPC server (agent/api/server.ts) with the fake
// backend on a temporary socket: what a user sees and the exit codes
// scripts rely on (0 ok, 1 agent error, 2 usage, 3 unreachable, 4 denied).
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer } from "../../agent/api/server.js";
import { run } from "../../cli/main.js";
import { stripAnsi, type CliIo } from "../../cli/output.js";
import { FakeBackend, makeFlow } from "./api-fake-backend.js";

let dir: string;
let socketPath: string;
let server: ApiServer;
const backend = new FakeBackend();

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "twill-cli-"));
  socketPath = path.join(dir, "agent.sock");
  server = await startApiServer(backend, { socketPath, tcpAddress: null });
});

afterAll(async () => {
  await server.stop(100);
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function twill(args: string[], opts: { tty?: boolean; signal?: AbortSignal; onStdout?: (s: string) => void } = {}): Promise<Result> {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: { write: (s: string) => { stdout += s; opts.onStdout?.(stdout); return true; } },
    stderr: { write: (s: string) => { stderr += s; return true; } },
    isTty: opts.tty ?? false,
    env: {},
    signal: opts.signal,
  };
  const code = await run(["--socket", socketPath, ...args], io);
  return { code, stdout, stderr };
}

describe("exit codes", () => {
  it.each([
    { name: "status ok", args: ["status"], code: 0, out: /Health:\s+OK/ },
    { name: "unknown identity is an agent error", args: ["identity", "get", "999"], code: 1, err: "twill: identity.get: find identity: 999 not found" },
    { name: "unknown map is an agent error", args: ["map", "dump", "twill_nope"], code: 1, err: "datapath.dumpMap: find map: twill_nope not found" },
    { name: "unknown command is a usage error", args: ["frobnicate"], code: 2, err: "unknown command 'frobnicate'" },
    { name: "bad output format is a usage error", args: ["-o", "xml", "status"], code: 2, err: "Allowed choices are table, json, yaml" },
    { name: "bad trace peer is a usage error", args: ["policy", "trace", "--from", "nobody", "--to", "default/web", "--port", "80"], code: 2, err: '--from: "nobody" is neither NAMESPACE/POD nor an IP address' },
    { name: "missing --port is a usage error", args: ["policy", "trace", "--from", "default/client", "--to", "default/web"], code: 2, err: "--port: required (1-65535) for TCP" },
    { name: "agent-side validation is a usage error", args: ["identity", "get", "0"], code: 2, err: "identity.get: id: must be non-zero" },
    { name: "trace allowed", args: ["policy", "trace", "--from", "default/client", "--to", "default/web", "--port", "80"], code: 0, out: /Verdict:\s+ALLOWED/ },
    { name: "trace denied exits 4", args: ["policy", "trace", "--from", "198.18.0.1", "--to", "default/web", "--port", "80"], code: 4, out: /Verdict:\s+DENIED/ },
    { name: "trace of an unknown pod is an agent error", args: ["policy", "trace", "--from", "default/client", "--to", "default/ghost", "--port", "80"], code: 1, err: "find pod: default/ghost not found" },
  ])("$name", async ({ args, code, out, err }) => {
    const r = await twill(args);
    expect(r.code).toBe(code);
    if (out !== undefined) expect(r.stdout).toMatch(out);
    if (err !== undefined) expect(r.stderr).toContain(err);
  });

  it("an unavailable agent component is an agent error, not 'unreachable'", async () => {
    backend.unavailable = true;
    try {
      const r = await twill(["status"]);
      expect(r).toMatchObject({ code: 1, stderr: "twill: agent.status: read status: datapath not loaded yet\n" });
    } finally {
      backend.unavailable = false;
    }
  });

  it("no agent: exit 3 naming the socket tried", async () => {
    const missing = path.join(dir, "nothing-here.sock");
    const r = await twill(["--socket", missing, "endpoint", "list"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(`twill: cannot reach twill-agent at ${missing}: connect ENOENT; is the agent running?\n`);
  });

  it("no agent, as a real process: exit 3", async () => {
    const missing = path.join(dir, "nothing-here.sock");
    const err = await promisify(execFile)("npx", ["tsx", "cli/main.ts", "--socket", missing, "status"], {
      cwd: path.resolve(import.meta.dirname, "../.."),
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 3, stderr: expect.stringContaining(`cannot reach twill-agent at ${missing}: connect ENOENT`) });
  }, 30_000);
});

describe("output", () => {
  it("endpoint list as a table", async () => {
    const r = await twill(["endpoint", "list"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      "CONTAINER      POD           IPV4         IPV6             IDENTITY   HOST-IF         STATE\n" +
        "c0ffee000000   default/web   10.244.0.6   fd00:10:244::6   257        tw1a2b3c4d5e6   ready\n",
    );
  });

  it.each([
    { name: "json", format: "json", parse: (s: string): unknown => JSON.parse(s) },
    { name: "yaml", format: "yaml", parse: (s: string): unknown => parseYaml(s) },
  ])("endpoint get as $name keeps the API's field names", async ({ format, parse }) => {
    const r = await twill(["-o", format, "endpoint", "get", "default/web"]);
    expect(r.code).toBe(0);
    expect(parse(r.stdout)).toMatchObject({
      containerId: expect.stringMatching(/^c0ffee/),
      pod: { namespace: "default", name: "web" },
      ipv4: { address: "10.244.0.6", prefixLength: 32, gateway: "169.254.1.1" },
    });
  });

  it("identity list sorted by id with labels", async () => {
    const r = await twill(["identity", "list"]);
    expect(r.stdout.split("\n")[1]).toMatch(/^2\s+reserved:world=\s+yes\s+0$/);
    expect(r.stdout).toContain("app=web, k8s:io.kubernetes.pod.namespace=default");
  });

  it("map dump as a table and as JSON objects keyed by column", async () => {
    const t = await twill(["map", "dump", "twill_ipcache"]);
    expect(t.stdout).toBe("PREFIX          IDENTITY   FLAGS\n10.244.0.6/32   257        local\n0.0.0.0/0       2          -\n");
    const j = await twill(["-o", "json", "map", "dump", "twill_ipcache"]);
    expect(JSON.parse(j.stdout)).toEqual({
      name: "twill_ipcache",
      entries: [
        { prefix: "10.244.0.6/32", identity: "257", flags: "local" },
        { prefix: "0.0.0.0/0", identity: "2", flags: "" },
      ],
    });
  });

  it("policy list and get", async () => {
    const l = await twill(["policy", "list"]);
    expect(l.stdout).toContain("default     web-allow-client   app=web        INGRESS   1       1");
    const g = await twill(["policy", "get", "default/web-allow-client"]);
    expect(g.stdout).toMatch(/7\s+INGRESS\s+app=client\s+TCP\/80/);
  });

  it("trace shows the deciding rule and per-direction steps", async () => {
    const r = await twill(["policy", "trace", "--from", "default/client", "--to", "default/web", "--protocol", "tcp", "--port", "80"]);
    expect(r.stdout).toContain("Decided by:   default/web-allow-client rule 0 (ref 7)");
    expect(r.stdout).toMatch(/INGRESS\s+default\/web\s+yes\s+ALLOWED/);
  });

  it("policy validate: valid (0) and invalid (1) manifests", async () => {
    const good = path.join(dir, "good.yaml");
    const bad = path.join(dir, "bad.yaml");
    fs.writeFileSync(good, "kind: NetworkPolicy\n");
    fs.writeFileSync(bad, "kind: NetworkPolicy\nport: http-typo\n");
    expect(await twill(["policy", "validate", good])).toMatchObject({ code: 0, stdout: "valid: 1 policy (default/web-allow-client)\n" });
    expect(await twill(["policy", "validate", bad])).toMatchObject({
      code: 1,
      stdout: `error: ${bad}: document 0: spec.ingress[0].ports[0].port: named port "http-typo" is not defined\n`,
    });
    expect(await twill(["policy", "validate", path.join(dir, "missing.yaml")])).toMatchObject({ code: 2 });
  });

  it("metrics prints the Prometheus text", async () => {
    const r = await twill(["metrics"]);
    expect(r.stdout).toBe(backend.metricsText);
  });

  it("status colours health only on a TTY", async () => {
    const tty = await twill(["status"], { tty: true });
    expect(tty.stdout).toContain("\u001b[32mOK\u001b[0m");
    expect(stripAnsi(tty.stdout)).toContain("Events lost:   5");
    expect((await twill(["status"])).stdout).not.toContain("\u001b[");
  });
});

describe("observe", () => {
  it("prints the last flows matching the filters and exits", async () => {
    backend.flows.push(makeFlow({ lengthBytes: 1, dst: { port: 443 } }));
    backend.flows.push(makeFlow({ lengthBytes: 2, verdict: "dropped", dropReason: "POLICY", type: "drop" }));
    const r = await twill(["observe", "--verdict", "dropped", "--last", "5"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      "2026-01-01T00:00:00.123Z  default/client:40000 (id 256) -> default/web:80 (id 257)  TCP  EGRESS  DROPPED (POLICY)\n",
    );
    const j = await twill(["-o", "json", "observe", "--port", "443"]);
    const lines = j.stdout.trim().split("\n").map((l) => JSON.parse(l) as { flow: { destination: { port: number } } });
    expect(lines).toHaveLength(1);
    expect(lines[0]?.flow.destination.port).toBe(443);
  });

  it("--follow streams new flows until interrupted, then exits 0", async () => {
    const abort = new AbortController();
    let seen = 0;
    const pending = twill(["observe", "--follow", "--protocol", "udp"], {
      signal: abort.signal,
      onStdout: (all) => {
        seen = all.split("\n").length - 1;
        if (seen >= 1) abort.abort();
      },
    });
    await expect.poll(() => backend.flows.subscriberCount).toBe(1);
    backend.flows.push(makeFlow({ protocol: 6 })); // filtered out
    backend.flows.push(makeFlow({ protocol: 17, dst: { port: 53 } }));
    const r = await pending;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("-> default/web:53 (id 257)  UDP");
    expect(r.stdout).not.toContain("TCP");
    await expect.poll(() => backend.flows.subscriberCount).toBe(0);
  });

  it("rejects an unknown verdict as a usage error", async () => {
    const r = await twill(["observe", "--verdict", "maybe"]);
    expect(r).toMatchObject({ code: 2, stderr: 'twill: --verdict: "maybe" is not FORWARDED or DROPPED\n' });
  });
});
