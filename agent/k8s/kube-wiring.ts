// SPDX-License-Identifier: Apache-2.0
// Kubernetes mode, assembled: the API-server source, cluster-wide identities
// through the TwillIdentity CRD (with GC of unused ones), and Events on
// rejected policies. main.ts calls startKubernetesMode, then attach(daemon).
import type { Logger } from "../log.js";
import type { Config } from "../config/config.js";
import type { Daemon } from "../daemon.js";
import type { ClusterSnapshot } from "./cluster-source.js";
import { startKubeSource, type KubeSource } from "./kube-source.js";
import { loadKubeClient } from "./kube-client.js";
import { CrdIdentityAllocator } from "./identity-crd.js";
import { PolicyStatusReporter, rejectionsFromErrors } from "./policy-status.js";
import { labelSetKey } from "../identity/labels.js";

/** Identities unused by any pod of the cluster for this long are deleted. */
const IDENTITY_GC_GRACE_MS = 10 * 60_000;
const IDENTITY_GC_INTERVAL_MS = 60_000;

/** What main.ts holds in Kubernetes mode. */
export interface KubeWiring {
  readonly source: KubeSource;
  attach(daemon: Daemon): void;
  stop(): void;
}

/** Start watching the API server; snapshots go to `onSnapshot` (and rejected policies become Events). */
export async function startKubernetesMode(config: Config, log: Logger, onSnapshot: (s: ClusterSnapshot) => void): Promise<KubeWiring> {
  const client = loadKubeClient(config.kubeconfig);
  const status = new PolicyStatusReporter(client, config.nodeName, log);
  const source = await startKubeSource({ kubeconfig: config.kubeconfig, nodeName: config.nodeName }, (s) => {
    onSnapshot(s);
    status.update(rejectionsFromErrors(s.errors)).catch((e: unknown) => log.warn({ err: String(e) }, "report rejected policies"));
  }, log);
  const crd = new CrdIdentityAllocator(client, log);
  let inUse = new Set<number>();
  let timer: NodeJS.Timeout | null = null;
  return {
    source,
    attach(daemon: Daemon): void {
      daemon.setIdentityResolver(async (sets) => {
        const table = new Map<string, number>();
        await Promise.all(sets.map(async (l) => {
          try {
            table.set(labelSetKey(l), await crd.allocate(l));
          } catch (e: unknown) {
            log.warn({ err: e instanceof Error ? e.message : String(e) }, "allocate identity");
          }
        }));
        inUse = new Set(table.values());
        return table;
      });
      timer = setInterval(() => {
        if (!source.healthy()) return;
        crd.gc(inUse, IDENTITY_GC_GRACE_MS).catch((e: unknown) => log.warn({ err: String(e) }, "identity gc"));
      }, IDENTITY_GC_INTERVAL_MS);
      timer.unref();
    },
    stop(): void {
      if (timer) clearInterval(timer); // main.ts stops the source
    },
  };
}
