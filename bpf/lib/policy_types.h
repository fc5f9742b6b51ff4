/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Policy: two LPM tries per endpoint (inner maps of twill_policy, slots 0
 * and 1, outer key ifindex * 2 + slot: host ifindexes are below 2^31, so it
 * fits a u32), and twill_policy_slot saying which of the two is in force. The
 * agent writes a new policy into the slot not in force, then flips the slot
 * with one hash-map write: a packet sees the old trie or the new one, never a
 * mix, and no map-in-map update (which waits for an RCU grace period) is on
 * the path of a change.
 *
 * Key order is identity, direction, protocol, port so that one trie expresses:
 *   prefixlen 40             identity + direction: any protocol, any port
 *   prefixlen 48             ... + protocol: any port
 *   prefixlen 48 + n (n<=16) ... + the top n bits of the port (port ranges
 *                            are expanded into such prefixes by the agent)
 * The datapath looks up (remote identity, ...) then (TWILL_IDENTITY_ANY, ...).
 * A direction that is not isolated gets one (ANY, dir) entry at prefixlen 40,
 * so "not isolated" and "allowed by a rule" are the same lookup.
 */
#pragma once

#include "common_types.h"

struct policy_key {
	__u32 prefixlen;
	__be32 identity;   /* big endian so the LPM bit order is numeric */
	__u8 direction;    /* enum twill_direction */
	__u8 protocol;     /* IPPROTO_*; ICMP uses port 0 */
	__be16 dport;
};
_Static_assert(sizeof(struct policy_key) == 12, "policy_key size");

enum twill_policy_lpm {
	TWILL_POLICY_PREFIX_DIR = 40,
	TWILL_POLICY_PREFIX_PROTO = 48,
	TWILL_POLICY_PREFIX_FULL = 64,
};

struct policy_entry {
	__u32 rule_ref;    /* agent's id of the rule that allows (for flows) */
	__u32 flags;       /* reserved, 0 */
};
_Static_assert(sizeof(struct policy_entry) == 8, "policy_entry size");

/* twill_policy_slot value: which of the endpoint's two tries is in force.
 * No entry (an endpoint not programmed yet, or being removed) is a drop with
 * TWILL_DROP_NO_POLICY_MAP, as is any value other than 0 or 1. */
struct policy_slot {
	__u32 slot;        /* 0 or 1 */
};
_Static_assert(sizeof(struct policy_slot) == 4, "policy_slot size");
