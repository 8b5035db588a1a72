/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Identity-based policy: sl_policy LPM lookups in the order (peer,proto),
 * (peer,any), (any,proto), (any,any) with the port as an LPM prefix, then the
 * sl_cidr_policy LPM map on the peer address. Default deny only for enforced
 * endpoints; endpoints flagged SL_EP_POLICY_ERROR deny everything.
 *
 * Endpoints with SL_EP_<dir>_TIERS (a ClusterNetworkPolicy has rules for them)
 * take every lookup instead of the first hit, combine them in one pass (lowest
 * precedence per tier, any NetworkPolicy allow) and walk the tiers: Admin
 * Accept/Deny decide, Admin Pass or no Admin rule goes on to NetworkPolicy;
 * an endpoint no NetworkPolicy selects for the direction goes on to Baseline
 * (Accept/Deny decide, Pass or no rule: default allow).
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

/* What the tier lookups found, combined: the best hit per tier, the first NetworkPolicy allow. */
struct sl_tier_acc {
	const struct sl_tier_hit *admin;
	const struct sl_tier_hit *baseline;
	const struct sl_policy_val *np;
};

static __always_inline void sl_tier_fold(struct sl_tier_acc *acc, const struct sl_policy_val *v)
{
	if (!v)
		return;
	if (v->admin.prec && (!acc->admin || v->admin.prec < acc->admin->prec))
		acc->admin = &v->admin;
	if (v->baseline.prec && (!acc->baseline || v->baseline.prec < acc->baseline->prec))
		acc->baseline = &v->baseline;
	if (v->action == SL_ACTION_ALLOW && !acc->np)
		acc->np = v;
}

/* A final tier decision (Accept or Deny): the rule goes into the trace. */
static __always_inline int sl_tier_final(const struct sl_tier_hit *h, struct sl_trace *t)
{
	t->policy_id = h->policy_id;
	t->rule = h->rule;
	return h->action == SL_CNP_ACCEPT ? SL_DROP_NONE : SL_DROP_POLICY_DENIED;
}

/* One key buffer for both maps: the subprogram's frame stays small. */
union sl_tier_key {
	struct sl_policy_key p;
	struct sl_cidr_policy_key c;
};

/*
 * The tier walk (see the top of this file): every sl_policy and sl_cidr_policy lookup of the
 * flow folded into one sl_tier_acc, then Admin -> NetworkPolicy -> Baseline -> allow. Fills t
 * with the deciding rule and any Admin Pass. q packs dir (bits 0-7), proto (8-15), port (16-31,
 * network order) and "enforced by a NetworkPolicy" (bit 32). A subprogram: one copy for every
 * hook that checks policy, its frame apart from the entry program's (512 bytes combined).
 */
static __noinline int sl_tier_check(__u32 ep_id, __u32 peer_id, __u32 peer_ip, __u64 q,
				    struct sl_trace *t)
{
	struct sl_tier_acc acc = {};
	union sl_tier_key k;
	__u8 dir = q & 0xff, proto = (q >> 8) & 0xff;
	__be16 port = (q >> 16) & 0xffff;

	__builtin_memset(&k, 0, sizeof(k));
	k.p.prefixlen = SL_POLICY_PREFIX_FULL;
	k.p.ep_id = ep_id;
	k.p.peer_id = peer_id;
	k.p.dir = dir;
	k.p.proto = proto;
	k.p.port = port;
	sl_tier_fold(&acc, bpf_map_lookup_elem(&sl_policy, &k.p));
	k.p.proto = 0;
	k.p.port = 0;
	sl_tier_fold(&acc, bpf_map_lookup_elem(&sl_policy, &k.p));
	k.p.peer_id = 0;
	sl_tier_fold(&acc, bpf_map_lookup_elem(&sl_policy, &k.p));
	k.p.proto = proto;
	k.p.port = port;
	sl_tier_fold(&acc, bpf_map_lookup_elem(&sl_policy, &k.p));

	k.c.prefixlen = SL_CIDR_PREFIX_FULL;
	k.c.ep_id = ep_id;
	k.c.dir = dir;
	k.c.proto = proto;
	k.c.port = port;
	k.c.ip = peer_ip;
	sl_tier_fold(&acc, bpf_map_lookup_elem(&sl_cidr_policy, &k.c));
	k.c.port = 0;
	sl_tier_fold(&acc, bpf_map_lookup_elem(&sl_cidr_policy, &k.c));
	k.c.proto = 0;
	sl_tier_fold(&acc, bpf_map_lookup_elem(&sl_cidr_policy, &k.c));

	if (acc.admin) {
		if (acc.admin->action != SL_CNP_PASS)
			return sl_tier_final(acc.admin, t);
		t->pass_policy_id = acc.admin->policy_id;
		t->pass_rule = acc.admin->rule;
	}
	if ((q >> 32) & 1) {
		/* NetworkPolicy always allows the pod's own node (bit 33, see sl_policy_check) */
		if (q >> 33)
			return SL_DROP_NONE;
		if (!acc.np)
			return SL_DROP_POLICY_DENIED;
		t->policy_id = acc.np->policy_id;
		t->rule = acc.np->rule;
		return SL_DROP_NONE;
	}
	if (acc.baseline && acc.baseline->action != SL_CNP_PASS)
		return sl_tier_final(acc.baseline, t);
	return SL_DROP_NONE;
}

/*
 * Decide whether endpoint ep may exchange this new flow with the peer in
 * direction dir. On allow fills t->policy_id/rule and returns SL_DROP_NONE;
 * otherwise returns the drop reason (t->policy_id names a ClusterNetworkPolicy
 * whose Deny rule decided, 0 for NetworkPolicy's default deny).
 */
static __always_inline enum sl_drop_reason sl_policy_check(const struct sl_endpoint *ep, __u32 peer_id,
							   __u32 peer_ip, enum sl_dir dir, __u8 proto,
							   __be16 port, struct sl_trace *t)
{
	struct sl_policy_val *v;
	__u32 enforced = dir == SL_DIR_INGRESS ? SL_EP_INGRESS_ENFORCED : SL_EP_EGRESS_ENFORCED;
	__u32 tiers = dir == SL_DIR_INGRESS ? SL_EP_INGRESS_TIERS : SL_EP_EGRESS_TIERS;

	t->policy_id = 0;
	t->rule = 0;
	t->pass_policy_id = 0;
	t->pass_rule = 0;
	if (ep->flags & SL_EP_POLICY_ERROR)
		return ep->flags & SL_EP_POLICY_WRITE_FAILED ? SL_DROP_POLICY_WRITE_FAILED
							      : SL_DROP_POLICY_UNREPRESENTABLE;
	if (!(ep->flags & (enforced | tiers)))
		return SL_DROP_NONE;
	/* NetworkPolicy always allows traffic from and to the pod's own node (kubelet probes); peer_id
	 * is the host only for the node's own addresses (sl_peer_identity). ClusterNetworkPolicy's
	 * egress peers (nodes, networks) can name the own node too: egress to it goes through the
	 * Admin and Baseline tiers, with the NetworkPolicy tier allowing it. Ingress has no such peer. */
	if (peer_id == SL_ID_HOST && (dir == SL_DIR_INGRESS || !(ep->flags & tiers)))
		return SL_DROP_NONE;
	if (ep->flags & tiers)
		return sl_tier_check(ep->ep_id, peer_id, peer_ip,
				     (__u64)dir | (__u64)proto << 8 | (__u64)port << 16 |
					     (__u64)!!(ep->flags & enforced) << 32 |
					     (__u64)(peer_id == SL_ID_HOST) << 33,
				     t);

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
