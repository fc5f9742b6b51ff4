/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Connection tracking over twill_ct4 / twill_ct6 (see conntrack_types.h).
 * API:
 *   ct_lookup(&pkt, &ct, len) -> CT_NEW | CT_ESTABLISHED | CT_REPLY
 *       Looks the tuple up as-is, then reversed. On a hit it counts the
 *       packet, sets SEEN_REPLY on a reply, CLOSING on TCP FIN/RST, and
 *       refreshes last_seen_ns at most once a second (a write to a shared
 *       cache line per packet would cost more than the lookup). A pure TCP
 *       SYN is never looked up reversed. A TCP SYN
 *       (no ACK) on a CLOSING entry is a reused port: the entry is deleted
 *       and the packet reported as new so policy is evaluated again.
 *   ct_related(skb, &pkt) -> 1 | 0
 *       An ICMP(v6) error whose quoted datagram belongs to a tracked
 *       connection (either direction): it passes like a reply, without
 *       policy and without touching the entry, so path MTU discovery and
 *       "port unreachable" work through an isolated policy.
 *   ct_create(&pkt, &ct, len) -> 0 | -TWILL_DROP_CT_FULL
 *       Inserts with BPF_NOEXIST: another CPU racing on the same tuple wins
 *       and that is fine (-EEXIST is success).
 *   struct ct_state carries the built key between the two calls, so a new
 *   connection hashes its tuple only once per lookup.
 */
#pragma once

#include "parse.h"
#include "maps.h"

#define CT_REFRESH_NS 1000000000ULL
#define EEXIST 17

enum ct_result {
	CT_NEW = 0,
	CT_ESTABLISHED = 1,
	CT_REPLY = 2,
};

struct ct_state {
	union {
		struct ct_key4 k4;
		struct ct_key6 k6;
	};
	__u32 src_identity;
	__u32 dst_identity;
	__u32 rule_ref;
};

/* CLOCK_MONOTONIC at tick resolution: the same clock the agent's GC reads
 * (it lags by less than a tick, far below any timeout), without the TSC read
 * that bpf_ktime_get_ns costs on every established packet. */
static __always_inline __u64 ct_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline void ct_build_key(const struct pkt_info *pkt,
					 struct ct_state *ct, int reverse)
{
	const __u8 *s = reverse ? pkt->daddr : pkt->saddr;
	const __u8 *d = reverse ? pkt->saddr : pkt->daddr;

	if (pkt->family == TWILL_AF_INET) {
		ct->k4.saddr = *(const __be32 *)s;
		ct->k4.daddr = *(const __be32 *)d;
		ct->k4.sport = reverse ? pkt->dport : pkt->sport;
		ct->k4.dport = reverse ? pkt->sport : pkt->dport;
		ct->k4.protocol = pkt->protocol;
		ct->k4.pad[0] = ct->k4.pad[1] = ct->k4.pad[2] = 0;
	} else {
		__builtin_memcpy(ct->k6.saddr, s, 16);
		__builtin_memcpy(ct->k6.daddr, d, 16);
		ct->k6.sport = reverse ? pkt->dport : pkt->sport;
		ct->k6.dport = reverse ? pkt->sport : pkt->dport;
		ct->k6.protocol = pkt->protocol;
		ct->k6.pad[0] = ct->k6.pad[1] = ct->k6.pad[2] = 0;
	}
}

static __always_inline void ct_delete(const struct pkt_info *pkt,
				      struct ct_state *ct)
{
	if (pkt->family == TWILL_AF_INET)
		bpf_map_delete_elem(&twill_ct4, &ct->k4);
	else
		bpf_map_delete_elem(&twill_ct6, &ct->k6);
}

static __always_inline struct ct_entry *ct_find(const struct pkt_info *pkt,
						struct ct_state *ct)
{
	if (pkt->family == TWILL_AF_INET)
		return bpf_map_lookup_elem(&twill_ct4, &ct->k4);
	return bpf_map_lookup_elem(&twill_ct6, &ct->k6);
}

static __always_inline void ct_update(struct ct_entry *e,
				      const struct pkt_info *pkt, __u32 len,
				      int reply)
{
	__u32 want = 0;
	__u64 now;

	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, len);
	if (reply)
		want |= TWILL_CT_SEEN_REPLY;
	if (pkt->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		want |= TWILL_CT_CLOSING;
	/* read first: only write (and dirty the line) when something changes.
	 * A plain store: 32-bit atomic OR needs -mcpu=v3, and flags only ever
	 * gain bits, so a lost race is repaired by the next packet. */
	if ((e->flags & want) != want)
		e->flags |= want;
	now = ct_now();
	if (now - e->last_seen_ns >= CT_REFRESH_NS)
		e->last_seen_ns = now;
}

static __always_inline int ct_lookup(const struct pkt_info *pkt,
				     struct ct_state *ct, __u32 len)
{
	struct ct_entry *e;

	/* original direction first: the common case costs one lookup */
	ct_build_key(pkt, ct, 0);
	e = ct_find(pkt, ct);
	if (e) {
		if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) ==
			    TCP_FLAG_SYN &&
		    (e->flags & TWILL_CT_CLOSING)) {
			ct_delete(pkt, ct);
			return CT_NEW;
		}
		ct_update(e, pkt, len, 0);
		return CT_ESTABLISHED;
	}
	/* a pure SYN opens a connection, it never answers one: skip the
	 * second (usually cache-cold) bucket on the first packet */
	if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
	    pkt->protocol == IPPROTO_TCP)
		return CT_NEW;
	ct_build_key(pkt, ct, 1);
	e = ct_find(pkt, ct);
	if (e) {
		ct_update(e, pkt, len, 1);
		return CT_REPLY;
	}
	ct_build_key(pkt, ct, 0); /* ct_create inserts the forward tuple */
	return CT_NEW;
}

static __always_inline int ct_related(struct __sk_buff *skb,
				      const struct pkt_info *pkt)
{
	struct pkt_info inner = {};
	struct ct_state ct;

	if (!pkt->icmp_error || parse_icmp_inner(skb, pkt, &inner) < 0)
		return 0;
	ct_build_key(&inner, &ct, 0);
	if (ct_find(&inner, &ct))
		return 1;
	ct_build_key(&inner, &ct, 1);
	return ct_find(&inner, &ct) != NULL;
}

static __always_inline int ct_create(const struct pkt_info *pkt,
				     struct ct_state *ct, __u32 len)
{
	struct ct_entry e = {};
	__u64 now = ct_now();
	long err;

	e.created_ns = now;
	e.last_seen_ns = now;
	e.packets = 1;
	e.bytes = len;
	e.src_identity = ct->src_identity;
	e.dst_identity = ct->dst_identity;
	e.rule_ref = ct->rule_ref;
	if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		e.flags |= TWILL_CT_TCP_SYN;
	if (pkt->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		e.flags |= TWILL_CT_CLOSING;
	/* ct_lookup left the forward key in ct */
	if (pkt->family == TWILL_AF_INET)
		err = bpf_map_update_elem(&twill_ct4, &ct->k4, &e, BPF_NOEXIST);
	else
		err = bpf_map_update_elem(&twill_ct6, &ct->k6, &e, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return -TWILL_DROP_CT_FULL;
	return 0;
}
