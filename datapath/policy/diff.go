package policy

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// State is the content of the policy-related maps: sl_ipcache, sl_policy, sl_cidr_policy and the
// sl_endpoints values (keyed by host veth ifindex) of the local endpoints. Desired builds the state a
// compilation asks for, ReadState the state the maps hold, and Diff the writes from one to the other.
type State struct {
	IPCache   map[netip.Prefix]maps.IPCacheEntry
	Policy    map[maps.PolicyKey]maps.PolicyValue
	CIDR      map[maps.CIDRPolicyKey]maps.PolicyValue
	Endpoints map[uint32]maps.Endpoint
}

// EndpointState is the sl_endpoints value of the local endpoint at ifindex under r: base (IP, MAC,
// ep_id; ep_id 0 means the ifindex) with the compiled identity and flags. An endpoint r does not
// know (nil r, or a pod the compiler has not seen yet) gets EndpointPolicyError: deny-all, fail
// closed.
func (r *Result) EndpointState(ifindex uint32, base maps.Endpoint) maps.Endpoint {
	e := base
	if e.EpID == 0 {
		e.EpID = ifindex
	}
	e.Identity, e.Flags = 0, EndpointPolicyError
	if r != nil {
		if ce, ok := r.Endpoints[e.EpID]; ok {
			e.Identity, e.Flags = ce.Identity, ce.Flags
		}
	}
	return e
}

// Desired is the state the maps must hold for r and the local endpoints (ifindex -> base value, see
// EndpointState). Policy entries of endpoints not in endpoints are left out.
func Desired(r *Result, endpoints map[uint32]maps.Endpoint) State {
	s := State{
		IPCache:   map[netip.Prefix]maps.IPCacheEntry{},
		Policy:    map[maps.PolicyKey]maps.PolicyValue{},
		CIDR:      map[maps.CIDRPolicyKey]maps.PolicyValue{},
		Endpoints: make(map[uint32]maps.Endpoint, len(endpoints)),
	}
	for idx, base := range endpoints {
		e := r.EndpointState(idx, base)
		s.Endpoints[idx] = e
		if r == nil {
			continue
		}
		ce, ok := r.Endpoints[e.EpID]
		if !ok {
			continue
		}
		for _, pe := range ce.Policy {
			s.Policy[pe.Key] = pe.Value
		}
		for _, ce := range ce.CIDR {
			s.CIDR[ce.Key] = ce.Value
		}
	}
	if r != nil {
		for _, e := range r.IPCache {
			s.IPCache[e.Prefix] = e
		}
	}
	return s
}

// Reader lists the policy-related maps (implemented by *maps.Maps).
type Reader interface {
	ListIPCache() ([]maps.IPCacheEntry, error)
	ListPolicies() ([]maps.PolicyEntry, error)
	ListCIDRPolicies() ([]maps.CIDRPolicyEntry, error)
	ListEndpoints() (map[uint32]maps.Endpoint, error)
}

// ReadState reads the state the maps hold (after an agent restart: the pinned maps keep it).
func ReadState(r Reader) (State, error) {
	s := State{
		IPCache: map[netip.Prefix]maps.IPCacheEntry{},
		Policy:  map[maps.PolicyKey]maps.PolicyValue{},
		CIDR:    map[maps.CIDRPolicyKey]maps.PolicyValue{},
	}
	ipc, err := r.ListIPCache()
	if err != nil {
		return State{}, fmt.Errorf("read ipcache: %w", err)
	}
	for _, e := range ipc {
		s.IPCache[e.Prefix] = e
	}
	pol, err := r.ListPolicies()
	if err != nil {
		return State{}, fmt.Errorf("read policy map: %w", err)
	}
	for _, e := range pol {
		s.Policy[e.Key] = e.Value
	}
	cidr, err := r.ListCIDRPolicies()
	if err != nil {
		return State{}, fmt.Errorf("read cidr policy map: %w", err)
	}
	for _, e := range cidr {
		s.CIDR[e.Key] = e.Value
	}
	if s.Endpoints, err = r.ListEndpoints(); err != nil {
		return State{}, fmt.Errorf("read endpoints map: %w", err)
	}
	if s.Endpoints == nil {
		s.Endpoints = map[uint32]maps.Endpoint{}
	}
	return s, nil
}

