/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Pod (endpoint) checks and same-node delivery.
 * API:
 *   lxc_check_arp(skb, ep) -> TWILL_REASON_FORWARDED | -TWILL_DROP_*
 *       ARP from a pod: frame source and sender MAC must be ep->mac, sender
 *       IP ep->ipv4.
 *   lxc_check_source(skb, ep, &pkt) -> 0 | 1 (ND, pass without policy)
 *                                      | -TWILL_DROP_SPOOFED_*
 *       Frame source MAC must be ep->mac, source IP the endpoint's. ICMPv6
 *       router/neighbour discovery and MLD returns 1 when it comes from a
 *       link-local or unspecified source (DAD, gateway resolution, joins)
 *       or from the endpoint's own address (answers for it).
 *   lxc_lookup(&pkt) -> endpoint_info * | NULL     twill_lxc[daddr]
 *   lxc_rewrite(skb, dst) -> 0 | -TWILL_DROP_*
 *       For delivery straight into a local pod we are the router: source
 *       MAC = dst->node_mac, destination MAC = dst->mac, TTL / hop limit
 *       minus one (IPv4 header checksum updated incrementally, RFC 1624).
 *   lxc_redirect(ifindex, peer) -> TC_ACT_REDIRECT | TC_ACT_SHOT
 *       peer: bpf_redirect_peer (into the pod's netns, skipping the host
 *       veth's tc egress, i.e. the destination's to_pod); else bpf_redirect
 *       to the host veth's egress.
 */
#pragma once

#include "parse.h"
#include "maps.h"

static __always_inline int lxc_check_arp(struct __sk_buff *skb,
					 const struct endpoint_info *ep)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	int ret;

	ret = parse_arp(skb, sha, &spa);
	if (ret < 0)
		return ret;
	if ((void *)(eth + 1) > data_end)
		return -TWILL_DROP_MALFORMED;
	if (!eth_addr_eq(eth->h_source, ep->mac) || !eth_addr_eq(sha, ep->mac))
		return -TWILL_DROP_SPOOFED_MAC;
	if (!(ep->flags & TWILL_EP_HAS_IPV4) || spa != ep->ipv4)
		return -TWILL_DROP_SPOOFED_IP;
	return TWILL_REASON_FORWARDED;
}

static __always_inline int lxc_ip6_eq(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1];
}

static __always_inline int lxc_check_source(struct __sk_buff *skb,
					    const struct endpoint_info *ep,
					    const struct pkt_info *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -TWILL_DROP_MALFORMED;
	if (!eth_addr_eq(eth->h_source, ep->mac))
		return -TWILL_DROP_SPOOFED_MAC;
	if (pkt->family == TWILL_AF_INET) {
		if (!(ep->flags & TWILL_EP_HAS_IPV4) ||
		    *(const __be32 *)pkt->saddr != ep->ipv4)
			return -TWILL_DROP_SPOOFED_IP;
		return 0;
	}
	if (parse_is_nd(pkt) && parse_ip6_is_link_local(pkt->saddr))
		return 1;
	if (!(ep->flags & TWILL_EP_HAS_IPV6) ||
	    !lxc_ip6_eq(pkt->saddr, ep->ipv6))
		return -TWILL_DROP_SPOOFED_IP;
	/* The pod answers the host's neighbour solicitations for its global
	 * address from that address: policy must not see them either, or an
	 * isolated egress would cut the host off from the pod's IPv6. */
	return parse_is_nd(pkt);
}

static __always_inline struct endpoint_info *
lxc_lookup(const struct pkt_info *pkt)
{
	struct lxc_key key;

	__builtin_memcpy(key.addr, pkt->daddr, 16);
	key.family = pkt->family;
	key.pad[0] = key.pad[1] = key.pad[2] = 0;
	return bpf_map_lookup_elem(&twill_lxc, &key);
}

static __always_inline int lxc_rewrite(struct __sk_buff *skb,
				       const struct endpoint_info *dst)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -TWILL_DROP_MALFORMED;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 check;

		if ((void *)(ip + 1) > data_end)
			return -TWILL_DROP_MALFORMED;
		if (ip->ttl <= 1)
			return -TWILL_DROP_TTL_EXCEEDED;
		/* ttl is the high byte of its 16-bit word: the word drops by
		 * 0x0100, so the ones' complement sum rises by it (as the
		 * kernel's ip_decrease_ttl) */
		check = ip->check;
		check += bpf_htons(0x0100);
		ip->check = (__u16)(check + (check >= 0xffff));
		ip->ttl--;
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return -TWILL_DROP_MALFORMED;
		if (ip6->hop_limit <= 1)
			return -TWILL_DROP_TTL_EXCEEDED;
		ip6->hop_limit--;
	}
	eth_addr_copy(eth->h_source, dst->node_mac);
	eth_addr_copy(eth->h_dest, dst->mac);
	return 0;
}

static __always_inline int lxc_redirect(__u32 ifindex, __u32 peer)
{
	if (peer)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}
