// SPDX-License-Identifier: Apache-2.0
// Prometheus metrics (prom-client). Datapath counters are read from the
// per-CPU map at scrape time, so the hot path pays nothing for them.
import * as http from "node:http";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { Daemon } from "../daemon.js";
import { twillReasonName, MAP_SPECS, MapName } from "../generated/bpf-types.js";

/** Registry with every Twill metric bound to a daemon. */
export function createMetrics(d: Daemon): Registry {
  const reg = new Registry();
  collectDefaultMetrics({ register: reg, prefix: "twill_agent_" });
  new Gauge({
    name: "twill_datapath_packets", help: "Packets seen by the datapath, by direction and verdict reason (monotonic)",
    labelNames: ["direction", "reason"], registers: [reg],
    collect() {
      this.reset();
      for (const s of d.maps.metrics.read()) this.set({ direction: s.direction === 0 ? "from-pod" : "to-pod", reason: twillReasonName(s.reason) ?? String(s.reason) }, Number(s.packets));
    },
  });
  new Gauge({
    name: "twill_datapath_bytes", help: "Bytes seen by the datapath, by direction and verdict reason (monotonic)",
    labelNames: ["direction", "reason"], registers: [reg],
    collect() {
      this.reset();
      for (const s of d.maps.metrics.read()) this.set({ direction: s.direction === 0 ? "from-pod" : "to-pod", reason: twillReasonName(s.reason) ?? String(s.reason) }, Number(s.bytes));
    },
  });
  new Gauge({ name: "twill_endpoints", help: "Local endpoints", registers: [reg], collect() { this.set(d.store.list().length); } });
  new Gauge({ name: "twill_identities", help: "Allocated security identities", registers: [reg], collect() { this.set(d.engine.labelIdentities().length + d.engine.cidrIdentities.entries().length); } });
  new Gauge({ name: "twill_policy_compute_seconds", help: "Duration of the last full policy computation", registers: [reg], collect() { this.set((d.desired?.computeMs ?? 0) / 1000); } });
  new Gauge({
    name: "twill_map_fill_ratio", help: "Entries / capacity of a map", labelNames: ["map"], registers: [reg],
    collect() {
      const cap = (n: string): number => MAP_SPECS[n]?.maxEntries ?? 1;
      this.set({ map: MapName.ipcache }, (d.desired?.ipcache.length ?? 0) / cap(MapName.ipcache));
      this.set({ map: MapName.endpoints }, d.store.list().length / cap(MapName.endpoints));
    },
  });
  new Gauge({ name: "twill_flow_events_lost", help: "Flow events lost because the ring buffer was full (monotonic)", registers: [reg], collect() { this.set(Number(d.maps.metrics.eventsLost())); } });
  new Counter({ name: "twill_regenerations_total", help: "Policy regenerations", registers: [reg], collect() { this.reset(); this.inc(d.regenerations); } });
  return reg;
}

/** Serve /metrics on host:port; returns the server (close it on stop). */
export function serveMetrics(reg: Registry, addr: string): http.Server {
  const i = addr.lastIndexOf(":");
  const host = addr.slice(0, i).replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = Number(addr.slice(i + 1));
  const srv = http.createServer((req, res) => {
    if (req.url !== "/metrics") { res.writeHead(404).end(); return; }
    reg.metrics().then((text) => res.writeHead(200, { "content-type": reg.contentType }).end(text), (e: unknown) => res.writeHead(500).end(String(e)));
  });
  srv.listen(port, host);
  return srv;
}
