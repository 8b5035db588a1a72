package maps

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/starlab-dev/starlab/datapath/bpfobj"
	"golang.org/x/sys/unix"
)

// CTScope is the hook scope of a conntrack entry (enum sl_ct_scope).
type CTScope uint8

// Conntrack scopes.
const (
	CTIngress = CTScope(bpfobj.SlSlCtScopeSL_CT_INGRESS) // to-container
	CTEgress  = CTScope(bpfobj.SlSlCtScopeSL_CT_EGRESS)  // from-container
	CTNetdev  = CTScope(bpfobj.SlSlCtScopeSL_CT_NETDEV)  // from-netdev
)

// CTFlags are the conntrack entry flags (enum sl_ct_flags).
type CTFlags uint16

// Conntrack flags.
const (
	CTReply       = CTFlags(bpfobj.SlSlCtFlagsSL_CT_REPLY)
	CTDNAT        = CTFlags(bpfobj.SlSlCtFlagsSL_CT_DNAT)
	CTRevNAT      = CTFlags(bpfobj.SlSlCtFlagsSL_CT_REVNAT)
	CTSNAT        = CTFlags(bpfobj.SlSlCtFlagsSL_CT_SNAT)
	CTSeenClose   = CTFlags(bpfobj.SlSlCtFlagsSL_CT_SEEN_CLOSE)
	CTFIBRedirect = CTFlags(bpfobj.SlSlCtFlagsSL_CT_FIB_REDIRECT)
	// TCP state seen in the entry's own direction (for CTLifetimes).
	CTSeenNonSYN = CTFlags(bpfobj.SlSlCtFlagsSL_CT_SEEN_NON_SYN)
	CTSeenFIN    = CTFlags(bpfobj.SlSlCtFlagsSL_CT_SEEN_FIN)
	CTSeenRST    = CTFlags(bpfobj.SlSlCtFlagsSL_CT_SEEN_RST)
	// CTDenied: a flow allowed, then denied by a policy change; both entries drop its packets.
	CTDenied = CTFlags(bpfobj.SlSlCtFlagsSL_CT_DENIED)
)

// CTLifetimes are how long a conntrack entry may stay idle, by protocol and
// TCP state: Cilium's defaults (bpf-ct-timeout-regular-*; the service
// lifetimes there are the same). A flow's two entries are judged together:
// the state is that of the connection (both directions' flags) and the idle
// time runs from the later of their last packets, so a one-way stream keeps
// its reply entry.
type CTLifetimes struct {
	// TCPEstablished: a TCP connection past its handshake (a packet without
	// SYN seen in either direction). Cilium: 21600 s.
	TCPEstablished time.Duration
	// TCPSyn: a TCP connection that has only seen SYN (and SYN-ACK)
	// packets, a half-open connection or a SYN flood. Cilium: 60 s.
	TCPSyn time.Duration
	// TCPClosing: a TCP connection with a FIN in both directions or an RST
	// in either. Cilium: 10 s.
	TCPClosing time.Duration
	// NonTCP: UDP, ICMP and everything else. Cilium: 60 s.
	NonTCP time.Duration
}

// DefaultCTLifetimes returns Cilium's default lifetimes.
func DefaultCTLifetimes() CTLifetimes {
	return CTLifetimes{TCPEstablished: 6 * time.Hour, TCPSyn: time.Minute, TCPClosing: 10 * time.Second, NonTCP: time.Minute}
}

// Lifetime is how long the flow of entry e may stay idle (see CTLifetimes);
// pair is the flow's other entry (e.Pair), nil when it is gone.
func (l CTLifetimes) Lifetime(k CTKey, e CTEntry, pair *CTEntry) time.Duration {
	if k.Proto != ProtoTCP {
		return l.NonTCP
	}
	f := e.Flags
	if pair != nil {
		f |= pair.Flags
	}
	switch {
	case f&CTSeenRST != 0, e.Flags&CTSeenFIN != 0 && pair != nil && pair.Flags&CTSeenFIN != 0:
		return l.TCPClosing
	case f&CTSeenNonSYN != 0:
		return l.TCPEstablished
	}
	return l.TCPSyn
}

// Expired reports whether the flow of entry e (pair: its other entry, nil when
// gone) has been idle for longer than its lifetime at boot time now (ns).
func (l CTLifetimes) Expired(k CTKey, e CTEntry, pair *CTEntry, now uint64) bool {
	last := e.LastSeenNs
	if pair != nil && pair.LastSeenNs > last {
		last = pair.LastSeenNs
	}
	return last < now && time.Duration(now-last) > l.Lifetime(k, e, pair)
}

// CTKey is a conntrack key (host-order ports).
type CTKey struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            Proto
	Scope            CTScope
}

