/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Identity resolution and policy lookups (see policy_types.h for the trie).
 * API:
 *   policy_remote_identity(addr, family) -> identity
 *       twill_ipcache LPM lookup; a miss is TWILL_IDENTITY_WORLD.
 *   policy_check(ifindex, remote_id, dir, &pkt, &rule_ref)
 *       -> 0 | -TWILL_DROP_POLICY | -TWILL_DROP_NO_POLICY_MAP
 *       Reads the endpoint's slot in force (twill_policy_slot[ifindex]),
 *       then looks up that slot's trie, twill_policy[ifindex * 2 + slot],
 *       with (remote id, dir, proto, port), then with (ANY, dir, proto,
 *       port). The LPM match makes one lookup cover "any port", "any
 *       protocol" and port ranges. A missing slot entry or inner map is a
 *       drop, never an implicit allow-all.
 *       The slot is read once per packet and the agent never edits the trie
 *       in force, so a packet sees one whole policy even while the agent
 *       flips the slot; the agent rewrites a retired trie only after an RCU
 *       grace period (tc programs run inside RCU read-side sections), so one
 *       that read the slot just before a flip still finds its trie intact.
 *   policy_outer_key(ifindex, slot) -> twill_policy key of one slot's trie.
 * Only new connections get here: established traffic never pays for it.
 */
#pragma once

#include "parse.h"
#include "maps.h"

static __always_inline __u32 policy_remote_identity(const __u8 *addr,
						    __u8 family)
{
	struct ipcache_key key = {};
	struct ipcache_entry *e;

	key.family = family;
	if (family == TWILL_AF_INET) {
		key.prefixlen = 32 + 32;
		*(__u32 *)key.addr = *(const __u32 *)addr;
	} else {
		key.prefixlen = 32 + 128;
		__builtin_memcpy(key.addr, addr, 16);
	}
	e = bpf_map_lookup_elem(&twill_ipcache, &key);
	return e ? e->identity : TWILL_IDENTITY_WORLD;
}

static __always_inline __u32 policy_outer_key(__u32 ifindex, __u32 slot)
{
	return ifindex * 2 + slot;
}

static __always_inline int policy_check(__u32 ifindex, __u32 remote_id,
					__u8 dir, const struct pkt_info *pkt,
					__u32 *rule_ref)
{
	struct policy_key key = {};
	struct policy_entry *pe;
	struct policy_slot *slot;
	__u32 outer_key;
	void *inner;

	slot = bpf_map_lookup_elem(&twill_policy_slot, &ifindex);
	/* A slot other than 0/1 would name another endpoint's trie. */
	if (!slot || slot->slot > 1)
		return -TWILL_DROP_NO_POLICY_MAP;
	outer_key = policy_outer_key(ifindex, slot->slot);
	inner = bpf_map_lookup_elem(&twill_policy, &outer_key);
	if (!inner)
		return -TWILL_DROP_NO_POLICY_MAP;
	key.prefixlen = TWILL_POLICY_PREFIX_FULL;
	key.identity = bpf_htonl(remote_id);
	key.direction = dir;
	key.protocol = pkt->protocol;
	key.dport = pkt->policy_port;
	pe = bpf_map_lookup_elem(inner, &key);
	if (!pe) {
		key.identity = bpf_htonl(TWILL_IDENTITY_ANY);
		pe = bpf_map_lookup_elem(inner, &key);
	}
	if (!pe)
		return -TWILL_DROP_POLICY;
	*rule_ref = pe->rule_ref;
	return 0;
}
