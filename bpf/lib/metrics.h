/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Per-CPU verdict counters (twill_metrics, see event_types.h).
 * API:
 *   metrics_count(dir, reason, len)   one packet of len bytes
 * Per-CPU slots need no atomics; the agent sums the CPUs when it reads.
 */
#pragma once

#include "maps.h"

static __always_inline void metrics_count(__u8 dir, __u8 reason, __u32 len)
{
	__u32 idx = (__u32)dir * TWILL_REASON_MAX + reason;
	struct metrics_value *v;

	v = bpf_map_lookup_elem(&twill_metrics, &idx);
	if (!v)
		return;
	v->packets += 1;
	v->bytes += len;
}
