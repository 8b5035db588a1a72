package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	slmaps "github.com/starlab-dev/starlab/datapath/maps"
)

// Allocator hands out pod identities (per namespace + pod label set, from
// FirstPodIdentity up) and policy ids (per namespace/name, from 1 up). A
// number stays the same as long as its key is present in every compilation;
// once a key disappears its number is retired and never handed out again by
// this Allocator, so stale conntrack entries or flows cannot be confused with
// a new owner. New keys are numbered in sorted key order, so a fresh
// Allocator numbers a given input deterministically.
//
// Numbers outlive the process through AllocatorState: the agent saves
// Snapshot before it programs the numbers of a compilation and restores it
// with RestoreAllocator on start, which also retires every number the pinned
// maps still reference (see RestoreAllocator).
//
// An Allocator is safe for concurrent use; Compile calls on the same
// Allocator are serialized.
type Allocator struct {
	mu         sync.Mutex
	identities map[string]uint32
	nextID     uint32
	policies   map[string]uint32
	nextPolicy uint32
}

// NewAllocator returns an empty Allocator.
func NewAllocator() *Allocator {
	return &Allocator{
		identities: map[string]uint32{},
		nextID:     FirstPodIdentity,
		policies:   map[string]uint32{},
		nextPolicy: 1,
	}
}

// AllocatorState is the persisted form of an Allocator: every live key with
// its number, and the next numbers to hand out (numbers below them are
// retired or live, never handed out again).
type AllocatorState struct {
	Identities   map[string]uint32 `json:"identities"`
	NextIdentity uint32            `json:"nextIdentity"`
	Policies     map[string]uint32 `json:"policies"`
	NextPolicy   uint32            `json:"nextPolicy"`
}

// Snapshot returns the allocator's state (a copy).
func (a *Allocator) Snapshot() AllocatorState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return AllocatorState{
		Identities: maps.Clone(a.identities), NextIdentity: a.nextID,
		Policies: maps.Clone(a.policies), NextPolicy: a.nextPolicy,
	}
}

// Equal reports whether two states hold the same numbers.
func (s AllocatorState) Equal(o AllocatorState) bool {
	return s.NextIdentity == o.NextIdentity && s.NextPolicy == o.NextPolicy &&
		maps.Equal(s.Identities, o.Identities) && maps.Equal(s.Policies, o.Policies)
}

// RestoreAllocator returns an Allocator that continues saved (the zero
// AllocatorState when nothing was saved) over the maps as programmed. Every
// key of saved keeps its number. Next numbers start above every number saved
// and every pod identity and policy id programmed references (ipcache values,
// endpoint identities, sl_policy peers, policy ids of sl_policy and
// sl_cidr_policy values), so a number still in the maps is never handed to a
// different label set or policy, even when saved is lost or older than the
// maps. A saved state that gives one number to two keys is an error.
func RestoreAllocator(saved AllocatorState, programmed State) (*Allocator, error) {
	a := NewAllocator()
	if err := restore(a.identities, &a.nextID, saved.Identities, saved.NextIdentity, FirstPodIdentity, "identity"); err != nil {
		return nil, err
	}
	if err := restore(a.policies, &a.nextPolicy, saved.Policies, saved.NextPolicy, 1, "policy"); err != nil {
		return nil, err
	}
	for _, e := range programmed.IPCache {
		above(&a.nextID, e.Identity, FirstPodIdentity)
	}
	for _, e := range programmed.Endpoints {
		above(&a.nextID, e.Identity, FirstPodIdentity)
	}
	for k, v := range programmed.Policy {
		above(&a.nextID, k.PeerID, FirstPodIdentity)
		abovePolicies(&a.nextPolicy, v)
	}
	for _, v := range programmed.CIDR {
		abovePolicies(&a.nextPolicy, v)
	}
	return a, nil
}

// restore copies saved numbers into known, checking they are valid and
// unique, and sets next above all of them.
// above raises next above n (numbers from first up; the all-ones value is never handed out).
func above(next *uint32, n, first uint32) {
	if n >= first && n != ^uint32(0) && n >= *next {
		*next = n + 1
	}
}

// abovePolicies raises next above every policy id a value references (NetworkPolicy and tiers).
func abovePolicies(next *uint32, v slmaps.PolicyValue) {
	for _, id := range []uint32{v.PolicyID, v.Admin.PolicyID, v.Baseline.PolicyID} {
		above(next, id, 1)
	}
}

func restore(known map[string]uint32, next *uint32, saved map[string]uint32, savedNext, first uint32, what string) error {
	owner := make(map[uint32]string, len(saved))
	*next = max(*next, savedNext, first)
	for k, n := range saved {
		if n < first || n == ^uint32(0) {
			return fmt.Errorf("restore %s ids: %q has number %d, out of range", what, k, n)
		}
		if o, dup := owner[n]; dup {
			return fmt.Errorf("restore %s ids: number %d is held by both %q and %q", what, n, o, k)
		}
		owner[n] = k
		known[k] = n
		if n >= *next {
			*next = n + 1
		}
	}
	return nil
}

// assign numbers every key in keys (sorted, unique), keeping the numbers of
// keys already known and forgetting keys no longer present.
func assign(known map[string]uint32, next *uint32, keys []string, what string) (map[string]uint32, error) {
	out := make(map[string]uint32, len(keys))
	for _, k := range keys {
		if id, ok := known[k]; ok {
			out[k] = id
			continue
		}
		if *next == 0 || *next == ^uint32(0) {
			return nil, fmt.Errorf("allocate %s id for %q: number space exhausted (restart the agent to renumber)", what, k)
		}
		out[k] = *next
		*next++
	}
	return out, nil
}

// allocate numbers identity and policy keys for one compilation.
func (a *Allocator) allocate(identityKeys, policyKeys []string) (ids, pols map[string]uint32, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	slices.Sort(identityKeys)
	identityKeys = slices.Compact(identityKeys)
	slices.Sort(policyKeys)
	policyKeys = slices.Compact(policyKeys)
	nextID, nextPolicy := a.nextID, a.nextPolicy
	ids, err = assign(a.identities, &nextID, identityKeys, "identity")
	if err != nil {
		return nil, nil, err
	}
	pols, err = assign(a.policies, &nextPolicy, policyKeys, "policy")
	if err != nil {
		return nil, nil, err
	}
	a.identities, a.nextID = ids, nextID
	a.policies, a.nextPolicy = pols, nextPolicy
	return maps.Clone(ids), maps.Clone(pols), nil
}

// identityKey is the allocator key of a namespace + label set.
func identityKey(namespace string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(namespace)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
	}
	return b.String()
}

func policyKey(namespace, name string) string { return namespace + "/" + name }
