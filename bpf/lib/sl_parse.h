/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing: Ethernet + IPv4 + TCP/UDP/ICMP into struct sl_pkt. */
#ifndef SL_PARSE_H
#define SL_PARSE_H

#include "sl_kernel.h"
#include <bpf/bpf_endian.h>
#include "sl_types.h"

struct sl_pkt {
	__u32 saddr;
	__u32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u16 l4_off; /* from the start of the frame */
	__u32 len;    /* skb->len */
};

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

	/* non-first fragments carry no L4 header: ports stay 0 */
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return SL_PARSE_OK;

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
	} else if (p->proto == SL_PROTO_ICMP) {
		struct icmphdr *ih = data + ETH_HLEN + ihl;

		if ((void *)(ih + 1) > data_end)
			return SL_PARSE_INVALID;
		/* echo id as a port so request and reply form a tuple pair */
		if (ih->type == ICMP_ECHO)
			p->sport = ih->id;
		else if (ih->type == ICMP_ECHOREPLY)
			p->dport = ih->id;
	}
	return SL_PARSE_OK;
}

static __always_inline int sl_has_ports(__u8 proto)
{
	return proto == SL_PROTO_TCP || proto == SL_PROTO_UDP;
}

#endif /* SL_PARSE_H */