// EndpointWrite is one sl_endpoints value to write.
type EndpointWrite struct {
	Ifindex  uint32
	Endpoint maps.Endpoint
}

// Changes are the writes that turn one State into another, grouped in the order Apply writes them
// (see Apply). Every list is sorted, so a diff is deterministic. Nothing is deleted from
// sl_endpoints: an endpoint that left the desired state is removed by the agent's endpoint handling.
type Changes struct {
	// Restrict: written first.
	EndpointsDenyAll []EndpointWrite        // endpoints that gain EndpointPolicyError
	CIDRExcepts      []maps.CIDRPolicyEntry // except entries, new or changed from allow
	PolicyDeletes    []maps.PolicyKey       // allow entries no longer wanted
	CIDRAllowDeletes []maps.CIDRPolicyKey   // allow entries no longer wanted
	// Re-identify.
	IPCacheDeletes    []netip.Prefix
	IPCacheUpserts    []maps.IPCacheEntry
	EndpointsIdentity []EndpointWrite // same flags; identity or address changed
	// Permit: written last.
	PolicyUpserts     []maps.PolicyEntry     // allow entries, new or changed
	CIDRAllows        []maps.CIDRPolicyEntry // allow entries, new or changed from except
	CIDRExceptDeletes []maps.CIDRPolicyKey   // except entries no longer wanted
	EndpointsPermit   []EndpointWrite        // new endpoints, and every other flag change
}

// Empty reports whether there is nothing to write.
func (c Changes) Empty() bool {
	return len(c.EndpointsDenyAll)+len(c.CIDRExcepts)+len(c.PolicyDeletes)+len(c.CIDRAllowDeletes)+
		len(c.IPCacheDeletes)+len(c.IPCacheUpserts)+len(c.EndpointsIdentity)+
		len(c.PolicyUpserts)+len(c.CIDRAllows)+len(c.CIDRExceptDeletes)+len(c.EndpointsPermit) == 0
}

// Diff returns the minimal writes that turn the maps from programmed into next.
func Diff(programmed, next State) Changes {
	var c Changes
	for k, v := range next.Policy {
		if old, ok := programmed.Policy[k]; !ok || old != v {
			c.PolicyUpserts = append(c.PolicyUpserts, maps.PolicyEntry{Key: k, Value: v})
		}
	}
	for k := range programmed.Policy {
		if _, ok := next.Policy[k]; !ok {
			c.PolicyDeletes = append(c.PolicyDeletes, k)
		}
	}
	for k, v := range next.CIDR {
		if old, ok := programmed.CIDR[k]; ok && old == v {
			continue
		}
		if v.Action == ActionExcept {
			c.CIDRExcepts = append(c.CIDRExcepts, maps.CIDRPolicyEntry{Key: k, Value: v})
		} else {
			c.CIDRAllows = append(c.CIDRAllows, maps.CIDRPolicyEntry{Key: k, Value: v})
		}
	}
	for k, v := range programmed.CIDR {
		if _, ok := next.CIDR[k]; ok {
			continue
		}
		if v.Action == ActionExcept {
			c.CIDRExceptDeletes = append(c.CIDRExceptDeletes, k)
		} else {
			c.CIDRAllowDeletes = append(c.CIDRAllowDeletes, k)
		}
	}
	for p, e := range next.IPCache {
		if old, ok := programmed.IPCache[p]; !ok || old != e {
			c.IPCacheUpserts = append(c.IPCacheUpserts, e)
		}
	}
	for p := range programmed.IPCache {
		if _, ok := next.IPCache[p]; !ok {
			c.IPCacheDeletes = append(c.IPCacheDeletes, p)
		}
	}
	for idx, e := range next.Endpoints {
		old, ok := programmed.Endpoints[idx]
		w := EndpointWrite{Ifindex: idx, Endpoint: e}
		switch {
		case ok && sameEndpoint(old, e) && old.PolicyRevision == e.PolicyRevision:
		case ok && old.Flags&EndpointPolicyError == 0 && e.Flags&EndpointPolicyError != 0:
			// deny-all with the new revision at once: every re-checked flow is denied, as it must be
			c.EndpointsDenyAll = append(c.EndpointsDenyAll, w)
		case ok && sameEndpoint(old, e):
			// only the revision: written last, once the maps hold next, so a re-checked flow meets
			// the new policy and not a state in between
			c.EndpointsPermit = append(c.EndpointsPermit, w)
		case ok && old.Flags == e.Flags:
			early := w
			early.Endpoint.PolicyRevision = old.PolicyRevision
			c.EndpointsIdentity = append(c.EndpointsIdentity, early)
			if old.PolicyRevision != e.PolicyRevision {
				c.EndpointsPermit = append(c.EndpointsPermit, w)
			}
		default:
			c.EndpointsPermit = append(c.EndpointsPermit, w)
		}
	}
	c.sort()
	return c
}

