// SPDX-License-Identifier: Apache-2.0
// Agent configuration: command-line flags -> one frozen, validated Config.
// Everything else in the agent receives a Config and never reads argv/env.
import { Command, Option } from "commander";
import { parseCidr, type Cidr } from "../ipam/cidr.js";

/** Log levels accepted by --log-level (pino's names). */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Validated agent settings. */
export interface Config {
  readonly bpfRoot: string;
  readonly stateDir: string;
  readonly socketPath: string;
  readonly podCidrs: readonly Cidr[];
  /** False when --pod-cidr was not given (Kubernetes mode then uses the Node's spec.podCIDRs). */
  readonly podCidrsExplicit: boolean;
  /** Standalone mode: directory of Kubernetes manifests; null in Kubernetes mode. */
  readonly manifestsDir: string | null;
  readonly kubeconfig: string | null;
  readonly nodeName: string;
  readonly logLevel: LogLevel;
  /** Prometheus listen address ("host:port"); null = off. */
  readonly metricsAddr: string | null;
  /** TCP address for the gRPC API in addition to the unix socket; null = off. */
  readonly apiTcpAddr: string | null;
  readonly cleanup: boolean;
  readonly installCni: boolean;
  readonly cniBinDir: string;
  readonly cniConfDir: string;
  /** Force the clsact fallback even where tcx exists (testing, old kernels). */
  readonly forceClsact: boolean;
}

/** A flag value that cannot be used; the message names the flag. */
export class ConfigError extends Error {
  constructor(readonly flag: string, detail: string) {
    super(`invalid ${flag}: ${detail}`);
    this.name = "ConfigError";
  }
}

/** --help was printed; the caller exits 0. */
export class HelpShown extends Error {
  constructor() {
    super("help shown");
    this.name = "HelpShown";
  }
}

const DEFAULT_POD_CIDRS = ["10.244.0.0/24", "fd00:10:244::/64"];

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Parse argv (without node and script) into a Config; throws ConfigError. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Config {
  const cmd = new Command("twill-agent")
    .description("Twill eBPF datapath agent")
    .option("--bpf-root <dir>", "bpffs directory for pinned maps, programs and links", "/sys/fs/bpf/twill")
    .option("--state-dir <dir>", "agent state (IPAM, identities, compile cache)", "/var/run/twill")
    .option("--socket <path>", "gRPC API unix socket (default: <state-dir>/agent.sock)")
    .option("--pod-cidr <cidr>", "pod CIDR of this node, repeatable (v4 and v6)", collect, [] as string[])
    .option("--manifests <dir>", "standalone mode: directory of Kubernetes manifests to enforce")
    .option("--kubeconfig <path>", "Kubernetes mode: kubeconfig (in-cluster config if absent)")
    .option("--node-name <name>", "this node's name", env["NODE_NAME"] ?? "")
    .addOption(new Option("--log-level <level>", "log level").choices(LOG_LEVELS).default("info"))
    .option("--metrics-addr <host:port>", "serve Prometheus metrics here (off unless set)")
    .option("--api-tcp <host:port>", "also serve the gRPC API on TCP (off unless set)")
    .option("--cleanup", "remove everything the agent pinned and attached, then exit", false)
    .option("--install-cni", "install twill-cni and its conflist, then exit", false)
    .option("--cni-bin-dir <dir>", "where --install-cni puts the plugin", "/opt/cni/bin")
    .option("--cni-conf-dir <dir>", "where --install-cni writes 05-twill.conflist", "/etc/cni/net.d")
    .option("--force-clsact", "attach with clsact/cls_bpf even if tcx is available", false)
    .exitOverride()
    .configureOutput({ writeErr: () => undefined });
  try {
    cmd.parse([...argv], { from: "user" });
  } catch (e: unknown) {
    const code = (e as { code?: unknown }).code;
    if (code === "commander.helpDisplayed" || code === "commander.help") throw new HelpShown();
    const msg = e instanceof Error ? e.message : String(e);
    throw new ConfigError("arguments", msg.replace(/^error: /, ""));
  }
  const o = cmd.opts<{
    bpfRoot: string; stateDir: string; socket?: string; podCidr: string[]; manifests?: string;
    kubeconfig?: string; nodeName: string; logLevel: LogLevel; metricsAddr?: string; apiTcp?: string;
    cleanup: boolean; installCni: boolean; cniBinDir: string; cniConfDir: string; forceClsact: boolean;
  }>();
  const rawCidrs = o.podCidr.length > 0 ? o.podCidr : DEFAULT_POD_CIDRS;
  const podCidrs = rawCidrs.map((c) => {
    try {
      return parseCidr(c);
    } catch (e: unknown) {
      throw new ConfigError("--pod-cidr", e instanceof Error ? e.message : String(e));
    }
  });
  if (o.metricsAddr !== undefined) checkHostPort("--metrics-addr", o.metricsAddr);
  if (o.apiTcp !== undefined) checkHostPort("--api-tcp", o.apiTcp);
  return Object.freeze({
    bpfRoot: o.bpfRoot,
    stateDir: o.stateDir,
    socketPath: o.socket ?? `${o.stateDir}/agent.sock`,
    podCidrs: Object.freeze(podCidrs),
    podCidrsExplicit: o.podCidr.length > 0,
    manifestsDir: o.manifests ?? null,
    kubeconfig: o.kubeconfig ?? null,
    nodeName: o.nodeName || (env["HOSTNAME"] ?? "localhost"),
    logLevel: o.logLevel,
    metricsAddr: o.metricsAddr ?? null,
    apiTcpAddr: o.apiTcp ?? null,
    cleanup: o.cleanup,
    installCni: o.installCni,
    cniBinDir: o.cniBinDir,
    cniConfDir: o.cniConfDir,
    forceClsact: o.forceClsact,
  });
}

function checkHostPort(flag: string, value: string): void {
  const m = /^(.*):(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port > 0 && port < 65536)) throw new ConfigError(flag, `"${value}" is not host:port`);
}
