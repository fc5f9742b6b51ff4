// SPDX-License-Identifier: Apache-2.0
// twill_metrics (per-CPU array indexed direction * TWILL_REASON_MAX + reason)
// and twill_ev_lost (per-CPU u64, index 0), summed over CPUs.
//
// API: MetricsMap (read -> MetricSample[] of non-zero counters, eventsLost()).
import { MapName, MetricsValue, TwillDirection, TwillReason, U32, U64 } from "../generated/bpf-types.js";
import { PerCpuMap } from "./bpf-map.js";

/** One counter, summed over CPUs. */
export interface MetricSample {
  /** enum twill_direction */
  readonly direction: number;
  /** enum twill_reason */
  readonly reason: number;
  readonly packets: bigint;
  readonly bytes: bigint;
}

/** Reader of the datapath counters. */
export class MetricsMap {
  readonly metrics: PerCpuMap<number, MetricsValue>;
  readonly evLost: PerCpuMap<number, bigint> | null;

  /**
   * @param metricsFd fd of twill_metrics (not owned)
   * @param evLostFd fd of twill_ev_lost (not owned), or null
   */
  constructor(metricsFd: number, evLostFd: number | null) {
    this.metrics = new PerCpuMap(MapName.metrics, metricsFd, U32, MetricsValue);
    this.evLost = evLostFd === null ? null : new PerCpuMap(MapName.evLost, evLostFd, U32, U64);
  }

  /** Every counter that is not zero. */
  read(): MetricSample[] {
    const out: MetricSample[] = [];
    for (const [index, perCpu] of this.metrics.entries()) {
      let packets = 0n;
      let bytes = 0n;
      for (const v of perCpu) {
        packets += v.packets;
        bytes += v.bytes;
      }
      if (packets === 0n && bytes === 0n) continue;
      out.push({
        direction: Math.floor(index / TwillReason.REASON_MAX),
        reason: index % TwillReason.REASON_MAX,
        packets,
        bytes,
      });
    }
    return out;
  }

  /** One counter, summed over CPUs. */
  get(direction: TwillDirection, reason: number): { packets: bigint; bytes: bigint } {
    const perCpu = this.metrics.get(direction * TwillReason.REASON_MAX + reason) ?? [];
    return perCpu.reduce((a, v) => ({ packets: a.packets + v.packets, bytes: a.bytes + v.bytes }), { packets: 0n, bytes: 0n });
  }

  /** Events dropped because the ring buffer was full, summed over CPUs. */
  eventsLost(): bigint {
    return (this.evLost?.get(0) ?? []).reduce((a, v) => a + v, 0n);
  }
}
