/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map and value layouts shared with Go (datapath/maps). They are the contract
 * of docs/ARCHITECTURE.md: all addresses and ports in network byte order,
 * explicit zeroed pads. Fields may only be appended.
 */
#ifndef SL_MAPS_H
#define SL_MAPS_H

#include "sl_kernel.h"
#include <bpf/bpf_helpers.h>

/* ---- endpoints ---------------------------------------------------------- */
enum sl_ep_flags {
	SL_EP_INGRESS_ENFORCED = 1,
	SL_EP_EGRESS_ENFORCED = 2,
	SL_EP_POLICY_ERROR = 4,
};

struct sl_endpoint {
	__u32 ip;
	__u32 ep_id;
	__u32 identity;
	__u32 flags;
	__u8 mac[6];
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* host veth ifindex */
	__type(value, struct sl_endpoint);
} sl_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   /* pod IP */
	__type(value, __u32); /* host veth ifindex */
} sl_ep_by_ip SEC(".maps");

/* ---- identities --------------------------------------------------------- */
enum sl_identity {
	SL_ID_ANY = 0,
	SL_ID_HOST = 1,
	SL_ID_WORLD = 2,
	SL_ID_UNMANAGED = 3,
	SL_ID_REMOTE_NODE = 6,
};

struct sl_ipcache_key {
	__u32 prefixlen;
	__u32 ip;
};

struct sl_ipcache_val {
	__u32 identity;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_ipcache_key);
	__type(value, struct sl_ipcache_val);
} sl_ipcache SEC(".maps");

/* ---- policy ------------------------------------------------------------- */
enum sl_dir {
	SL_DIR_INGRESS = 1,
	SL_DIR_EGRESS = 2,
};

enum sl_policy_action {
	SL_ACTION_ALLOW = 1,
	SL_ACTION_EXCEPT = 2,
};

struct sl_policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u32 peer_id;
	__u8 dir;
	__u8 proto;
	__be16 port;
};

struct sl_policy_val {
	__u8 action;
	__u8 pad;
	__u16 rule;
	__u32 policy_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_policy_key);
	__type(value, struct sl_policy_val);
} sl_policy SEC(".maps");

struct sl_cidr_policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u8 dir;
	__u8 proto;
	__be16 port;
	__u32 ip;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_cidr_policy_key);
	__type(value, struct sl_policy_val);
} sl_cidr_policy SEC(".maps");

/* ---- services ----------------------------------------------------------- */
enum sl_svc_scope {
	SL_SCOPE_CLUSTERIP = 0,
	SL_SCOPE_NODEPORT = 1,
};

enum sl_svc_flags {
	SL_SVC_AFFINITY = 1,
	SL_SVC_LOCAL = 2,
};

struct sl_svc_key {
	__u32 vip;
	__be16 port;
	__u8 proto;
	__u8 scope;
};

struct sl_svc_val {
	__u32 svc_id;
	__u16 count;
	__u16 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sl_svc_key);
	__type(value, struct sl_svc_val);
} sl_services SEC(".maps");

struct sl_backend_key {
	__u32 svc_id;
	__u32 slot;
};

struct sl_backend {
	__u32 ip;
	__be16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sl_backend_key);
	__type(value, struct sl_backend);
} sl_backends SEC(".maps");

/* ---- conntrack ---------------------------------------------------------- */
enum sl_ct_scope {
	SL_CT_INGRESS = 1, /* to-container */
	SL_CT_EGRESS = 2,  /* from-container */
	SL_CT_NETDEV = 3,  /* from-netdev */
};

enum sl_ct_flags {
	SL_CT_REPLY = 1,        /* entry matches the reply direction */
	SL_CT_DNAT = 2,         /* rewrite daddr/dport to nat_addr/nat_port */
	SL_CT_REVNAT = 4,       /* rewrite saddr/sport to nat_addr/nat_port */
	SL_CT_SNAT = 8,         /* forward: saddr/sport := snat; reply: daddr/dport := snat */
	SL_CT_SEEN_CLOSE = 16,  /* a FIN/RST was seen, CLOSE event emitted */
	SL_CT_FIB_REDIRECT = 32, /* after NAT, bpf_fib_lookup + bpf_redirect (NodePort) */
};

struct sl_ct_key {
	__u32 saddr;
	__u32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 scope;
	__u16 pad;
};

struct sl_ct_entry {
	__u64 created_ns;   /* bpf_ktime_get_boot_ns */
	__u64 last_seen_ns;
	__u64 packets;
	__u64 bytes;
	__u32 nat_addr;
	__be16 nat_port;
	__u16 flags;
	__u32 policy_id;
	__u32 orig_daddr;   /* the destination the client dialed (VIP, node IP) */
	__be16 orig_dport;
	__u16 rule;
	__u32 svc_id;
	/* appended to the ARCHITECTURE.md list */
	__u32 snat_addr;
	__be16 snat_port;
	__u16 pad;
	__u32 src_identity;
	__u32 dst_identity;
	struct sl_ct_key pair; /* the other direction's entry */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sl_ct_key);
	__type(value, struct sl_ct_entry);
} sl_ct SEC(".maps");

/* per-flow DROP event rate limit: key = packet tuple with scope = obs point */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sl_ct_key);
	__type(value, __u64);
} sl_drop_rl SEC(".maps");

/* ---- events, counters, config ------------------------------------------- */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} sl_events SEC(".maps");

enum sl_counter {
	SL_CNT_PACKETS = 0,
	SL_CNT_FORWARDED = 1,
	SL_CNT_RB_FAIL = 2,
	SL_CNT_CT_NEW = 3,
	SL_CNT_FIB_FAIL = 4,
	SL_CNT_NON_IPV4 = 5,
	SL_CNT_DROP_BASE = 16, /* + drop reason */
	SL_CNT_MAX = 32,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sl_counters SEC(".maps");

#define SL_MAX_NODE_IPS 4

enum sl_event_level {
	SL_EVENTS_FLOWS = 0, /* NEW, DROP, CLOSE */
	SL_EVENTS_NONE = 1,
	SL_EVENTS_ALL = 2, /* also one TRACE per forwarded packet */
};

struct sl_cfg {
	__u32 node_ips[SL_MAX_NODE_IPS]; /* local node addresses (0 = unused) */
	__u32 netdev_ifindex;            /* node device (eth0 in kind) */
	__u32 event_level;               /* enum sl_event_level */
	__u32 wakeup_bytes;              /* force a reader wakeup over this much pending data (0: 64 KiB) */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_cfg);
} sl_config SEC(".maps");

static __always_inline void sl_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&sl_counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline struct sl_cfg *sl_get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sl_config, &zero);
}

static __always_inline int sl_is_node_ip(const struct sl_cfg *cfg, __u32 ip)
{
	if (!ip)
		return 0;
#pragma unroll
	for (int i = 0; i < SL_MAX_NODE_IPS; i++)
		if (cfg->node_ips[i] == ip)
			return 1;
	return 0;
}

static __always_inline __u32 sl_identity_of(__u32 ip)
{
	struct sl_ipcache_key k = { .prefixlen = 32, .ip = ip };
	struct sl_ipcache_val *v = bpf_map_lookup_elem(&sl_ipcache, &k);

	return v ? v->identity : SL_ID_WORLD;
}

#endif /* SL_MAPS_H */
