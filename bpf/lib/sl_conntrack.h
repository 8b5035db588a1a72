/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection tracking: one LRU entry per direction and hook scope. On allow
 * the forward entry and the reply entry (keyed as the reply will be seen at
 * the hook it crosses) are created together; each carries the NAT to apply.
 * A flow's entries all live in one map (enum sl_ct_map): sl_ct_nodeport for
 * NodePort flows from outside, sl_ct for every other flow; the pod hooks look
 * in sl_ct first.
 */
#ifndef SL_CONNTRACK_H
#define SL_CONNTRACK_H

#include "sl_maps.h"
#include "sl_config.h"
#include "sl_parse.h"
#include "sl_events.h"
#include "sl_csum.h"

/* The conntrack map of a flow. */
enum sl_ct_map {
	SL_CT_MAP_PODS = 0,     /* sl_ct */
	SL_CT_MAP_NODEPORT = 1, /* sl_ct_nodeport: flows started from outside through a NodePort */
};

/* Helpers over the map of a flow: with m a constant the other branch folds away. */
static __always_inline struct sl_ct_entry *sl_ct_map_lookup(enum sl_ct_map m, const struct sl_ct_key *k)
{
	if (m == SL_CT_MAP_NODEPORT)
		return bpf_map_lookup_elem(&sl_ct_nodeport, k);
	return bpf_map_lookup_elem(&sl_ct, k);
}

static __always_inline void sl_ct_map_delete(enum sl_ct_map m, const struct sl_ct_key *k)
{
	if (m == SL_CT_MAP_NODEPORT)
		bpf_map_delete_elem(&sl_ct_nodeport, k);
	else
		bpf_map_delete_elem(&sl_ct, k);
}

/* How sl_ct_create treats existing entries under its keys. */
enum sl_ct_create_mode {
	SL_CT_CREATE_REPLACE = 0,       /* replace them (port reuse); sl_ct */
	SL_CT_CREATE_KEEP_NODEPORT = 1, /* keep the reply entry when it is the reverse NAT of our NodePort flow
					 * (then in sl_ct_nodeport, else as REPLACE) */
	SL_CT_CREATE_NO_OVERWRITE = 2,  /* never replace another flow's entry (NodePort: outside traffic);
					 * sl_ct_nodeport */
};

/* sl_ct_create results. */
enum sl_ct_create_result {
	SL_CT_CREATED = 0,
	SL_CT_CREATE_FAILED = -1, /* an entry could not be inserted (map full) */
	SL_CT_CREATE_IN_USE = -2, /* SL_CT_CREATE_NO_OVERWRITE: a key holds another flow's entry */
};

/* The key of packets from (saddr, sport) to (daddr, dport) at hook scope. */
static __always_inline void sl_ct_key_set(struct sl_ct_key *k, __u32 saddr, __be16 sport,
					  __u32 daddr, __be16 dport, __u8 proto,
					  enum sl_ct_scope scope)
{
	k->saddr = saddr;
	k->daddr = daddr;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->scope = scope;
	k->pad = 0;
}

/* The key of this packet at hook scope (the forward entry of a new flow). */
static __always_inline void sl_ct_key_of(struct sl_ct_key *k, const struct sl_pkt *p,
					 enum sl_ct_scope scope)
{
	sl_ct_key_set(k, p->saddr, p->sport, p->daddr, p->dport, p->proto, scope);
}

/*
 * The key of the reply of this packet's flow as the hook of scope will see
 * it: from the server side (after DNAT: the backend) to the client side
 * (after SNAT: the node address and SNAT port).
 */
static __always_inline void sl_ct_reply_key(struct sl_ct_key *rk, const struct sl_pkt *p,
					    __u32 server_addr, __be16 server_port,
					    __u32 client_addr, __be16 client_port,
					    enum sl_ct_scope scope)
{
	sl_ct_key_set(rk, server_addr, server_port, client_addr, client_port, p->proto, scope);
}

/* A bare SYN on a forward entry older than this starts a new connection. */
#define SL_CT_SYN_REUSE_NS (60ULL * 1000000000ULL)

