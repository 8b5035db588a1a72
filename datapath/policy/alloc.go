package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Allocator hands out pod identities (per namespace + pod label set, from
// FirstPodIdentity up) and policy ids (per namespace/name, from 1 up). A
// number stays the same as long as its key is present in every compilation;
// once a key disappears its number is retired and never handed out again by
// this Allocator, so stale conntrack entries or flows cannot be confused with
// a new owner. New keys are numbered in sorted key order, so a fresh
// Allocator numbers a given input deterministically.
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
