// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Node device programs (eth0 in kind nodes):
 *   sl_from_netdev - TCX ingress: anti-spoofing of local pod addresses, NodePort.
 *   sl_to_netdev   - TCX egress: reverse NAT of the replies of NodePort flows
 *                    whose backend is in the node's own network namespace
 *                    (a hostNetwork pod on this node).
 * Path: parse -> source is a local pod? (drop) -> conntrack hit? (NAT, FIB
 *   redirect of SNATed flows) -> NodePort lookup -> backend -> ingress policy
 *   of a local backend -> conntrack (never over another flow's entries) ->
 *   DNAT (+SNAT and FIB redirect when the backend is on another node) ->
 *   event. Everything else passes untouched. A backend at one of the node's
 *   own addresses (hostNetwork) gets DNAT only; the stack delivers it, and its
 *   reply leaves through this device, where sl_to_netdev reverses the NAT.
 * Handlers return a TC action, SL_CONTINUE, SL_FIB_FORWARD (forward it
 * ourselves: one sl_fib_redirect call site) or a drop code; the program ends
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

/* Parse: only IPv4 is looked at. Returns SL_CONTINUE, or TC_ACT_OK to pass the packet. */
static __always_inline int sl_netdev_prologue(struct __sk_buff *skb, struct sl_pkt *p,
					      struct sl_trace *t)
{
	__u16 eth_proto = 0;

	if (sl_parse(skb, p, &eth_proto) != SL_PARSE_OK)
		return TC_ACT_OK;
	t->orig_daddr = p->daddr;
	t->orig_dport = p->dport;
	return SL_CONTINUE;
}

/*
 * A packet from the node's network with the source address of a pod on this
 * node, or of the node itself, is forged: that pod's packets leave through its
 * veth, the node's own never arrive on its device. Left alone, it would carry
 * the pod's identity, or the host's (always allowed), into policy (any host on
 * the node's network could borrow it). Every IPv4 packet is checked,
 * fragments and ICMP included. Returns SL_CONTINUE or the drop code.
 */
static __always_inline int sl_netdev_check_source(const struct sl_cfg *cfg, const struct sl_pkt *p,
						  struct sl_trace *t)
{
	if (!bpf_map_lookup_elem(&sl_ep_by_ip, &p->saddr) && !sl_is_node_ip(cfg, p->saddr))
		return SL_CONTINUE;
	sl_count(SL_CNT_PACKETS);
	t->src_identity = sl_identity_of(p->saddr);
	t->dst_identity = sl_identity_of(p->daddr);
	return sl_drop_code(SL_DROP_INVALID_SOURCE_IP);
}

/*
 * Ingress policy of a local NodePort backend (its endpoint behind
 * *be_ifindex), evaluated before any conntrack state exists: a denied
 * packet leaves no entry, so no reply path past the backend's egress policy.
 * Fills t->policy_id/rule on allow. Returns SL_DROP_NONE or the drop reason.
 */
static __always_inline enum sl_drop_reason sl_nodeport_policy(const struct sl_cfg *cfg,
							       const struct sl_pkt *p, __u32 *be_ifindex,
							       const struct sl_backend *be,
							       struct sl_trace *t)
{
	__u32 ifindex = *be_ifindex;
	struct sl_endpoint *ep = bpf_map_lookup_elem(&sl_endpoints, &ifindex);

	if (!ep)
		return SL_DROP_UNKNOWN_ENDPOINT;
	return sl_policy_check(ep, sl_peer_identity(cfg, p->saddr), p->saddr, SL_DIR_INGRESS, p->proto,
			       be->port, t);
}

/* Established NodePort flow or its reply: NAT, and forward SNATed (remote backend) flows ourselves. */
static __always_inline int sl_netdev_ct_hit(struct __sk_buff *skb, const struct sl_cfg *cfg,
					    struct sl_pkt *p, struct sl_ct_entry *e,
					    struct sl_trace *t)
{
	sl_count(SL_CNT_PACKETS);
	if (sl_ct_apply(skb, cfg, p, e, SL_CT_MAP_NODEPORT, t) < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);
	sl_count(SL_CNT_FORWARDED);
	sl_emit_trace(cfg, p, t);
	/* SNATed flows: the source is a node address */
	if (e->flags & SL_CT_SNAT)
		return SL_FIB_FORWARD;
	return TC_ACT_OK;
}

/* Local backend: the reply leaves the backend pod, reverse DNAT at from-container. */
static __always_inline void sl_nodeport_to_local(struct sl_ct_entry *rev, struct sl_ct_key *rk,
						 const struct sl_pkt *p, const struct sl_backend *be)
{
	sl_ct_reply_key(rk, p, be->ip, be->port, p->saddr, p->sport, SL_CT_EGRESS);
	rev->flags |= SL_CT_FIB_REDIRECT;
}

/*
 * Backend in the node's own network namespace (a hostNetwork pod here): DNAT
 * only, the stack delivers it; the reply leaves through the node device from
 * the backend address and is reverse-NATed there by sl_to_netdev.
 */
static __always_inline void sl_nodeport_to_host(struct sl_ct_key *rk, const struct sl_pkt *p,
						const struct sl_backend *be)
{
	sl_ct_reply_key(rk, p, be->ip, be->port, p->saddr, p->sport, SL_CT_NETDEV);
}

/*
 * Remote backend: SNAT to the node address (p->daddr) so the reply comes back
 * here. Returns the SNAT port (network order), or 0 when none was free.
 */
static __always_inline __be16 sl_nodeport_to_remote(struct sl_ct_entry *fwd, struct sl_ct_entry *rev,
						    struct sl_ct_key *rk, const struct sl_pkt *p,
						    const struct sl_backend *be)
{
	__be16 snat_port = sl_snat_port(p, be, p->daddr);

	if (!snat_port)
		return 0;
	fwd->flags |= SL_CT_SNAT;
	fwd->snat_addr = p->daddr;
	fwd->snat_port = snat_port;
	rev->flags |= SL_CT_SNAT;
	rev->snat_addr = p->saddr;
	rev->snat_port = p->sport;
	sl_ct_reply_key(rk, p, be->ip, be->port, p->daddr, snat_port, SL_CT_NETDEV);
	return snat_port;
}

/* A new flow to a local node address: NodePort lookup, conntrack pair, DNAT (+SNAT), forward. */
static __always_inline int sl_nodeport_new(struct __sk_buff *skb, const struct sl_cfg *cfg,
					   struct sl_pkt *p, const struct sl_ct_key *k,
					   struct sl_trace *t)
{
	struct sl_ct_entry fwd, rev;
	struct sl_svc_val svc = {};
	struct sl_backend be = {};
	enum sl_drop_reason reason;
	__u32 *be_ifindex = 0;
	__be16 snat_port = 0;
	struct sl_ct_key rk;
	int local, host = 0, lb, r;

	/* NodePort lookup: destination must be a local node address */
	if (!sl_is_node_ip(cfg, p->daddr))
		return TC_ACT_OK;
	lb = sl_lb_select(p, SL_NODEPORT_VIP, SL_SCOPE_NODEPORT, &svc, &be);
	if (lb == SL_LB_NONE)
		return TC_ACT_OK;
	sl_count(SL_CNT_PACKETS);
	t->src_identity = sl_identity_of(p->saddr);
	if (lb == SL_LB_BACKEND) {
		be_ifindex = bpf_map_lookup_elem(&sl_ep_by_ip, &be.ip);
		host = !be_ifindex && sl_is_node_ip(cfg, be.ip);
	}
	local = be_ifindex != 0 || host;
	if (lb == SL_LB_BACKEND && !local && (svc.flags & SL_SVC_LOCAL))
		lb = SL_LB_NO_BACKEND; /* externalTrafficPolicy: Local */
	if (lb == SL_LB_NO_BACKEND) {
		t->dst_identity = SL_ID_HOST;
		return sl_refuse_no_backend(skb, cfg, p, t, SL_REFUSE_OUT_DEVICE);
	}
	t->dst_identity = host ? SL_ID_HOST : sl_identity_of(be.ip);

	/* ingress policy of a local backend, before any conntrack state */
	if (be_ifindex) {
		reason = sl_nodeport_policy(cfg, p, be_ifindex, &be, t);
		if (reason != SL_DROP_NONE) {
			p->daddr = be.ip;
			p->dport = be.port;
			return sl_drop_code(reason);
		}
	}

	/* conntrack */
	sl_ct_init(&fwd, &rev, p, t);
	fwd.flags = SL_CT_DNAT;
	fwd.nat_addr = be.ip;
	fwd.nat_port = be.port;
	fwd.svc_id = svc.svc_id;
	rev.flags = SL_CT_REPLY | SL_CT_REVNAT;
	rev.nat_addr = p->daddr;
	rev.nat_port = p->dport;
	rev.svc_id = svc.svc_id;
	if (host) {
		sl_nodeport_to_host(&rk, p, &be);
	} else if (local) {
		sl_nodeport_to_local(&rev, &rk, p, &be);
	} else {
		snat_port = sl_nodeport_to_remote(&fwd, &rev, &rk, p, &be);
		if (!snat_port)
			return sl_drop_code(SL_DROP_CT_MAP_INSERTION_FAILED);
	}
	r = sl_ct_create(k, &fwd, &rk, &rev, SL_CT_CREATE_NO_OVERWRITE);
	if (r != SL_CT_CREATED) {
		p->daddr = be.ip;
		p->dport = be.port;
		return sl_drop_code(r == SL_CT_CREATE_IN_USE ? SL_DROP_CT_TUPLE_IN_USE
							     : SL_DROP_CT_MAP_INSERTION_FAILED);
	}

	/* NAT and forward */
	if (sl_rewrite(skb, p, SL_NAT_DST, be.ip, be.port) < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);
	if (!local && sl_rewrite(skb, p, SL_NAT_SRC, fwd.snat_addr, snat_port) < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);
	sl_count(SL_CNT_FORWARDED);
	sl_emit_new(cfg, p, t);
	if (!local)
		return SL_FIB_FORWARD;
	return TC_ACT_OK;
}

SEC("tcx/ingress")
int sl_from_netdev(struct __sk_buff *skb)
{
	struct sl_trace t = {
		.obs_point = SL_OBS_FROM_NETDEV,
		.direction = SL_DIR_INGRESS,
		.ifindex = skb->ifindex,
	};
	struct sl_pkt p = {};
	struct sl_ct_entry *e;
	struct sl_ct_key k;
	struct sl_cfg *cfg;
	int r;

	r = sl_netdev_prologue(skb, &p, &t);
	if (r != SL_CONTINUE)
		return r;
	cfg = sl_get_config();
	if (!cfg)
		return TC_ACT_OK;

	/* anti-spoofing: no local pod's or node's address from outside */
	r = sl_netdev_check_source(cfg, &p, &t);
	if (r != SL_CONTINUE)
		return sl_exit(cfg, &p, &t, r);
	/* only TCP/UDP/SCTP can be NodePort traffic */
	if (!sl_has_ports(p.proto))
		return TC_ACT_OK;

	/* conntrack: established NodePort flows and their replies (sl_ct_nodeport) */
	sl_ct_key_of(&k, &p, SL_CT_NETDEV);
	e = sl_ct_lookup(&k, &p, SL_CT_MAP_NODEPORT);
	if (e)
		r = sl_netdev_ct_hit(skb, cfg, &p, e, &t);
	else
		r = sl_nodeport_new(skb, cfg, &p, &k, &t);
	if (r == SL_FIB_FORWARD)
		r = sl_fib_redirect(skb, &p, t.ifindex);
	return sl_exit(cfg, &p, &t, r);
}

/*
 * Packets leaving the node: only a reply of a NodePort flow into the node's
 * own network namespace (sl_nodeport_to_host) is touched, its source
 * translated back to the address and port the client dialled. The lookup is
 * made only for packets from one of the node's addresses, with ports.
 */
SEC("tcx/egress")
int sl_to_netdev(struct __sk_buff *skb)
{
	struct sl_trace t = {
		.obs_point = SL_OBS_TO_NETDEV,
		.direction = SL_DIR_EGRESS,
		.ifindex = skb->ifindex,
	};
	struct sl_pkt p = {};
	struct sl_ct_entry *e;
	struct sl_ct_key k;
	struct sl_cfg *cfg;
	int r;

	r = sl_netdev_prologue(skb, &p, &t);
	if (r != SL_CONTINUE)
		return r;
	if (!sl_has_ports(p.proto))
		return TC_ACT_OK;
	cfg = sl_get_config();
	if (!cfg || !sl_is_node_ip(cfg, p.saddr))
		return TC_ACT_OK;
	sl_ct_key_of(&k, &p, SL_CT_NETDEV);
	e = sl_ct_lookup(&k, &p, SL_CT_MAP_NODEPORT);
	if (!e || !(e->flags & SL_CT_REPLY))
		return TC_ACT_OK;
	r = sl_netdev_ct_hit(skb, cfg, &p, e, &t);
	return sl_exit(cfg, &p, &t, r);
}

char __license[] SEC("license") = "Dual BSD/GPL";