// CTEntry is a conntrack value (host-order ports, boot-time nanoseconds).
type CTEntry struct {
	CreatedNs, LastSeenNs uint64
	Packets, Bytes        uint64
	NatAddr               netip.Addr
	NatPort               uint16
	Flags                 CTFlags
	PolicyID              uint32
	OrigDst               netip.Addr
	OrigDstPort           uint16
	Rule                  uint16
	SvcID                 uint32
	SnatAddr              netip.Addr
	SnatPort              uint16
	SrcIdentity           uint32
	DstIdentity           uint32
	Pair                  CTKey
	// PolicyRevision (forward entries): the endpoint's Endpoint.PolicyRevision
	// the flow was allowed under.
	PolicyRevision uint32
}

func ctKeyFromRaw(k bpfobj.SlSlCtKey) CTKey {
	return CTKey{Src: U32ToIP(k.Saddr), Dst: U32ToIP(k.Daddr), SrcPort: Ntohs(k.Sport), DstPort: Ntohs(k.Dport),
		Proto: Proto(k.Proto), Scope: CTScope(k.Scope)}
}

func (k CTKey) raw() (bpfobj.SlSlCtKey, error) {
	s, err := mustIP("ct key source", k.Src)
	if err != nil {
		return bpfobj.SlSlCtKey{}, err
	}
	d, err := mustIP("ct key destination", k.Dst)
	if err != nil {
		return bpfobj.SlSlCtKey{}, err
	}
	return bpfobj.SlSlCtKey{Saddr: s, Daddr: d, Sport: Htons(k.SrcPort), Dport: Htons(k.DstPort),
		Proto: uint8(k.Proto), Scope: uint8(k.Scope)}, nil
}

func ctEntryFromRaw(v bpfobj.SlSlCtEntry) CTEntry {
	return CTEntry{
		CreatedNs: v.CreatedNs, LastSeenNs: v.LastSeenNs, Packets: v.Packets, Bytes: v.Bytes,
		NatAddr: U32ToIP(v.NatAddr), NatPort: Ntohs(v.NatPort), Flags: CTFlags(v.Flags), PolicyID: v.PolicyId,
		OrigDst: U32ToIP(v.OrigDaddr), OrigDstPort: Ntohs(v.OrigDport), Rule: v.Rule, SvcID: v.SvcId,
		SnatAddr: U32ToIP(v.SnatAddr), SnatPort: Ntohs(v.SnatPort), SrcIdentity: v.SrcIdentity,
		DstIdentity: v.DstIdentity, Pair: ctKeyFromRaw(v.Pair), PolicyRevision: v.PolicyRev,
	}
}

// ctMap is one of the conntrack maps. A flow's entries (and so every entry's
// pair) are in one of them: sl_ct_nodeport for NodePort flows from outside,
// sl_ct for the rest.
type ctMap struct {
	name string
	m    *ebpf.Map
}

// ctMaps are the conntrack maps, sl_ct first (the order the pod hooks look them up in).
func (m *Maps) ctMaps() []ctMap {
	out := []ctMap{{NameCT, m.CT}}
	if m.CTNodePort != nil {
		out = append(out, ctMap{NameCTNodePort, m.CTNodePort})
	}
	return out
}

// IterateCT calls fn for every conntrack entry (sl_ct, then sl_ct_nodeport); fn returning false stops.
func (m *Maps) IterateCT(fn func(CTKey, CTEntry) bool) error {
	for _, cm := range m.ctMaps() {
		stop := false
		if err := iterateCTMap(cm, func(k CTKey, e CTEntry) bool {
			stop = !fn(k, e)
			return !stop
		}); err != nil || stop {
			return err
		}
	}
	return nil
}

func iterateCTMap(cm ctMap, fn func(CTKey, CTEntry) bool) error {
	var k bpfobj.SlSlCtKey
	var v bpfobj.SlSlCtEntry
	it := cm.m.Iterate()
	for it.Next(&k, &v) {
		if !fn(ctKeyFromRaw(k), ctEntryFromRaw(v)) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", cm.name, err)
	}
	return nil
}

// LookupCT returns one conntrack entry, from sl_ct or else sl_ct_nodeport.
func (m *Maps) LookupCT(k CTKey) (CTEntry, error) {
	rk, err := k.raw()
	if err != nil {
		return CTEntry{}, err
	}
	var v bpfobj.SlSlCtEntry
	var errs []error
	for _, cm := range m.ctMaps() {
		err := cm.m.Lookup(&rk, &v)
		if err == nil {
			return ctEntryFromRaw(v), nil
		}
		errs = append(errs, fmt.Errorf("lookup %s %+v: %w", cm.name, k, err))
	}
	return CTEntry{}, errors.Join(errs...)
}

// BootTimeNs is the CLOCK_BOOTTIME the datapath stamps entries and events with.
func BootTimeNs() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_BOOTTIME): %w", err)
	}
	return uint64(ts.Nano()), nil
}