// NextRevision is a policy revision no endpoint of s has had yet: one past the highest programmed.
// Revisions of an endpoint only grow, so a conntrack entry allowed under an earlier revision never
// matches again.
func NextRevision(s State) uint32 {
	var top uint32
	for _, e := range s.Endpoints {
		top = max(top, e.PolicyRevision)
	}
	return top + 1
}

// Revise sets the PolicyRevision of every endpoint of next (a copy of its Endpoints map is
// returned): the programmed revision when nothing that decides the endpoint's verdicts changes,
// NextRevision(programmed) when something does (the endpoints Incomplete(programmed, next) lists:
// its sl_endpoints value, its policy entries, or the ipcache for an enforcing endpoint). The
// datapath looks the established flows of a revised endpoint up in policy again on their next
// packet and cuts the ones next denies.
func Revise(programmed, next State) State {
	rev := NextRevision(programmed)
	eps := make(map[uint32]maps.Endpoint, len(next.Endpoints))
	for idx, e := range next.Endpoints {
		if old, ok := programmed.Endpoints[idx]; ok {
			e.PolicyRevision = old.PolicyRevision
		}
		eps[idx] = e
	}
	for _, idx := range Incomplete(programmed, next) {
		e := eps[idx]
		e.PolicyRevision = rev
		eps[idx] = e
	}
	next.Endpoints = eps
	return next
}

// sameEndpoint compares everything but the policy revision.
func sameEndpoint(a, b maps.Endpoint) bool {
	return a.IP == b.IP && a.EpID == b.EpID && a.Identity == b.Identity && a.Flags == b.Flags && bytes.Equal(a.MAC, b.MAC)
}

