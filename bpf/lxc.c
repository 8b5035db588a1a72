// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Pod veth programs (host side of the pod's veth pair):
 *   sl_from_container - TCX ingress: packets leaving the pod (egress policy)
 *   sl_to_container   - TCX egress:  packets entering the pod (ingress policy)
 * Each reads as the packet's path:
 *   parse -> endpoint -> conntrack hit? (NAT, counters) -> service lookup ->
 *   policy -> conntrack create -> NAT -> forward / drop(reason) -> event.
 */
#include "lib/sl_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/sl_maps.h"
#include "lib/sl_parse.h"
#include "lib/sl_events.h"
#include "lib/sl_csum.h"
#include "lib/sl_conntrack.h"
#include "lib/sl_lb.h"
#include "lib/sl_policy.h"

/* skb->mark of an RST we generated and redirected back into the pod */
#define SL_MARK_SVC_RST 0x51a70000

static __always_inline int sl_drop(const struct sl_cfg *cfg, struct sl_pkt *p,
				   const struct sl_trace *t, __u8 reason)
{
	sl_drop_event(cfg, p, t, reason);
	return TC_ACT_SHOT;
}

/* sl_lxc_prologue's answer when the packet goes on to conntrack and policy. */
#define SL_CONTINUE (-2)

/* Parse the packet and find the pod endpoint of the veth: both pod hooks start the same way.
 * Returns SL_CONTINUE with *ep set, or the verdict (ARP passes; anything else not IPv4 fails closed). */
static __always_inline int sl_lxc_prologue(struct __sk_buff *skb, const struct sl_cfg *cfg,
					   struct sl_pkt *p, struct sl_trace *t,
					   struct sl_endpoint **ep)
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
		return sl_drop(cfg, p, t, SL_DROP_INVALID_PACKET);

	*ep = bpf_map_lookup_elem(&sl_endpoints, &ifindex);
	if (!*ep)
		return sl_drop(cfg, p, t, SL_DROP_UNKNOWN_ENDPOINT);
	return SL_CONTINUE;
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
	__u32 dst = p->daddr;
	__be16 dport = p->dport;
	__u8 reason;
	int lb;

	/* service lookup */
	lb = sl_lb_from_pod(cfg, p, &svc, &be);
	if (lb == SL_LB_NO_BACKEND) {
		t->dst_identity = sl_identity_of(p->daddr);
		sl_drop_event(cfg, p, t, SL_DROP_SERVICE_BACKEND_NOT_FOUND);
		/* refuse a TCP connect at once instead of letting it time out */
		if (p->proto == IPPROTO_TCP &&
		    (p->tcp_flags & (SL_TCP_SYN | SL_TCP_ACK)) == SL_TCP_SYN &&
		    sl_tcp_rst_reply(skb, p) == 0) {
			skb->mark = SL_MARK_SVC_RST;
			return bpf_redirect(t->ifindex, 0);
		}
		return TC_ACT_SHOT;
	}
	if (lb == SL_LB_BACKEND) {
		dst = be.ip;
		dport = be.port;
	}

	/* egress policy of the source endpoint, on the post-DNAT destination */
	t->dst_identity = sl_is_node_ip(cfg, dst) ? SL_ID_HOST : sl_identity_of(dst);
	reason = sl_policy_check(ep, t->dst_identity, dst, SL_DIR_EGRESS, p->proto, dport, t);
	if (reason) {
		p->daddr = dst;
		p->dport = dport;
		return sl_drop(cfg, p, t, reason);
	}

	/* conntrack: forward entry here, reply entry as seen at to-container */
	sl_ct_init(&fwd, &rev, p, t);
	sl_ct_key_of(&fk, p, SL_CT_EGRESS);
	rk.saddr = dst;
	rk.daddr = p->saddr;
	rk.sport = dport;
	rk.dport = p->sport;
	rk.proto = p->proto;
	rk.scope = SL_CT_INGRESS;
	rk.pad = 0;
	if (lb == SL_LB_BACKEND) {
		fwd.flags |= SL_CT_DNAT;
		fwd.nat_addr = dst;
		fwd.nat_port = dport;
		fwd.svc_id = svc.svc_id;
		rev.flags |= SL_CT_REVNAT;
		rev.nat_addr = p->daddr;
		rev.nat_port = p->dport;
		rev.svc_id = svc.svc_id;
	}
	if (sl_ct_create(&fk, &fwd, &rk, &rev, 0) < 0)
		return sl_drop(cfg, p, t, SL_DROP_CT_MAP_INSERTION_FAILED);

	/* DNAT */
	if (lb == SL_LB_BACKEND && sl_rewrite(skb, p, 0, dst, dport) < 0)
		return sl_drop(cfg, p, t, SL_DROP_INVALID_PACKET);

	sl_count(SL_CNT_FORWARDED);
	sl_emit_new(cfg, p, t);
	return TC_ACT_OK;
}

