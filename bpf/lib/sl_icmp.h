/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP errors related to a tracked flow (Cilium's CT_RELATED): destination
 * unreachable (port unreachable, fragmentation needed / PMTU, ...), time
 * exceeded and parameter problem quote the header of a packet of the flow.
 * The error travels against the quoted packet, so the conntrack entry of the
 * flow's packets in the error's direction is the quoted tuple reversed, at
 * the hook's scope. On a hit the error passes without policy (the flow was
 * allowed) and gets the entry's NAT: the quoted header and the outer address
 * of that side are translated, so a client of a Service sees its error name
 * the VIP. Errors with no such entry are new flows under policy as before.
 */
#ifndef SL_ICMP_H
#define SL_ICMP_H

#include "sl_maps.h"
#include "sl_config.h"
#include "sl_parse.h"
#include "sl_events.h"
#include "sl_csum.h"
#include "sl_drop.h"

/* The quoted header of an ICMP error. */
struct sl_icmp_inner {
	__u32 saddr;
	__u32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad;
	__u16 ip_off; /* quoted IP header, from the start of the frame */
	__u16 l4_off; /* quoted L4 header */
	__u16 pad2;
};

/* Load the quoted header of ICMP error p. Returns 0, or -1 when it names no tracked tuple. */
static __always_inline int sl_icmp_inner_load(struct __sk_buff *skb, const struct sl_pkt *p,
					      struct sl_icmp_inner *in)
{
	__u32 off = p->l4_off + sizeof(struct icmphdr);
	struct icmphdr ih;
	struct iphdr ip;
	__be16 ports[2];
	__u32 ihl;

	if (p->flags & SL_PKT_FRAG_LATER)
		return -1;
	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return -1;
	ihl = (ip.ver_ihl & 0xf) * 4;
	if ((ip.ver_ihl >> 4) != 4 || ihl < sizeof(ip))
		return -1;
	/* a quoted non-first fragment carries no ports */
	if (ip.frag_off & bpf_htons(IP_OFFSET))
		return -1;
	in->saddr = ip.saddr;
	in->daddr = ip.daddr;
	in->proto = ip.protocol;
	in->sport = 0;
	in->dport = 0;
	in->ip_off = off;
	in->l4_off = off + ihl;
	if (sl_has_ports(ip.protocol)) {
		if (bpf_skb_load_bytes(skb, in->l4_off, ports, sizeof(ports)) < 0)
			return -1;
		in->sport = ports[0];
		in->dport = ports[1];
		return 0;
	}
	if (ip.protocol != SL_PROTO_ICMP)
		return -1;
	if (bpf_skb_load_bytes(skb, in->l4_off, &ih, sizeof(ih)) < 0)
		return -1;
	/* as sl_parse: the echo id is the port */
	if (ih.type == ICMP_ECHO)
		in->sport = ih.id;
	else if (ih.type == ICMP_ECHOREPLY)
		in->dport = ih.id;
	else
		return -1;
	return 0;
}

/*
 * Apply one side of the related flow's NAT to the error. side is the side of
 * the flow's packets in the error's direction: SL_NAT_DST changes the error's
 * destination and the quoted source, SL_NAT_SRC the quoted destination and
 * the error's source when the error comes from that peer itself (not from a
 * router on the way, whose address stays). Checksums: the outer IP header;
 * the quoted IP header's own checksum with its address (the pair leaves that
 * header's ones' complement sum, and so the ICMP checksum, unchanged); the
 * ICMP checksum for the quoted port. The quoted L4 checksum is left alone: it
 * covers data the error does not carry, and receivers do not check it.
 */
static __always_inline int sl_icmp_rewrite(struct __sk_buff *skb, struct sl_pkt *p, struct sl_icmp_inner *in,
					   enum sl_nat_side side, __u32 new_ip, __be16 new_port)
{
	int is_src = side == SL_NAT_SRC;
	__u32 old_ip = is_src ? in->daddr : in->saddr;
	__be16 old_port = is_src ? in->dport : in->sport;
	__u32 ip_off = in->ip_off + (is_src ? __builtin_offsetof(struct iphdr, daddr)
					    : __builtin_offsetof(struct iphdr, saddr));
	__u32 port_off = in->l4_off + (is_src ? 2 : 0);
	__u32 icmp_csum_off = p->l4_off + __builtin_offsetof(struct icmphdr, checksum);

