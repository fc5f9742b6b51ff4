// SPDX-License-Identifier: Apache-2.0
// `twill policy list|get|validate|trace`. `trace` exits 4 when the flow
// would be denied, so scripts can use it as a check.
// API: registerPolicyCommands(program, ctx), parseTracePeer(), renderTrace().
import * as fs from "node:fs";
import * as net from "node:net";
import type { Command } from "commander";
import type { DecidingRule__Output } from "../../agent/generated/proto/twill/v1/DecidingRule.js";
import type { ListPoliciesResponse__Output } from "../../agent/generated/proto/twill/v1/ListPoliciesResponse.js";
import type { Policy__Output } from "../../agent/generated/proto/twill/v1/Policy.js";
import type { TracePeer } from "../../agent/generated/proto/twill/v1/TracePeer.js";
import type { TracePolicyResponse__Output } from "../../agent/generated/proto/twill/v1/TracePolicyResponse.js";
import type { ValidatePolicyResponse__Output } from "../../agent/generated/proto/twill/v1/ValidatePolicyResponse.js";
import { CliError, EXIT } from "../client.js";
import { parseNonNegativeInt, parseProtocol, type CliContext } from "../context.js";
import { enumLabel, formatKeyValues, formatTable, printResult, type Colors } from "../output.js";

/** --port of trace: 0-65535 here (0 = unset); whether 0 is allowed depends on --protocol. */
function parsePortOrZero(v: string): number {
  const n = parseNonNegativeInt("--port")(v);
  if (n > 65535) throw new CliError(`--port: ${v} is not a port (1-65535)`, EXIT.USAGE);
  return n;
}

/** "NS/POD" -> pod peer, an IP -> ip peer; anything else is a usage error. */
export function parseTracePeer(flag: string, v: string): TracePeer {
  if (net.isIP(v) !== 0) return { ip: v };
  const parts = v.split("/");
  if (parts.length === 2 && parts[0] !== "" && parts[1] !== "") return { pod: { namespace: parts[0], name: parts[1] } };
  throw new CliError(`${flag}: ${JSON.stringify(v)} is neither NAMESPACE/POD nor an IP address`, EXIT.USAGE);
}

function ruleText(r: DecidingRule__Output | null): string {
  if (r === null) return "";
  return `${r.policyNamespace}/${r.policyName} rule ${r.ruleIndex} (ref ${r.ruleRef})`;
}

function verdictText(v: string, colors: Colors): string {
  const label = enumLabel(v, "TRACE_VERDICT_");
  return label === "ALLOWED" ? colors.green(label) : colors.red(label);
}

function peerText(p: TracePeer): string {
  return p.pod != null ? `${p.pod.namespace ?? ""}/${p.pod.name ?? ""}` : (p.ip ?? "");
}

/** Human form of a trace result. */
export function renderTrace(
  t: TracePolicyResponse__Output,
  q: { readonly from: TracePeer; readonly to: TracePeer; readonly protocol: string; readonly port: number },
  colors: Colors,
): string {
  const proto = enumLabel(q.protocol, "PROTOCOL_");
  const head = formatKeyValues([
    ["Verdict", verdictText(t.verdict, colors)],
    ["From", `${peerText(q.from)} (identity ${t.fromIdentity})`],
    ["To", `${peerText(q.to)} (identity ${t.toIdentity})`],
    ["Flow", q.port === 0 ? proto : `${proto}/${q.port}`],
    ["Decided by", t.verdict === "TRACE_VERDICT_ALLOWED" ? ruleText(t.rule) || "not isolated" : "no rule allows it"],
  ]);
  if (t.steps.length === 0) return head;
  const rows = t.steps.map((s) => [
    enumLabel(s.direction, "DIRECTION_"),
    s.endpoint,
    s.isolated ? "yes" : "no",
    verdictText(s.verdict, colors),
    ruleText(s.rule),
    s.reason,
  ]);
  return head + "\n" + formatTable(["DIRECTION", "ENDPOINT", "ISOLATED", "VERDICT", "RULE", "REASON"], rows);
}

/** Table of policies. */
export function renderPolicyList(list: readonly Policy__Output[]): string {
  const rows = list.map((p) => [
    p.namespace,
    p.name,
    p.podSelector === "" ? "(all pods)" : p.podSelector,
    p.policyTypes.map((t) => enumLabel(t, "DIRECTION_")).join(","),
    String(p.rules.length),
    String(p.selectedEndpoints.length),
  ]);
  return formatTable(["NAMESPACE", "NAME", "POD-SELECTOR", "TYPES", "RULES", "ENDPOINTS"], rows);
}

function renderPolicy(p: Policy__Output): string {
  const head = formatKeyValues([
    ["Policy", `${p.namespace}/${p.name}`],
    ["Pod selector", p.podSelector === "" ? "(all pods)" : p.podSelector],
    ["Types", p.policyTypes.map((t) => enumLabel(t, "DIRECTION_")).join(", ")],
    ["Endpoints", p.selectedEndpoints.join(", ")],
    ["Revision", p.revision],
  ]);
  if (p.rules.length === 0) return head;
  const rows = p.rules.map((r) => [String(r.ruleRef), enumLabel(r.direction, "DIRECTION_"), r.peers, r.ports]);
  return head + "\n" + formatTable(["REF", "DIRECTION", "PEERS", "PORTS"], rows);
}

