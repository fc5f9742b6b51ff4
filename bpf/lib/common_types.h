/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Types shared by the datapath and the agent: the single source of truth.
 *
 * Every struct and enum here reaches BTF (structs through the maps that use
 * them, enums and event structs through the `twill_btf_anchor` map in maps.h),
 * and hack/gen-bpf-types.ts turns that BTF into agent/generated/bpf-types.ts.
 * Rules, so that the generator and the verifier are both happy:
 *   - no implicit padding: every hole is a named `pad*` field, and every
 *     struct has a _Static_assert on its size;
 *   - constants the agent reads are enum members, never #defines (macros do
 *     not reach BTF);
 *   - fields in network byte order are declared __be16/__be32 and the
 *     generated codec converts them, so TypeScript only holds host order.
 * No code here: types only.
 */
#pragma once

#include "../include/vmlinux.h"

/* Direction, from the pod's point of view. FROM_POD runs at tc ingress of the
 * host-side veth, TO_POD at tc egress of it. */
enum twill_direction {
	TWILL_DIR_FROM_POD = 0, /* pod egress */
	TWILL_DIR_TO_POD = 1,   /* pod ingress */
	TWILL_DIR_MAX = 2,
};

/* Why a packet got its verdict. Values < TWILL_DROP_BASE are not drops. The
 * same numbers are the counter index (see twill_metrics) and the reason
 * carried by drop events, so there is one list to extend. */
enum twill_reason {
	TWILL_REASON_FORWARDED = 0,    /* handed to the host stack */
	TWILL_REASON_REDIRECTED = 1,   /* delivered straight to a local pod */
	TWILL_DROP_BASE = 8,
	TWILL_DROP_MALFORMED = 8,      /* truncated or invalid headers */
	TWILL_DROP_NO_ENDPOINT = 9,    /* the veth has no endpoint entry */
	TWILL_DROP_SPOOFED_IP = 10,    /* source IP is not the endpoint's */
	TWILL_DROP_SPOOFED_MAC = 11,   /* source MAC is not the endpoint's */
	TWILL_DROP_POLICY = 12,        /* no policy entry allows the flow */
	TWILL_DROP_NO_POLICY_MAP = 13, /* endpoint has no policy map yet */
	TWILL_DROP_FRAGMENT = 14,      /* non-first IP fragment without state */
	TWILL_DROP_UNSUPPORTED_L3 = 15,/* neither IPv4, IPv6 nor ARP */
	TWILL_DROP_TTL_EXCEEDED = 16,  /* TTL/hop limit would reach zero */
	TWILL_DROP_REDIRECT_FAILED = 17,
	TWILL_DROP_CT_FULL = 18,       /* conntrack insert failed */
	TWILL_REASON_MAX = 32,
};

/* Reserved security identities (numbers follow Cilium's where it has one).
 * Identity 0 never names a peer: in a policy key it means "any identity". */
enum twill_identity_reserved {
	TWILL_IDENTITY_ANY = 0,
	TWILL_IDENTITY_HOST = 1,
	TWILL_IDENTITY_WORLD = 2,
	TWILL_IDENTITY_UNMANAGED = 3,
	TWILL_IDENTITY_REMOTE_NODE = 6,
	TWILL_IDENTITY_KUBE_APISERVER = 7,
	TWILL_IDENTITY_FIRST_LOCAL = 256, /* first label-derived identity */
	TWILL_IDENTITY_CIDR_BASE = 16777216, /* 1 << 24: CIDR identities */
};

/* Address families as they appear in keys (same values as AF_INET/AF_INET6). */
enum twill_family {
	TWILL_AF_INET = 2,
	TWILL_AF_INET6 = 10,
};
