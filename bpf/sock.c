// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level load balancing for the node's own clients (Cilium's socket LB,
 * bpf_sock.c): host processes and hostNetwork pods, whose packets never cross
 * a pod veth, so the tc programs never translate them. cgroup hooks:
 *   sl_sock_connect4     - cgroup/connect4: TCP connect, UDP connect: service -> backend
 *   sl_sock_sendmsg4     - cgroup/sendmsg4: unconnected UDP sendto: service -> backend
 *   sl_sock_recvmsg4     - cgroup/recvmsg4: UDP recvfrom: backend -> service address
 *   sl_sock_getpeername4 - cgroup/getpeername4: backend -> service address
 * Frontends are those of the tc path (sl_services): ClusterIPs and external
 * addresses, and NodePorts when the destination is one of this node's
 * addresses; a Local traffic policy's frontend already holds only this node's
 * backends. Only sockets of the node's network namespace
 * (sl_cfg.sock_netns_cookie) are looked at: the cgroup the agent attaches to
 * also holds the pods (their own namespaces, served by the veth programs), and
 * every kind node shares one kernel. A hook never blocks what it does not
 * translate (returns 1); a frontend without backends refuses the connect or
 * send with ECONNREFUSED (bpf_set_retval), as the tc path answers an RST.
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
#include "lib/sl_lb.h"

#define SL_SOCK_PASS 1
#define SL_SOCK_REJECT 0

/* The node's config when ctx is a socket of the node's network namespace; NULL otherwise. */
static __always_inline struct sl_cfg *sl_sock_cfg(struct bpf_sock_addr *ctx)
{
	struct sl_cfg *cfg = sl_get_config();

	if (!cfg || !cfg->sock_netns_cookie || bpf_get_netns_cookie(ctx) != cfg->sock_netns_cookie)
		return 0;
	return cfg;
}

/*
 * Service address -> backend for a connect or send. The backend choice hashes
 * the socket cookie in place of the (not yet chosen) source port; affinity
 * clients are the node (its first address), as the backends see them.
 */
static __always_inline int sl_sock_xlate_fwd(struct bpf_sock_addr *ctx)
{
	struct sl_sock_revnat_key rk = {};
	struct sl_sock_revnat_val rv = {};
	struct sl_svc_val svc = {};
	struct sl_backend be = {};
	struct sl_pkt p = {};
	struct sl_cfg *cfg;
	__u64 cookie;
	int r;

	if (ctx->user_family != AF_INET)
		return SL_SOCK_PASS;
	cfg = sl_sock_cfg(ctx);
	if (!cfg)
		return SL_SOCK_PASS;
	p.proto = (__u8)ctx->protocol;
	if (p.proto != SL_PROTO_TCP && p.proto != SL_PROTO_UDP)
		return SL_SOCK_PASS;
	cookie = bpf_get_socket_cookie(ctx);
	p.daddr = ctx->user_ip4;
	p.dport = (__be16)ctx->user_port;
	p.saddr = cfg->node_ips[0];
	p.sport = (__be16)(cookie ^ (cookie >> 16) ^ (cookie >> 32));

	r = sl_lb_select(&p, p.daddr, SL_SCOPE_CLUSTERIP, &svc, &be);
	if (r == SL_LB_NONE && sl_is_node_ip(cfg, p.daddr))
		r = sl_lb_select(&p, SL_NODEPORT_VIP, SL_SCOPE_NODEPORT, &svc, &be);
	if (r == SL_LB_NONE)
		return SL_SOCK_PASS;
	if (r == SL_LB_NO_BACKEND || sl_local_pod_gone(cfg, be.ip) || !sl_lb_source_allowed(&svc, p.saddr)) {
		sl_count(SL_CNT_DROP_BASE + (r == SL_LB_NO_BACKEND    ? SL_DROP_SERVICE_BACKEND_NOT_FOUND
					     : !sl_lb_source_allowed(&svc, p.saddr) ? SL_DROP_LB_SOURCE_RANGE
										 : SL_DROP_ENDPOINT_GONE));
		bpf_set_retval(-SL_ECONNREFUSED);
		return SL_SOCK_REJECT;
	}
	rk.cookie = cookie;
	rk.backend_ip = be.ip;
	rk.backend_port = be.port;
	rv.vip = p.daddr;
	rv.vport = p.dport;
	/* best effort: without it getpeername/recvfrom show the backend */
	bpf_map_update_elem(&sl_sock_revnat, &rk, &rv, BPF_ANY);
	ctx->user_ip4 = be.ip;
	ctx->user_port = be.port;
	sl_count(SL_CNT_SOCK_XLATE);
	return SL_SOCK_PASS;
}

/* Backend -> the service address the socket was translated from (replies, peer name). */
static __always_inline void sl_sock_xlate_rev(struct bpf_sock_addr *ctx)
{
	struct sl_sock_revnat_key rk = {};
	struct sl_sock_revnat_val *rv;

	if (ctx->user_family != AF_INET || !sl_sock_cfg(ctx))
		return;
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.backend_ip = ctx->user_ip4;
	rk.backend_port = (__be16)ctx->user_port;
	rv = bpf_map_lookup_elem(&sl_sock_revnat, &rk);
	if (!rv)
		return;
	ctx->user_ip4 = rv->vip;
	ctx->user_port = rv->vport;
}

SEC("cgroup/connect4")
int sl_sock_connect4(struct bpf_sock_addr *ctx)
{
	return sl_sock_xlate_fwd(ctx);
}

SEC("cgroup/sendmsg4")
int sl_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sl_sock_xlate_fwd(ctx);
}

SEC("cgroup/recvmsg4")
int sl_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	sl_sock_xlate_rev(ctx);
	return SL_SOCK_PASS;
}

SEC("cgroup/getpeername4")
int sl_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	sl_sock_xlate_rev(ctx);
	return SL_SOCK_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
