/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map definitions. Key and value layouts are the contract in sl_types.h;
 * datapath/loader pins every map here as /sys/fs/bpf/starlab/<name> and
 * datapath/maps reads and writes them. Lookup helpers are in sl_config.h and
 * sl_identity.h.
 */
#ifndef SL_MAPS_H
#define SL_MAPS_H

#include "sl_kernel.h"
#include <bpf/bpf_helpers.h>
#include "sl_types.h"

/* ---- endpoints ---------------------------------------------------------- */
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
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_ipcache_key);
	__type(value, struct sl_ipcache_val);
} sl_ipcache SEC(".maps");

/* ---- policy ------------------------------------------------------------- */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_policy_key);
	__type(value, struct sl_policy_val);
} sl_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_cidr_policy_key);
	__type(value, struct sl_policy_val);
} sl_cidr_policy SEC(".maps");

/* ---- services ----------------------------------------------------------- */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sl_svc_key);
	__type(value, struct sl_svc_val);
} sl_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sl_backend_key);
	__type(value, struct sl_backend);
} sl_backends SEC(".maps");

/* sessionAffinity: ClientIP, (client, service) -> backend and last use (Cilium's lb4_affinity) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sl_affinity_key);
	__type(value, struct sl_affinity_val);
} sl_affinity SEC(".maps");

/* loadBalancerSourceRanges: (svc_id, client prefix) -> 1 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sl_lb_src_key);
	__type(value, __u8);
} sl_lb_src_ranges SEC(".maps");

/* socket LB reverse translation (bpf/sock.c): (socket, backend) -> service address */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sl_sock_revnat_key);
	__type(value, struct sl_sock_revnat_val);
} sl_sock_revnat SEC(".maps");

/* ---- conntrack ---------------------------------------------------------- */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sl_ct_key);
	__type(value, struct sl_ct_entry);
} sl_ct SEC(".maps");

/*
 * conntrack of NodePort flows (started from outside on the node device): every
 * entry of such a flow, the from-netdev ones and, for a local backend, the
 * backend's pod-hook ones. Apart from sl_ct so that a flood from outside
 * evicts only its own kind, never a pod's established flow.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sl_ct_key);
	__type(value, struct sl_ct_entry);
} sl_ct_nodeport SEC(".maps");

/* per-flow DROP event rate limit: key = packet tuple with scope = obs point */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sl_ct_key);
	__type(value, __u64);
} sl_drop_rl SEC(".maps");

/*
 * global DROP event budget (sl_drop.h): the current second of boot time (high
 * 32 bits) and the DROP events emitted in it (low 32 bits), one word updated
 * by compare-and-swap
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sl_drop_budget SEC(".maps");
/* IPv4 fragments: the first fragment's ports for the later ones (Cilium's
 * cilium_ipv4_frag_datagrams); LRU: a datagram lives as long as it is recent */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct sl_frag_key);
	__type(value, struct sl_frag_val);
} sl_frag SEC(".maps");

/* ---- events, counters, config ------------------------------------------- */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} sl_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_CNT_MAX);
	__type(key, __u32);   /* enum sl_counter */
	__type(value, __u64);
} sl_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_cfg);
} sl_config SEC(".maps");

#endif /* SL_MAPS_H */
