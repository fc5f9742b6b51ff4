/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Packet parsing (direct packet access, no copies of the payload).
 * API:
 *   struct pkt_info                        what the rest of the walk needs
 *   parse_l3(skb, &pkt) -> 0 | -TWILL_DROP_*
 *       Parses Ethernet + IPv4/IPv6 + TCP/UDP/ICMP/ICMPv6 into pkt.
 *       Fills pkt.eth_proto for every frame; for ARP and other non-IP
 *       ethertypes it returns 0 and leaves the IP fields zero.
 *       IPv4 non-first fragments -> -TWILL_DROP_FRAGMENT (no L4 header to
 *       match; we keep no fragment state). IPv6 extension headers are walked
 *       (up to PARSE_MAX_EXTHDR); a non-first IPv6 fragment is dropped alike.
 *   parse_arp(skb, &sha, &spa) -> 0 | -TWILL_DROP_MALFORMED
 *       Ethernet/IPv4 ARP sender hardware and protocol address.
 *   parse_icmp_inner(skb, &pkt, &inner) -> 0 | -TWILL_DROP_*
 *       For an ICMP(v6) error (pkt.icmp_error): the quoted datagram's tuple.
 *   parse_is_nd(&pkt)                      ICMPv6 link control: router and
 *                                          neighbour discovery (133-136)
 *                                          and MLD (130-132, 143)
 *   parse_ip6_is_link_local(addr)          fe80::/10 or ::
 * Addresses are kept as 16 bytes (IPv4 in the first 4, rest zero): the same
 * layout as lxc_key, ipcache_key and flow_event, so they copy straight over.
 */
#pragma once

#include "eth.h"
#include "common_types.h"

#define PARSE_MAX_EXTHDR 4
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1 /* 1-4: unreach, too big, time, param */
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ND_FIRST 133 /* router solicitation */
#define ICMPV6_ND_LAST 136  /* neighbour advertisement */
#define ICMPV6_MLD_QUERY 130 /* 130-132: MLDv1 query, report, done */
#define ICMPV6_MLD_DONE 132
#define ICMPV6_MLD2_REPORT 143

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

struct pkt_info {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;       /* conntrack ports; ICMP echo: both = echo id */
	__be16 dport;
	__be16 policy_port; /* port the policy matches: 0 for ICMP */
	__u16 eth_proto;    /* host order */
	__u8 family;        /* 0 until an IP header was parsed */
	__u8 protocol;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u16 l4_off;       /* from the start of the frame */
	__u8 icmp_error;    /* ICMP(v6) error: an IP header follows */
	__u8 pad;
};

static __always_inline int parse_is_icmp_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
		       type == ICMP_PARAMETERPROB;
	return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
}

static __always_inline int parse_l4(void *data, __u32 off, void *data_end,
				    __u8 proto, struct pkt_info *pkt)
{
	void *l4 = data + off;

	pkt->protocol = proto;
	pkt->l4_off = off;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -TWILL_DROP_MALFORMED;
		pkt->sport = th->source;
		pkt->dport = th->dest;
		pkt->policy_port = th->dest;
		pkt->tcp_flags = ((__u8 *)th)[13];
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return -TWILL_DROP_MALFORMED;
		pkt->sport = uh->source;
		pkt->dport = uh->dest;
		pkt->policy_port = uh->dest;
	} else if (proto == IPPROTO_ICMP || proto == TWILL_IPPROTO_ICMPV6) {
		/* type, code, checksum, then echo id: 8 bytes for both */
		__u8 *ih = l4;
		__u8 type;

		if ((void *)(ih + 8) > data_end)
			return -TWILL_DROP_MALFORMED;
		type = ih[0];
		pkt->icmp_type = type;
		if (type == ICMP_ECHO || type == ICMP_ECHOREPLY ||
		    type == ICMPV6_ECHO_REQUEST || type == ICMPV6_ECHO_REPLY) {
			/* the id pairs request and reply in conntrack */
			pkt->sport = *(__be16 *)(ih + 4);
			pkt->dport = pkt->sport;
		} else {
			pkt->icmp_error = parse_is_icmp_error(proto, type);
		}
	}
	/* other protocols: no ports, policy on the protocol alone */
	return 0;
}

static __always_inline int parse_ipv4(void *data, void *data_end,
				      struct pkt_info *pkt)
{
	struct iphdr *ip = data + ETH_HLEN;
	__u32 hlen;

	if ((void *)(ip + 1) > data_end)
		return -TWILL_DROP_MALFORMED;
	hlen = ip->ihl * 4;
	if (ip->version != 4 || hlen < sizeof(*ip))
		return -TWILL_DROP_MALFORMED;
	pkt->family = TWILL_AF_INET;
	*(__be32 *)pkt->saddr = ip->saddr;
	*(__be32 *)pkt->daddr = ip->daddr;
	if (ip->frag_off & bpf_htons(0x1fff))
		return -TWILL_DROP_FRAGMENT;
	return parse_l4(data, ETH_HLEN + hlen, data_end, ip->protocol, pkt);
}

