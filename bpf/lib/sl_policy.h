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

/* What the tier lookups found, combined. */
struct sl_tier_acc {
	struct sl_tier_hit admin;
	struct sl_tier_hit baseline;
	__u32 np_policy_id; /* a NetworkPolicy allow (its policy and rule), 0 = none */
	__u16 np_rule;
};

static __always_inline void sl_tier_fold(struct sl_tier_acc *acc, const struct sl_policy_val *v)
{
	if (!v)
		return;
	if (v->admin.prec && v->admin.prec < acc->admin.prec)
		acc->admin = v->admin;
	if (v->baseline.prec && v->baseline.prec < acc->baseline.prec)
		acc->baseline = v->baseline;
	if (v->action == SL_ACTION_ALLOW && !acc->np_policy_id) {
		acc->np_policy_id = v->policy_id;
		acc->np_rule = v->rule;
	}
}

/* Every sl_policy and sl_cidr_policy lookup of the flow, folded into acc. */
static __always_inline void sl_tier_lookups(struct sl_tier_acc *acc, __u32 ep_id, __u32 peer_id,
					    __u32 peer_ip, __u8 dir, __u8 proto, __be16 port)
{
	struct sl_policy_key k = {
		.prefixlen = SL_POLICY_PREFIX_FULL,
		.ep_id = ep_id,
		.peer_id = peer_id,
		.dir = dir,
		.proto = proto,
		.port = port,
	};
	struct sl_cidr_policy_key c = {
		.prefixlen = SL_CIDR_PREFIX_FULL,
		.ep_id = ep_id,
		.dir = dir,
		.proto = proto,
		.port = port,
		.ip = peer_ip,
	};

	sl_tier_fold(acc, bpf_map_lookup_elem(&sl_policy, &k));
	k.proto = 0;
	k.port = 0;
	sl_tier_fold(acc, bpf_map_lookup_elem(&sl_policy, &k));
	k.peer_id = 0;
	sl_tier_fold(acc, bpf_map_lookup_elem(&sl_policy, &k));
	k.proto = proto;
	k.port = port;
	sl_tier_fold(acc, bpf_map_lookup_elem(&sl_policy, &k));
	sl_tier_fold(acc, bpf_map_lookup_elem(&sl_cidr_policy, &c));
	c.port = 0;
	sl_tier_fold(acc, bpf_map_lookup_elem(&sl_cidr_policy, &c));
	c.proto = 0;
	sl_tier_fold(acc, bpf_map_lookup_elem(&sl_cidr_policy, &c));
}

/* The tier walk (see the top of this file). Fills t with the deciding rule and any Admin Pass. */
static __always_inline enum sl_drop_reason sl_tier_check(const struct sl_endpoint *ep, __u32 peer_id,
							 __u32 peer_ip, enum sl_dir dir, __u8 proto,
							 __be16 port, __u32 enforced,
							 struct sl_trace *t)
{
	struct sl_tier_acc acc = {
		.admin = {.prec = 0xffffffff},
		.baseline = {.prec = 0xffffffff},
	};

	sl_tier_lookups(&acc, ep->ep_id, peer_id, peer_ip, dir, proto, port);
	if (acc.admin.prec != 0xffffffff) {
		if (acc.admin.action != SL_CNP_PASS) {
			t->policy_id = acc.admin.policy_id;
			t->rule = acc.admin.rule;
			return acc.admin.action == SL_CNP_ACCEPT ? SL_DROP_NONE : SL_DROP_POLICY_DENIED;
		}
		t->pass_policy_id = acc.admin.policy_id;
		t->pass_rule = acc.admin.rule;
	}
	if (ep->flags & enforced) {
		if (!acc.np_policy_id)
			return SL_DROP_POLICY_DENIED;
		t->policy_id = acc.np_policy_id;
		t->rule = acc.np_rule;
		return SL_DROP_NONE;
	}
	if (acc.baseline.prec != 0xffffffff && acc.baseline.action != SL_CNP_PASS) {
		t->policy_id = acc.baseline.policy_id;
		t->rule = acc.baseline.rule;
		return acc.baseline.action == SL_CNP_ACCEPT ? SL_DROP_NONE : SL_DROP_POLICY_DENIED;
	}
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
	/* traffic from and to the pod's own node (kubelet probes) is always allowed; peer_id is the
	 * host only for the node's own addresses (sl_peer_identity) */
	if (peer_id == SL_ID_HOST)
		return SL_DROP_NONE;
	if (ep->flags & tiers)
		return sl_tier_check(ep, peer_id, peer_ip, dir, proto, port, enforced, t);

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
