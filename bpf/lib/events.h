/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Flow events into the twill_events ring buffer (see event_types.h).
 * API:
 *   events_emit(type, dir, reason, ifindex, &pkt, &ct, len)
 *       Reserves, fills and submits one struct flow_event. If the ring is
 *       full the event is counted in twill_ev_lost[0] instead: the datapath
 *       never waits for the agent.
 * Wakeups: submit with flags 0, the kernel's adaptive mode: it wakes the
 * reader only when the reader had caught up, i.e. at most once per drain of
 * the agent's timer (agent/maps/events-reader.ts). Never FORCE_WAKEUP: an
 * irq_work per event costs ~9 us in a VM, exactly when a slow reader lets
 * the ring fill.
 */
#pragma once

#include "conntrack.h"

static __always_inline void events_emit(__u8 type, __u8 dir, __u8 reason,
					__u32 ifindex,
					const struct pkt_info *pkt,
					const struct ct_state *ct, __u32 len)
{
	struct flow_event *ev;
	__u32 zero = 0;

	ev = bpf_ringbuf_reserve(&twill_events, sizeof(*ev), 0);
	if (!ev) {
		__u64 *lost = bpf_map_lookup_elem(&twill_ev_lost, &zero);

		if (lost)
			*lost += 1;
		return;
	}
	ev->ts_ns = bpf_ktime_get_ns();
	ev->ifindex = ifindex;
	ev->src_identity = ct->src_identity;
	ev->dst_identity = ct->dst_identity;
	ev->pkt_len = len;
	ev->rule_ref = type == TWILL_EVENT_NEW_CONN ? ct->rule_ref : 0;
	ev->type = type;
	ev->direction = dir;
	ev->reason = reason;
	ev->protocol = pkt->protocol;
	ev->family = pkt->family;
	ev->pad[0] = 0;
	ev->sport = pkt->sport;
	ev->dport = pkt->dport;
	ev->pad2[0] = ev->pad2[1] = 0;
	__builtin_memcpy(ev->saddr, pkt->saddr, 16);
	__builtin_memcpy(ev->daddr, pkt->daddr, 16);
	bpf_ringbuf_submit(ev, 0);
}
