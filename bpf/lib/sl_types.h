/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The contract between the BPF programs and Go: every enum value and every
 * map key, map value and event layout that Go reads or writes is defined
 * here, once. bpf2go emits them as Go types and typed constants into
 * datapath/bpfobj (sl_bpfel.go, from the lxc object; see the -type list in
 * datapath/bpfobj/doc.go), and Go only wraps those:
 *
 *   enum sl_proto, sl_dir, sl_identity   -> datapath/maps/maps.go
 *   struct sl_endpoint, sl_ep_flags      -> datapath/maps/endpoints.go
 *   struct sl_ipcache_*                  -> datapath/maps/ipcache.go
 *   struct sl_policy_*, sl_cidr_*,
 *     sl_policy_action, sl_lpm_bits      -> datapath/maps/policy.go (datapath/policy uses it)
 *   struct sl_svc_*, sl_backend*,
 *     sl_affinity_*,
 *     sl_svc_scope, sl_svc_flags         -> datapath/maps/services.go (datapath/lb uses it)
 *   struct sl_ct_*, sl_ct_scope/flags    -> datapath/maps/conntrack.go
 *   struct sl_cfg, sl_event_level,
 *     sl_counter                         -> datapath/maps/config.go
 *   struct sl_flow_event, sl_verdict,
 *     sl_drop_reason, sl_event_type,
 *     sl_obs_point, sl_tcp_flags         -> datapath/flowevent/event.go (names for JSON;
 *                                           internal/flow takes them from there)
 *
 * All addresses and ports are in network byte order, pads are explicit and
 * zeroed. Map layouts may only be appended to (pinned maps survive agent
 * upgrades; see docs/ARCHITECTURE.md "Maps").
 */
#ifndef SL_TYPES_H
#define SL_TYPES_H

#include "sl_kernel.h"

/* ---- packets ------------------------------------------------------------ */

/* IP protocol numbers (UAPI IPPROTO_*) the datapath knows; 0 in a policy key = any. */
enum sl_proto {
	SL_PROTO_ANY = 0,
	SL_PROTO_ICMP = 1,
	SL_PROTO_TCP = 6,
	SL_PROTO_UDP = 17,
	SL_PROTO_SCTP = 132, /* ports parsed; Services only without port translation (CRC32c checksum) */
};

/* TCP header flags (struct tcphdr flags byte, sl_flow_event.tcp_flags). */
enum sl_tcp_flags {
	SL_TCP_FIN = 0x01,
	SL_TCP_SYN = 0x02,
	SL_TCP_RST = 0x04,
	SL_TCP_PSH = 0x08,
	SL_TCP_ACK = 0x10,
	SL_TCP_URG = 0x20,
	SL_TCP_ECE = 0x40,
	SL_TCP_CWR = 0x80,
};

/* ---- endpoints ---------------------------------------------------------- */
enum sl_ep_flags {
	SL_EP_INGRESS_ENFORCED = 1,
	SL_EP_EGRESS_ENFORCED = 2,
	SL_EP_POLICY_ERROR = 4,
	/* with SL_EP_POLICY_ERROR: the agent could not write the endpoint's policy (maps full, write
	 * failed), so it denies everything; dropped as SL_DROP_POLICY_WRITE_FAILED */
	SL_EP_POLICY_WRITE_FAILED = 8,
	/* a ClusterNetworkPolicy (Admin or Baseline tier) has rules for this direction: the datapath
	 * does every sl_policy/sl_cidr_policy lookup and walks the tiers (sl_policy.h) */
	SL_EP_INGRESS_TIERS = 16,
	SL_EP_EGRESS_TIERS = 32,
};

struct sl_endpoint {
	__u32 ip;
	__u32 ep_id;
	__u32 identity;
	__u32 flags; /* enum sl_ep_flags */
	__u8 mac[6];
	__u8 pad[2];
	/* appended: bumped by the agent whenever the endpoint's policy (its entries, its flags, the
	 * identities of its peers) changes; conntrack entries record the revision they were allowed
	 * under, and forward packets of an entry with another revision are looked up in policy again */
	__u32 policy_rev;
};

