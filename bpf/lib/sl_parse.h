/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing: Ethernet + IPv4 + TCP/UDP/SCTP/ICMP into struct sl_pkt.
 * IPv4 fragments: the first fragment's ports are stored in sl_frag under
 * (saddr, daddr, id, proto) and given to the later fragments, so policy,
 * conntrack and Service NAT see every fragment of a datagram with its ports.
 */
#ifndef SL_PARSE_H
#define SL_PARSE_H

#include "sl_kernel.h"
#include <bpf/bpf_endian.h>
#include "sl_types.h"
#include "sl_maps.h"

/* sl_pkt.flags */
enum sl_pkt_flags {
	SL_PKT_FRAG_LATER = 1,     /* a non-first fragment: ports from sl_frag, no L4 header */
	SL_PKT_FRAG_NOT_FOUND = 2, /* ... whose first fragment was never seen (ports 0) */
	SL_PKT_ICMP_ERR = 4,       /* ICMP dest unreachable / time exceeded / parameter problem */
};

struct sl_pkt {
	__u32 saddr;
	__u32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u16 l4_off; /* from the start of the frame */
	__u32 len;    /* skb->len */
	__u8 flags;   /* enum sl_pkt_flags */
	__u8 pad[3];
};

/* Protocols whose fragments sl_frag tracks (the ones sl_parse gives ports). */
static __always_inline int sl_frag_tracked(__u8 proto)
{
	return proto == SL_PROTO_TCP || proto == SL_PROTO_UDP || proto == SL_PROTO_SCTP ||
	       proto == SL_PROTO_ICMP;
}

/* A non-first fragment: the ports of its first fragment, or SL_PKT_FRAG_NOT_FOUND. */
static __always_inline void sl_frag_later(struct sl_pkt *p, const struct iphdr *ip)
{
	struct sl_frag_key fk = { .saddr = p->saddr, .daddr = p->daddr, .id = ip->id, .proto = p->proto };
	struct sl_frag_val *v;

	p->flags |= SL_PKT_FRAG_LATER;
	if (!sl_frag_tracked(p->proto))
		return;
	v = bpf_map_lookup_elem(&sl_frag, &fk);
	if (!v) {
		p->flags |= SL_PKT_FRAG_NOT_FOUND;
		return;
	}
	p->sport = v->sport;
	p->dport = v->dport;
}

/* The first fragment of a datagram (MF set, offset 0): remember its ports for the later ones. */
static __always_inline void sl_frag_first(const struct sl_pkt *p, const struct iphdr *ip)
{
	struct sl_frag_key fk = { .saddr = p->saddr, .daddr = p->daddr, .id = ip->id, .proto = p->proto };
	struct sl_frag_val v = { .sport = p->sport, .dport = p->dport };

	bpf_map_update_elem(&sl_frag, &fk, &v, BPF_ANY);
}

enum sl_parse_result {
	SL_PARSE_OK = 0,
	SL_PARSE_NOT_IPV4 = 1, /* ARP, IPv6, ...: h_proto in *eth_proto */
	SL_PARSE_INVALID = -1,
};

static __always_inline int sl_parse(struct __sk_buff *skb, struct sl_pkt *p, __u16 *eth_proto)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 ihl;

	if ((void *)(eth + 1) > data_end)
		return SL_PARSE_INVALID;
	*eth_proto = bpf_ntohs(eth->h_proto);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return SL_PARSE_NOT_IPV4;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return SL_PARSE_INVALID;
	if ((ip->ver_ihl >> 4) != 4)
		return SL_PARSE_INVALID;
	ihl = (ip->ver_ihl & 0xf) * 4;
	if (ihl < sizeof(struct iphdr))
		return SL_PARSE_INVALID;

	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->l4_off = ETH_HLEN + ihl;
	p->len = skb->len;
	p->flags = 0;

	/* non-first fragments carry no L4 header: the first fragment's ports */
	if (ip->frag_off & bpf_htons(IP_OFFSET)) {
		sl_frag_later(p, ip);
		return SL_PARSE_OK;
	}

	if (p->proto == SL_PROTO_TCP) {
		struct tcphdr *th = data + ETH_HLEN + ihl;

		if ((void *)(th + 1) > data_end)
			return SL_PARSE_INVALID;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = th->flags;
	} else if (p->proto == SL_PROTO_UDP) {
		struct udphdr *uh = data + ETH_HLEN + ihl;

		if ((void *)(uh + 1) > data_end)
			return SL_PARSE_INVALID;
		p->sport = uh->source;
		p->dport = uh->dest;
	} else if (p->proto == SL_PROTO_SCTP) {
		struct sctphdr *sh = data + ETH_HLEN + ihl;

		if ((void *)(sh + 1) > data_end)
			return SL_PARSE_INVALID;
		p->sport = sh->source;
		p->dport = sh->dest;
	} else if (p->proto == SL_PROTO_ICMP) {
		struct icmphdr *ih = data + ETH_HLEN + ihl;

		if ((void *)(ih + 1) > data_end)
			return SL_PARSE_INVALID;
		/* echo id as a port so request and reply form a tuple pair */
		if (ih->type == ICMP_ECHO)
			p->sport = ih->id;
		else if (ih->type == ICMP_ECHOREPLY)
			p->dport = ih->id;
		else if (ih->type == ICMP_DEST_UNREACH || ih->type == ICMP_TIME_EXCEEDED ||
			 ih->type == ICMP_PARAMETERPROB)
			p->flags |= SL_PKT_ICMP_ERR;
	}
	if ((ip->frag_off & bpf_htons(IP_MF)) && sl_frag_tracked(p->proto))
		sl_frag_first(p, ip);
	return SL_PARSE_OK;
}

static __always_inline int sl_has_ports(__u8 proto)
{
	return proto == SL_PROTO_TCP || proto == SL_PROTO_UDP || proto == SL_PROTO_SCTP;
}

#endif /* SL_PARSE_H */