	if (old_ip == new_ip && old_port == new_port)
		return 0;
	if (is_src && p->saddr == old_ip) {
		if (sl_rewrite_ip(skb, 1, old_ip, new_ip) < 0)
			return -1;
		p->saddr = new_ip;
	} else if (!is_src && p->daddr == old_ip) {
		if (sl_rewrite_ip(skb, 0, old_ip, new_ip) < 0)
			return -1;
		p->daddr = new_ip;
	}
	if (old_ip != new_ip) {
		if (bpf_l3_csum_replace(skb, in->ip_off + __builtin_offsetof(struct iphdr, check), old_ip,
					new_ip, sizeof(new_ip)) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, ip_off, &new_ip, sizeof(new_ip), 0) < 0)
			return -1;
	}
	if (old_port != new_port) {
		if (!sl_has_ports(in->proto))
			return -1;
		if (bpf_l3_csum_replace(skb, icmp_csum_off, old_port, new_port, sizeof(new_port)) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0) < 0)
			return -1;
	}
	if (is_src) {
		in->daddr = new_ip;
		in->dport = new_port;
	} else {
		in->saddr = new_ip;
		in->sport = new_port;
	}
	return 0;
}

/*
 * An ICMP error p at a pod hook (t->direction: egress = from-container, CT
 * scope EGRESS; ingress = to-container, scope INGRESS): find the flow it is
 * about and apply its NAT (the DNAT, reverse NAT and SNAT of the entry, as
 * sl_ct_apply does for the flow's own packets). The entry's counters and idle
 * time are left alone (errors do not keep a flow alive). Returns SL_CONTINUE
 * when no tracked flow is behind the error, TC_ACT_OK with *flags set to the
 * entry's flags, or a drop code. Inlined: as a BPF subprogram its stack and
 * sl_from_container's together exceed the 512-byte limit.
 */
static __always_inline int sl_icmp_related(struct __sk_buff *skb, const struct sl_cfg *cfg, struct sl_pkt *p,
					   struct sl_trace *t, __u16 *flags)
{
	enum sl_ct_scope scope = t->direction == SL_DIR_EGRESS ? SL_CT_EGRESS : SL_CT_INGRESS;
	struct sl_icmp_inner in = {};
	__be16 dst_port, src_port;
	__u32 dst_ip, src_ip;
	struct sl_ct_entry *e;
	struct sl_ct_key k;
	__u16 f;

	if (sl_icmp_inner_load(skb, p, &in) < 0)
		return SL_CONTINUE;
	k.saddr = in.daddr;
	k.daddr = in.saddr;
	k.sport = in.dport;
	k.dport = in.sport;
	k.proto = in.proto;
	k.scope = scope;
	k.pad = 0;
	e = bpf_map_lookup_elem(&sl_ct, &k);
	if (!e)
		return SL_CONTINUE;
	f = e->flags;
	*flags = f;
	t->is_reply = !!(f & SL_CT_REPLY);
	t->policy_id = e->policy_id;
	t->rule = e->rule;
	t->pass_policy_id = e->pass_policy_id;
	t->pass_rule = e->pass_rule;
	t->src_identity = e->src_identity;
	t->dst_identity = e->dst_identity;
	/* the flow's destination side: DNAT, or the SNAT of a reply; its source side:
	 * reverse NAT, or the SNAT of a forward entry (no entry changes a side twice) */
	dst_ip = in.saddr;
	dst_port = in.sport;
	src_ip = in.daddr;
	src_port = in.dport;
	if (f & SL_CT_DNAT) {
		dst_ip = e->nat_addr;
		dst_port = e->nat_port;
	}
	if (f & SL_CT_REVNAT) {
		src_ip = e->nat_addr;
		src_port = e->nat_port;
	}
	if ((f & SL_CT_SNAT) && (f & SL_CT_REPLY)) {
		dst_ip = e->snat_addr;
		dst_port = e->snat_port;
	} else if (f & SL_CT_SNAT) {
		src_ip = e->snat_addr;
		src_port = e->snat_port;
	}
	if (sl_icmp_rewrite(skb, p, &in, SL_NAT_DST, dst_ip, dst_port) < 0 ||
	    sl_icmp_rewrite(skb, p, &in, SL_NAT_SRC, src_ip, src_port) < 0)
		return sl_drop_code(SL_DROP_INVALID_PACKET);
	sl_count(SL_CNT_FORWARDED);
	sl_emit_trace(cfg, p, t);
	return TC_ACT_OK;
}

#endif /* SL_ICMP_H */