/* ---- identities --------------------------------------------------------- */
enum sl_identity {
	SL_ID_ANY = 0,
	SL_ID_HOST = 1,
	SL_ID_WORLD = 2,
	SL_ID_UNMANAGED = 3,
	SL_ID_REMOTE_NODE = 6,
	SL_ID_FIRST_POD = 256, /* identities from here on are pods */
};

struct sl_ipcache_key {
	__u32 prefixlen;
	__u32 ip;
};

struct sl_ipcache_val {
	__u32 identity;
	__u32 flags;
};

/* ---- policy ------------------------------------------------------------- */

/* Policy direction of an endpoint; also the traffic direction of an event. */
enum sl_dir {
	SL_DIR_INGRESS = 1,
	SL_DIR_EGRESS = 2,
};

enum sl_policy_action {
	SL_ACTION_NONE = 0,   /* no NetworkPolicy allows this key (only the tier hits say something) */
	SL_ACTION_ALLOW = 1,
	SL_ACTION_EXCEPT = 2, /* sl_cidr_policy: ipBlock except range, never allows */
};

/* LPM prefix lengths (bits) of the policy keys, after the prefixlen field. */
enum sl_lpm_bits {
	SL_POLICY_FIXED_BITS = 80,  /* sl_policy_key: ep_id, peer_id, dir, proto */
	SL_POLICY_PREFIX_FULL = 96, /* ... and port */
	SL_CIDR_FIXED_BITS = 64,    /* sl_cidr_policy_key: ep_id, dir, proto, port */
	SL_CIDR_PREFIX_FULL = 96,   /* ... and ip */
};

struct sl_policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u32 peer_id;
	__u8 dir;   /* enum sl_dir */
	__u8 proto; /* enum sl_proto */
	__be16 port;
};

/* ClusterNetworkPolicy rule actions (struct sl_tier_hit). */
enum sl_cnp_action {
	SL_CNP_ACCEPT = 1,
	SL_CNP_DENY = 2,
	SL_CNP_PASS = 3,
};

/*
 * The best ClusterNetworkPolicy rule of one tier (Admin or Baseline) that
 * matches the traffic of a policy key, with every rule of a shorter covering
 * prefix (port prefix in sl_policy, address prefix in sl_cidr_policy) folded in
 * by the compiler: one LPM hit per lookup is complete for its slot. prec 0 =
 * no rule of the tier; otherwise lower wins (priority, then policy name, then
 * rule order, ranked by the compiler per compilation).
 */
struct sl_tier_hit {
	__u32 prec;
	__u32 policy_id;
	__u16 rule;
	__u8 action; /* enum sl_cnp_action */
	__u8 pad;
};

struct sl_policy_val {
	/* NetworkPolicy: SL_ACTION_ALLOW (policy_id, rule allow), SL_ACTION_EXCEPT, or SL_ACTION_NONE */
	__u8 action; /* enum sl_policy_action */
	__u8 pad;
	__u16 rule;
	__u32 policy_id;
	/* appended: the ClusterNetworkPolicy tiers for this key (endpoints with SL_EP_*_TIERS only) */
	struct sl_tier_hit admin;
	struct sl_tier_hit baseline;
};

struct sl_cidr_policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u8 dir;
	__u8 proto;
	__be16 port;
	__u32 ip;
};

/* ---- services ----------------------------------------------------------- */
enum sl_svc_scope {
	SL_SCOPE_CLUSTERIP = 0,
	SL_SCOPE_NODEPORT = 1, /* vip 0: any local node address */
};

enum sl_svc_flags {
	SL_SVC_AFFINITY = 1, /* sessionAffinity: ClientIP */
	SL_SVC_LOCAL = 2,    /* externalTrafficPolicy: Local */
	SL_SVC_EXTERNAL = 4, /* an external address (spec.externalIPs, LoadBalancer ingress): also from outside the node */
	SL_SVC_SOURCE_RANGES = 8, /* loadBalancerSourceRanges: only clients in sl_lb_src_ranges under svc_id */
};

struct sl_svc_key {
	__u32 vip;
	__be16 port;
	__u8 proto; /* enum sl_proto */
	__u8 scope; /* enum sl_svc_scope */
};

struct sl_svc_val {
	__u32 svc_id;
	__u16 count;
	__u16 flags; /* enum sl_svc_flags */
	__u32 affinity_timeout_s; /* SL_SVC_AFFINITY: sessionAffinityConfig.clientIP.timeoutSeconds */
};