static __always_inline int parse_ipv6(void *data, void *data_end,
				      struct pkt_info *pkt)
{
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	__u32 off = ETH_HLEN + sizeof(*ip6);
	__u8 nexthdr;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return -TWILL_DROP_MALFORMED;
	if (ip6->version != 6)
		return -TWILL_DROP_MALFORMED;
	pkt->family = TWILL_AF_INET6;
	__builtin_memcpy(pkt->saddr, &ip6->saddr, 16);
	__builtin_memcpy(pkt->daddr, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;

#pragma unroll
	for (i = 0; i < PARSE_MAX_EXTHDR; i++) {
		__u8 *h = data + off;

		if (nexthdr != TWILL_NEXTHDR_HOP &&
		    nexthdr != TWILL_NEXTHDR_ROUTING &&
		    nexthdr != TWILL_NEXTHDR_DEST &&
		    nexthdr != TWILL_NEXTHDR_AUTH &&
		    nexthdr != TWILL_NEXTHDR_FRAGMENT)
			break;
		if ((void *)(h + 8) > data_end)
			return -TWILL_DROP_MALFORMED;
		if (nexthdr == TWILL_NEXTHDR_FRAGMENT) {
			/* offset in the top 13 bits of bytes 2-3 */
			if (*(__be16 *)(h + 2) & bpf_htons(0xfff8))
				return -TWILL_DROP_FRAGMENT;
			off += 8;
		} else if (nexthdr == TWILL_NEXTHDR_AUTH) {
			off += (h[1] + 2) * 4;
		} else {
			off += (h[1] + 1) * 8;
		}
		nexthdr = h[0];
	}
	if (off > 1024) /* keeps the offset bounded for the verifier */
		return -TWILL_DROP_MALFORMED;
	return parse_l4(data, off, data_end, nexthdr, pkt);
}

static __always_inline int parse_l3(struct __sk_buff *skb, struct pkt_info *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -TWILL_DROP_MALFORMED;
	pkt->eth_proto = bpf_ntohs(eth->h_proto);
	if (pkt->eth_proto == ETH_P_IP)
		return parse_ipv4(data, data_end, pkt);
	if (pkt->eth_proto == ETH_P_IPV6)
		return parse_ipv6(data, data_end, pkt);
	return 0;
}

/* Ethernet/IPv4 ARP: 8-byte arphdr, then sha[6] spa[4] tha[6] tpa[4]. */
static __always_inline int parse_arp(struct __sk_buff *skb, __u8 *sha,
				     __be32 *spa)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct arphdr *arp = data + ETH_HLEN;
	__u8 *p = (__u8 *)(arp + 1);

	if ((void *)(p + 20) > data_end)
		return -TWILL_DROP_MALFORMED;
	if (arp->ar_hrd != bpf_htons(1) || arp->ar_pro != bpf_htons(ETH_P_IP) ||
	    arp->ar_hln != 6 || arp->ar_pln != 4)
		return -TWILL_DROP_MALFORMED;
	eth_addr_copy(sha, p);
	*spa = *(__be32 *)(p + 6);
	return 0;
}

/* The datagram quoted by an ICMP(v6) error: its addresses, protocol and
 * ports (the first 8 bytes of its L4 header, all RFC 792 guarantees), so
 * conntrack can tell whether the error belongs to a tracked connection.
 * IPv6 extension headers in the quote are not walked (-> not related). */
static __always_inline int parse_icmp_inner(struct __sk_buff *skb,
					    const struct pkt_info *pkt,
					    struct pkt_info *inner)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 off = pkt->l4_off + 8;
	__u8 *l4;
	__u8 proto;

	if (off > 1024) /* bounded for the verifier */
		return -TWILL_DROP_MALFORMED;
	if (pkt->family == TWILL_AF_INET) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end)
			return -TWILL_DROP_MALFORMED;
		if (ip->frag_off & bpf_htons(0x1fff))
			return -TWILL_DROP_FRAGMENT;
		*(__be32 *)inner->saddr = ip->saddr;
		*(__be32 *)inner->daddr = ip->daddr;
		proto = ip->protocol;
		l4 = (__u8 *)ip + ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return -TWILL_DROP_MALFORMED;
		__builtin_memcpy(inner->saddr, &ip6->saddr, 16);
		__builtin_memcpy(inner->daddr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		l4 = (__u8 *)(ip6 + 1);
	}
	if ((void *)(l4 + 8) > data_end)
		return -TWILL_DROP_MALFORMED;
	inner->family = pkt->family;
	inner->protocol = proto;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		inner->sport = *(__be16 *)l4;
		inner->dport = *(__be16 *)(l4 + 2);
	} else if (proto == IPPROTO_ICMP || proto == TWILL_IPPROTO_ICMPV6) {
		if (l4[0] != ICMP_ECHO && l4[0] != ICMP_ECHOREPLY &&
		    l4[0] != ICMPV6_ECHO_REQUEST && l4[0] != ICMPV6_ECHO_REPLY)
			return -TWILL_DROP_MALFORMED;
		inner->sport = *(__be16 *)(l4 + 4);
		inner->dport = inner->sport;
	}
	return 0;
}

/* MLD belongs here too: every interface that comes up sends MLDv2 reports
 * from :: or its link-local address, and counting those as spoofed would
 * make each pod start look like an attack. */
static __always_inline int parse_is_nd(const struct pkt_info *pkt)
{
	__u8 t = pkt->icmp_type;

	if (pkt->protocol != TWILL_IPPROTO_ICMPV6)
		return 0;
	return (t >= ICMPV6_ND_FIRST && t <= ICMPV6_ND_LAST) ||
	       (t >= ICMPV6_MLD_QUERY && t <= ICMPV6_MLD_DONE) ||
	       t == ICMPV6_MLD2_REPORT;
}

static __always_inline int parse_ip6_is_link_local(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return 1;
	return (w[0] | w[1] | w[2] | w[3]) == 0;
}
