/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Hand-written subset of the kernel UAPI the datapath needs (instead of the
 * 2.8 MB vmlinux.h): integer types, struct __sk_buff, bpf_fib_lookup,
 * Ethernet/IPv4/TCP/UDP/ICMP headers and the BPF constants we use. Layouts
 * are copied from include/uapi/linux/{bpf,if_ether,ip,tcp,udp,icmp}.h.
 */
#ifndef SL_KERNEL_H
#define SL_KERNEL_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u16 __sum16;
typedef __u32 __wsum;

#define __bpf_md_ptr(type, name) \
	union {                   \
		type name;        \
		__u64 : 64;       \
	} __attribute__((aligned(8)))

enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC = 0,
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_F_NO_PREALLOC = (1U << 0),
};

/* flags for bpf_l3/l4_csum_replace */
enum {
	BPF_F_PSEUDO_HDR = (1ULL << 4),
	BPF_F_MARK_MANGLED_0 = (1ULL << 5),
};

/* bpf_ringbuf_submit/output flags and bpf_ringbuf_query flags */
enum {
	BPF_RB_NO_WAKEUP = (1ULL << 0),
	BPF_RB_FORCE_WAKEUP = (1ULL << 1),
};
enum {
	BPF_RB_AVAIL_DATA = 0,
};

enum {
	BPF_FIB_LOOKUP_DIRECT = (1U << 0),
	BPF_FIB_LOOKUP_OUTPUT = (1U << 1),
};
enum {
	BPF_FIB_LKUP_RET_SUCCESS = 0,
	BPF_FIB_LKUP_RET_NO_NEIGH = 7,
};

struct bpf_flow_keys;
struct bpf_sock;

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	__bpf_md_ptr(struct bpf_flow_keys *, flow_keys);
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	__bpf_md_ptr(struct bpf_sock *, sk);
	__u32 gso_size;
	__u8 tstamp_type;
	__u32 : 24;
	__u64 hwtstamp;
};

struct bpf_fib_lookup {
	__u8 family;
	__u8 l4_protocol;
	__be16 sport;
	__be16 dport;
	union {
		__u16 tot_len;
		__u16 mtu_result;
	} __attribute__((packed, aligned(2)));
	__u32 ifindex;
	union {
		__u8 tos;
		__be32 flowinfo;
		__u32 rt_metric;
	};
	union {
		__be32 ipv4_src;
		__u32 ipv6_src[4];
	};
	union {
		__be32 ipv4_dst;
		__u32 ipv6_dst[4];
	};
	union {
		struct {
			__be16 h_vlan_proto;
			__be16 h_vlan_TCI;
		};
		__u32 tbid;
	};
	__u8 smac[6];
	__u8 dmac[6];
};

struct bpf_redir_neigh {
	__u32 nh_family;
	union {
		__be32 ipv4_nh;
		__u32 ipv6_nh[4];
	};
};

#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define AF_INET 2

/* IP protocol numbers: enum sl_proto in sl_types.h */

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

struct ethhdr {
	__u8 h_dest[ETH_ALEN];
	__u8 h_source[ETH_ALEN];
	__be16 h_proto;
};

/* struct iphdr without bitfields: ver_ihl = version << 4 | ihl. */
struct iphdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

/* struct tcphdr without bitfields: doff_res = data offset << 4, flags = CWR..FIN. */
struct tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res;
	__u8 flags;
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

/* TCP flag bits: enum sl_tcp_flags in sl_types.h */

struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__sum16 check;
};

struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

/* SCTP common header (RFC 9260 3.1); the checksum is CRC32c over the packet, no pseudo header. */
struct sctphdr {
	__be16 source;
	__be16 dest;
	__be32 vtag;
	__u32 checksum;
};

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

/* cgroup sock_addr programs (include/uapi/linux/bpf.h): connect4, sendmsg4, recvmsg4, getpeername4. */
struct bpf_sock;
struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;    /* network order */
	__u32 user_ip6[4];
	__u32 user_port;   /* network order, in the low 16 bits */
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	__bpf_md_ptr(struct bpf_sock *, sk);
};

#define SL_ECONNREFUSED 111

#endif /* SL_KERNEL_H */
