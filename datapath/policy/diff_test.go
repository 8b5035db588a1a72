package policy_test

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dpmaps "github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
)

// recordingWriter is an in-memory model of the policy maps that logs every write in order.
type recordingWriter struct {
	state  policy.State
	log    []string
	failOn string
}

func newRecordingWriter(s policy.State) *recordingWriter {
	return &recordingWriter{state: policy.State{
		IPCache: maps.Clone(s.IPCache), Policy: maps.Clone(s.Policy), CIDR: maps.Clone(s.CIDR), Endpoints: maps.Clone(s.Endpoints),
	}}
}

func (w *recordingWriter) note(op string, n int) error {
	if op == w.failOn {
		return errors.New("map full")
	}
	w.log = append(w.log, fmt.Sprintf("%s %d", op, n))
	return nil
}

func (w *recordingWriter) UpsertEndpoint(ifindex uint32, e dpmaps.Endpoint) error {
	if err := w.note(fmt.Sprintf("endpoint %d flags", ifindex), int(e.Flags)); err != nil {
		return err
	}
	w.state.Endpoints[ifindex] = e
	return nil
}

func (w *recordingWriter) UpsertIPCacheEntries(es []dpmaps.IPCacheEntry) error {
	if err := w.note("ipcache upsert", len(es)); err != nil {
		return err
	}
	for _, e := range es {
		w.state.IPCache[e.Prefix] = e
	}
	return nil
}

func (w *recordingWriter) DeleteIPCacheEntries(ps []netip.Prefix) error {
	if err := w.note("ipcache delete", len(ps)); err != nil {
		return err
	}
	for _, p := range ps {
		delete(w.state.IPCache, p)
	}
	return nil
}

func (w *recordingWriter) UpsertPolicies(es []dpmaps.PolicyEntry) error {
	if err := w.note("policy upsert", len(es)); err != nil {
		return err
	}
	for _, e := range es {
		w.state.Policy[e.Key] = e.Value
	}
	return nil
}

func (w *recordingWriter) DeletePolicies(ks []dpmaps.PolicyKey) error {
	if err := w.note("policy delete", len(ks)); err != nil {
		return err
	}
	for _, k := range ks {
		delete(w.state.Policy, k)
	}
	return nil
}

func (w *recordingWriter) UpsertCIDRPolicies(es []dpmaps.CIDRPolicyEntry) error {
	op := "cidr allow upsert"
	if len(es) > 0 && es[0].Value.Action == policy.ActionExcept {
		op = "cidr except upsert"
	}
	if err := w.note(op, len(es)); err != nil {
		return err
	}
	for _, e := range es {
		w.state.CIDR[e.Key] = e.Value
	}
	return nil
}

func (w *recordingWriter) DeleteCIDRPolicies(ks []dpmaps.CIDRPolicyKey) error {
	op := "cidr allow delete"
	if len(ks) > 0 && w.state.CIDR[ks[0]].Action == policy.ActionExcept {
		op = "cidr except delete"
	}
	if err := w.note(op, len(ks)); err != nil {
		return err
	}
	for _, k := range ks {
		delete(w.state.CIDR, k)
	}
	return nil
}

var (
	mac     = net.HardwareAddr{2, 0, 0, 0, 0, 5}
	allow   = dpmaps.PolicyValue{Action: policy.ActionAllow, PolicyID: 1}
	allow2  = dpmaps.PolicyValue{Action: policy.ActionAllow, PolicyID: 2, Rule: 1}
	except  = dpmaps.PolicyValue{Action: policy.ActionExcept, PolicyID: 1}
	enforce = policy.EndpointIngressEnforced
)

func pkey(ep, peer uint32, port uint16) dpmaps.PolicyKey {
	return dpmaps.PolicyKey{EpID: ep, PeerID: peer, Dir: policy.DirIngress, Proto: policy.ProtoTCP, Port: port, PortPrefixLen: 16}
}

func ckey(ep uint32, prefix string) dpmaps.CIDRPolicyKey {
	return dpmaps.CIDRPolicyKey{EpID: ep, Dir: policy.DirEgress, Prefix: netip.MustParsePrefix(prefix)}
}

