/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Connection tracking: LRU hashes (twill_ct4, twill_ct6) keyed by the 5-tuple
 * in the direction of the packet that opened the connection. A packet whose
 * tuple is found as-is belongs to the original direction; one whose reversed
 * tuple is found is a reply. For ICMP echo, sport = dport = echo id.
 * Expiry: the agent's GC deletes entries whose last_seen_ns is older than the
 * timeout of their state (bpf_ktime_get_ns clock, CLOCK_MONOTONIC).
 */
#pragma once

#include "common_types.h"

struct ct_key4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 pad[3];
};
_Static_assert(sizeof(struct ct_key4) == 16, "ct_key4 size");

struct ct_key6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 pad[3];
};
_Static_assert(sizeof(struct ct_key6) == 40, "ct_key6 size");

enum twill_ct_flags {
	TWILL_CT_SEEN_REPLY = 1, /* a reply has passed: connection established */
	TWILL_CT_CLOSING = 2,    /* FIN or RST seen: short timeout */
	TWILL_CT_TCP_SYN = 4,    /* opened by a TCP SYN */
};

struct ct_entry {
	__u64 created_ns;
	__u64 last_seen_ns;  /* refreshed at most once a second per entry */
	__u64 packets;       /* both directions */
	__u64 bytes;
	__u32 src_identity;  /* identity of the side that opened */
	__u32 dst_identity;
	__u32 flags;         /* enum twill_ct_flags */
	__u32 rule_ref;      /* policy rule that allowed it (0: not isolated) */
};
_Static_assert(sizeof(struct ct_entry) == 48, "ct_entry size");
