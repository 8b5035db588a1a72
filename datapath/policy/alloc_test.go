package policy

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"

	dpmaps "github.com/starlab-dev/starlab/datapath/maps"
)

// renumberScenario is the reproducer of issue 11 item 1: namespace a has db (local endpoint 100)
// and web, and a policy "db ingress from app=web"; evil appears later.
type renumberScenario struct {
	db, web, evil Pod
	base          Input
}

func newRenumberScenario() renumberScenario {
	s := renumberScenario{
		db:   mkPod("a/db", "10.0.0.1", "n", kv("app", "db")),
		web:  mkPod("a/web", "10.0.0.2", "n", kv("app", "web")),
		evil: mkPod("a/evil", "10.0.0.3", "n", kv("app", "evil")),
	}
	np := netpol("a/db-from-web", sel("app", "db"), ingressOnly(), ingressRules(ingressRule(nil, podPeer(sel("app", "web")))), nil)
	s.base = Input{Namespaces: []Namespace{{Name: "a"}}, LocalNode: "n",
		LocalEndpoints: map[PodRef]uint32{ref("a/db"): 100}, Policies: []*networkingv1.NetworkPolicy{np}}
	return s
}

func (s renumberScenario) compile(t *testing.T, alloc *Allocator, pods ...Pod) *Result {
	t.Helper()
	in := s.base
	in.Alloc, in.Pods = alloc, pods
	r, err := Compile(in)
	require.NoError(t, err)
	return r
}

func identityOf(r *Result, ip string) uint32 {
	for _, e := range r.IPCache {
		if e.Prefix.Addr() == netip.MustParseAddr(ip) {
			return e.Identity
		}
	}
	return 0
}

// referencedIdentities lists every pod identity a state references.
func referencedIdentities(s State) map[uint32]bool {
	out := map[uint32]bool{}
	for _, e := range s.IPCache {
		out[e.Identity] = true
	}
	for _, e := range s.Endpoints {
		out[e.Identity] = true
	}
	for k := range s.Policy {
		out[k.PeerID] = true
	}
	return out
}

// TestAllocatorRestoreAcrossRestart: an agent restart restores the allocator from its saved state
// and the pinned maps. With the saved state every key keeps its number; without it (lost file) no
// number the maps reference is handed to a new label set.
func TestAllocatorRestoreAcrossRestart(t *testing.T) {
	s := newRenumberScenario()
	before := NewAllocator()
	s.compile(t, before, s.db, s.web)
	r1 := s.compile(t, before, s.db, s.web)
	programmed := Desired(r1, map[uint32]dpmaps.Endpoint{100: {IP: s.db.IP}})
	saved, err := json.Marshal(before.Snapshot())
	require.NoError(t, err)
	var fromFile AllocatorState
	require.NoError(t, json.Unmarshal(saved, &fromFile))

	tests := []struct {
		name      string
		saved     AllocatorState
		sameNames bool // db and web keep their numbers
	}{
		{name: "saved state", saved: fromFile, sameNames: true},
		{name: "saved state lost", saved: AllocatorState{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alloc, err := RestoreAllocator(tt.saved, programmed)
			require.NoError(t, err)
			r2 := s.compile(t, alloc, s.db, s.web, s.evil)
			old := referencedIdentities(programmed)
			assert.False(t, old[identityOf(r2, "10.0.0.3")], "evil got %d, a number the maps reference", identityOf(r2, "10.0.0.3"))
			if tt.sameNames {
				assert.Equal(t, identityOf(r1, "10.0.0.1"), identityOf(r2, "10.0.0.1"), "db")
				assert.Equal(t, identityOf(r1, "10.0.0.2"), identityOf(r2, "10.0.0.2"), "web")
				assert.Equal(t, r1.Endpoints[100].Policy, r2.Endpoints[100].Policy, "db's entries unchanged")
				assert.Equal(t, r1.Policies, r2.Policies, "policy ids unchanged")
			}
			allowed, _ := r2.Decide(100, DirIngress, s.evil.IP, ProtoTCP, 5432)
			assert.False(t, allowed, "evil -> db")
			allowed, _ = r2.Decide(100, DirIngress, s.web.IP, ProtoTCP, 5432)
			assert.True(t, allowed, "web -> db")
		})
	}
}

func TestRestoreAllocatorRejectsBadState(t *testing.T) {
	tests := []struct {
		name  string
		saved AllocatorState
		err   string
	}{
		{name: "duplicate identity", saved: AllocatorState{Identities: map[string]uint32{"a\x00x=1": 300, "a\x00x=2": 300}}, err: "number 300 is held by both"},
		{name: "reserved identity", saved: AllocatorState{Identities: map[string]uint32{"a": 2}}, err: "out of range"},
		{name: "zero policy id", saved: AllocatorState{Policies: map[string]uint32{"a/p": 0}}, err: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RestoreAllocator(tt.saved, State{})
			require.ErrorContains(t, err, tt.err)
		})
	}
}

