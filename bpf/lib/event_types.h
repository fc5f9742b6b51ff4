/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Events into the twill_events ring buffer, and per-CPU counters.
 * An event is emitted for every drop and for every new connection the policy
 * allowed; established traffic emits nothing. If the ring is full the event is
 * lost and counted in twill_ev_lost (per-CPU array, index 0), never waited for.
 */
#pragma once

#include "common_types.h"

enum twill_event_type {
	TWILL_EVENT_DROP = 1,
	TWILL_EVENT_NEW_CONN = 2,
};

struct flow_event {
	__u64 ts_ns;         /* bpf_ktime_get_ns() */
	__u32 ifindex;       /* host-side veth of the endpoint */
	__u32 src_identity;
	__u32 dst_identity;
	__u32 pkt_len;
	__u32 rule_ref;      /* allowing rule for NEW_CONN, 0 otherwise */
	__u8 type;           /* enum twill_event_type */
	__u8 direction;      /* enum twill_direction */
	__u8 reason;         /* enum twill_reason */
	__u8 protocol;       /* IPPROTO_* */
	__u8 family;         /* enum twill_family */
	__u8 pad[1];
	__be16 sport;
	__be16 dport;
	__u8 pad2[2];
	__u8 saddr[16];      /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};
_Static_assert(sizeof(struct flow_event) == 72, "flow_event size");

/* twill_metrics is a per-CPU array indexed by direction * TWILL_REASON_MAX +
 * reason. */
struct metrics_value {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct metrics_value) == 16, "metrics_value size");
