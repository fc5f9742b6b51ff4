/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Endpoints: one per pod veth. Looked up by the host-side veth ifindex
 * (twill_endpoints, for traffic from the pod) and by pod IP (twill_lxc, for
 * same-node delivery). Both maps hold the same value.
 */
#pragma once

#include "common_types.h"

enum twill_endpoint_flags {
	TWILL_EP_HAS_IPV4 = 1,
	TWILL_EP_HAS_IPV6 = 2,
};

struct endpoint_info {
	__u32 ifindex;     /* host-side veth ifindex */
	__u32 identity;    /* security identity of the pod */
	__be32 ipv4;       /* pod IPv4, valid if TWILL_EP_HAS_IPV4 */
	__u32 flags;       /* enum twill_endpoint_flags */
	__u8 ipv6[16];     /* pod IPv6, valid if TWILL_EP_HAS_IPV6 */
	__u8 mac[6];       /* pod-side (eth0) MAC: source check, redirect dst */
	__u8 node_mac[6];  /* host-side veth MAC: redirect source */
};
_Static_assert(sizeof(struct endpoint_info) == 44, "endpoint_info size");

/* Key of twill_lxc: an IPv4 address sits in the first 4 bytes of addr and
 * the other 12 are zero. */
struct lxc_key {
	__u8 addr[16];
	__u8 family;       /* enum twill_family */
	__u8 pad[3];
};
_Static_assert(sizeof(struct lxc_key) == 20, "lxc_key size");