struct sl_backend_key {
	__u32 svc_id;
	__u32 slot;
};

struct sl_backend {
	__u32 ip;
	__be16 port;
	__u16 pad;
};

/* sl_affinity (LRU): the backend a client was last given by an affinity service */
struct sl_affinity_key {
	__u32 client_ip;
	__u32 svc_id;
};

struct sl_affinity_val {
	__u64 last_used_ns; /* bpf_ktime_get_ns of the last new connection */
	__u32 slot; /* sl_backends slot; reused only while it still holds backend_ip:port */
	__u32 backend_ip;
	__be16 backend_port;
	__u16 pad;
};

/* sl_lb_src_ranges (LPM): a frontend's loadBalancerSourceRanges; prefixlen = 32 + the range's bits */
struct sl_lb_src_key {
	__u32 prefixlen;
	__u32 svc_id;
	__u32 addr;
};

enum sl_lb_src_bits {
	SL_LB_SRC_FIXED_BITS = 32, /* svc_id */
};

/* sl_sock_revnat (LRU): a socket the socket LB translated, and the backend it gave it -> the
 * service address the application asked for (getpeername4, recvmsg4 answer with it) */
struct sl_sock_revnat_key {
	__u64 cookie; /* bpf_get_socket_cookie */
	__u32 backend_ip;
	__be16 backend_port;
	__u16 pad;
};

struct sl_sock_revnat_val {
	__u32 vip;
	__be16 vport;
	__u16 pad;
};

/* ---- conntrack ---------------------------------------------------------- */
enum sl_ct_scope {
	SL_CT_INGRESS = 1, /* to-container */
	SL_CT_EGRESS = 2,  /* from-container */
	SL_CT_NETDEV = 3,  /* from-netdev */
};

enum sl_ct_flags {
	SL_CT_REPLY = 1,         /* entry matches the reply direction */
	SL_CT_DNAT = 2,          /* rewrite daddr/dport to nat_addr/nat_port */
	SL_CT_REVNAT = 4,        /* rewrite saddr/sport to nat_addr/nat_port */
	SL_CT_SNAT = 8,          /* forward: saddr/sport := snat; reply: daddr/dport := snat */
	SL_CT_SEEN_CLOSE = 16,   /* a FIN/RST was seen, CLOSE event emitted */
	SL_CT_FIB_REDIRECT = 32, /* after NAT, bpf_fib_lookup + bpf_redirect (NodePort) */
	/* TCP state for the agent's conntrack lifetimes, each set by the packets of this entry's own
	 * direction (sl_ct_apply): */
	SL_CT_SEEN_NON_SYN = 64, /* a packet without SYN (the handshake is done) */
	SL_CT_SEEN_FIN = 128,    /* a FIN */
	SL_CT_SEEN_RST = 256,    /* an RST */
	/* the connection was allowed, then denied by a policy change (sl_lxc_ct_recheck): both entries
	 * stay as its tombstone and drop every packet of either direction with POLICY_DENIED, so neither
	 * end's retransmissions can start it again as a new flow the other way round */
	SL_CT_DENIED = 512,
};

struct sl_ct_key {
	__u32 saddr;
	__u32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto; /* enum sl_proto */
	__u8 scope; /* enum sl_ct_scope (sl_drop_rl: enum sl_obs_point) */
	__u16 pad;
};

struct sl_ct_entry {
	__u64 created_ns; /* bpf_ktime_get_boot_ns */
	__u64 last_seen_ns;
	__u64 packets;
	__u64 bytes;
	__u32 nat_addr;
	__be16 nat_port;
	__u16 flags; /* enum sl_ct_flags */
	__u32 policy_id;
	__u32 orig_daddr; /* the destination the client dialed (VIP, node IP) */
	__be16 orig_dport;
	__u16 rule;
	__u32 svc_id;
	/* appended to the ARCHITECTURE.md list */
	__u32 snat_addr;
	__be16 snat_port;
	__u16 pass_rule; /* the Admin Pass rule the flow went through (pass_policy_id != 0) */
	__u32 src_identity;
	__u32 dst_identity;
	struct sl_ct_key pair; /* the other direction's entry */
	__u32 policy_rev;      /* forward entries: sl_endpoint.policy_rev the flow was allowed under */
	__u32 pass_policy_id;  /* the ClusterNetworkPolicy whose Admin Pass rule handed it on, 0 = none */
};

