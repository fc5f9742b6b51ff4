// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* The floor of the per-packet benchmark: a tc program that does nothing but
 * return TC_ACT_OK, so BPF_PROG_TEST_RUN's own per-repeat cost can be read
 * next to from_pod's. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_ok(struct __sk_buff *skb)
{
	return 0; /* TC_ACT_OK */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