func (c *Changes) sort() {
	byIfindex := func(a, b EndpointWrite) int { return cmp.Compare(a.Ifindex, b.Ifindex) }
	slices.SortFunc(c.EndpointsDenyAll, byIfindex)
	slices.SortFunc(c.EndpointsIdentity, byIfindex)
	slices.SortFunc(c.EndpointsPermit, byIfindex)
	byPolicyKey := func(a, b maps.PolicyEntry) int { return comparePolicyKey(a.Key, b.Key) }
	slices.SortFunc(c.PolicyUpserts, byPolicyKey)
	slices.SortFunc(c.PolicyDeletes, comparePolicyKey)
	byCIDRKey := func(a, b maps.CIDRPolicyEntry) int { return compareCIDRKey(a.Key, b.Key) }
	slices.SortFunc(c.CIDRExcepts, byCIDRKey)
	slices.SortFunc(c.CIDRAllows, byCIDRKey)
	slices.SortFunc(c.CIDRAllowDeletes, compareCIDRKey)
	slices.SortFunc(c.CIDRExceptDeletes, compareCIDRKey)
	slices.SortFunc(c.IPCacheUpserts, func(a, b maps.IPCacheEntry) int { return comparePrefix(a.Prefix, b.Prefix) })
	slices.SortFunc(c.IPCacheDeletes, comparePrefix)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Writer writes the policy-related maps (implemented by *maps.Maps).
type Writer interface {
	UpsertEndpoint(ifindex uint32, e maps.Endpoint) error
	UpsertIPCacheEntries([]maps.IPCacheEntry) error
	DeleteIPCacheEntries([]netip.Prefix) error
	UpsertPolicies([]maps.PolicyEntry) error
	DeletePolicies([]maps.PolicyKey) error
	UpsertCIDRPolicies([]maps.CIDRPolicyEntry) error
	DeleteCIDRPolicies([]maps.CIDRPolicyKey) error
}

// Apply writes c through w, restrictive changes before permissive ones, so that no state the
// datapath sees in between allows a connection that neither the old nor the new state allows:
//
//  1. Restrict. Endpoints that gain EndpointPolicyError (deny-all), so their entries can change
//     underneath; CIDR except entries; then deletes of sl_policy and sl_cidr_policy allow entries.
//     The policy maps now hold only what both states allow.
//  2. Re-identify. sl_ipcache deletes and writes, and endpoints whose flags stay the same (new
//     identity or address). Peers now carry their new identities, and the entries still in the
//     maps are allowed by the new state as well.
//  3. Permit. sl_policy and sl_cidr_policy allow entries (new, or with a new rule/policy id); then
//     deletes of CIDR except entries (their allows are in place or gone); then every other
//     endpoint: new endpoints (unknown to the datapath until now: dropped), endpoints that lose a
//     flag, and endpoints that gain enforcement. The last are written after their allow entries:
//     entries of an unenforced direction are never looked up, so writing them first widens
//     nothing and spares new connections a deny in between.
//
// An endpoint whose only change is its policy revision (Revise) is written in step 3; one that
// changes identity as well is written in step 2 with its old revision and again in step 3 with the
// new one; one that becomes deny-all takes the new revision in step 1. Conntrack is not touched:
// the datapath looks the established flows of an endpoint whose revision changed up in policy
// again on their next packet, against the complete new state. Every write is idempotent, so after an
// error the caller keeps the programmed State it diffed against and the next Diff repeats what
// did not land.
func (c Changes) Apply(w Writer) error {
	steps := []struct {
		what string
		n    int
		do   func() error
	}{
		{"write deny-all endpoints", len(c.EndpointsDenyAll), func() error { return writeEndpoints(w, c.EndpointsDenyAll) }},
		{"write cidr except entries", len(c.CIDRExcepts), func() error { return w.UpsertCIDRPolicies(c.CIDRExcepts) }},
		{"delete policy entries", len(c.PolicyDeletes), func() error { return w.DeletePolicies(c.PolicyDeletes) }},
		{"delete cidr allow entries", len(c.CIDRAllowDeletes), func() error { return w.DeleteCIDRPolicies(c.CIDRAllowDeletes) }},
		{"delete ipcache entries", len(c.IPCacheDeletes), func() error { return w.DeleteIPCacheEntries(c.IPCacheDeletes) }},
		{"write ipcache entries", len(c.IPCacheUpserts), func() error { return w.UpsertIPCacheEntries(c.IPCacheUpserts) }},
		{"write endpoint identities", len(c.EndpointsIdentity), func() error { return writeEndpoints(w, c.EndpointsIdentity) }},
		{"write policy entries", len(c.PolicyUpserts), func() error { return w.UpsertPolicies(c.PolicyUpserts) }},
		{"write cidr allow entries", len(c.CIDRAllows), func() error { return w.UpsertCIDRPolicies(c.CIDRAllows) }},
		{"delete cidr except entries", len(c.CIDRExceptDeletes), func() error { return w.DeleteCIDRPolicies(c.CIDRExceptDeletes) }},
		{"write endpoints", len(c.EndpointsPermit), func() error { return writeEndpoints(w, c.EndpointsPermit) }},
	}
	for _, s := range steps {
		if s.n == 0 {
			continue
		}
		if err := s.do(); err != nil {
			return fmt.Errorf("%s (%d): %w", s.what, s.n, err)
		}
	}
	return nil
}

func writeEndpoints(w Writer, eps []EndpointWrite) error {
	for _, e := range eps {
		if err := w.UpsertEndpoint(e.Ifindex, e.Endpoint); err != nil {
			return fmt.Errorf("endpoint ifindex %d: %w", e.Ifindex, err)
		}
	}
	return nil
}