/* ---- IPv4 fragments (sl_frag, LRU; written and read by BPF only) -------- */

/* A datagram's fragments: the first fragment's (saddr, daddr, IP id, proto). */
struct sl_frag_key {
	__u32 saddr;
	__u32 daddr;
	__be16 id;
	__u8 proto; /* enum sl_proto */
	__u8 pad;
};

/* The L4 ports of the first fragment (the non-first ones carry none). */
struct sl_frag_val {
	__be16 sport;
	__be16 dport;
};

/* ---- counters and config ------------------------------------------------ */

/* sl_counters indexes. */
enum sl_counter {
	SL_CNT_PACKETS = 0,
	SL_CNT_FORWARDED = 1,
	SL_CNT_RB_FAIL = 2,
	SL_CNT_CT_NEW = 3,
	SL_CNT_FIB_FAIL = 4,
	SL_CNT_NON_IPV4 = 5,
	SL_CNT_DROP_EVENTS_SUPPRESSED = 6, /* DROP events over the global limit (the drops are still counted) */
	SL_CNT_SOCK_XLATE = 7,             /* connects and sends the socket LB translated (bpf/sock.c) */
	SL_CNT_CT_PORT_CLASH = 8,          /* new pod flows moved to another source port (their reply tuple was taken) */
	SL_CNT_DROP_BASE = 16, /* + enum sl_drop_reason */
	SL_CNT_MAX = 32,
};

enum sl_event_level {
	SL_EVENTS_FLOWS = 0, /* NEW, DROP, CLOSE */
	SL_EVENTS_NONE = 1,
	SL_EVENTS_ALL = 2, /* also one TRACE per forwarded packet */
};

#define SL_MAX_NODE_IPS 4

struct sl_cfg {
	__u32 node_ips[SL_MAX_NODE_IPS]; /* local node addresses (0 = unused) */
	__u32 netdev_ifindex;            /* node device (eth0 in kind) */
	__u32 event_level;               /* enum sl_event_level */
	__u32 wakeup_bytes;              /* force a reader wakeup over this much pending data (0: 64 KiB) */
	/* was pad: DROP events per second on this node, all flows and CPUs together (0: 1000) */
	__u32 drop_events_per_sec;
	/* appended: this node's pod CIDR (address and mask; mask 0: unset), written once the endpoints
	 * of a previous run are restored: an address in it without an endpoint is a pod that is gone */
	__u32 pod_cidr;
	__u32 pod_cidr_mask;
	/* appended: socket LB (bpf/sock.c) translates only sockets of this network namespace, the
	 * node's own (host processes, hostNetwork pods); 0: translates none */
	__u64 sock_netns_cookie;
};

/* ---- flow events (sl_events ring buffer) -------------------------------- */
enum sl_verdict {
	SL_VERDICT_FORWARDED = 1,
	SL_VERDICT_DROPPED = 2,
};

/* Why a packet was dropped: event drop_reason, counter SL_CNT_DROP_BASE + reason. */
enum sl_drop_reason {
	SL_DROP_NONE = 0,
	SL_DROP_POLICY_DENIED = 1,
	SL_DROP_SERVICE_BACKEND_NOT_FOUND = 2,
	SL_DROP_INVALID_SOURCE_IP = 3,
	SL_DROP_CT_MAP_INSERTION_FAILED = 4,
	SL_DROP_POLICY_UNREPRESENTABLE = 5,
	SL_DROP_UNKNOWN_ENDPOINT = 6,
	SL_DROP_INVALID_PACKET = 7,
	SL_DROP_FIB_LOOKUP_FAILED = 8, /* no route for a packet the datapath forwards itself */
	SL_DROP_POLICY_WRITE_FAILED = 9, /* the endpoint's policy could not be written: deny-all */
	SL_DROP_CT_TUPLE_IN_USE = 10,    /* a NodePort flow's tuple belongs to another flow; a pod flow's found no free source port */
	SL_DROP_FRAG_NOT_FOUND = 11,     /* a non-first IPv4 fragment whose first fragment was never seen */
	SL_DROP_ENDPOINT_GONE = 12,      /* to an address of this node's pod CIDR without an endpoint (pod gone) */
	SL_DROP_LB_SOURCE_RANGE = 13,    /* a LoadBalancer Service's loadBalancerSourceRanges exclude the client */
	SL_DROP_MAX,                   /* SL_CNT_DROP_BASE + SL_DROP_MAX <= SL_CNT_MAX */
};

