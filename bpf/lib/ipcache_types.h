/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * ipcache: prefix -> security identity of the remote side, an LPM trie shared
 * by v4 and v6. The family byte is part of the matched prefix, so prefixlen =
 * 32 (pad + family) + the IP prefix length. A miss means "world".
 */
#pragma once

#include "common_types.h"

struct ipcache_key {
	__u32 prefixlen;   /* LPM prefix: 32 + IP prefix length */
	__u8 pad[3];
	__u8 family;       /* enum twill_family */
	__u8 addr[16];     /* IPv4 in the first 4 bytes */
};
_Static_assert(sizeof(struct ipcache_key) == 24, "ipcache_key size");

enum twill_ipcache_flags {
	TWILL_IPCACHE_LOCAL = 1, /* a pod on this node */
};

struct ipcache_entry {
	__u32 identity;
	__u32 flags;       /* enum twill_ipcache_flags */
};
_Static_assert(sizeof(struct ipcache_entry) == 8, "ipcache_entry size");
