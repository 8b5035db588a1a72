/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header rewrites with incremental checksum updates (DNAT/SNAT/reverse NAT)
 * and the in-place TCP RST answer for services without backends.
 */
#ifndef SL_CSUM_H
#define SL_CSUM_H

#include "sl_kernel.h"
#include "sl_parse.h"
#include <bpf/bpf_endian.h>

#define SL_IP_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define SL_IP_SRC_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define SL_IP_DST_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))

/* Which side of the tuple sl_rewrite changes. */
enum sl_nat_side {
	SL_NAT_DST = 0,
	SL_NAT_SRC = 1,
};

/*
 * Rewrite only the IP address of one side, fixing the IP header checksum:
 * non-first fragments (their L4 checksum is in the first fragment, which
 * gets the pseudo-header update) and SCTP (CRC32c covers no pseudo header).
 */
static __always_inline int sl_rewrite_ip(struct __sk_buff *skb, int is_src, __u32 old_ip, __u32 new_ip)
{
	if (old_ip == new_ip)
		return 0;
	if (bpf_l3_csum_replace(skb, SL_IP_CSUM_OFF, old_ip, new_ip, sizeof(new_ip)) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, is_src ? SL_IP_SRC_OFF : SL_IP_DST_OFF, &new_ip, sizeof(new_ip), 0);
}

/*
 * Rewrite the source (SL_NAT_SRC) or destination (SL_NAT_DST) address and
 * port of a TCP/UDP packet, fixing the IP and L4 checksums (pseudo header included). Updates
 * p to the new tuple. Non-first fragments get the address only (their ports
 * are in the first fragment). SCTP: the address only, a port change fails
 * (its CRC32c checksum cannot be updated incrementally; Services must keep
 * the port, as in Cilium). Returns 0 or a negative error.
 */
static __always_inline int sl_rewrite(struct __sk_buff *skb, struct sl_pkt *p, enum sl_nat_side side,
				      __u32 new_ip, __be16 new_port)
{
	int is_src = side == SL_NAT_SRC;
	__u32 old_ip = is_src ? p->saddr : p->daddr;
	__be16 old_port = is_src ? p->sport : p->dport;
	__u32 csum_off, port_off;
	__u64 l4flags = 0;

	if ((p->flags & SL_PKT_FRAG_LATER) || p->proto == SL_PROTO_SCTP) {
		if (p->proto == SL_PROTO_SCTP && old_port != new_port)
			return -1;
		if (sl_rewrite_ip(skb, is_src, old_ip, new_ip) < 0)
			return -1;
		goto out;
	}
	if (p->proto == SL_PROTO_TCP) {
		csum_off = p->l4_off + __builtin_offsetof(struct tcphdr, check);
		port_off = p->l4_off + (is_src ? __builtin_offsetof(struct tcphdr, source)
					       : __builtin_offsetof(struct tcphdr, dest));
	} else if (p->proto == SL_PROTO_UDP) {
		csum_off = p->l4_off + __builtin_offsetof(struct udphdr, check);
		port_off = p->l4_off + (is_src ? __builtin_offsetof(struct udphdr, source)
					       : __builtin_offsetof(struct udphdr, dest));
		l4flags = BPF_F_MARK_MANGLED_0; /* UDP checksum 0 = none: keep it */
	} else {
		return -1;
	}

	if (old_ip != new_ip) {
		if (bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip,
					l4flags | BPF_F_PSEUDO_HDR | sizeof(new_ip)) < 0)
			return -1;
		if (bpf_l3_csum_replace(skb, SL_IP_CSUM_OFF, old_ip, new_ip, sizeof(new_ip)) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, is_src ? SL_IP_SRC_OFF : SL_IP_DST_OFF, &new_ip,
					sizeof(new_ip), 0) < 0)
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port,
					l4flags | sizeof(new_port)) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0) < 0)
			return -1;
	}
out:
	if (is_src) {
		p->saddr = new_ip;
		p->sport = new_port;
	} else {
		p->daddr = new_ip;
		p->dport = new_port;
	}
	return 0;
}

static __always_inline __u16 sl_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

struct sl_pseudo_hdr {
	__u32 saddr;
	__u32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

/*
 * Turn a TCP SYN into the RST|ACK its sender would get from a closed port:
 * swap MACs, addresses and ports, ack = seq + 1, trim to a 20-byte TCP
 * header, recompute both checksums. The caller redirects it back out of the
 * interface it came in on. Only plain 20-byte IP headers are handled.
 */
static __always_inline int sl_tcp_rst_reply(struct __sk_buff *skb, const struct sl_pkt *p)
{
	__u32 new_len = ETH_HLEN + sizeof(struct iphdr) + sizeof(struct tcphdr);
	struct sl_pseudo_hdr ph = {};
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct tcphdr *th;
	__u8 mac[ETH_ALEN];
	__u32 seq;
	__s64 sum;

	if (p->l4_off != ETH_HLEN + sizeof(struct iphdr))
		return -1;
	if (skb->len > new_len && bpf_skb_change_tail(skb, new_len, 0) < 0)
		return -1;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	th = (void *)(ip + 1);
	if ((void *)(th + 1) > data_end)
		return -1;

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);

	ip->saddr = p->daddr;
	ip->daddr = p->saddr;
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct tcphdr));
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF */
	ip->ttl = 64;
	ip->tos = 0;
	ip->check = 0;
	sum = bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0);
	if (sum < 0)
		return -1;
	ip->check = sl_csum_fold(sum);

	seq = bpf_ntohl(th->seq);
	th->source = p->dport;
	th->dest = p->sport;
	th->ack_seq = bpf_htonl(seq + 1);
	th->seq = 0;
	th->doff_res = 5 << 4;
	th->flags = SL_TCP_RST | SL_TCP_ACK;
	th->window = 0;
	th->urg_ptr = 0;
	th->check = 0;

	ph.saddr = p->daddr;
	ph.daddr = p->saddr;
	ph.proto = SL_PROTO_TCP;
	ph.len = bpf_htons(sizeof(struct tcphdr));
	sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	if (sum < 0)
		return -1;
	sum = bpf_csum_diff(0, 0, (__be32 *)th, sizeof(*th), sum);
	if (sum < 0)
		return -1;
	th->check = sl_csum_fold(sum);
	return 0;
}

#endif /* SL_CSUM_H */