/*
 * Look up the entry for this packet in map m. A bare SYN that hits the
 * forward entry of a closed (or long idle, older than any SYN retransmission)
 * connection is port reuse: the entry is deleted so the flow is evaluated
 * again.
 */
static __always_inline struct sl_ct_entry *sl_ct_lookup(const struct sl_ct_key *k,
							const struct sl_pkt *p, enum sl_ct_map m)
{
	struct sl_ct_entry *e = sl_ct_map_lookup(m, k);

	if (!e)
		return 0;
	if (p->proto == SL_PROTO_TCP &&
	    (p->tcp_flags & (SL_TCP_SYN | SL_TCP_ACK)) == SL_TCP_SYN &&
	    !(e->flags & SL_CT_REPLY) &&
	    ((e->flags & SL_CT_SEEN_CLOSE) ||
	     bpf_ktime_get_boot_ns() - e->created_ns > SL_CT_SYN_REUSE_NS)) {
		sl_ct_map_delete(m, k);
		return 0;
	}
	return e;
}

/*
 * Look up the entry for this packet at a pod hook: sl_ct (pod flows), then
 * sl_ct_nodeport (a NodePort flow to a local backend). *m is set to the map
 * the entry is in.
 */
static __always_inline struct sl_ct_entry *sl_ct_lookup_pod_hook(const struct sl_ct_key *k,
								 const struct sl_pkt *p, enum sl_ct_map *m)
{
	struct sl_ct_entry *e = sl_ct_lookup(k, p, SL_CT_MAP_PODS);

	*m = SL_CT_MAP_PODS;
	if (e)
		return e;
	*m = SL_CT_MAP_NODEPORT;
	return sl_ct_lookup(k, p, SL_CT_MAP_NODEPORT);
}

/*
 * Apply the entry to the packet: counters, NAT rewrites, CLOSE event on the
 * first FIN/RST of the connection (both directions are marked). Returns 0 or a
 * negative error (rewrite failed).
 */
static __always_inline int sl_ct_apply(struct __sk_buff *skb, const struct sl_cfg *cfg,
				       struct sl_pkt *p, struct sl_ct_entry *e,
				       enum sl_ct_map m, struct sl_trace *t)
{
	__u16 flags = e->flags;

	e->last_seen_ns = bpf_ktime_get_boot_ns();
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, p->len);

	t->is_reply = !!(flags & SL_CT_REPLY);
	t->policy_id = e->policy_id;
	t->rule = e->rule;
	t->pass_policy_id = e->pass_policy_id;
	t->pass_rule = e->pass_rule;
	t->src_identity = e->src_identity;
	t->dst_identity = e->dst_identity;
	t->orig_daddr = p->daddr;
	t->orig_dport = p->dport;

	if (flags & SL_CT_DNAT) {
		if (sl_rewrite(skb, p, SL_NAT_DST, e->nat_addr, e->nat_port) < 0)
			return -1;
	}
	if (flags & SL_CT_REVNAT) {
		if (sl_rewrite(skb, p, SL_NAT_SRC, e->nat_addr, e->nat_port) < 0)
			return -1;
	}
	if (flags & SL_CT_SNAT) {
		if (sl_rewrite(skb, p, (flags & SL_CT_REPLY) ? SL_NAT_DST : SL_NAT_SRC, e->snat_addr, e->snat_port) < 0)
			return -1;
	}

	if (p->proto == SL_PROTO_TCP) {
		/* this direction's TCP state, for the agent's conntrack lifetimes */
		__u16 seen = p->tcp_flags & SL_TCP_SYN ? 0 : SL_CT_SEEN_NON_SYN;

		if (p->tcp_flags & SL_TCP_FIN)
			seen |= SL_CT_SEEN_FIN;
		if (p->tcp_flags & SL_TCP_RST)
			seen |= SL_CT_SEEN_RST;
		if (seen & ~flags)
			e->flags |= seen;
	}
	if (p->proto == SL_PROTO_TCP && (p->tcp_flags & (SL_TCP_FIN | SL_TCP_RST)) &&
	    !(flags & SL_CT_SEEN_CLOSE)) {
		struct sl_ct_entry *pair;
		__u64 packets = e->packets, bytes = e->bytes;
		int emit = 1;

		e->flags |= SL_CT_SEEN_CLOSE;
		pair = sl_ct_map_lookup(m, &e->pair);
		if (pair) {
			if (pair->flags & SL_CT_SEEN_CLOSE)
				emit = 0;
			pair->flags |= SL_CT_SEEN_CLOSE;
			packets += pair->packets;
			bytes += pair->bytes;
		}
		if (emit && cfg->event_level != SL_EVENTS_NONE)
			sl_emit(cfg, p, t, SL_EVENT_CLOSE, SL_VERDICT_FORWARDED, 0, packets, bytes);
	}
	return 0;
}

