/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow events: fixed-size struct sl_flow_event (sl_types.h) into the
 * sl_events ring buffer with batched wakeups. DROP events go through
 * sl_drop.h (rate limit, drop counter).
 */
#ifndef SL_EVENTS_H
#define SL_EVENTS_H

#include "sl_maps.h"
#include "sl_config.h"
#include "sl_parse.h"

#define SL_DEFAULT_WAKEUP_BYTES (64 * 1024)

static __always_inline void sl_emit(const struct sl_cfg *cfg, const struct sl_pkt *p,
				    const struct sl_trace *t, enum sl_event_type type,
				    enum sl_verdict verdict, __u8 reason, __u64 packets, __u64 bytes)
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
	e->pass_policy_id = t->pass_policy_id;
	e->pass_rule = t->pass_rule;
	e->pad2 = 0;
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
	sl_emit(cfg, p, t, SL_EVENT_NEW, SL_VERDICT_FORWARDED, SL_DROP_NONE, 1, p->len);
}

static __always_inline void sl_emit_trace(const struct sl_cfg *cfg, const struct sl_pkt *p,
					  const struct sl_trace *t)
{
	if (cfg->event_level != SL_EVENTS_ALL)
		return;
	sl_emit(cfg, p, t, SL_EVENT_TRACE, SL_VERDICT_FORWARDED, SL_DROP_NONE, 1, p->len);
}

#endif /* SL_EVENTS_H */
