/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow events: fixed-size struct sl_flow_event into the sl_events ring buffer
 * with batched wakeups, plus the per-flow DROP rate limit.
 */
#ifndef SL_EVENTS_H
#define SL_EVENTS_H

#include "sl_maps.h"
#include "sl_parse.h"

enum sl_verdict {
	SL_VERDICT_FORWARDED = 1,
	SL_VERDICT_DROPPED = 2,
};

enum sl_drop_reason {
	SL_DROP_NONE = 0,
	SL_DROP_POLICY_DENIED = 1,
	SL_DROP_SERVICE_BACKEND_NOT_FOUND = 2,
	SL_DROP_INVALID_SOURCE_IP = 3,
	SL_DROP_CT_MAP_INSERTION_FAILED = 4,
	SL_DROP_POLICY_UNREPRESENTABLE = 5,
	SL_DROP_UNKNOWN_ENDPOINT = 6,
	SL_DROP_INVALID_PACKET = 7,
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
};

/* traffic direction of the event (same values as enum sl_dir) */
#define SL_TRAFFIC_INGRESS SL_DIR_INGRESS
#define SL_TRAFFIC_EGRESS SL_DIR_EGRESS

struct sl_flow_event {
	__u64 ts_ns; /* bpf_ktime_get_boot_ns */
	__u32 saddr;
	__u32 daddr;
	__u32 orig_daddr;
	__be16 sport;
	__be16 dport;
	__be16 orig_dport;
	__u8 proto;
	__u8 verdict;
	__u8 drop_reason;
	__u8 direction;
	__u8 tcp_flags;
	__u8 event_type;
	__u8 obs_point;
	__u8 is_reply;
	__u16 rule;
	__u32 ifindex;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 policy_id;
	__u32 pad;
	__u64 packets;
	__u64 bytes;
};

/* What the hook learned about the packet so far; becomes the event. */
struct sl_trace {
	__u32 orig_daddr;
	__be16 orig_dport;
	__u8 obs_point;
	__u8 direction;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 policy_id;
	__u16 rule;
	__u8 is_reply;
	__u8 pad;
	__u32 ifindex;
};

#define SL_DEFAULT_WAKEUP_BYTES (64 * 1024)
#define SL_DROP_EVENT_INTERVAL_NS 1000000000ULL

static __always_inline void sl_emit(const struct sl_cfg *cfg, const struct sl_pkt *p,
				    const struct sl_trace *t, __u8 type, __u8 verdict,
				    __u8 reason, __u64 packets, __u64 bytes)
{
	struct sl_flow_event *e;
	__u64 wb, avail, flags;

	e = bpf_ringbuf_reserve(&sl_events, sizeof(*e), 0);
	if (!e) {
		sl_count(SL_CNT_RB_FAIL);
		return;
	}
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->saddr = p->saddr;
	e->daddr = p->daddr;
	e->orig_daddr = t->orig_daddr;
	e->sport = p->sport;
	e->dport = p->dport;
	e->orig_dport = t->orig_dport;
	e->proto = p->proto;
	e->verdict = verdict;
	e->drop_reason = reason;
	e->direction = t->direction;
	e->tcp_flags = p->tcp_flags;
	e->event_type = type;
	e->obs_point = t->obs_point;
	e->is_reply = t->is_reply;
	e->rule = t->rule;
	e->ifindex = t->ifindex;
	e->src_identity = t->src_identity;
	e->dst_identity = t->dst_identity;
	e->policy_id = t->policy_id;
	e->pad = 0;
	e->packets = packets;
	e->bytes = bytes;

	wb = cfg->wakeup_bytes ? cfg->wakeup_bytes : SL_DEFAULT_WAKEUP_BYTES;
	avail = bpf_ringbuf_query(&sl_events, BPF_RB_AVAIL_DATA);
	flags = avail >= wb ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void sl_emit_new(const struct sl_cfg *cfg, const struct sl_pkt *p,
					const struct sl_trace *t)
{
	if (cfg->event_level == SL_EVENTS_NONE)
		return;
	sl_emit(cfg, p, t, SL_EVENT_NEW, SL_VERDICT_FORWARDED, 0, 1, p->len);
}

static __always_inline void sl_emit_trace(const struct sl_cfg *cfg, const struct sl_pkt *p,
					  const struct sl_trace *t)
{
	if (cfg->event_level != SL_EVENTS_ALL)
		return;
	sl_emit(cfg, p, t, SL_EVENT_TRACE, SL_VERDICT_FORWARDED, 0, 1, p->len);
}

/* Count the drop and emit a DROP event at most once per second per flow. */
static __always_inline void sl_drop_event(const struct sl_cfg *cfg, const struct sl_pkt *p,
					  const struct sl_trace *t, __u8 reason)
{
	struct sl_ct_key k = {
		.saddr = p->saddr,
		.daddr = p->daddr,
		.sport = p->sport,
		.dport = p->dport,
		.proto = p->proto,
		.scope = t->obs_point,
	};
	__u64 now, *last;

	sl_count(SL_CNT_DROP_BASE + reason);
	if (!cfg || cfg->event_level == SL_EVENTS_NONE)
		return;
	now = bpf_ktime_get_boot_ns();
	last = bpf_map_lookup_elem(&sl_drop_rl, &k);
	if (last) {
		if (now - *last < SL_DROP_EVENT_INTERVAL_NS)
			return;
		*last = now;
	} else {
		bpf_map_update_elem(&sl_drop_rl, &k, &now, BPF_ANY);
	}
	sl_emit(cfg, p, t, SL_EVENT_DROP, SL_VERDICT_DROPPED, reason, 1, p->len);
}

#endif /* SL_EVENTS_H */