static __always_inline int sl_ct_key_eq(const struct sl_ct_key *a, const struct sl_ct_key *b)
{
	return a->saddr == b->saddr && a->daddr == b->daddr && a->sport == b->sport &&
	       a->dport == b->dport && a->proto == b->proto && a->scope == b->scope;
}

/*
 * Is old, the reply entry already stored under rk, the reverse-NAT entry of
 * a live NodePort flow that was translated into this very flow (fk)? Then its
 * pair is the from-netdev forward entry, which must DNAT to fk's destination
 * and point back at rk.
 */
static __always_inline int sl_ct_is_nodeport_reply(struct sl_ct_entry *old, const struct sl_ct_key *fk,
						   const struct sl_ct_key *rk)
{
	struct sl_ct_key pk;
	struct sl_ct_entry *pe;

	if (!(old->flags & SL_CT_REVNAT))
		return 0;
	__builtin_memcpy(&pk, &old->pair, sizeof(pk));
	if (pk.scope != SL_CT_NETDEV)
		return 0;
	pe = bpf_map_lookup_elem(&sl_ct_nodeport, &pk);
	return pe && (pe->flags & SL_CT_DNAT) && pe->nat_addr == fk->daddr &&
	       pe->nat_port == fk->dport && sl_ct_key_eq(&pe->pair, rk);
}

/*
 * May a NodePort flow fk take the key of old, an existing reply entry? Only
 * when old is what this flow left behind (its pair is fk: port reuse, or the
 * forward entry was evicted), or a connection closed and idle for longer than
 * any TCP TIME_WAIT; never a live flow of someone else.
 */
static __always_inline int sl_ct_reply_is_stale(const struct sl_ct_entry *old, const struct sl_ct_key *fk)
{
	struct sl_ct_key pk;

	__builtin_memcpy(&pk, &old->pair, sizeof(pk));
	if (sl_ct_key_eq(&pk, fk))
		return 1;
	return (old->flags & SL_CT_SEEN_CLOSE) &&
	       bpf_ktime_get_boot_ns() - old->last_seen_ns > SL_CT_SYN_REUSE_NS;
}

/*
 * A flow closed both ways (FIN each way, or a RST) gives its tuple up this
 * long after its last packet: the passive closer's LAST_ACK is over, and
 * the active closer's TIME_WAIT only absorbs duplicates (nf_nat likewise
 * lets a new SYN take the tuple of a TIME_WAIT conntrack).
 */
#define SL_CT_CLOSED_REUSE_NS (1ULL * 1000000000ULL)

/*
 * May a new pod flow fk take rk, its reply key, whose entry old is there
 * already? Yes when old is fk's own leftover (its pair is fk: the same
 * tuple again), when old's flow is closed both ways and idle for
 * SL_CT_CLOSED_REUSE_NS, or closed one way and idle for SL_CT_SYN_REUSE_NS.
 * The closed flow's forward entry is deleted (its pair is about to be the
 * new flow's entry); a later stray packet of it is a new flow, clash
 * checked like any.
 */
