// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Pod veth programs (host side of the pod's veth pair):
 *   sl_from_container - TCX ingress: packets leaving the pod (egress policy)
 *   sl_to_container   - TCX egress:  packets entering the pod (ingress policy)
 * Each reads as the packet's path:
 *   parse (fragments get their first fragment's ports) -> endpoint ->
 *   ICMP error of a tracked flow? (related: its NAT) ->
 *   conntrack hit? (NAT, counters) -> service lookup ->
 *   policy -> conntrack create -> NAT -> forward / drop(reason) -> event.
 * Handlers return a TC action, SL_CONTINUE or a drop code; each program ends
 * in sl_exit(), its one drop exit (lib/sl_drop.h).
 */
#include "lib/sl_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/sl_types.h"
#include "lib/sl_maps.h"
#include "lib/sl_config.h"
#include "lib/sl_identity.h"
#include "lib/sl_parse.h"
#include "lib/sl_events.h"
#include "lib/sl_drop.h"
#include "lib/sl_csum.h"
#include "lib/sl_conntrack.h"
#include "lib/sl_lb.h"
#include "lib/sl_policy.h"
#include "lib/sl_icmp.h"

/* Parse the packet and find the pod endpoint of the veth: both pod hooks start the same way.
 * Returns SL_CONTINUE with *ep set, or the verdict (ARP passes; anything else not IPv4 fails closed). */
static __always_inline int sl_lxc_prologue(struct __sk_buff *skb, struct sl_pkt *p,
					   struct sl_trace *t, struct sl_endpoint **ep)
{
	__u32 ifindex = skb->ifindex;
	__u16 eth_proto = 0;
	int r;

	r = sl_parse(skb, p, &eth_proto);
	if (r == SL_PARSE_NOT_IPV4) {
		if (eth_proto == ETH_P_ARP)
			return TC_ACT_OK;
		sl_count(SL_CNT_NON_IPV4);
		return TC_ACT_SHOT; /* IPv4-only datapath: fail closed */
	}
	t->orig_daddr = p->daddr;
	t->orig_dport = p->dport;
	if (r < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);

	*ep = bpf_map_lookup_elem(&sl_endpoints, &ifindex);
	if (!*ep)
		return sl_drop_code(SL_DROP_UNKNOWN_ENDPOINT);
	/* a later fragment without its first one has no ports to decide on: fail closed */
	if (p->flags & SL_PKT_FRAG_NOT_FOUND) {
		if (t->direction == SL_DIR_EGRESS)
			t->src_identity = (*ep)->identity;
		else
			t->dst_identity = (*ep)->identity;
		return sl_drop_code(SL_DROP_FRAG_NOT_FOUND);
	}
	return SL_CONTINUE;
}

/*
 * A conntrack hit whose flow may no longer be allowed. A forward entry allowed
 * under another policy revision of the endpoint (sl_endpoint.policy_rev) is
 * looked up in policy again, with the peer's current identity and, for egress,
 * the post-DNAT destination. Allowed: the entry takes the endpoint's revision
 * and the allowing rule (and a denied flow is live again). Denied: the entry
 * and its pair become the flow's tombstone (SL_CT_DENIED): every packet of
 * either direction is dropped with the drop reason, replies included, until a
 * later revision allows the flow again or the entries expire. Deleting them
 * instead would let the first packet the other end sends (a retransmission of
 * data the cut connection never acknowledged) start the flow again as a new
 * flow the other way round, whose reply entry would then let this side in.
 * Replies of live flows are never looked up (policy allows the connection, not
 * each direction).
 */
static __always_inline enum sl_drop_reason sl_lxc_ct_recheck(const struct sl_cfg *cfg, struct sl_pkt *p,
							      struct sl_ct_entry *e, enum sl_ct_map m,
							      const struct sl_endpoint *ep, enum sl_dir dir,
							      struct sl_trace *t)
{
	enum sl_drop_reason reason;
	struct sl_ct_entry *pair;
	struct sl_ct_key pk;
	__u32 peer_ip = p->saddr, peer_id;
	__be16 port = p->dport;

	if (!(e->flags & SL_CT_DENIED) && ((e->flags & SL_CT_REPLY) || e->policy_rev == ep->policy_rev))
		return SL_DROP_NONE;
	if (dir == SL_DIR_EGRESS && !(e->flags & SL_CT_REPLY)) {
		peer_ip = p->daddr;
		if (e->flags & SL_CT_DNAT) {
			peer_ip = e->nat_addr;
			port = e->nat_port;
		}
	}
	if (e->flags & SL_CT_REPLY) {
		/* the reply of a tombstoned flow: its forward entry decides */
		t->is_reply = 1;
		t->src_identity = e->src_identity;
		t->dst_identity = e->dst_identity;
		e->last_seen_ns = bpf_ktime_get_boot_ns();
		return SL_DROP_POLICY_DENIED;
	}
	/* a forward entry of another revision, or a tombstone (looked up again: allowed again, or its drop reason now) */
	peer_id = sl_peer_identity(cfg, peer_ip);
	reason = sl_policy_check(ep, peer_id, peer_ip, dir, p->proto, port, t);
	__builtin_memcpy(&pk, &e->pair, sizeof(pk));
	pair = sl_ct_map_lookup(m, &pk);
	if (reason == SL_DROP_NONE) {
		e->flags &= ~SL_CT_DENIED;
		if (pair)
			pair->flags &= ~SL_CT_DENIED;
		e->policy_rev = ep->policy_rev;
		e->policy_id = t->policy_id;
		e->rule = t->rule;
		e->pass_policy_id = t->pass_policy_id;
		e->pass_rule = t->pass_rule;
		if (dir == SL_DIR_EGRESS)
			e->dst_identity = peer_id;
		else
			e->src_identity = peer_id;
		return SL_DROP_NONE;
	}
	if (dir == SL_DIR_EGRESS) {
		t->dst_identity = peer_id;
		p->daddr = peer_ip;
		p->dport = port;
	} else {
		t->src_identity = peer_id;
	}
	e->policy_rev = ep->policy_rev;
	e->last_seen_ns = bpf_ktime_get_boot_ns();
	e->flags |= SL_CT_DENIED;
	if (pair)
		pair->flags |= SL_CT_DENIED;
	return reason;
}

/*
 * Established flow or reply at either pod hook: policy again when the
 * endpoint's policy changed since the entry was made, then NAT and counters
 * (lib/sl_conntrack.h).
 */
static __always_inline int sl_lxc_ct_hit(struct __sk_buff *skb, const struct sl_cfg *cfg,
					 struct sl_pkt *p, struct sl_ct_entry *e,
					 enum sl_ct_map m, const struct sl_endpoint *ep, enum sl_dir dir,
					 struct sl_trace *t)
{
	enum sl_drop_reason reason = sl_lxc_ct_recheck(cfg, p, e, m, ep, dir, t);

	if (reason != SL_DROP_NONE)
		return sl_drop_code(reason);
	if (sl_ct_apply(skb, cfg, p, e, m, t) < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);
	sl_count(SL_CNT_FORWARDED);
	sl_emit_trace(cfg, p, t);
	return TC_ACT_OK;
}

/*
 * A connection still opening (a bare SYN: the retransmit of one whose first
 * SYN made the entry) towards a pod of this node that is gone, as a backend
 * (DNAT) or directly: its entry and the pair go, the SYN is refused (RST), so
 * the client neither hangs on the dead address nor keeps it for the next try.
 * Returns SL_CONTINUE when the flow's destination is alive.
 */
static __always_inline int sl_lxc_ct_gone(struct __sk_buff *skb, const struct sl_cfg *cfg,
					  const struct sl_pkt *p, const struct sl_ct_key *k,
					  const struct sl_ct_entry *e, enum sl_ct_map m,
					  struct sl_trace *t)
{
	struct sl_ct_key pk;
	__u32 to = (e->flags & SL_CT_DNAT) ? e->nat_addr : p->daddr;

	if ((e->flags & SL_CT_REPLY) || p->proto != SL_PROTO_TCP ||
	    (p->tcp_flags & (SL_TCP_SYN | SL_TCP_ACK)) != SL_TCP_SYN || !sl_local_pod_gone(cfg, to))
		return SL_CONTINUE;
	t->dst_identity = sl_identity_of(to);
	__builtin_memcpy(&pk, &e->pair, sizeof(pk));
	sl_ct_map_delete(m, &pk);
	sl_ct_map_delete(m, k);
	return sl_refuse(skb, cfg, p, t, SL_REFUSE_INTO_POD, SL_DROP_ENDPOINT_GONE);
}

/* A new flow leaves the pod: service DNAT, egress policy, conntrack. */
static __always_inline int sl_from_container_new(struct __sk_buff *skb, const struct sl_cfg *cfg,
						 struct sl_pkt *p, const struct sl_endpoint *ep,
						 struct sl_trace *t)
{
	struct sl_ct_entry fwd, rev;
	struct sl_ct_key fk, rk;
	struct sl_svc_val svc = {};
	struct sl_backend be = {};
	enum sl_drop_reason reason;
	__u32 dst = p->daddr;
	__be16 dport = p->dport, clash_sport = 0;
	int lb, hairpin = 0;

	/* service lookup */
	lb = sl_lb_from_pod(cfg, p, &svc, &be);
	if (lb == SL_LB_NO_BACKEND) {
		t->dst_identity = sl_identity_of(p->daddr);
		return sl_refuse(skb, cfg, p, t, SL_REFUSE_INTO_POD, SL_DROP_SERVICE_BACKEND_NOT_FOUND);
	}
	if (lb == SL_LB_BACKEND && !sl_lb_source_allowed(&svc, p->saddr)) {
		t->dst_identity = sl_identity_of(p->daddr);
		return sl_drop_code(SL_DROP_LB_SOURCE_RANGE);
	}
	if (lb == SL_LB_BACKEND) {
		dst = be.ip;
		dport = be.port;
	}
	/* a pod of this node that is gone (a backend the Service still lists): refused, not routed out */
	if (sl_local_pod_gone(cfg, dst)) {
		t->dst_identity = sl_identity_of(dst);
		return sl_refuse(skb, cfg, p, t, SL_REFUSE_INTO_POD, SL_DROP_ENDPOINT_GONE);
	}

	/* egress policy of the source endpoint, on the post-DNAT destination */
	t->dst_identity = sl_peer_identity(cfg, dst);
	reason = sl_policy_check(ep, t->dst_identity, dst, SL_DIR_EGRESS, p->proto, dport, t);
	if (reason != SL_DROP_NONE) {
		p->daddr = dst;
		p->dport = dport;
		return sl_drop_code(reason);
	}

	/* conntrack: forward entry here, reply entry as seen at to-container */
	sl_ct_init(&fwd, &rev, p, t);
	fwd.policy_rev = ep->policy_rev;
	sl_ct_key_of(&fk, p, SL_CT_EGRESS);
	sl_ct_reply_key(&rk, p, dst, dport, p->saddr, p->sport, SL_CT_INGRESS);
	if (lb == SL_LB_BACKEND) {
		fwd.flags |= SL_CT_DNAT;
		fwd.nat_addr = dst;
		fwd.nat_port = dport;
		fwd.svc_id = svc.svc_id;
		rev.flags |= SL_CT_REVNAT;
		rev.nat_addr = p->daddr;
		rev.nat_port = p->dport;
		rev.svc_id = svc.svc_id;
		/*
		 * Hairpin: source := SL_HAIRPIN_ADDR (same port); the reply,
		 * hairpin address as destination, leaves the pod again and is
		 * found here at from-container.
		 */
		if (dst == p->saddr) {
			hairpin = 1;
			fwd.flags |= SL_CT_SNAT;
			fwd.snat_addr = SL_HAIRPIN_ADDR;
			fwd.snat_port = p->sport;
			rev.flags |= SL_CT_SNAT;
			rev.snat_addr = p->saddr;
			rev.snat_port = p->sport;
			sl_ct_reply_key(&rk, p, dst, dport, SL_HAIRPIN_ADDR, p->sport, SL_CT_EGRESS);
		}
	}
	/* the client port clashes with another live flow to the same server tuple: another source port */
	if (!hairpin && sl_has_ports(p->proto)) {
		clash_sport = sl_ct_clash_free_sport(p, &fk, &rk);
		if (!clash_sport)
			return sl_drop_code(SL_DROP_CT_TUPLE_IN_USE);
		if (clash_sport != p->sport) {
			fwd.flags |= SL_CT_SNAT;
			fwd.snat_addr = p->saddr;
			fwd.snat_port = clash_sport;
			rev.flags |= SL_CT_SNAT;
			rev.snat_addr = p->saddr;
			rev.snat_port = p->sport;
			sl_count(SL_CNT_CT_PORT_CLASH);
		}
	}
	if (sl_ct_create(&fk, &fwd, &rk, &rev, SL_CT_CREATE_REPLACE) < 0)
		return sl_drop_code(SL_DROP_CT_MAP_INSERTION_FAILED);

	/* DNAT */
	if (lb == SL_LB_BACKEND && sl_rewrite(skb, p, SL_NAT_DST, dst, dport) < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);
	if (hairpin && sl_rewrite(skb, p, SL_NAT_SRC, SL_HAIRPIN_ADDR, p->sport) < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);
	if (clash_sport && clash_sport != p->sport && sl_rewrite(skb, p, SL_NAT_SRC, p->saddr, clash_sport) < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);

	sl_count(SL_CNT_FORWARDED);
	sl_emit_new(cfg, p, t);
	/* back into the pod it came from (the stack would route it there, but as a local martian) */
	if (hairpin)
		return bpf_redirect_peer(t->ifindex, 0);
	return TC_ACT_OK;
}

SEC("tcx/ingress")
int sl_from_container(struct __sk_buff *skb)
{
	struct sl_trace t = {
		.obs_point = SL_OBS_FROM_CONTAINER,
		.direction = SL_DIR_EGRESS,
		.ifindex = skb->ifindex,
	};
	__u32 ifindex = skb->ifindex;
	struct sl_pkt p = {};
	struct sl_endpoint *ep;
	struct sl_ct_entry *e;
	enum sl_ct_map m;
	struct sl_ct_key k;
	struct sl_cfg *cfg;
	int r;

	sl_count(SL_CNT_PACKETS);
	cfg = sl_get_config();
	if (!cfg)
		return TC_ACT_SHOT;

	/* parse, endpoint, anti-spoofing */
	r = sl_lxc_prologue(skb, &p, &t, &ep);
	if (r != SL_CONTINUE)
		goto out;
	t.src_identity = ep->identity;
	if (p.saddr != ep->ip) {
		r = sl_drop_code(SL_DROP_INVALID_SOURCE_IP);
		goto out;
	}

	/* ICMP error about a tracked flow: related, NAT of the flow (lib/sl_icmp.h) */
	if (p.flags & SL_PKT_ICMP_ERR) {
		__u16 f = 0;

		r = sl_icmp_related(skb, cfg, &p, &t, &f);
		if (r == TC_ACT_OK && (f & SL_CT_FIB_REDIRECT))
			r = sl_fib_redirect(skb, &p, ifindex);
		if (r != SL_CONTINUE)
			goto out;
	}

	/* conntrack: established flows and replies */
	sl_ct_key_of(&k, &p, SL_CT_EGRESS);
	e = sl_ct_lookup_pod_hook(&k, &p, &m);
	if (e) {
		r = sl_lxc_ct_gone(skb, cfg, &p, &k, e, m, &t);
		if (r != SL_CONTINUE)
			goto out;
		r = sl_lxc_ct_hit(skb, cfg, &p, e, m, ep, SL_DIR_EGRESS, &t);
		/* reply of a NodePort flow: source is now a node address */
		if (r == TC_ACT_OK && (e->flags & SL_CT_FIB_REDIRECT))
			r = sl_fib_redirect(skb, &p, ifindex);
		/* hairpin flow, either direction: translated back to this pod */
		else if (r == TC_ACT_OK && p.daddr == ep->ip)
			r = bpf_redirect_peer(ifindex, 0);
		goto out;
	}

	r = sl_from_container_new(skb, cfg, &p, ep, &t);
out:
	return sl_exit(cfg, &p, &t, r);
}

SEC("tcx/egress")
int sl_to_container(struct __sk_buff *skb)
{
	struct sl_trace t = {
		.obs_point = SL_OBS_TO_CONTAINER,
		.direction = SL_DIR_INGRESS,
		.ifindex = skb->ifindex,
	};
	struct sl_ct_entry fwd, rev;
	struct sl_ct_key k, rk;
	enum sl_drop_reason reason;
	struct sl_pkt p = {};
	struct sl_endpoint *ep;
	struct sl_ct_entry *e;
	enum sl_ct_map m;
	struct sl_cfg *cfg;
	int r;

	sl_count(SL_CNT_PACKETS);
	cfg = sl_get_config();
	if (!cfg)
		return TC_ACT_SHOT;

	/* parse, endpoint */
	r = sl_lxc_prologue(skb, &p, &t, &ep);
	if (r != SL_CONTINUE)
		goto out;
	t.dst_identity = ep->identity;

	/* ICMP error about a tracked flow: related, even to a default-deny endpoint */
	if (p.flags & SL_PKT_ICMP_ERR) {
		__u16 f = 0;

		r = sl_icmp_related(skb, cfg, &p, &t, &f);
		if (r != SL_CONTINUE)
			goto out;
	}

	/* conntrack: established flows and replies (reverse NAT) */
	sl_ct_key_of(&k, &p, SL_CT_INGRESS);
	e = sl_ct_lookup_pod_hook(&k, &p, &m);
	if (e) {
		r = sl_lxc_ct_hit(skb, cfg, &p, e, m, ep, SL_DIR_INGRESS, &t);
		goto out;
	}

	/* ingress policy of the destination endpoint */
	t.src_identity = sl_peer_identity(cfg, p.saddr);
	reason = sl_policy_check(ep, t.src_identity, p.saddr, SL_DIR_INGRESS, p.proto, p.dport, &t);
	if (reason != SL_DROP_NONE) {
		r = sl_drop_code(reason);
		goto out;
	}

	/* conntrack: forward entry here, reply entry as seen at from-container */
	sl_ct_init(&fwd, &rev, &p, &t);
	fwd.policy_rev = ep->policy_rev;
	sl_ct_reply_key(&rk, &p, p.daddr, p.dport, p.saddr, p.sport, SL_CT_EGRESS);
	if (sl_ct_create(&k, &fwd, &rk, &rev, SL_CT_CREATE_KEEP_NODEPORT) < 0) {
		r = sl_drop_code(SL_DROP_CT_MAP_INSERTION_FAILED);
		goto out;
	}

	sl_count(SL_CNT_FORWARDED);
	sl_emit_new(cfg, &p, &t);
	r = TC_ACT_OK;
out:
	return sl_exit(cfg, &p, &t, r);
}

/* keep every contract type of lib/sl_types.h in BTF for bpf2go -type */
const struct sl_contract *sl_contract_anchor __attribute__((unused));

char __license[] SEC("license") = "Dual BSD/GPL";