func ipc(prefix string, id uint32) dpmaps.IPCacheEntry {
	return dpmaps.IPCacheEntry{Prefix: netip.MustParsePrefix(prefix), Identity: id}
}

func ep(ip string, id uint32, flags dpmaps.EndpointFlags) dpmaps.Endpoint {
	return dpmaps.Endpoint{IP: netip.MustParseAddr(ip), EpID: 0, Identity: id, Flags: flags, MAC: mac}
}

func state(ipcache []dpmaps.IPCacheEntry, pol map[dpmaps.PolicyKey]dpmaps.PolicyValue, cidr map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue, eps map[uint32]dpmaps.Endpoint) policy.State {
	s := policy.State{IPCache: map[netip.Prefix]dpmaps.IPCacheEntry{}, Policy: pol, CIDR: cidr, Endpoints: eps}
	for _, e := range ipcache {
		s.IPCache[e.Prefix] = e
	}
	if s.Policy == nil {
		s.Policy = map[dpmaps.PolicyKey]dpmaps.PolicyValue{}
	}
	if s.CIDR == nil {
		s.CIDR = map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue{}
	}
	if s.Endpoints == nil {
		s.Endpoints = map[uint32]dpmaps.Endpoint{}
	}
	return s
}

func withEndpoints(s policy.State, eps map[uint32]dpmaps.Endpoint) policy.State {
	s.Endpoints = eps
	return s
}

