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

/* The peer's identity as a hook sees it: this node's own addresses are the host. */
static __always_inline __u32 sl_peer_identity(const struct sl_cfg *cfg, __u32 ip)
{
	return sl_is_node_ip(cfg, ip) ? SL_ID_HOST : sl_identity_of(ip);
}

#endif /* SL_IDENTITY_H */
