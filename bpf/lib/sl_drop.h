/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Drops. Handlers return a TC action (TC_ACT_OK, TC_ACT_SHOT, the
 * TC_ACT_REDIRECT of bpf_redirect*), SL_CONTINUE (go on with the next step),
 * SL_FIB_FORWARD (the entry program forwards the packet itself) or a drop code, sl_drop_code(reason). Every entry program ends in
 * sl_exit(), its one drop exit: it counts the reason (sl_counters
 * SL_CNT_DROP_BASE + reason), emits a rate-limited DROP event and returns
 * TC_ACT_SHOT. The reasons are enum sl_drop_reason in sl_types.h. DROP events
 * are limited twice: once per second per flow (sl_drop_rl), and to
 * sl_cfg.drop_events_per_sec on the whole node (sl_drop_budget), so a flood of
 * distinct flows cannot bury the ring buffer; events over the node's limit are
 * counted (SL_CNT_DROP_EVENTS_SUPPRESSED), the drops themselves always are.
 */
#ifndef SL_DROP_H
#define SL_DROP_H

#include "sl_maps.h"
#include "sl_config.h"
#include "sl_parse.h"
#include "sl_events.h"

enum sl_ret {
	SL_CONTINUE = -2,         /* not a TC action: the next step decides */
	SL_FIB_FORWARD = -3,      /* not a TC action: the entry forwards with sl_fib_redirect */
	SL_DROP_CODE_BASE = -100, /* sl_drop_code(reason) = SL_DROP_CODE_BASE - reason */
};

#define SL_DROP_EVENT_INTERVAL_NS 1000000000ULL
#define SL_DROP_EVENTS_PER_SEC_DEFAULT 1000
#define SL_DROP_BUDGET_TRIES 4

/*
 * Take one DROP event from the node's budget for the second of boot time now
 * falls in. The word holds that second and the events emitted in it; a
 * compare-and-swap moves it on, so concurrent CPUs never exceed the limit (a
 * CPU that loses SL_DROP_BUDGET_TRIES races gives its event up). Returns 1
 * when the event may be emitted.
 */
static __always_inline int sl_drop_budget_take(const struct sl_cfg *cfg, __u64 now)
{
	__u32 zero = 0, limit = cfg->drop_events_per_sec;
	__u64 sec = (__u32)(now / SL_DROP_EVENT_INTERVAL_NS);
	__u64 *b = bpf_map_lookup_elem(&sl_drop_budget, &zero);

	if (!b)
		return 0;
	if (!limit)
		limit = SL_DROP_EVENTS_PER_SEC_DEFAULT;
#pragma unroll
	for (int i = 0; i < SL_DROP_BUDGET_TRIES; i++) {
		__u64 old = *(volatile __u64 *)b, next;

		if ((old >> 32) == sec) {
			if ((__u32)old >= limit)
				return 0;
			next = old + 1;
		} else {
			next = (sec << 32) | 1;
		}
		if (__sync_val_compare_and_swap(b, old, next) == old)
			return 1;
	}
	return 0;
}

/* The return value of a handler that drops the packet for reason (never SL_DROP_NONE). */
static __always_inline int sl_drop_code(enum sl_drop_reason reason)
{
	return SL_DROP_CODE_BASE - (int)reason;
}

/*
 * Emit a DROP event at most once per second per flow, and within the node's
 * budget (sl_drop_budget_take). A BPF subprogram, not
 * inlined: the entry programs' one exit then reads the packet and trace from
 * the stack instead of keeping every field live in registers on every path
 * into it.
 */
static __noinline void sl_drop_notify(const struct sl_cfg *cfg, const struct sl_pkt *p,
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

	now = bpf_ktime_get_boot_ns();
	last = bpf_map_lookup_elem(&sl_drop_rl, &k);
	if (last && now - *last < SL_DROP_EVENT_INTERVAL_NS)
		return;
	if (!sl_drop_budget_take(cfg, now)) {
		sl_count(SL_CNT_DROP_EVENTS_SUPPRESSED);
		return;
	}
	if (last)
		*last = now;
	else
		bpf_map_update_elem(&sl_drop_rl, &k, &now, BPF_ANY);
	sl_emit(cfg, p, t, SL_EVENT_DROP, SL_VERDICT_DROPPED, reason, 1, p->len);
}

/*
 * Count the drop and, unless events are off, emit its DROP event (rate
 * limited). Also used on its own where a dropped packet is answered (RST of
 * a service without backends).
 */
static __always_inline void sl_drop_event(const struct sl_cfg *cfg, const struct sl_pkt *p,
					  const struct sl_trace *t, __u8 reason)
{
	sl_count(SL_CNT_DROP_BASE + reason);
	if (!cfg || cfg->event_level == SL_EVENTS_NONE)
		return;
	sl_drop_notify(cfg, p, t, reason);
}

/* The one exit of an entry program: a drop code becomes a reported drop, anything else is returned. */
static __always_inline int sl_exit(const struct sl_cfg *cfg, const struct sl_pkt *p,
				   const struct sl_trace *t, int ret)
{
	if (ret <= SL_DROP_CODE_BASE) {
		sl_drop_event(cfg, p, t, (__u8)(SL_DROP_CODE_BASE - ret));
		return TC_ACT_SHOT;
	}
	return ret;
}

#endif /* SL_DROP_H */
