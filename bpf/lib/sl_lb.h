/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Load balancing: service lookup (ClusterIP, NodePort), per-connection
 * backend choice, NodePort SNAT port choice and FIB-based forwarding.
 */
#ifndef SL_LB_H
#define SL_LB_H

#include "sl_maps.h"
#include "sl_config.h"
#include "sl_identity.h"
#include "sl_parse.h"
#include "sl_csum.h"
#include "sl_drop.h"

enum sl_lb_result {
	SL_LB_NONE = 0,       /* not a service */
	SL_LB_BACKEND = 1,    /* *be holds the chosen backend */
	SL_LB_NO_BACKEND = 2, /* service without (usable) backends */
};

/* The vip of SL_SCOPE_NODEPORT entries: any local node address. */
#define SL_NODEPORT_VIP 0

/*
 * Hairpin: a pod load balanced to itself. Its packets are SNATed to this
 * link-local address (169.254.42.1, Cilium's IPV4_LOOPBACK) so the pod's
 * kernel accepts them (a packet from its own address would be a martian) and
 * its replies leave through eth0 to be reverse-translated.
 */
#define SL_HAIRPIN_ADDR bpf_htonl(0xa9fe2a01)

static __always_inline __u32 sl_hash32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	h *= 0x846ca68b;
	h ^= h >> 16;
	return h;
}

/* Hash of the 5-tuple: the backend choice of a new connection. */
static __always_inline __u32 sl_flow_hash(const struct sl_pkt *p)
{
	__u32 h = sl_hash32(p->saddr);

	h = sl_hash32(h ^ p->daddr);
	h = sl_hash32(h ^ (((__u32)p->sport << 16) | p->dport));
	return sl_hash32(h ^ p->proto);
}

/* A backend slot of service svc_id; NULL when the slot is empty. */
static __always_inline struct sl_backend *sl_backend_at(__u32 svc_id, __u32 slot)
{
	struct sl_backend_key bk = { .svc_id = svc_id, .slot = slot };
	struct sl_backend *b = bpf_map_lookup_elem(&sl_backends, &bk);

	return b && b->ip ? b : NULL;
}

/*
 * sessionAffinity: ClientIP, as Cilium's lb4_affinity: the backend recorded
 * for (client, service) while it was last used less than the service's
 * timeout ago and its slot still holds it; otherwise a new choice by the
 * 5-tuple hash, recorded. Only new connections get here (conntrack hits skip
 * load balancing), so each one refreshes the entry's last use. A subprogram
 * (__noinline): its keys stay off the large frames of the entry programs
 * (the verifier's 512-byte limit counts caller and callee frames together).
 * Copies the backend into *be; returns 0, or -1 without a usable backend.
 */
static __noinline int sl_lb_affinity(const struct sl_pkt *p, const struct sl_svc_val *svc,
				     struct sl_backend *be)
{
	struct sl_affinity_key ak = { .client_ip = p->saddr, .svc_id = svc->svc_id };
	struct sl_affinity_val nv = {};
	struct sl_affinity_val *a;
	struct sl_backend *b;
	__u64 now = bpf_ktime_get_ns();

	a = bpf_map_lookup_elem(&sl_affinity, &ak);
	if (a && now - a->last_used_ns < (__u64)svc->affinity_timeout_s * 1000000000ULL &&
	    a->slot < svc->count) {
		b = sl_backend_at(svc->svc_id, a->slot);
		if (b && b->ip == a->backend_ip && b->port == a->backend_port) {
			a->last_used_ns = now;
			*be = *b;
			return 0;
		}
	}
	nv.slot = sl_flow_hash(p) % svc->count;
	b = sl_backend_at(svc->svc_id, nv.slot);
	if (!b)
		return -1;
	*be = *b;
	nv.last_used_ns = now;
	nv.backend_ip = b->ip;
	nv.backend_port = b->port;
	/* best effort: without the entry the next connection is hashed anew */
	bpf_map_update_elem(&sl_affinity, &ak, &nv, BPF_ANY);
	return 0;
}

/*
 * loadBalancerSourceRanges: a frontend with SL_SVC_SOURCE_RANGES takes only
 * clients inside one of its ranges (sl_lb_src_ranges under its svc_id), as
 * kube-proxy's firewall chain. Returns 1 when client may connect.
 */
static __always_inline int sl_lb_source_allowed(const struct sl_svc_val *svc, __u32 client)
{
	struct sl_lb_src_key k = { .prefixlen = 64, .svc_id = svc->svc_id, .addr = client };

	if (!(svc->flags & SL_SVC_SOURCE_RANGES))
		return 1;
	return bpf_map_lookup_elem(&sl_lb_src_ranges, &k) != 0;
}

/*
 * Find the service for (vip, dport, proto, scope) and choose the backend for
 * this connection: hash of the 5-tuple modulo the backend count, or the
 * client's recorded backend with affinity (sl_lb_affinity).
 */
static __always_inline int sl_lb_select(const struct sl_pkt *p, __u32 vip, __u8 scope,
					struct sl_svc_val *svc_out, struct sl_backend *be)
{
	struct sl_svc_key sk = { .vip = vip, .port = p->dport, .proto = p->proto, .scope = scope };
	struct sl_svc_val *svc;
	struct sl_backend *b;

