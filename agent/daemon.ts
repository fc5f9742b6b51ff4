// SPDX-License-Identifier: Apache-2.0
// The agent core: owns the loaded datapath, IPAM, the endpoint records and
// the policy engine, and keeps the maps equal to what cluster state asks for.
//
// Lifecycle: `Daemon.start(config, log)` compiles (cache), loads and pins the
// datapath, restores endpoints from the state dir (re-attaching idempotently:
// traffic of running pods is never interrupted by a restart), then follows a
// ClusterSource. Every change schedules one regeneration; regenerations are
// serialised and coalesced. Introspection for the API lives in
// agent/introspect/; this file is lifecycle and endpoints only.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "./log.js";
import type { Config } from "./config/config.js";
import { compileDatapath } from "./loader/compile-cache.js";
import { loadDatapath, type Datapath } from "./loader/datapath-loader.js";
import { attachEndpoint, attachMode, detachEndpoint, attachedIfindexes, type AttachMode } from "./loader/attach.js";
import { probeTcx } from "./loader/probes.js";
import { openDatapathMaps, type DatapathMaps } from "./maps/datapath-maps.js";
import { EventsReader } from "./maps/events-reader.js";
import { monotonicNowNs } from "./maps/conntrack-map.js";
import { ProgramName } from "./generated/bpf-types.js";
import { IpAllocator } from "./ipam/allocator.js";
import { EndpointStore, type EndpointRecord } from "./endpoint/endpoint-store.js";
import { PolicyEngine, type DesiredState } from "./reconcile/policy-engine.js";
import { labelSetKey, type SecurityLabels } from "./identity/labels.js";
import { DatapathSync } from "./reconcile/datapath-sync.js";
import { DatapathApplier } from "./reconcile/apply-desired.js";
import { fileIdentityStore } from "./identity/file-store.js";
import { mergeClusterChanges, type ClusterChanges, type ClusterSnapshot } from "./k8s/cluster-source.js";
import { FlowBuffer } from "./monitor/flow-buffer.js";
import { decodeFlowEvent } from "./monitor/flow.js";
import { NetlinkSocket, listAddresses, findLink } from "./netlink/index.js";
import { AlreadyExistsError, type CreateEndpointParams } from "./api/agent-state.js";

const NO_CHANGES: ClusterChanges = {
  namespaces: { upserted: [], removed: [] },
  pods: { upserted: [], removed: [] },
  policies: { upserted: [], removed: [] },
};

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), fileURLToPath(import.meta.url).includes("/dist/") ? "../.." : "..");

/** Where the C sources are (next to the agent's code, in the repo or the image). */
export function bpfSourceDir(): string {
  return path.join(REPO_ROOT, "bpf");
}

/** Resolves label sets to cluster-wide identity numbers (Kubernetes mode); keyed by labelSetKey. */
export type IdentityResolver = (sets: readonly SecurityLabels[]) => Promise<ReadonlyMap<string, number>>;

const EMPTY_SNAPSHOT: ClusterSnapshot = { namespaces: [], pods: [], policies: [], errors: [] };

/** The running agent core. */
export class Daemon {
  readonly startedAt = Date.now();
  readonly flows = new FlowBuffer();
  snapshot: ClusterSnapshot = EMPTY_SNAPSHOT;
  desired: DesiredState | null = null;
  lastRegenerateError: string | null = null;
  regenerations = 0;
  /** Set by main.ts: the cluster source's description and whether it is connected. */
  source: { description: string; healthy(): boolean } | null = null;
  private readonly sync: DatapathSync;
  private readonly applier: DatapathApplier;
  /**
   * What changed since the snapshot the engine last computed, merged over
   * coalesced snapshots; valid only while every snapshot since then said
   * what changed (otherwise the engine diffs everything, O(pods)).
   */
  private pendingChanges: ClusterChanges = NO_CHANGES;
  private changesValid = false;
  private regenQueued = false;
  private regenChain: Promise<void> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private events: EventsReader | null = null;
  private lostSeen = 0n;
  private resolver: IdentityResolver | null = null;
  /** The last table the resolver returned (Kubernetes mode). */
  private identityTable: ReadonlyMap<string, number> | null = null;
  private resolveRetryMs = 0;
  private resolveRetry: NodeJS.Timeout | null = null;