static __always_inline int sl_ct_reply_reusable(const struct sl_ct_entry *old, const struct sl_ct_key *fk,
						const struct sl_ct_key *rk)
{
	__u64 last = old->last_seen_ns, now;
	struct sl_ct_entry *pe;
	__u16 f = old->flags;
	int closed;

	if (sl_ct_key_eq(&old->pair, fk))
		return 1;
	/* the pair key is read in place (a map value): no stack copy, the program's stack is near its limit */
	pe = bpf_map_lookup_elem(&sl_ct, &old->pair);
	if (pe && !sl_ct_key_eq(&pe->pair, rk))
		pe = 0; /* that key holds another flow now */
	if (pe) {
		f |= pe->flags;
		if (pe->last_seen_ns > last)
			last = pe->last_seen_ns;
	}
	now = bpf_ktime_get_boot_ns();
	closed = (f & SL_CT_SEEN_RST) || ((old->flags & SL_CT_SEEN_FIN) && pe && (pe->flags & SL_CT_SEEN_FIN));
	if (!(closed && now - last > SL_CT_CLOSED_REUSE_NS) &&
	    !((f & SL_CT_SEEN_CLOSE) && now - last > SL_CT_SYN_REUSE_NS))
		return 0;
	if (pe)
		bpf_map_delete_elem(&sl_ct, &old->pair);
	return 1;
}

/* Source ports a clashing pod flow is moved to (nf_nat picks from 1024-65535 too). */
#define SL_CT_CLASH_PORT_MIN 1024
#define SL_CT_CLASH_PORT_SPAN (65536 - SL_CT_CLASH_PORT_MIN)
#define SL_CT_CLASH_TRIES 8

/*
 * Source port clash resolution of a new pod flow (nf_nat's get_unique_tuple):
 * rk, the reply key of the new flow fk, may hold the entry of another flow
 * of the same client port towards the same server tuple that is not done
 * yet (sl_ct_reply_reusable): the port reused towards another ClusterIP of
 * the same backend, or once directly and once through a Service. The pod's
 * kernel saw two 4-tuples, the server would see one, and the reply entry
 * can reverse-NAT for only one of them. Then the new flow gets another
 * source port whose reply key is free (or reusable): rk is updated to it.
 * Returns the source port (network order): p->sport when there is no
 * clash, 0 when no port was found in SL_CT_CLASH_TRIES tries, or the
 * protocol's port cannot be rewritten (SCTP: CRC32c).
 */
static __always_inline __be16 sl_ct_clash_free_sport(const struct sl_pkt *p, const struct sl_ct_key *fk,
						     struct sl_ct_key *rk)
{
	struct sl_ct_entry *old = bpf_map_lookup_elem(&sl_ct, rk);

	if (!old || sl_ct_reply_reusable(old, fk, rk))
		return p->sport;
	if (p->proto != SL_PROTO_TCP && p->proto != SL_PROTO_UDP)
		return 0;
	for (int i = 0; i < SL_CT_CLASH_TRIES; i++) {
		rk->dport = bpf_htons(SL_CT_CLASH_PORT_MIN + bpf_get_prandom_u32() % SL_CT_CLASH_PORT_SPAN);
		if (rk->dport == p->sport)
			continue;
		old = bpf_map_lookup_elem(&sl_ct, rk);
		if (!old || sl_ct_reply_reusable(old, fk, rk))
			return rk->dport;
	}
	return 0;
}

/*
 * Create the forward entry and the reply entry. SL_CT_CREATE_REPLACE and
 * SL_CT_CREATE_KEEP_NODEPORT replace stale ones in sl_ct (port reuse; pod
 * hooks, whose tuples carry the pod's own checked address). With
 * SL_CT_CREATE_KEEP_NODEPORT, an existing reply entry in sl_ct_nodeport that
 * is the reverse NAT of the NodePort flow this packet belongs to is kept
 * (from-netdev created it with the NAT the reply needs) and only marked as a
 * reply, and the forward entry joins it there. SL_CT_CREATE_NO_OVERWRITE
 * (from-netdev: the tuple is whatever the outside sent) creates both in
 * sl_ct_nodeport: the forward entry only if its key is free, the reply entry
 * only if its key is free or sl_ct_reply_is_stale, and neither while sl_ct
 * holds a live entry under the reply key (a pod flow, which the pod hooks
 * would find first). Returns an enum sl_ct_create_result; on failure nothing
 * was created.
 */
static __always_inline int sl_ct_create(const struct sl_ct_key *fk, struct sl_ct_entry *fwd,
					const struct sl_ct_key *rk, struct sl_ct_entry *rev,
					enum sl_ct_create_mode mode)
{
	struct sl_ct_entry *old;