// before/after are one policy change that adds, changes and removes entries of every map at once.
var (
	before = state(
		[]dpmaps.IPCacheEntry{ipc("10.244.1.5/32", 256), ipc("10.244.1.6/32", 257), ipc("10.244.2.9/32", 258)},
		map[dpmaps.PolicyKey]dpmaps.PolicyValue{pkey(10, 256, 80): allow, pkey(10, 258, 80): allow},
		map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue{ckey(10, "192.168.0.0/16"): allow, ckey(10, "192.168.1.0/24"): except, ckey(10, "172.16.0.0/12"): allow},
		map[uint32]dpmaps.Endpoint{10: ep("10.244.1.5", 256, enforce), 11: ep("10.244.1.6", 257, 0), 12: ep("10.244.1.7", 259, 0), 13: ep("10.244.1.8", 260, enforce)},
	)
	after = state(
		[]dpmaps.IPCacheEntry{ipc("10.244.1.5/32", 256), ipc("10.244.1.6/32", 261), ipc("10.244.3.3/32", 262)},
		map[dpmaps.PolicyKey]dpmaps.PolicyValue{pkey(10, 256, 80): allow2, pkey(10, 262, 443): allow},
		map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue{ckey(10, "192.168.0.0/16"): except, ckey(10, "10.0.0.0/8"): allow},
		map[uint32]dpmaps.Endpoint{
			10: ep("10.244.1.5", 256, enforce|policy.EndpointPolicyError), // broken policy: deny-all
			11: ep("10.244.1.6", 261, 0),                                  // relabelled: new identity
			12: ep("10.244.1.7", 259, enforce),                            // newly selected by a policy
			14: ep("10.244.1.9", 263, 0),                                  // new endpoint; 13 left
		},
	)
)

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name       string
		programmed policy.State
		next       policy.State
		want       policy.Changes
	}{
		{"nothing changed", before, before, policy.Changes{}},
		{"empty maps", state(nil, nil, nil, nil), state(
			[]dpmaps.IPCacheEntry{ipc("10.244.1.5/32", 256)},
			map[dpmaps.PolicyKey]dpmaps.PolicyValue{pkey(10, 256, 80): allow},
			map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue{ckey(10, "10.0.0.0/8"): allow, ckey(10, "10.1.0.0/16"): except},
			map[uint32]dpmaps.Endpoint{10: ep("10.244.1.5", 256, enforce)},
		), policy.Changes{
			CIDRExcepts:     []dpmaps.CIDRPolicyEntry{{Key: ckey(10, "10.1.0.0/16"), Value: except}},
			IPCacheUpserts:  []dpmaps.IPCacheEntry{ipc("10.244.1.5/32", 256)},
			PolicyUpserts:   []dpmaps.PolicyEntry{{Key: pkey(10, 256, 80), Value: allow}},
			CIDRAllows:      []dpmaps.CIDRPolicyEntry{{Key: ckey(10, "10.0.0.0/8"), Value: allow}},
			EndpointsPermit: []policy.EndpointWrite{{Ifindex: 10, Endpoint: ep("10.244.1.5", 256, enforce)}},
		}},
		{"one change adds, changes and removes entries", before, after, policy.Changes{
			EndpointsDenyAll:  []policy.EndpointWrite{{Ifindex: 10, Endpoint: ep("10.244.1.5", 256, enforce|policy.EndpointPolicyError)}},
			CIDRExcepts:       []dpmaps.CIDRPolicyEntry{{Key: ckey(10, "192.168.0.0/16"), Value: except}},
			PolicyDeletes:     []dpmaps.PolicyKey{pkey(10, 258, 80)},
			CIDRAllowDeletes:  []dpmaps.CIDRPolicyKey{ckey(10, "172.16.0.0/12")},
			IPCacheDeletes:    []netip.Prefix{netip.MustParsePrefix("10.244.2.9/32")},
			IPCacheUpserts:    []dpmaps.IPCacheEntry{ipc("10.244.1.6/32", 261), ipc("10.244.3.3/32", 262)},
			EndpointsIdentity: []policy.EndpointWrite{{Ifindex: 11, Endpoint: ep("10.244.1.6", 261, 0)}},
			PolicyUpserts:     []dpmaps.PolicyEntry{{Key: pkey(10, 256, 80), Value: allow2}, {Key: pkey(10, 262, 443), Value: allow}},
			CIDRAllows:        []dpmaps.CIDRPolicyEntry{{Key: ckey(10, "10.0.0.0/8"), Value: allow}},
			CIDRExceptDeletes: []dpmaps.CIDRPolicyKey{ckey(10, "192.168.1.0/24")},
			EndpointsPermit: []policy.EndpointWrite{
				{Ifindex: 12, Endpoint: ep("10.244.1.7", 259, enforce)},
				{Ifindex: 14, Endpoint: ep("10.244.1.9", 263, 0)},
			},
		}},
		{"policy error fixed: the endpoint is written last", after, withEndpoints(after, map[uint32]dpmaps.Endpoint{
			10: ep("10.244.1.5", 256, enforce), 11: ep("10.244.1.6", 261, 0), 12: ep("10.244.1.7", 259, enforce), 14: ep("10.244.1.9", 263, 0),
		}), policy.Changes{
			EndpointsPermit: []policy.EndpointWrite{{Ifindex: 10, Endpoint: ep("10.244.1.5", 256, enforce)}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := policy.Diff(tc.programmed, tc.next)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.want.Empty(), got.Empty())

			w := newRecordingWriter(tc.programmed)
			require.NoError(t, got.Apply(w))
			// Endpoints that left the desired state are the endpoint handling's to delete.
			for idx := range w.state.Endpoints {
				if _, ok := tc.next.Endpoints[idx]; !ok {
					delete(w.state.Endpoints, idx)
				}
			}
			assert.Equal(t, tc.next, w.state, "applying the diff reaches the next state")
			assert.True(t, policy.Diff(w.state, tc.next).Empty(), "a second diff is empty")
		})
	}
}

func TestApplyOrder(t *testing.T) {
	w := newRecordingWriter(before)
	require.NoError(t, policy.Diff(before, after).Apply(w))
	assert.Equal(t, []string{
		// restrict
		"endpoint 10 flags 5",
		"cidr except upsert 1",
		"policy delete 1",
		"cidr allow delete 1",
		// re-identify
		"ipcache delete 1",
		"ipcache upsert 2",
		"endpoint 11 flags 0",
		// permit
		"policy upsert 2",
		"cidr allow upsert 1",
		"cidr except delete 1",
		"endpoint 12 flags 1",
		"endpoint 14 flags 0",
	}, w.log)
}

func TestApplyStopsAtFirstError(t *testing.T) {
	w := newRecordingWriter(before)
	w.failOn = "policy delete"
	err := policy.Diff(before, after).Apply(w)
	require.ErrorContains(t, err, "delete policy entries (1): map full")
	assert.Equal(t, []string{"endpoint 10 flags 5", "cidr except upsert 1"}, w.log, "nothing permissive written after a failed restriction")
}