  private constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly datapath: Datapath,
    readonly maps: DatapathMaps,
    readonly ipam: IpAllocator,
    readonly store: EndpointStore,
    readonly engine: PolicyEngine,
    readonly mode: AttachMode,
  ) {
    this.sync = new DatapathSync(maps);
    this.applier = new DatapathApplier(this.sync);
  }

  /** Compile, load, restore endpoints. The caller then feeds snapshots. */
  static async start(config: Config, log: Logger): Promise<Daemon> {
    fs.mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    const t0 = performance.now();
    const compiled = await compileDatapath({
      source: path.join(bpfSourceDir(), "lxc.bpf.c"),
      includeDir: bpfSourceDir(),
      cacheDir: path.join(config.stateDir, "bpf-cache"),
    });
    log.info({ hash: compiled.hash.slice(0, 12), cacheHit: compiled.cacheHit, ms: Math.round(performance.now() - t0) }, "datapath object ready");
    const datapath = loadDatapath({ objectPath: compiled.objectPath, bpfRoot: config.bpfRoot, settings: { hostIdentity: 1, redirectPeer: true } });
    const maps = openDatapathMaps(datapath);
    const tcx = probeTcx();
    const mode = attachMode(config.forceClsact);
    log.info({ mode, tcx: tcx.supported, reason: tcx.reason }, "attach mode");
    const ipam = IpAllocator.open(path.join(config.stateDir, "ipam"), config.podCidrs);
    const store = new EndpointStore(path.join(config.stateDir, "endpoints"));
    const engine = new PolicyEngine(
      fileIdentityStore(path.join(config.stateDir, "identities.json")),
      fileIdentityStore(path.join(config.stateDir, "cidr-identities.json")),
    );
    const d = new Daemon(config, log, datapath, maps, ipam, store, engine, mode);
    d.restore();
    d.startBackground();
    return d;
  }

  /** Endpoints whose veth is gone are dropped; stale attachments and map entries removed. */
  private restore(): void {
    const keep = new Set<number>();
    NetlinkSocket.with(null, (nl) => {
      for (const r of this.store.list()) {
        const link = findLink(nl, r.hostIfindex);
        if (!link || link.name !== r.hostIfname) {
          this.log.info({ containerId: r.containerId, veth: r.hostIfname }, "endpoint veth gone while the agent was away: removing");
          this.forget(r);
          continue;
        }
        keep.add(r.hostIfindex);
      }
    });
    for (const ifindex of attachedIfindexes(this.config.bpfRoot)) if (!keep.has(ifindex)) detachEndpoint(this.config.bpfRoot, ifindex);
    for (const ifindex of this.maps.endpoints.keys()) if (!keep.has(ifindex)) this.maps.endpoints.delete(ifindex);
    for (const ifindex of this.maps.policy.ifindexes()) if (!keep.has(ifindex)) this.maps.policy.delete(ifindex);
    this.log.info({ endpoints: keep.size }, "endpoints restored");
  }

  private startBackground(): void {
    this.events = new EventsReader(this.maps.eventsFd, (ev) => {
      this.flows.push(decodeFlowEvent(ev, this.flowLookups));
    });
    this.events.start(20);
    const lost = setInterval(() => {
      const total = this.maps.metrics.eventsLost();
      if (total > this.lostSeen) this.flows.reportLost(Number(total - this.lostSeen));
      this.lostSeen = total;
    }, 1000);
    const gc = setInterval(() => {
      const now = monotonicNowNs();
      const r4 = this.maps.ct4.gc(now);
      const r6 = this.maps.ct6.gc(now);
      if (r4.deleted + r6.deleted > 0) this.log.debug({ deleted: r4.deleted + r6.deleted }, "conntrack gc");
    }, 10_000);
    for (const t of [lost, gc]) t.unref();
    this.timers.push(lost, gc);
  }

  private readonly flowLookups = {
    endpointByIfindex: (ifindex: number) => {
      const r = this.store.list().find((x) => x.hostIfindex === ifindex);
      return r ? { namespace: r.namespace, pod: r.podName } : null;
    },
    endpointByIp: (ip: string) => {
      const r = this.store.list().find((x) => x.ipv4 === ip || x.ipv6 === ip);
      return r ? { namespace: r.namespace, pod: r.podName } : null;
    },
    identityLabels: (identity: number) => {
      const l = this.engine.labelsOfIdentity(identity);
      if (!l) return null;
      return { ...Object.fromEntries(Object.entries(l.podLabels).map(([k, v]) => [`k8s:${k}`, v])), "k8s:io.kubernetes.pod.namespace": l.namespace };
    },
    monotonicToUnixNs: BigInt(Date.now()) * 1_000_000n - monotonicNowNs(),
  };

  /** Take identity numbers from `r` (cluster-wide) instead of the local allocator. */
  setIdentityResolver(r: IdentityResolver): void {
    this.resolver = r;
    this.engine.useExternalIdentities(new Map());
  }

  /**
   * Resolve every label set of the current state; on failure the previous
   * table stays. When the label sets in use are exactly those of the last
   * table, the resolver is not called at all.
   */
  private async resolveIdentities(): Promise<void> {
    if (!this.resolver) return;
    const records = this.store.list();
    let byKey = this.changesValid ? this.engine.labelSetsAfter(this.pendingChanges, records) : null;
    if (!byKey) {
      const all = PolicyEngine.labelSetsOf({
        namespaces: this.snapshot.namespaces,
        pods: this.snapshot.pods,
        endpoints: records.map((r) => ({ key: r.containerId, namespace: r.namespace, podName: r.podName, ips: [] })),
      });
      byKey = new Map(all.map((l) => [labelSetKey(l), l]));
    }
    const known = this.identityTable;
    // Skip when all are known and none went out of use (the resolver's answer also tells identity GC what is in use).
    if (known && known.size === byKey.size && [...byKey.keys()].every((k) => known.has(k))) return;
    const sets = [...byKey.values()];
    let complete = false;
    try {
      const table = await this.resolver(sets);
      this.identityTable = table;
      this.engine.useExternalIdentities(table);
      complete = sets.every((l) => table.has(labelSetKey(l)));
    } catch (e: unknown) {
      this.log.warn({ err: e instanceof Error ? e.message : String(e) }, "resolve identities; keeping the previous ones");
    }
    // Pods whose identity could not be resolved (API server busy or away)
    // wait; retry with backoff rather than until the next cluster event.
    if (complete) {
      this.resolveRetryMs = 0;
    } else if (!this.resolveRetry) {
      this.resolveRetryMs = Math.min(30_000, Math.max(500, this.resolveRetryMs * 2));
      this.resolveRetry = setTimeout(() => {
        this.resolveRetry = null;
        void this.regenerate("retry identity resolution");
      }, this.resolveRetryMs);
      this.resolveRetry.unref();
    }
  }

  /** New cluster state from the source. */
  setSnapshot(s: ClusterSnapshot): void {
    for (const e of s.errors) this.log.warn({ source: e.source }, e.message);
    this.snapshot = s;
    if (this.changesValid && s.changes) this.pendingChanges = mergeClusterChanges(this.pendingChanges, s.changes);
    else this.changesValid = false;
    void this.regenerate("cluster state changed");
  }

  /** Recompute and sync; concurrent calls coalesce into one more run. */
  regenerate(why: string): Promise<void> {
    if (this.regenQueued) return this.regenChain;
    this.regenQueued = true;
    this.regenChain = this.regenChain.then(async () => {
      this.regenQueued = false;
      await this.resolveIdentities();
      this.regenerateNow(why);
    });
    return this.regenChain;
  }

  private hostIps(): string[] {
    return NetlinkSocket.with(null, (nl) =>
      listAddresses(nl).filter((a) => a.scope === 0).map((a) => a.address),
    );
  }

  /**
   * Synchronous recompute (incremental when the snapshots said what changed)
   * and minimal map writes. Never throws: failures are logged and kept in status.
   */
  regenerateNow(why: string): void {
    const records = this.store.list();
    const changes = this.changesValid ? this.pendingChanges : undefined;
    // Whatever happens below, the engine has now seen this snapshot (on
    // failure it drops its state and rebuilds from the full input next time).
    this.changesValid = true;
    this.pendingChanges = NO_CHANGES;
    try {
      const desired = this.engine.compute({
        namespaces: this.snapshot.namespaces,
        pods: this.snapshot.pods,
        policies: this.snapshot.policies,
        endpoints: records.map((r) => ({ key: r.containerId, namespace: r.namespace, podName: r.podName, ips: [r.ipv4, r.ipv6].filter((x): x is string => x !== null) })),
        hostIps: this.hostIps(),
      }, changes);
      const r = this.applier.apply(desired, records);
      // An endpoint whose policy could not be written keeps its previous one (never "allow all").
      for (const f of r.failed) this.log.error({ containerId: f.record.containerId, err: f.error.message }, "endpoint policy not applied; previous policy stays");
      this.desired = desired;
      this.regenerations++;
      this.lastRegenerateError = null;
      this.log.debug({ why, ms: desired.computeMs.toFixed(2), full: r.full, tries: r.triesChanged, ipcacheWritten: r.ipcacheWritten, ipcacheDeleted: r.ipcacheDeleted }, "regenerated");
    } catch (e: unknown) {
      this.applier.forceFull();
      this.lastRegenerateError = e instanceof Error ? e.message : String(e);
      this.log.error({ why, err: this.lastRegenerateError }, "regeneration failed; datapath keeps its previous state");
    }
  }

  /** CNI ADD: allocate, record, program, attach. Rolls back everything on failure. */
  async createEndpoint(p: CreateEndpointParams): Promise<EndpointRecord> {
    await this.regenChain;
    const existing = this.store.get(p.containerId);
    if (existing) {
      if (existing.ifname !== p.ifname) {
        throw new AlreadyExistsError("endpoint", p.containerId, `container already has interface ${existing.ifname}`);
      }
      if (existing.hostIfindex === p.hostIfindex) return existing;
      this.removeFromDatapath(existing); // the runtime re-created the veth
    }
    const t0 = performance.now();
    const phase: Record<string, number> = {};
    const mark = (name: string, since: number): number => {
      const now = performance.now();
      phase[name] = Math.round((now - since) * 10) / 10;
      return now;
    };
    const wantV4 = p.family !== "ipv6";
    const wantV6 = p.family !== "ipv4";
    let allocs: { family: 4 | 6; ip: string }[];
    if (p.assignedIps.length > 0) {
      // Addresses from a delegated IPAM plugin: it owns them; only refuse one
      // another endpoint already uses (the datapath keys pods by address).
      for (const ip of p.assignedIps) {
        const other = this.store.list().find((r) => r.containerId !== p.containerId && (r.ipv4 === ip || r.ipv6 === ip));
        if (other) throw new AlreadyExistsError("endpoint", p.containerId, `address ${ip} is already used by container ${other.containerId}`);
      }
      allocs = p.assignedIps.map((ip) => ({ family: ip.includes(":") ? 6 : 4, ip }));
    } else {
      allocs = this.ipam.allocate(p.containerId, p.ifname, p.requestedIps).filter((a) => (a.family === 4 ? wantV4 : wantV6));
    }
    const rec: EndpointRecord = {
      containerId: p.containerId, ifname: p.ifname, netns: p.netns,
      hostIfname: p.hostIfname, hostIfindex: p.hostIfindex, hostMac: p.hostMac, podMac: p.podMac,
      ipv4: allocs.find((a) => a.family === 4)?.ip ?? null,
      ipv6: allocs.find((a) => a.family === 6)?.ip ?? null,
      namespace: p.pod?.namespace ?? "default", podName: p.pod?.name ?? p.containerId.slice(0, 12),
      createdAt: existing?.createdAt ?? new Date().toISOString(),
    };
    let t = mark("ipamMs", t0);
    try {
      this.store.put(rec);
      t = mark("storeMs", t);
      await this.resolveIdentities();
      t = mark("identityMs", t);
      this.regenerateNow(`endpoint ${rec.namespace}/${rec.podName} added`);
      t = mark("regenerateMs", t);
      if (!this.desired?.endpoints.has(rec.containerId)) throw new Error(`program endpoint ${rec.containerId}: ${this.lastRegenerateError ?? "no policy computed"}`);
      const fds = { fromPodFd: this.datapath.progFd(ProgramName.fromPod), toPodFd: this.datapath.progFd(ProgramName.toPod) };
      attachEndpoint({ bpfRoot: this.config.bpfRoot, ifindex: rec.hostIfindex, ifname: rec.hostIfname, forceClsact: this.config.forceClsact, ...fds });
      mark("attachMs", t);
    } catch (e: unknown) {
      this.forget(rec);
      this.regenerateNow("endpoint add rolled back");
      throw e;
    }
    this.log.info({ containerId: rec.containerId, pod: `${rec.namespace}/${rec.podName}`, ipv4: rec.ipv4, ipv6: rec.ipv6, veth: rec.hostIfname, totalMs: Math.round(performance.now() - t0), ...phase }, "endpoint created");
    return rec;
  }

  /** CNI DEL: detach, clear maps, release addresses. False if unknown. */
  async deleteEndpoint(containerId: string, ifname: string | null): Promise<boolean> {
    await this.regenChain;
    const r = this.store.get(containerId);
    if (!r || (ifname !== null && r.ifname !== ifname)) {
      // Addresses may be held without an endpoint (crash between IPAM and record).
      return this.ipam.release(containerId, ifname ?? undefined).length > 0;
    }
    this.forget(r);
    this.regenerateNow(`endpoint ${r.namespace}/${r.podName} deleted`);
    this.log.info({ containerId, pod: `${r.namespace}/${r.podName}` }, "endpoint deleted");
    return true;
  }

  private removeFromDatapath(r: EndpointRecord): void {
    detachEndpoint(this.config.bpfRoot, r.hostIfindex);
    this.sync.removeEndpoint(r);
  }

  private forget(r: EndpointRecord): void {
    this.removeFromDatapath(r);
    this.ipam.release(r.containerId);
    this.store.delete(r.containerId);
  }

  /** CNI GC: delete endpoints (and addresses) of containers not in `valid`. */
  async gcEndpoints(valid: ReadonlySet<string>): Promise<string[]> {
    const removed: string[] = [];
    for (const r of this.store.list()) {
      if (valid.has(r.containerId)) continue;
      await this.deleteEndpoint(r.containerId, null);
      removed.push(r.containerId);
    }
    for (const a of this.ipam.gc(valid)) if (!removed.includes(a.containerId)) removed.push(a.containerId);
    return removed;
  }

  /** Stop background work; pins, links and maps stay so traffic continues. */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    if (this.resolveRetry) clearTimeout(this.resolveRetry);
    this.events?.close();
    this.datapath.close();
  }
}