// GCConntrack deletes the conntrack entries whose flow has outlived its
// lifetime (CTLifetimes.Expired, both entries of a flow judged together) and
// returns how many it removed. The map is LRU besides: GC is what ends idle
// flows before the map fills.
func (m *Maps) GCConntrack(ctx context.Context, l CTLifetimes) (int, error) {
	now, err := BootTimeNs()
	if err != nil {
		return 0, err
	}
	total := 0
	for _, cm := range m.ctMaps() {
		n, err := gcCTMap(ctx, cm, l, now)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func gcCTMap(ctx context.Context, cm ctMap, l CTLifetimes, now uint64) (int, error) {
	entries := map[CTKey]CTEntry{}
	if err := iterateCTMap(cm, func(k CTKey, e CTEntry) bool {
		entries[k] = e
		return len(entries)%4096 != 0 || ctx.Err() == nil
	}); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("conntrack gc: %w", err)
	}
	var stale []bpfobj.SlSlCtKey
	for k, e := range entries {
		var pair *CTEntry
		if pe, ok := entries[e.Pair]; ok {
			pair = &pe
		}
		if !l.Expired(k, e, pair, now) {
			continue
		}
		rk, err := k.raw()
		if err != nil {
			return 0, err
		}
		stale = append(stale, rk)
	}
	return deleteCTKeys(ctx, cm, stale)
}

// DeleteCTWhere deletes every conntrack entry for which match returns true, together with the
// entry's pair (the other direction of the same flow, even when match does not hold for it), and
// returns how many entries it removed. Deletions use BPF_MAP_DELETE_BATCH where the kernel has it,
// else one key at a time; a key already gone (LRU eviction, the datapath's own close handling) is
// not an error.
func (m *Maps) DeleteCTWhere(ctx context.Context, match func(CTKey, CTEntry) bool) (int, error) {
	total := 0
	for _, cm := range m.ctMaps() {
		n, err := deleteCTMapWhere(ctx, cm, match)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func deleteCTMapWhere(ctx context.Context, cm ctMap, match func(CTKey, CTEntry) bool) (int, error) {
	seen := map[bpfobj.SlSlCtKey]bool{}
	var keys []bpfobj.SlSlCtKey
	add := func(k bpfobj.SlSlCtKey) {
		if k == (bpfobj.SlSlCtKey{}) || seen[k] {
			return
		}
		seen[k] = true
		keys = append(keys, k)
	}
	var k bpfobj.SlSlCtKey
	var v bpfobj.SlSlCtEntry
	it := cm.m.Iterate()
	for n := 0; it.Next(&k, &v); n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return 0, fmt.Errorf("conntrack flush: %w", ctx.Err())
		}
		if match(ctKeyFromRaw(k), ctEntryFromRaw(v)) {
			add(k)
			add(v.Pair)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("iterate %s: %w", cm.name, err)
	}
	return deleteCTKeys(ctx, cm, keys)
}

// deleteCTKeys deletes keys from a conntrack map: in batches, falling back to single deletes from
// the first key a batch could not delete (missing key, or no batch support).
func deleteCTKeys(ctx context.Context, cm ctMap, keys []bpfobj.SlSlCtKey) (int, error) {
	n := 0
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("conntrack flush: %w", err)
		}
		chunk := keys[:min(len(keys), 4096)]
		done, err := cm.m.BatchDelete(chunk, nil)
		n += done
		keys = keys[done:]
		if err == nil {
			continue
		}
		if len(keys) == 0 {
			break
		}
		// The batch stopped at keys[0] (already gone, or batches unsupported): delete it alone.
		if !errors.Is(err, ebpf.ErrKeyNotExist) && !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.EINVAL) {
			return n, wrap(cm.m, cm.name, "batch delete", err)
		}
		if err := cm.m.Delete(&keys[0]); err == nil {
			n++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, wrap(cm.m, cm.name, "delete", err)
		}
		keys = keys[1:]
	}
	return n, nil
}

// CTInvolves reports whether ip appears in the conntrack entry as source, destination, NAT
// target or SNAT address: every entry of the flows of an endpoint with that IP.
func CTInvolves(ip netip.Addr) func(CTKey, CTEntry) bool {
	return func(k CTKey, e CTEntry) bool {
		return k.Src == ip || k.Dst == ip ||
			(e.Flags&(CTDNAT|CTRevNAT) != 0 && e.NatAddr == ip) ||
			(e.Flags&CTSNAT != 0 && e.SnatAddr == ip)
	}
}

// CTToBackend reports whether the conntrack entry belongs to a flow that service svcID load
// balanced to backend ip:port of protocol proto: the DNAT entry whose NAT target it is, or the
// reverse-NAT entry of its replies.
func CTToBackend(svcID uint32, proto Proto, ip netip.Addr, port uint16) func(CTKey, CTEntry) bool {
	return func(k CTKey, e CTEntry) bool {
		if e.SvcID != svcID || k.Proto != proto {
			return false
		}
		return (e.Flags&CTDNAT != 0 && e.NatAddr == ip && e.NatPort == port) ||
			(e.Flags&CTRevNAT != 0 && k.Src == ip && k.SrcPort == port)
	}
}