	svc = bpf_map_lookup_elem(&sl_services, &sk);
	if (!svc)
		return SL_LB_NONE;
	*svc_out = *svc;
	if (svc->count == 0)
		return SL_LB_NO_BACKEND;
	if (svc->flags & SL_SVC_AFFINITY)
		return sl_lb_affinity(p, svc, be) == 0 ? SL_LB_BACKEND : SL_LB_NO_BACKEND;
	b = sl_backend_at(svc->svc_id, sl_flow_hash(p) % svc->count);
	if (!b)
		return SL_LB_NO_BACKEND;
	*be = *b;
	return SL_LB_BACKEND;
}

/*
 * Service lookup as seen from a pod: ClusterIP first, then NodePort when the
 * destination is a node address (this node from sl_config, or any node known
 * to the ipcache as host / remote-node).
 */
static __always_inline int sl_lb_from_pod(const struct sl_cfg *cfg, const struct sl_pkt *p,
					  struct sl_svc_val *svc, struct sl_backend *be)
{
	int r;
	__u32 id;

	if (!sl_has_ports(p->proto))
		return SL_LB_NONE;
	r = sl_lb_select(p, p->daddr, SL_SCOPE_CLUSTERIP, svc, be);
	if (r != SL_LB_NONE)
		return r;
	if (!sl_is_node_ip(cfg, p->daddr)) {
		id = sl_identity_of(p->daddr);
		if (id != SL_ID_HOST && id != SL_ID_REMOTE_NODE)
			return SL_LB_NONE;
	}
	return sl_lb_select(p, SL_NODEPORT_VIP, SL_SCOPE_NODEPORT, svc, be);
}

/*
 * Pick the SNAT source port for a NodePort flow to a remote backend: the
 * client's port unless another flow already uses (backend, node ip, port).
 * Returns 0 when no port was free.
 */
static __always_inline __be16 sl_snat_port(const struct sl_pkt *p, const struct sl_backend *be,
					   __u32 node_ip)
{
	struct sl_ct_key rk = {
		.saddr = be->ip,
		.daddr = node_ip,
		.sport = be->port,
		.proto = p->proto,
		.scope = SL_CT_NETDEV,
	};
	__u16 port = bpf_ntohs(p->sport);

	for (int i = 0; i < 16; i++) {
		rk.dport = bpf_htons(port);
		if (!bpf_map_lookup_elem(&sl_ct_nodeport, &rk))
			return rk.dport;
		port = 32768 + (sl_hash32(port + i) % 28232);
	}
	return 0;
}

/* Where sl_refuse sends its RST. */
enum sl_refuse_to {
	SL_REFUSE_OUT_DEVICE = 0, /* back out of the ingress device (node device: to the client) */
	SL_REFUSE_INTO_POD = 1,   /* into the pod behind the host veth (bpf_redirect_peer) */
};

/*
 * Answer a connection that has nowhere to go (reason: a service without
 * usable backends, a backend pod that is gone): a bare TCP SYN is refused at
 * once with an RST instead of letting the connect time out; the drop is still
 * counted and reported. At a pod's host veth (TC ingress) the
 * RST is delivered straight into the pod with bpf_redirect_peer, as Cilium
 * delivers to local pods: it never crosses the host veth's egress, so
 * sl_to_container needs no way to recognise it (no skb->mark that a host
 * process could set too). Returns that redirect, or the drop code for the
 * entry program's exit.
 */
static __always_inline int sl_refuse(struct __sk_buff *skb, const struct sl_cfg *cfg,
				     const struct sl_pkt *p, const struct sl_trace *t,
				     enum sl_refuse_to to, enum sl_drop_reason reason)
{
	if (p->proto == SL_PROTO_TCP &&
	    (p->tcp_flags & (SL_TCP_SYN | SL_TCP_ACK)) == SL_TCP_SYN &&
	    sl_tcp_rst_reply(skb, p) == 0) {
		sl_drop_event(cfg, p, t, reason);
		if (to == SL_REFUSE_INTO_POD)
			return bpf_redirect_peer(t->ifindex, 0);
		return bpf_redirect(t->ifindex, 0);
	}
	return sl_drop_code(reason);
}

/*
 * Forward the packet ourselves: FIB lookup from ingress device iif, rewrite
 * the MACs and redirect out of the resulting device. Used for NodePort
 * packets whose source is a node address (the stack would drop them as
 * martians). Returns a TC action, or a drop code (FIB_LOOKUP_FAILED, also
 * counted as SL_CNT_FIB_FAIL; INVALID_PACKET when the MACs cannot be written).
 */
static __always_inline int sl_fib_redirect(struct __sk_buff *skb, const struct sl_pkt *p, __u32 iif)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	fib.family = AF_INET;
	fib.l4_protocol = p->proto;
	fib.sport = p->sport;
	fib.dport = p->dport;
	fib.ipv4_src = p->saddr;
	fib.ipv4_dst = p->daddr;
	fib.ifindex = iif;

	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0) < 0)
			return sl_drop_code(SL_DROP_INVALID_PACKET);
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = fib.ipv4_dst };

		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	sl_count(SL_CNT_FIB_FAIL);
	return sl_drop_code(SL_DROP_FIB_LOOKUP_FAILED);
}

#endif /* SL_LB_H */