async function readManifest(ctx: CliContext, file: string): Promise<string> {
  if (file === "-") {
    if (ctx.io.readStdin === undefined) throw new CliError("policy validate: cannot read standard input", EXIT.USAGE);
    return ctx.io.readStdin();
  }
  try {
    return await fs.promises.readFile(file, "utf8");
  } catch (e: unknown) {
    const code = e instanceof Error && "code" in e ? String(e.code) : String(e);
    throw new CliError(`policy validate: read ${file}: ${code}`, EXIT.USAGE);
  }
}

/** Register policy list|get|validate|trace. */
export function registerPolicyCommands(program: Command, ctx: CliContext): void {
  const policy = program.command("policy").description("network policies");
  policy
    .command("list")
    .description("list the policies the agent enforces")
    .option("-n, --namespace <ns>", "only this namespace", "")
    .action(async (opts: { namespace: string }, cmd: Command) => {
      const { conn, format, io } = ctx.session(cmd);
      const r = await conn.call<ListPoliciesResponse__Output>((cb) =>
        conn.policies.List({ namespace: opts.namespace }, conn.options(), cb),
      );
      printResult(io, format, r.policies, () => renderPolicyList(r.policies));
    });
  policy
    .command("get")
    .description("show one policy and its compiled rules")
    .argument("<name>", "NAME or NAMESPACE/NAME")
    .option("-n, --namespace <ns>", "namespace (default: default)", "default")
    .action(async (name: string, opts: { namespace: string }, cmd: Command) => {
      const { conn, format, io } = ctx.session(cmd);
      const [namespace, policyName] = name.includes("/") ? name.split("/", 2) : [opts.namespace, name];
      const p = await conn.call<Policy__Output>((cb) =>
        conn.policies.Get({ namespace, name: policyName }, conn.options(), cb),
      );
      printResult(io, format, p, () => renderPolicy(p));
    });
  policy
    .command("validate")
    .description("check a policy manifest without applying it (exit 1 if invalid)")
    .argument("<file>", "YAML file, or - for standard input")
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const { conn, format, io, colors } = ctx.session(cmd);
      const manifestYaml = await readManifest(ctx, file);
      const v = await conn.call<ValidatePolicyResponse__Output>((cb) =>
        conn.policies.Validate({ manifestYaml }, conn.options(), cb),
      );
      printResult(io, format, v, () => {
        if (v.valid) {
          const names = v.policies.map((p) => `${p.namespace}/${p.name}`).join(", ");
          return `${colors.green("valid")}: ${v.policies.length} ${v.policies.length === 1 ? "policy" : "policies"}${names === "" ? "" : ` (${names})`}\n`;
        }
        return v.errors
          .map((e) => `${colors.red("error")}: ${file}: document ${e.document}${e.path === "" ? "" : `: ${e.path}`}: ${e.message}`)
          .join("\n") + "\n";
      });
      if (!v.valid) ctx.exitCode = EXIT.AGENT_ERROR;
    });
  policy
    .command("trace")
    .description("would this flow be allowed? (exit 4 if denied)")
    .requiredOption("--from <peer>", "source: NAMESPACE/POD or IP")
    .requiredOption("--to <peer>", "destination: NAMESPACE/POD or IP")
    .option("--protocol <proto>", "TCP, UDP, SCTP, ICMP or ICMPV6", parseProtocol, "PROTOCOL_TCP")
    .option("--port <n>", "destination port (not for ICMP)", parsePortOrZero, 0)
    .action(async (opts: { from: string; to: string; protocol: ReturnType<typeof parseProtocol>; port: number }, cmd: Command) => {
      const from = parseTracePeer("--from", opts.from);
      const to = parseTracePeer("--to", opts.to);
      const icmp = opts.protocol === "PROTOCOL_ICMP" || opts.protocol === "PROTOCOL_ICMPV6";
      if (!icmp && (opts.port < 1 || opts.port > 65535)) {
        throw new CliError(`--port: required (1-65535) for ${enumLabel(opts.protocol, "PROTOCOL_")}`, EXIT.USAGE);
      }
      if (icmp && opts.port !== 0) throw new CliError("--port: ICMP has no ports", EXIT.USAGE);
      const { conn, format, io, colors } = ctx.session(cmd);
      const q = { from, to, protocol: opts.protocol, port: opts.port };
      const t = await conn.call<TracePolicyResponse__Output>((cb) => conn.policies.Trace(q, conn.options(), cb));
      printResult(io, format, t, () => renderTrace(t, q, colors));
      if (t.verdict !== "TRACE_VERDICT_ALLOWED") ctx.exitCode = EXIT.DENIED;
    });
}
