// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Node device program (eth0 in kind nodes):
 *   sl_from_netdev - TCX ingress: NodePort.
 * Path: parse -> conntrack hit? (NAT, FIB redirect of SNATed flows) ->
 *   NodePort lookup -> backend -> DNAT (+SNAT and FIB redirect when the
 *   backend is on another node) -> event. Everything else passes untouched.
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

SEC("tcx/ingress")
int sl_from_netdev(struct __sk_buff *skb)
{
	struct sl_trace t = {
		.obs_point = SL_OBS_FROM_NETDEV,
		.direction = SL_TRAFFIC_INGRESS,
		.ifindex = skb->ifindex,
	};
	__u32 ifindex = skb->ifindex;
	struct sl_ct_entry fwd, rev;
	struct sl_svc_val svc = {};
	struct sl_backend be = {};
	struct sl_ct_key k, rk;
	struct sl_pkt p = {};
	struct sl_ct_entry *e;
	struct sl_cfg *cfg;
	__u16 eth_proto = 0;
	__be16 snat_port = 0;
	int local, lb;

	/* parse: only IPv4 TCP/UDP can be NodePort traffic */
	if (sl_parse(skb, &p, &eth_proto) != SL_PARSE_OK || !sl_has_ports(p.proto))
		return TC_ACT_OK;
	cfg = sl_get_config();
	if (!cfg)
		return TC_ACT_OK;
	t.orig_daddr = p.daddr;
	t.orig_dport = p.dport;

	/* conntrack: established NodePort flows and their replies */
	sl_ct_key_of(&k, &p, SL_CT_NETDEV);
	e = sl_ct_lookup(&k, &p);
	if (e) {
		sl_count(SL_CNT_PACKETS);
		if (sl_ct_apply(skb, cfg, &p, e, &t) < 0)
			return TC_ACT_SHOT;
		sl_count(SL_CNT_FORWARDED);
		sl_emit_trace(cfg, &p, &t);
		/* SNATed (remote backend) flows: source is a node address */
		if (e->flags & SL_CT_SNAT)
			return sl_fib_redirect(skb, &p, ifindex);
		return TC_ACT_OK;
	}

	/* NodePort lookup: destination must be a local node address */
	if (!sl_is_node_ip(cfg, p.daddr))
		return TC_ACT_OK;
	lb = sl_lb_select(&p, 0, SL_SCOPE_NODEPORT, &svc, &be);
	if (lb == SL_LB_NONE)
		return TC_ACT_OK;
	sl_count(SL_CNT_PACKETS);
	t.src_identity = sl_identity_of(p.saddr);
	local = lb == SL_LB_BACKEND && bpf_map_lookup_elem(&sl_ep_by_ip, &be.ip) != 0;
	if (lb == SL_LB_BACKEND && !local && (svc.flags & SL_SVC_LOCAL))
		lb = SL_LB_NO_BACKEND; /* externalTrafficPolicy: Local */
	if (lb == SL_LB_NO_BACKEND) {
		t.dst_identity = SL_ID_HOST;
		sl_drop_event(cfg, &p, &t, SL_DROP_SERVICE_BACKEND_NOT_FOUND);
		if (p.proto == IPPROTO_TCP &&
		    (p.tcp_flags & (SL_TCP_SYN | SL_TCP_ACK)) == SL_TCP_SYN &&
		    sl_tcp_rst_reply(skb, &p) == 0)
			return bpf_redirect(ifindex, 0);
		return TC_ACT_SHOT;
	}
	t.dst_identity = sl_identity_of(be.ip);

	/* conntrack */
	sl_ct_init(&fwd, &rev, &p, &t);
	fwd.flags = SL_CT_DNAT;
	fwd.nat_addr = be.ip;
	fwd.nat_port = be.port;
	fwd.svc_id = svc.svc_id;
	rev.flags = SL_CT_REPLY | SL_CT_REVNAT;
	rev.nat_addr = p.daddr;
	rev.nat_port = p.dport;
	rev.svc_id = svc.svc_id;
	rk.saddr = be.ip;
	rk.sport = be.port;
	rk.proto = p.proto;
	rk.pad = 0;
	if (local) {
		/* the reply leaves the backend pod: reverse DNAT at from-container */
		rk.daddr = p.saddr;
		rk.dport = p.sport;
		rk.scope = SL_CT_EGRESS;
		rev.flags |= SL_CT_FIB_REDIRECT;
	} else {
		/* SNAT to the node address so the reply comes back here */
		snat_port = sl_snat_port(&p, &be, p.daddr);
		if (!snat_port) {
			sl_drop_event(cfg, &p, &t, SL_DROP_CT_MAP_INSERTION_FAILED);
			return TC_ACT_SHOT;
		}
		fwd.flags |= SL_CT_SNAT;
		fwd.snat_addr = p.daddr;
		fwd.snat_port = snat_port;
		rev.flags |= SL_CT_SNAT;
		rev.snat_addr = p.saddr;
		rev.snat_port = p.sport;
		rk.daddr = p.daddr;
		rk.dport = snat_port;
		rk.scope = SL_CT_NETDEV;
	}
	if (sl_ct_create(&k, &fwd, &rk, &rev, 0) < 0) {
		sl_drop_event(cfg, &p, &t, SL_DROP_CT_MAP_INSERTION_FAILED);
		return TC_ACT_SHOT;
	}

	/* NAT and forward */
	if (sl_rewrite(skb, &p, 0, be.ip, be.port) < 0)
		return TC_ACT_SHOT;
	if (!local && sl_rewrite(skb, &p, 1, fwd.snat_addr, snat_port) < 0)
		return TC_ACT_SHOT;
	sl_count(SL_CNT_FORWARDED);
	sl_emit_new(cfg, &p, &t);
	if (!local)
		return sl_fib_redirect(skb, &p, ifindex);
	return TC_ACT_OK;
}

char __license[] SEC("license") = "Dual BSD/GPL";
