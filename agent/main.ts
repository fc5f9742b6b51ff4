#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// twill-agent entry point: wiring and lifecycle only.
import { parseConfig, ConfigError, HelpShown } from "./config/config.js";
import { createLogger } from "./log.js";
import { Daemon } from "./daemon.js";
import { startStandaloneSource } from "./k8s/standalone-source.js";
import type { ClusterSnapshot, ClusterSource } from "./k8s/cluster-source.js";
import type { KubeWiring } from "./k8s/kube-wiring.js";
import { parseCidr } from "./ipam/cidr.js";
import { startApiServer } from "./api/server.js";
import { DaemonBackend } from "./introspect/backend.js";
import { createMetrics, serveMetrics } from "./introspect/metrics.js";
import { installCni } from "./install-cni.js";
import { attachedIfindexes, detachEndpoint } from "./loader/attach.js";
import { removeDatapathPins } from "./loader/datapath-loader.js";
import { drainDeletionQueue, DEFAULT_DELETION_QUEUE_DIR } from "../cni/deletion-queue.js";

async function main(): Promise<number> {
  let config;
  try {
    config = parseConfig(process.argv.slice(2));
  } catch (e: unknown) {
    if (e instanceof HelpShown) return 0;
    if (e instanceof ConfigError) {
      process.stderr.write(`twill-agent: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const log = createLogger(config.logLevel);

  if (config.cleanup) {
    const ifs = attachedIfindexes(config.bpfRoot);
    for (const i of ifs) detachEndpoint(config.bpfRoot, i);
    removeDatapathPins(config.bpfRoot);
    process.stdout.write(`removed ${ifs.length} attachments and the pins under ${config.bpfRoot}\n`);
    return 0;
  }
  if (config.installCni) {
    const r = installCni(config.cniBinDir, config.cniConfDir, config.socketPath);
    process.stdout.write(`installed ${r.plugin} and ${r.conflist}\n`);
    return 0;
  }

  // The source starts first: in Kubernetes mode the Node's podCIDRs decide IPAM.
  let daemon: Daemon | null = null;
  let pending: ClusterSnapshot | null = null;
  const onSnapshot = (s: ClusterSnapshot): void => {
    if (daemon) daemon.setSnapshot(s);
    else pending = s;
  };
  let source: ClusterSource;
  let podCidrs = config.podCidrs;
  let kube: KubeWiring | null = null;
  if (config.manifestsDir !== null) {
    source = startStandaloneSource(config.manifestsDir, onSnapshot);
  } else {
    const k = await import("./k8s/kube-wiring.js");
    const started = await k.startKubernetesMode(config, log, onSnapshot);
    source = started.source;
    kube = started;
    if (!config.podCidrsExplicit && started.source.localPodCidrs().length > 0) {
      podCidrs = started.source.localPodCidrs().map((c) => parseCidr(c));
    }
  }
  log.info({ source: source.description, podCidrs: podCidrs.map((c) => c.text) }, "following cluster state");
  daemon = await Daemon.start({ ...config, podCidrs }, log);
  daemon.source = source;
  if (kube) kube.attach(daemon);
  if (pending) daemon.setSnapshot(pending);
  await daemon.regenerate("startup");

  const registry = createMetrics(daemon);
  const backend = new DaemonBackend(daemon, registry);
  const api = await startApiServer(backend, { socketPath: config.socketPath, tcpAddress: config.apiTcpAddr });
  const metricsServer = config.metricsAddr !== null ? serveMetrics(registry, config.metricsAddr) : null;
  log.info({ socket: api.socketPath, metrics: config.metricsAddr }, "twill-agent ready");

  // CNI DELs that arrived while the agent was down.
  const drain = (): void => {
    void drainDeletionQueue(DEFAULT_DELETION_QUEUE_DIR, async (q) => { await daemon.deleteEndpoint(q.containerId, q.ifname ?? null); })
      .catch((e: unknown) => log.warn({ err: String(e) }, "drain cni deletion queue"));
  };
  drain();
  const drainTimer = setInterval(drain, 30_000);
  drainTimer.unref();

  await new Promise<void>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => resolve());
  });
  log.info("stopping (datapath stays in place)");
  clearInterval(drainTimer);
  source.stop();
  kube?.stop();
  metricsServer?.close();
  await api.stop(1000);
  daemon.stop();
  return 0;
}

main().then((code) => process.exit(code), (e: unknown) => {
  process.stderr.write(`twill-agent: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
