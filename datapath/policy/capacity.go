package policy

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	dpmaps "github.com/starlab-dev/starlab/datapath/maps"
)

// Overflow is a local endpoint whose entries do not fit the policy maps.
type Overflow struct {
	Ifindex uint32
	Reason  string
}

// FitCapacity makes next fit the policy maps: when the entries next asks for do not fit c, the
// endpoints that need the most entries are set deny-all (DenyAll: their entries left out) until the rest fits, and are returned with the reason. Endpoints are admitted in order of
// the entries they add (fewest first, then ifindex), so the result is deterministic. A capacity of
// 0 means unlimited.
//
// The count follows Changes.Apply: sl_policy deletes run before its upserts, so it must hold next;
// sl_cidr_policy except entries are written before allow entries are deleted and deleted last, so
// it must hold programmed and next together (the admitted endpoints' new keys on top of what is
// programmed). Deny-all needs no entries, so it always fits: programmed did.
func FitCapacity(programmed, next State, c dpmaps.PolicyCapacity) (State, []Overflow) {
	type need struct {
		ifindex, ep uint32
		policy      int // next sl_policy entries
		cidr        int // next sl_cidr_policy keys not programmed
	}
	byEp := map[uint32]*need{}
	var needs []*need
	for idx, e := range next.Endpoints {
		n := &need{ifindex: idx, ep: e.EpID}
		byEp[e.EpID] = n
		needs = append(needs, n)
	}
	for k := range next.Policy {
		if n := byEp[k.EpID]; n != nil {
			n.policy++
		}
	}
	for k := range next.CIDR {
		if _, ok := programmed.CIDR[k]; ok {
			continue
		}
		if n := byEp[k.EpID]; n != nil {
			n.cidr++
		}
	}
	slices.SortFunc(needs, func(a, b *need) int {
		return cmp.Or(cmp.Compare(a.policy+a.cidr, b.policy+b.cidr), cmp.Compare(a.ifindex, b.ifindex))
	})
	usedPolicy, usedCIDR := 0, len(programmed.CIDR)
	var over []Overflow
	for _, n := range needs {
		fitsPolicy := c.Policy <= 0 || usedPolicy+n.policy <= c.Policy
		fitsCIDR := c.CIDR <= 0 || n.cidr == 0 || usedCIDR+n.cidr <= c.CIDR
		if fitsPolicy && fitsCIDR {
			usedPolicy += n.policy
			usedCIDR += n.cidr
			continue
		}
		var why string
		if !fitsPolicy {
			why = fmt.Sprintf("sl_policy is full: this endpoint needs %d of its %d entries, %d are left", n.policy, c.Policy, c.Policy-usedPolicy)
		} else {
			why = fmt.Sprintf("sl_cidr_policy is full: this endpoint needs %d more of its %d entries, %d are left", n.cidr, c.CIDR, c.CIDR-usedCIDR)
		}
		over = append(over, Overflow{Ifindex: n.ifindex, Reason: why})
	}
	if len(over) == 0 {
		return next, nil
	}
	slices.SortFunc(over, func(a, b Overflow) int { return cmp.Compare(a.Ifindex, b.Ifindex) })
	idx := make([]uint32, len(over))
	for i, o := range over {
		idx[i] = o.Ifindex
	}
	return DenyAll(next, idx), over
}

// DenyAll returns a copy of s in which the endpoints at ifindexes have EndpointPolicyError and
// EndpointPolicyWriteFailed (their policy could not be written) and no sl_policy or
// sl_cidr_policy entries.
func DenyAll(s State, ifindexes []uint32) State {
	out := State{IPCache: s.IPCache, Policy: maps.Clone(s.Policy), CIDR: maps.Clone(s.CIDR), Endpoints: maps.Clone(s.Endpoints)}
	eps := map[uint32]bool{}
	for _, idx := range ifindexes {
		e, ok := out.Endpoints[idx]
		if !ok {
			continue
		}
		e.Flags |= EndpointPolicyError | EndpointPolicyWriteFailed
		out.Endpoints[idx] = e
		eps[e.EpID] = true
	}
	maps.DeleteFunc(out.Policy, func(k dpmaps.PolicyKey, _ dpmaps.PolicyValue) bool { return eps[k.EpID] })
	maps.DeleteFunc(out.CIDR, func(k dpmaps.CIDRPolicyKey, _ dpmaps.PolicyValue) bool { return eps[k.EpID] })
	return out
}

// Incomplete returns the ifindexes of the endpoints of next whose state in actual (what the maps
// hold after a failed Apply) differs from next: their sl_endpoints value, or any of their
// sl_policy or sl_cidr_policy entries. When the ipcache differs, every endpoint that enforces a
// direction is incomplete: a stale or missing peer identity can allow what next denies. Sorted.
func Incomplete(actual, next State) []uint32 {
	ipcacheSame := maps.Equal(actual.IPCache, next.IPCache)
	dirty := map[uint32]bool{}
	for k, v := range next.Policy {
		if old, ok := actual.Policy[k]; !ok || old != v {
			dirty[k.EpID] = true
		}
	}
	for k := range actual.Policy {
		if _, ok := next.Policy[k]; !ok {
			dirty[k.EpID] = true
		}
	}
	for k, v := range next.CIDR {
		if old, ok := actual.CIDR[k]; !ok || old != v {
			dirty[k.EpID] = true
		}
	}
	for k := range actual.CIDR {
		if _, ok := next.CIDR[k]; !ok {
			dirty[k.EpID] = true
		}
	}
	var out []uint32
	for idx, e := range next.Endpoints {
		old, ok := actual.Endpoints[idx]
		enforcing := e.Flags&(EndpointIngressEnforced|EndpointEgressEnforced) != 0
		if !ok || !sameEndpoint(old, e) || dirty[e.EpID] || (!ipcacheSame && enforcing) {
			out = append(out, idx)
		}
	}
	slices.Sort(out)
	return out
}
