/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Runtime config (sl_config) and counters (sl_counters). */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include "sl_maps.h"

_Static_assert(SL_CNT_DROP_BASE + SL_DROP_MAX <= SL_CNT_MAX, "sl_counters too small for the drop reasons");

static __always_inline void sl_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&sl_counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline struct sl_cfg *sl_get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sl_config, &zero);
}

static __always_inline int sl_is_node_ip(const struct sl_cfg *cfg, __u32 ip)
{
	if (!ip)
		return 0;
#pragma unroll
	for (int i = 0; i < SL_MAX_NODE_IPS; i++)
		if (cfg->node_ips[i] == ip)
			return 1;
	return 0;
}

/* ip is in this node's pod CIDR (sl_cfg.pod_cidr; never while it is unset). */
static __always_inline int sl_in_pod_cidr(const struct sl_cfg *cfg, __u32 ip)
{
	return cfg->pod_cidr_mask && (ip & cfg->pod_cidr_mask) == cfg->pod_cidr;
}

/*
 * ip is an address of this node's pod CIDR with no endpoint: a pod that is
 * gone (or not there yet). The kernel has no route to it but the default one,
 * so a packet to it would leave through the node device and a connection
 * would hang until its timeout: callers refuse it instead.
 */
static __always_inline int sl_local_pod_gone(const struct sl_cfg *cfg, __u32 ip)
{
	return sl_in_pod_cidr(cfg, ip) && !bpf_map_lookup_elem(&sl_ep_by_ip, &ip);
}

#endif /* SL_CONFIG_H */
