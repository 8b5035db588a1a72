/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Security identity of an address (sl_ipcache). */
#ifndef SL_IDENTITY_H
#define SL_IDENTITY_H

#include "sl_maps.h"
#include "sl_config.h"

static __always_inline __u32 sl_identity_of(__u32 ip)
{
	struct sl_ipcache_key k = { .prefixlen = 32, .ip = ip };
	struct sl_ipcache_val *v = bpf_map_lookup_elem(&sl_ipcache, &k);

	return v ? v->identity : SL_ID_WORLD;
}

/*
 * The peer's identity as a hook sees it: this node's own addresses (sl_config)
 * are the host, and only they: an ipcache entry naming the host for any other
 * address (a node address sl_config does not hold) gives world.
 */
static __always_inline __u32 sl_peer_identity(const struct sl_cfg *cfg, __u32 ip)
{
	__u32 id;

	if (sl_is_node_ip(cfg, ip))
		return SL_ID_HOST;
	id = sl_identity_of(ip);
	return id == SL_ID_HOST ? SL_ID_WORLD : id;
}

#endif /* SL_IDENTITY_H */