// probeWriter is an in-memory model of the policy maps that calls probe after every write.
type probeWriter struct {
	s     State
	probe func(op string, s State)
}

func (w *probeWriter) done(op string) error { w.probe(op, w.s); return nil }

func (w *probeWriter) UpsertEndpoint(ifindex uint32, e dpmaps.Endpoint) error {
	w.s.Endpoints[ifindex] = e
	return w.done("endpoint")
}

func (w *probeWriter) UpsertIPCacheEntries(es []dpmaps.IPCacheEntry) error {
	for _, e := range es {
		w.s.IPCache[e.Prefix] = e
	}
	return w.done("ipcache upsert")
}

func (w *probeWriter) DeleteIPCacheEntries(ps []netip.Prefix) error {
	for _, p := range ps {
		delete(w.s.IPCache, p)
	}
	return w.done("ipcache delete")
}

func (w *probeWriter) UpsertPolicies(es []dpmaps.PolicyEntry) error {
	for _, e := range es {
		w.s.Policy[e.Key] = e.Value
	}
	return w.done("policy upsert")
}

func (w *probeWriter) DeletePolicies(ks []dpmaps.PolicyKey) error {
	for _, k := range ks {
		delete(w.s.Policy, k)
	}
	return w.done("policy delete")
}

func (w *probeWriter) UpsertCIDRPolicies(es []dpmaps.CIDRPolicyEntry) error {
	for _, e := range es {
		w.s.CIDR[e.Key] = e.Value
	}
	return w.done("cidr upsert")
}

func (w *probeWriter) DeleteCIDRPolicies(ks []dpmaps.CIDRPolicyKey) error {
	for _, k := range ks {
		delete(w.s.CIDR, k)
	}
	return w.done("cidr delete")
}

// stateResult turns map contents into a Result, so Decide evaluates what the datapath would.
func stateResult(s State) *Result {
	r := &Result{Endpoints: map[uint32]*Endpoint{}}
	for _, e := range s.IPCache {
		r.IPCache = append(r.IPCache, e)
	}
	for _, e := range s.Endpoints {
		r.Endpoints[e.EpID] = &Endpoint{EpID: e.EpID, Identity: e.Identity, Flags: e.Flags}
	}
	for k, v := range s.Policy {
		if e := r.Endpoints[k.EpID]; e != nil {
			e.Policy = append(e.Policy, dpmaps.PolicyEntry{Key: k, Value: v})
		}
	}
	for k, v := range s.CIDR {
		if e := r.Endpoints[k.EpID]; e != nil {
			e.CIDR = append(e.CIDR, dpmaps.CIDRPolicyEntry{Key: k, Value: v})
		}
	}
	return r
}

// TestRenumberApplyOrder applies the worst case of a restart without saved numbers, a full
// renumbering where evil takes web's old number, and checks every intermediate state the
// datapath can see: the restrictive phase removes (db, old web number) before any ipcache entry
// points at that number, so evil -> db is denied throughout.
func TestRenumberApplyOrder(t *testing.T) {
	s := newRenumberScenario()
	first := NewAllocator()
	r1 := s.compile(t, first, s.db, s.web)
	// A from-scratch numbering of the new pod set where evil sorts before web: evil gets web's number.
	r2 := s.compile(t, nil, s.db, s.web, s.evil)
	require.Equal(t, identityOf(r1, "10.0.0.2"), identityOf(r2, "10.0.0.3"), "the scenario renumbers: evil takes web's old number")

	bases := map[uint32]dpmaps.Endpoint{100: {IP: s.db.IP, EpID: 100}}
	before, after := Desired(r1, bases), Desired(r2, bases)
	w := &probeWriter{s: State{IPCache: maps.Clone(before.IPCache), Policy: maps.Clone(before.Policy), CIDR: maps.Clone(before.CIDR), Endpoints: maps.Clone(before.Endpoints)}}
	var seen []string
	w.probe = func(op string, st State) {
		allowed, _ := stateResult(st).Decide(100, DirIngress, s.evil.IP, ProtoTCP, 5432)
		seen = append(seen, fmt.Sprintf("%s: evil allowed %v", op, allowed))
		assert.False(t, allowed, "evil -> db allowed after %s", op)
	}
	require.NoError(t, Diff(before, after).Apply(w))
	assert.Equal(t, "policy delete: evil allowed false", seen[0], "the restrictive phase runs first")
	assert.True(t, Diff(w.s, after).Empty())
	t.Logf("states: %q", seen)
}