enum sl_event_type {
	SL_EVENT_NEW = 1,
	SL_EVENT_DROP = 2,
	SL_EVENT_CLOSE = 3,
	SL_EVENT_TRACE = 4, /* only with SL_EVENTS_ALL */
};

enum sl_obs_point {
	SL_OBS_FROM_CONTAINER = 1,
	SL_OBS_TO_CONTAINER = 2,
	SL_OBS_FROM_NETDEV = 3,
	SL_OBS_TO_NETDEV = 4, /* sl_to_netdev: replies of NodePort flows to a backend in the node's own network namespace */
};

struct sl_flow_event {
	__u64 ts_ns; /* bpf_ktime_get_boot_ns */
	__u32 saddr;
	__u32 daddr;
	__u32 orig_daddr;
	__be16 sport;
	__be16 dport;
	__be16 orig_dport;
	__u8 proto;       /* enum sl_proto */
	__u8 verdict;     /* enum sl_verdict */
	__u8 drop_reason; /* enum sl_drop_reason */
	__u8 direction;   /* enum sl_dir */
	__u8 tcp_flags;   /* enum sl_tcp_flags */
	__u8 event_type;  /* enum sl_event_type */
	__u8 obs_point;   /* enum sl_obs_point */
	__u8 is_reply;
	__u16 rule;
	__u32 ifindex;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 policy_id; /* the deciding policy (NetworkPolicy or ClusterNetworkPolicy), 0 = none */
	__u32 pad;
	__u64 packets;
	__u64 bytes;
	/* appended: the Admin Pass rule that handed the decision on to NetworkPolicy, 0 = none */
	__u32 pass_policy_id;
	__u16 pass_rule;
	__u16 pad2;
};

/*
 * Every contract type in one struct: a pointer to it (sl_contract_anchor in
 * lxc.c) puts all of them into BTF, also the enums only inline helpers use,
 * so bpf2go -type finds them. Not a map value; never instantiated.
 */
struct sl_contract {
	enum sl_proto proto;
	enum sl_tcp_flags tcp_flags;
	enum sl_ep_flags ep_flags;
	enum sl_identity identity;
	enum sl_dir dir;
	enum sl_policy_action action;
	enum sl_cnp_action cnp_action;
	enum sl_lpm_bits lpm_bits;
	enum sl_svc_scope svc_scope;
	enum sl_svc_flags svc_flags;
	enum sl_ct_scope ct_scope;
	enum sl_ct_flags ct_flags;
	enum sl_counter counter;
	enum sl_event_level event_level;
	enum sl_verdict verdict;
	enum sl_drop_reason drop_reason;
	enum sl_event_type event_type;
	enum sl_obs_point obs_point;
	struct sl_cfg cfg;
	struct sl_flow_event event;
	struct sl_affinity_key affinity_key;
	struct sl_affinity_val affinity_val;
	struct sl_lb_src_key lb_src_key;
	enum sl_lb_src_bits lb_src_bits;
	struct sl_sock_revnat_key sock_revnat_key;
	struct sl_sock_revnat_val sock_revnat_val;
};

/* ---- datapath-internal (not in Go) -------------------------------------- */

/* What the hook learned about the packet so far; becomes the event. */
struct sl_trace {
	__u32 orig_daddr;
	__be16 orig_dport;
	__u8 obs_point; /* enum sl_obs_point */
	__u8 direction; /* enum sl_dir */
	__u32 src_identity;
	__u32 dst_identity;
	__u32 policy_id;
	__u16 rule;
	__u8 is_reply;
	__u8 pad;
	__u32 ifindex;
	__u32 pass_policy_id; /* Admin Pass rule that handed the decision on (0 = none) */
	__u16 pass_rule;
	__u16 pad2;
};

#endif /* SL_TYPES_H */
