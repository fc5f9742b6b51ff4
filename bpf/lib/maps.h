/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Every map of the datapath. All are pinned by name under the agent's bpf
 * root (LIBBPF_PIN_BY_NAME + the pin_root_path the agent passes at open), so a
 * restarted agent and bpftool find them: `bpftool map dump pinned
 * /sys/fs/bpf/twill/<name>` prints field names from BTF.
 * Names are at most 15 characters (BPF_OBJ_NAME_LEN).
 */
#pragma once

#include "endpoint_types.h"
#include "ipcache_types.h"
#include "policy_types.h"
#include "conntrack_types.h"
#include "event_types.h"
#include <bpf/bpf_helpers.h>

#define TWILL_MAX_ENDPOINTS 4096
#define TWILL_MAX_IPCACHE 524288
#define TWILL_MAX_POLICY 16384
#define TWILL_MAX_CT 262144

/* host-side veth ifindex -> endpoint */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TWILL_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_endpoints SEC(".maps");

/* pod IP -> endpoint, for same-node delivery */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TWILL_MAX_ENDPOINTS * 2);
	__type(key, struct lxc_key);
	__type(value, struct endpoint_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_lxc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, TWILL_MAX_IPCACHE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_ipcache SEC(".maps");

/* The inner map template: the agent creates two per endpoint with exactly
 * these attributes (and this BTF) and inserts them into twill_policy. */
struct policy_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, TWILL_MAX_POLICY);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
};

/* policy_outer_key(host-side veth ifindex, slot) = ifindex * 2 + slot ->
 * one of that endpoint's two policy tries (slot 0 or 1) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 2 * TWILL_MAX_ENDPOINTS);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct policy_inner); /* must be last: flexible array */
} twill_policy SEC(".maps");

/* host-side veth ifindex -> the slot of twill_policy in force; no entry =
 * drop (NO_POLICY_MAP). Written last when an endpoint is first programmed,
 * deleted first when it is removed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TWILL_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct policy_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_policy_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TWILL_MAX_CT);
	__type(key, struct ct_key4);
	__type(value, struct ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TWILL_MAX_CT);
	__type(key, struct ct_key6);
	__type(value, struct ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TWILL_DIR_MAX * TWILL_REASON_MAX);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_metrics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_events SEC(".maps");

/* events that did not fit in the ring, index 0 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} twill_ev_lost SEC(".maps");

/* Never used by a program; it exists so that the event type and the enums
 * the agent reads are in the object's BTF for hack/gen-bpf-types.ts. */
struct twill_btf_anchor_value {
	struct flow_event event;
	/* clang emits only a FWD for types reached through the pointer members
	 * of policy_inner; libbpf 1.1 then cannot size the inner map
	 * ("can't determine key size"), so anchor them as full types here. */
	struct policy_key policy_key;
	struct policy_entry policy_entry;
	struct policy_slot policy_slot;
	enum twill_direction direction;
	enum twill_reason reason;
	enum twill_identity_reserved identity;
	enum twill_family family;
	enum twill_endpoint_flags ep_flags;
	enum twill_ipcache_flags ipc_flags;
	enum twill_policy_lpm lpm;
	enum twill_ct_flags ct_flags;
	enum twill_event_type event_type;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct twill_btf_anchor_value);
} twill_btf_anchor SEC(".maps");
