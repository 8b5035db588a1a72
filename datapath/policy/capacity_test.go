package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dpmaps "github.com/starlab-dev/starlab/datapath/maps"
)

// capacityState has endpoints 1..3 (ifindex = ep_id) with 1, 2 and 3 sl_policy entries.
func capacityState() State {
	s := State{IPCache: map[netip.Prefix]dpmaps.IPCacheEntry{}, Policy: map[dpmaps.PolicyKey]dpmaps.PolicyValue{},
		CIDR: map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue{}, Endpoints: map[uint32]dpmaps.Endpoint{}}
	for ep := uint32(1); ep <= 3; ep++ {
		s.Endpoints[ep] = dpmaps.Endpoint{EpID: ep, Identity: 256, Flags: EndpointIngressEnforced}
		for i := range ep {
			s.Policy[dpmaps.PolicyKey{EpID: ep, PeerID: 256 + i, Dir: DirIngress, Proto: ProtoTCP, Port: 80, PortPrefixLen: 16}] = dpmaps.PolicyValue{Action: ActionAllow, PolicyID: 1}
		}
	}
	return s
}

func TestFitCapacity(t *testing.T) {
	tests := []struct {
		name   string
		cap    dpmaps.PolicyCapacity
		denied []uint32
	}{
		{name: "unlimited", cap: dpmaps.PolicyCapacity{}},
		{name: "exactly full", cap: dpmaps.PolicyCapacity{Policy: 6}},
		{name: "one short: the largest endpoint is denied", cap: dpmaps.PolicyCapacity{Policy: 5}, denied: []uint32{3}},
		{name: "room for the smallest only", cap: dpmaps.PolicyCapacity{Policy: 2}, denied: []uint32{2, 3}},
		{name: "0 means unlimited; no CIDR entries need no CIDR room", cap: dpmaps.PolicyCapacity{Policy: 0, CIDR: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := capacityState()
			got, over := FitCapacity(State{}, next, tt.cap)
			var denied []uint32
			for _, o := range over {
				denied = append(denied, o.Ifindex)
				assert.Contains(t, o.Reason, "sl_policy is full")
			}
			assert.Equal(t, tt.denied, denied)
			for idx, e := range got.Endpoints {
				isDenied := e.Flags&EndpointPolicyError != 0
				assert.Equal(t, contains(tt.denied, idx), isDenied, "endpoint %d", idx)
			}
			if tt.cap.Policy > 0 {
				assert.LessOrEqual(t, len(got.Policy), tt.cap.Policy)
			}
			assert.Len(t, next.Policy, 6, "next is not modified")
		})
	}
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestIncomplete(t *testing.T) {
	next := capacityState()
	tests := []struct {
		name   string
		actual func(State) State
		want   []uint32
	}{
		{name: "all written", actual: func(s State) State { return s }},
		{name: "an entry missing", actual: func(s State) State {
			s = DenyAll(s, nil)
			delete(s.Policy, dpmaps.PolicyKey{EpID: 2, PeerID: 257, Dir: DirIngress, Proto: ProtoTCP, Port: 80, PortPrefixLen: 16})
			return s
		}, want: []uint32{2}},
		{name: "a flag not written", actual: func(s State) State {
			s = DenyAll(s, nil)
			s.Endpoints[1] = dpmaps.Endpoint{EpID: 1, Identity: 256}
			return s
		}, want: []uint32{1}},
		{name: "ipcache not written: every enforcing endpoint", actual: func(s State) State {
			s.IPCache = map[netip.Prefix]dpmaps.IPCacheEntry{netip.MustParsePrefix("10.0.0.1/32"): {Identity: 256}}
			return s
		}, want: []uint32{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Incomplete(tt.actual(capacityState()), next))
		})
	}
	denied := DenyAll(next, []uint32{2})
	require.Equal(t, EndpointPolicyError|EndpointPolicyWriteFailed|EndpointIngressEnforced, denied.Endpoints[2].Flags)
	assert.Len(t, denied.Policy, 4)
}
