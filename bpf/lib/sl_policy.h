/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Identity-based policy: sl_policy LPM lookups in the order (peer,proto),
 * (peer,any), (any,proto), (any,any) with the port as an LPM prefix, then the
 * sl_cidr_policy LPM map on the peer address. Default deny only for enforced
 * endpoints; endpoints flagged SL_EP_POLICY_ERROR deny everything.
 */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include "sl_maps.h"

/* The sl_policy entry for (peer, proto+port), (peer, any), (any, proto+port), (any, any): first hit. */
static __always_inline struct sl_policy_val *sl_policy_lookup_wildcards(__u32 ep_id, __u32 peer_id,
									__u8 dir, __u8 proto,
									__be16 port)
{
	struct sl_policy_key k = {
		.prefixlen = SL_POLICY_PREFIX_FULL,
		.ep_id = ep_id,
		.peer_id = peer_id,
		.dir = dir,
		.proto = proto,
		.port = port,
	};
	struct sl_policy_val *v;

	v = bpf_map_lookup_elem(&sl_policy, &k);
	if (v)
		return v;
	k.proto = 0;
	k.port = 0;
	v = bpf_map_lookup_elem(&sl_policy, &k);
	if (v)
		return v;
	k.peer_id = 0;
	k.proto = proto;
	k.port = port;
	v = bpf_map_lookup_elem(&sl_policy, &k);
	if (v)
		return v;
	k.proto = 0;
	k.port = 0;
	return bpf_map_lookup_elem(&sl_policy, &k);
}

static __always_inline struct sl_policy_val *sl_cidr_lookup(__u32 ep_id, __u32 peer_ip, __u8 dir,
							    __u8 proto, __be16 port)
{
	struct sl_cidr_policy_key k = {
		.prefixlen = SL_CIDR_PREFIX_FULL,
		.ep_id = ep_id,
		.dir = dir,
		.proto = proto,
		.port = port,
		.ip = peer_ip,
	};
	struct sl_policy_val *v;

	/* an "except" hit only means "no allow from this lookup" */
	v = bpf_map_lookup_elem(&sl_cidr_policy, &k);
	if (v && v->action == SL_ACTION_ALLOW)
		return v;
	k.port = 0;
	v = bpf_map_lookup_elem(&sl_cidr_policy, &k);
	if (v && v->action == SL_ACTION_ALLOW)
		return v;
	k.proto = 0;
	v = bpf_map_lookup_elem(&sl_cidr_policy, &k);
	if (v && v->action == SL_ACTION_ALLOW)
		return v;
	return 0;
}

/*
 * Decide whether endpoint ep may exchange this new flow with the peer in
 * direction dir. On allow fills t->policy_id/rule and returns SL_DROP_NONE;
 * otherwise returns the drop reason.
 */
static __always_inline enum sl_drop_reason sl_policy_check(const struct sl_endpoint *ep, __u32 peer_id,
							   __u32 peer_ip, enum sl_dir dir, __u8 proto,
							   __be16 port, struct sl_trace *t)
{
	struct sl_policy_val *v;
	__u32 enforced = dir == SL_DIR_INGRESS ? SL_EP_INGRESS_ENFORCED : SL_EP_EGRESS_ENFORCED;

	t->policy_id = 0;
	t->rule = 0;
	if (ep->flags & SL_EP_POLICY_ERROR)
		return ep->flags & SL_EP_POLICY_WRITE_FAILED ? SL_DROP_POLICY_WRITE_FAILED
							      : SL_DROP_POLICY_UNREPRESENTABLE;
	if (!(ep->flags & enforced))
		return SL_DROP_NONE;
	/* traffic from and to the pod's own node (kubelet probes) is always allowed; peer_id is the
	 * host only for the node's own addresses (sl_peer_identity) */
	if (peer_id == SL_ID_HOST)
		return SL_DROP_NONE;

	v = sl_policy_lookup_wildcards(ep->ep_id, peer_id, dir, proto, port);
	if (!v || v->action != SL_ACTION_ALLOW)
		v = sl_cidr_lookup(ep->ep_id, peer_ip, dir, proto, port);
	if (!v || v->action != SL_ACTION_ALLOW)
		return SL_DROP_POLICY_DENIED;
	t->policy_id = v->policy_id;
	t->rule = v->rule;
	return SL_DROP_NONE;
}

#endif /* SL_POLICY_H */
