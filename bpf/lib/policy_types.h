/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Policy: one LPM trie per endpoint (inner map of twill_policy, keyed by the
 * endpoint's host-side ifindex), so that a whole new policy can be built aside
 * and swapped in with one map update.
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