	__builtin_memcpy(&fwd->pair, rk, sizeof(*rk));
	__builtin_memcpy(&rev->pair, fk, sizeof(*fk));
	if (mode == SL_CT_CREATE_NO_OVERWRITE) {
		old = bpf_map_lookup_elem(&sl_ct, rk);
		if (old) {
			if (!sl_ct_reply_is_stale(old, fk))
				return SL_CT_CREATE_IN_USE;
			bpf_map_delete_elem(&sl_ct, rk);
		}
		if (bpf_map_update_elem(&sl_ct_nodeport, fk, fwd, BPF_NOEXIST) < 0)
			return bpf_map_lookup_elem(&sl_ct_nodeport, fk) ? SL_CT_CREATE_IN_USE : SL_CT_CREATE_FAILED;
		if (bpf_map_update_elem(&sl_ct_nodeport, rk, rev, BPF_NOEXIST) == 0) {
			sl_count(SL_CNT_CT_NEW);
			return SL_CT_CREATED;
		}
		old = bpf_map_lookup_elem(&sl_ct_nodeport, rk);
		if (old && !sl_ct_reply_is_stale(old, fk)) {
			bpf_map_delete_elem(&sl_ct_nodeport, fk);
			return SL_CT_CREATE_IN_USE;
		}
		if (bpf_map_update_elem(&sl_ct_nodeport, rk, rev, BPF_ANY) < 0) {
			bpf_map_delete_elem(&sl_ct_nodeport, fk);
			return SL_CT_CREATE_FAILED;
		}
		sl_count(SL_CNT_CT_NEW);
		return SL_CT_CREATED;
	}
	if (mode == SL_CT_CREATE_KEEP_NODEPORT) {
		old = bpf_map_lookup_elem(&sl_ct_nodeport, rk);
		if (old && sl_ct_is_nodeport_reply(old, fk, rk)) {
			if (bpf_map_update_elem(&sl_ct_nodeport, fk, fwd, BPF_ANY) < 0)
				return SL_CT_CREATE_FAILED;
			old->flags |= SL_CT_REPLY;
			old->flags &= ~SL_CT_SEEN_CLOSE;
			sl_count(SL_CNT_CT_NEW);
			return SL_CT_CREATED;
		}
	}
	if (bpf_map_update_elem(&sl_ct, fk, fwd, BPF_ANY) < 0)
		return SL_CT_CREATE_FAILED;
	if (bpf_map_update_elem(&sl_ct, rk, rev, BPF_ANY) < 0) {
		bpf_map_delete_elem(&sl_ct, fk);
		return SL_CT_CREATE_FAILED;
	}
	sl_count(SL_CNT_CT_NEW);
	return SL_CT_CREATED;
}

/* Initialise a pair of entries for a new flow (timestamps, identities, policy). */
static __always_inline void sl_ct_init(struct sl_ct_entry *fwd, struct sl_ct_entry *rev,
				       const struct sl_pkt *p, const struct sl_trace *t)
{
	__u64 now = bpf_ktime_get_boot_ns();

	__builtin_memset(fwd, 0, sizeof(*fwd));
	__builtin_memset(rev, 0, sizeof(*rev));
	fwd->created_ns = now;
	fwd->last_seen_ns = now;
	fwd->packets = 1;
	fwd->bytes = p->len;
	fwd->policy_id = t->policy_id;
	fwd->rule = t->rule;
	fwd->pass_policy_id = t->pass_policy_id;
	fwd->pass_rule = t->pass_rule;
	fwd->orig_daddr = t->orig_daddr;
	fwd->orig_dport = t->orig_dport;
	fwd->src_identity = t->src_identity;
	fwd->dst_identity = t->dst_identity;
	rev->created_ns = now;
	rev->last_seen_ns = now;
	rev->flags = SL_CT_REPLY;
	rev->policy_id = t->policy_id;
	rev->rule = t->rule;
	rev->pass_policy_id = t->pass_policy_id;
	rev->pass_rule = t->pass_rule;
	rev->orig_daddr = t->orig_daddr;
	rev->orig_dport = t->orig_dport;
	rev->src_identity = t->dst_identity;
	rev->dst_identity = t->src_identity;
}

#endif /* SL_CONNTRACK_H */
