/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Datapath of the host-side pod veth (docs/architecture.md, "Packet walk").
 *   from_pod  tc ingress of the host veth: traffic leaving the pod
 *   to_pod    tc egress of the host veth: traffic entering the pod
 * The walks below return a reason (>= 0) or -TWILL_DROP_*; walk_finish turns
 * that into the tc verdict, the counter and, for drops, the event. The
 * established path is: endpoint, ct, lxc lookups, counter, redirect.
 */
#include "lib/eth.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/lxc.h"
#include "lib/events.h"
#include "lib/metrics.h"

/* Node settings, written into .rodata by the agent before load. */
const volatile __u32 cfg_host_identity = 1;
const volatile __u32 cfg_redirect_peer = 1;

struct walk {
	struct pkt_info pkt;
	struct ct_state ct;
	__u32 ifindex;          /* endpoint the verdict is accounted to */
	__u32 redirect_ifindex; /* for TWILL_REASON_REDIRECTED */
	__u8 dir;
};

/* New connection leaving a pod: egress policy of the sender, and, since
 * bpf_redirect_peer skips the destination's to_pod, the ingress policy of a
 * local destination too. A denial by the destination is accounted to it. */
static __always_inline int from_pod_new(struct walk *w,
					const struct endpoint_info *src,
					const struct endpoint_info *dst,
					__u32 len)
{
	__u32 egress_ref = 0, ingress_ref = 0;
	int ret;

	/* A local pod's identity is in its endpoint entry, which the agent
	 * writes with the same identity as its ipcache entry: one LPM trie
	 * walk less on the first packet of every same-node connection. */
	w->ct.dst_identity =
		dst ? dst->identity
		    : policy_remote_identity(w->pkt.daddr, w->pkt.family);
	ret = policy_check(w->ifindex, w->ct.dst_identity, TWILL_DIR_FROM_POD,
			   &w->pkt, &egress_ref);
	if (ret < 0)
		return ret;
	if (dst) {
		ret = policy_check(dst->ifindex, src->identity, TWILL_DIR_TO_POD,
				   &w->pkt, &ingress_ref);
		if (ret < 0) {
			w->ifindex = dst->ifindex;
			w->dir = TWILL_DIR_TO_POD;
			return ret;
		}
	}
	w->ct.rule_ref = egress_ref ? egress_ref : ingress_ref;
	ret = ct_create(&w->pkt, &w->ct, len);
	if (ret < 0)
		return ret;
	events_emit(TWILL_EVENT_NEW_CONN, TWILL_DIR_FROM_POD,
		    dst ? TWILL_REASON_REDIRECTED : TWILL_REASON_FORWARDED,
		    w->ifindex, &w->pkt, &w->ct, len);
	return 0;
}

static __always_inline int from_pod_walk(struct __sk_buff *skb, struct walk *w)
{
	struct endpoint_info *src, *dst;
	int ret;

	src = bpf_map_lookup_elem(&twill_endpoints, &w->ifindex);
	if (!src)
		return -TWILL_DROP_NO_ENDPOINT;
	w->ct.src_identity = src->identity;
	ret = parse_l3(skb, &w->pkt);
	if (ret < 0)
		return ret;
	if (w->pkt.eth_proto == ETH_P_ARP)
		return lxc_check_arp(skb, src);
	if (!w->pkt.family)
		return -TWILL_DROP_UNSUPPORTED_L3;
	ret = lxc_check_source(skb, src, &w->pkt);
	if (ret)
		return ret < 0 ? ret : TWILL_REASON_FORWARDED;

	/* Rewrite before conntrack: an expired TTL must not open a connection,
	 * and a frame that policy drops next may as well be rewritten. */
	dst = lxc_lookup(&w->pkt);
	if (dst) {
		ret = lxc_rewrite(skb, dst);
		if (ret < 0)
			return ret;
		w->redirect_ifindex = dst->ifindex;
	}
	if (ct_lookup(&w->pkt, &w->ct, skb->len) == CT_NEW &&
	    !ct_related(skb, &w->pkt)) {
		ret = from_pod_new(w, src, dst, skb->len);
		if (ret < 0)
			return ret;
	}
	return dst ? TWILL_REASON_REDIRECTED : TWILL_REASON_FORWARDED;
}

static __always_inline int to_pod_walk(struct __sk_buff *skb, struct walk *w)
{
	struct endpoint_info *ep;
	int ret;

	ep = bpf_map_lookup_elem(&twill_endpoints, &w->ifindex);
	if (!ep)
		return -TWILL_DROP_NO_ENDPOINT;
	w->ct.dst_identity = ep->identity;
	ret = parse_l3(skb, &w->pkt);
	if (ret < 0)
		return ret;
	if (w->pkt.eth_proto == ETH_P_ARP || parse_is_nd(&w->pkt))
		return TWILL_REASON_FORWARDED;
	if (!w->pkt.family)
		return -TWILL_DROP_UNSUPPORTED_L3;
	if (ct_lookup(&w->pkt, &w->ct, skb->len) != CT_NEW ||
	    ct_related(skb, &w->pkt))
		return TWILL_REASON_FORWARDED;

	w->ct.src_identity =
		policy_remote_identity(w->pkt.saddr, w->pkt.family);
	ret = policy_check(w->ifindex, w->ct.src_identity, TWILL_DIR_TO_POD,
			   &w->pkt, &w->ct.rule_ref);
	if (ret < 0)
		return ret;
	ret = ct_create(&w->pkt, &w->ct, skb->len);
	if (ret < 0)
		return ret;
	events_emit(TWILL_EVENT_NEW_CONN, TWILL_DIR_TO_POD,
		    TWILL_REASON_FORWARDED, w->ifindex, &w->pkt, &w->ct,
		    skb->len);
	return TWILL_REASON_FORWARDED;
}

static __always_inline int walk_finish(struct __sk_buff *skb, struct walk *w,
				       int ret)
{
	int act = TC_ACT_OK;

	if (ret == TWILL_REASON_REDIRECTED) {
		act = lxc_redirect(w->redirect_ifindex, cfg_redirect_peer);
		if (act != TC_ACT_REDIRECT)
			ret = -TWILL_DROP_REDIRECT_FAILED;
	}
	if (ret < 0) {
		ret = -ret;
		act = TC_ACT_SHOT;
		events_emit(TWILL_EVENT_DROP, w->dir, ret, w->ifindex, &w->pkt,
			    &w->ct, skb->len);
	}
	metrics_count(w->dir, ret, skb->len);
	return act;
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	struct walk w = {};

	w.ifindex = skb->ifindex;
	w.dir = TWILL_DIR_FROM_POD;
	return walk_finish(skb, &w, from_pod_walk(skb, &w));
}

SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	struct walk w = {};

	w.ifindex = skb->ifindex;
	w.dir = TWILL_DIR_TO_POD;
	return walk_finish(skb, &w, to_pod_walk(skb, &w));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
