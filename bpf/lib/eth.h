/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Ethernet layer: the C-only constants the datapath needs (ethertypes, tc
 * verdicts, IP protocol numbers vmlinux.h lacks) and MAC helpers.
 * API:
 *   eth_addr_eq(a, b)            6-byte MAC compare
 *   eth_addr_copy(dst, src)      6-byte MAC copy
 * Constants are macros on purpose: they never reach the agent (enums in
 * *_types.h are for what the agent reads).
 */
#pragma once

#include "../include/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7

#define TWILL_IPPROTO_ICMPV6 58
#define TWILL_NEXTHDR_HOP 0
#define TWILL_NEXTHDR_ROUTING 43
#define TWILL_NEXTHDR_FRAGMENT 44
#define TWILL_NEXTHDR_AUTH 51
#define TWILL_NEXTHDR_NONE 59
#define TWILL_NEXTHDR_DEST 60

/* Compare as one u32 and one u16: two loads instead of six byte compares on
 * the hot path (both buffers are at least 2-byte aligned in practice; the BPF
 * JIT on x86 does not care about alignment anyway). */
static __always_inline int eth_addr_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline void eth_addr_copy(__u8 *dst, const __u8 *src)
{
	*(__u32 *)dst = *(const __u32 *)src;
	*(__u16 *)(dst + 4) = *(const __u16 *)(src + 4);
}