SEC("tcx/ingress")
int sl_from_container(struct __sk_buff *skb)
{
	struct sl_trace t = {
		.obs_point = SL_OBS_FROM_CONTAINER,
		.direction = SL_TRAFFIC_EGRESS,
		.ifindex = skb->ifindex,
	};
	__u32 ifindex = skb->ifindex;
	struct sl_pkt p = {};
	struct sl_endpoint *ep;
	struct sl_ct_entry *e;
	struct sl_ct_key k;
	struct sl_cfg *cfg;
	int r;

	sl_count(SL_CNT_PACKETS);
	cfg = sl_get_config();
	if (!cfg)
		return TC_ACT_SHOT;

	/* parse, endpoint, anti-spoofing */
	r = sl_lxc_prologue(skb, cfg, &p, &t, &ep);
	if (r != SL_CONTINUE)
		return r;
	t.src_identity = ep->identity;
	if (p.saddr != ep->ip)
		return sl_drop(cfg, &p, &t, SL_DROP_INVALID_SOURCE_IP);

	/* conntrack: established flows and replies */
	sl_ct_key_of(&k, &p, SL_CT_EGRESS);
	e = sl_ct_lookup(&k, &p);
	if (e) {
		if (sl_ct_apply(skb, cfg, &p, e, &t) < 0)
			return sl_drop(cfg, &p, &t, SL_DROP_INVALID_PACKET);
		sl_count(SL_CNT_FORWARDED);
		sl_emit_trace(cfg, &p, &t);
		/* reply of a NodePort flow: source is now a node address */
		if (e->flags & SL_CT_FIB_REDIRECT)
			return sl_fib_redirect(skb, &p, ifindex);
		return TC_ACT_OK;
	}

	return sl_from_container_new(skb, cfg, &p, ep, &t);
}

SEC("tcx/egress")
int sl_to_container(struct __sk_buff *skb)
{
	struct sl_trace t = {
		.obs_point = SL_OBS_TO_CONTAINER,
		.direction = SL_TRAFFIC_INGRESS,
		.ifindex = skb->ifindex,
	};
	struct sl_ct_entry fwd, rev;
	struct sl_ct_key k, rk;
	struct sl_pkt p = {};
	struct sl_endpoint *ep;
	struct sl_ct_entry *e;
	struct sl_cfg *cfg;
	__u8 reason;
	int r;

	sl_count(SL_CNT_PACKETS);
	cfg = sl_get_config();
	if (!cfg)
		return TC_ACT_SHOT;

	/* our own RST answer (sl_from_container, service without backends) */
	if (skb->mark == SL_MARK_SVC_RST) {
		skb->mark = 0;
		return TC_ACT_OK;
	}

	/* parse, endpoint */
	r = sl_lxc_prologue(skb, cfg, &p, &t, &ep);
	if (r != SL_CONTINUE)
		return r;
	t.dst_identity = ep->identity;

	/* conntrack: established flows and replies (reverse NAT) */
	sl_ct_key_of(&k, &p, SL_CT_INGRESS);
	e = sl_ct_lookup(&k, &p);
	if (e) {
		if (sl_ct_apply(skb, cfg, &p, e, &t) < 0)
			return sl_drop(cfg, &p, &t, SL_DROP_INVALID_PACKET);
		sl_count(SL_CNT_FORWARDED);
		sl_emit_trace(cfg, &p, &t);
		return TC_ACT_OK;
	}

	/* ingress policy of the destination endpoint */
	t.src_identity = sl_is_node_ip(cfg, p.saddr) ? SL_ID_HOST : sl_identity_of(p.saddr);
	reason = sl_policy_check(ep, t.src_identity, p.saddr, SL_DIR_INGRESS, p.proto, p.dport, &t);
	if (reason)
		return sl_drop(cfg, &p, &t, reason);

	/* conntrack: forward entry here, reply entry as seen at from-container */
	sl_ct_init(&fwd, &rev, &p, &t);
	rk.saddr = p.daddr;
	rk.daddr = p.saddr;
	rk.sport = p.dport;
	rk.dport = p.sport;
	rk.proto = p.proto;
	rk.scope = SL_CT_EGRESS;
	rk.pad = 0;
	if (sl_ct_create(&k, &fwd, &rk, &rev, 1) < 0)
		return sl_drop(cfg, &p, &t, SL_DROP_CT_MAP_INSERTION_FAILED);

	sl_count(SL_CNT_FORWARDED);
	sl_emit_new(cfg, &p, &t);
	return TC_ACT_OK;
}

/* keep the event and config types in BTF for bpf2go -type */
const struct sl_flow_event *sl_unused_event __attribute__((unused));
const struct sl_cfg *sl_unused_cfg __attribute__((unused));

char __license[] SEC("license") = "Dual BSD/GPL";