func TestDesired(t *testing.T) {
	res := &policy.Result{
		IPCache: []dpmaps.IPCacheEntry{ipc("10.244.1.5/32", 256)},
		Endpoints: map[uint32]*policy.Endpoint{
			10: {EpID: 10, Identity: 256, Flags: enforce, Policy: []dpmaps.PolicyEntry{{Key: pkey(10, 0, 80), Value: allow}},
				CIDR: []dpmaps.CIDRPolicyEntry{{Key: ckey(10, "10.0.0.0/8"), Value: allow}}},
			20: {EpID: 20, Identity: 300, Policy: []dpmaps.PolicyEntry{{Key: pkey(20, 0, 80), Value: allow}}},
		},
	}
	base := func(ip string) dpmaps.Endpoint { return dpmaps.Endpoint{IP: netip.MustParseAddr(ip), MAC: mac} }
	got := policy.Desired(res, map[uint32]dpmaps.Endpoint{10: base("10.244.1.5"), 11: base("10.244.1.6")})
	assert.Equal(t, map[uint32]dpmaps.Endpoint{
		10: {IP: netip.MustParseAddr("10.244.1.5"), EpID: 10, Identity: 256, Flags: enforce, MAC: mac},
		11: {IP: netip.MustParseAddr("10.244.1.6"), EpID: 11, Flags: policy.EndpointPolicyError, MAC: mac},
	}, got.Endpoints, "an endpoint the compiler has not seen is deny-all")
	assert.Equal(t, map[dpmaps.PolicyKey]dpmaps.PolicyValue{pkey(10, 0, 80): allow}, got.Policy, "only entries of local endpoints")
	assert.Equal(t, map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue{ckey(10, "10.0.0.0/8"): allow}, got.CIDR)
	assert.Equal(t, map[netip.Prefix]dpmaps.IPCacheEntry{netip.MustParsePrefix("10.244.1.5/32"): ipc("10.244.1.5/32", 256)}, got.IPCache)

	none := policy.Desired(nil, map[uint32]dpmaps.Endpoint{11: base("10.244.1.6")})
	assert.Equal(t, policy.EndpointPolicyError, none.Endpoints[11].Flags, "no compilation yet: deny-all")
	assert.Empty(t, none.Policy)
}

type fakeReader struct {
	policy.State
	err error
}

func (r fakeReader) ListIPCache() ([]dpmaps.IPCacheEntry, error) {
	return slicesOf(r.IPCache, func(_ netip.Prefix, e dpmaps.IPCacheEntry) dpmaps.IPCacheEntry { return e }), nil
}
func (r fakeReader) ListPolicies() ([]dpmaps.PolicyEntry, error) {
	return slicesOf(r.Policy, func(k dpmaps.PolicyKey, v dpmaps.PolicyValue) dpmaps.PolicyEntry {
		return dpmaps.PolicyEntry{Key: k, Value: v}
	}), nil
}
func (r fakeReader) ListCIDRPolicies() ([]dpmaps.CIDRPolicyEntry, error) {
	return slicesOf(r.CIDR, func(k dpmaps.CIDRPolicyKey, v dpmaps.PolicyValue) dpmaps.CIDRPolicyEntry {
		return dpmaps.CIDRPolicyEntry{Key: k, Value: v}
	}), r.err
}
func (r fakeReader) ListEndpoints() (map[uint32]dpmaps.Endpoint, error) { return r.Endpoints, nil }

func slicesOf[K comparable, V, E any](m map[K]V, f func(K, V) E) []E {
	var out []E
	for k, v := range m {
		out = append(out, f(k, v))
	}
	return out
}

func TestReadState(t *testing.T) {
	got, err := policy.ReadState(fakeReader{State: before})
	require.NoError(t, err)
	assert.Equal(t, before, got)
	assert.True(t, policy.Diff(got, before).Empty())

	_, err = policy.ReadState(fakeReader{State: before, err: errors.New("EPERM")})
	require.ErrorContains(t, err, "read cidr policy map: EPERM")
}
