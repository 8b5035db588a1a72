package policy_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dpmaps "github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
)

// Revise gives a new revision (one past the highest programmed) exactly to the endpoints whose
// policy changes, and Diff writes a revision-only change last, after every entry.
func TestReviseBumpsChangedEndpointsOnly(t *testing.T) {
	ep := func(id uint32, ip string, flags dpmaps.EndpointFlags, rev uint32) dpmaps.Endpoint {
		return dpmaps.Endpoint{IP: netip.MustParseAddr(ip), EpID: id, Identity: 256 + id, Flags: flags, PolicyRevision: rev}
	}
	key := func(epID, peer uint32) dpmaps.PolicyKey {
		return dpmaps.PolicyKey{EpID: epID, PeerID: peer, Dir: dpmaps.Ingress, Proto: dpmaps.ProtoTCP, Port: 80, PortPrefixLen: 16}
	}
	allow := dpmaps.PolicyValue{Action: dpmaps.ActionAllow, PolicyID: 1}
	programmed := policy.State{
		IPCache: map[netip.Prefix]dpmaps.IPCacheEntry{},
		Policy:  map[dpmaps.PolicyKey]dpmaps.PolicyValue{key(1, 300): allow, key(2, 300): allow},
		CIDR:    map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue{},
		Endpoints: map[uint32]dpmaps.Endpoint{
			1: ep(1, "10.0.0.1", dpmaps.EndpointIngressEnforced, 3),
			2: ep(2, "10.0.0.2", dpmaps.EndpointIngressEnforced, 7),
		},
	}
	// endpoint 1 loses its allow entry; endpoint 2 is unchanged; revisions are not set by Desired
	next := policy.State{
		IPCache: map[netip.Prefix]dpmaps.IPCacheEntry{},
		Policy:  map[dpmaps.PolicyKey]dpmaps.PolicyValue{key(2, 300): allow},
		CIDR:    map[dpmaps.CIDRPolicyKey]dpmaps.PolicyValue{},
		Endpoints: map[uint32]dpmaps.Endpoint{
			1: ep(1, "10.0.0.1", dpmaps.EndpointIngressEnforced, 0),
			2: ep(2, "10.0.0.2", dpmaps.EndpointIngressEnforced, 0),
		},
	}
	revised := policy.Revise(programmed, next)
	assert.Equal(t, uint32(8), revised.Endpoints[1].PolicyRevision, "changed: one past the highest programmed")
	assert.Equal(t, uint32(7), revised.Endpoints[2].PolicyRevision, "unchanged: keeps its revision")
	assert.Zero(t, next.Endpoints[1].PolicyRevision, "next itself is not modified")

	c := policy.Diff(programmed, revised)
	require.Len(t, c.EndpointsPermit, 1, "the revision is written in the last step")
	assert.Equal(t, uint32(1), c.EndpointsPermit[0].Ifindex)
	assert.Empty(t, c.EndpointsIdentity)
	assert.Empty(t, c.EndpointsDenyAll)
	assert.Empty(t, policy.Diff(revised, policy.Revise(revised, revised)).EndpointsPermit, "no change, no new revision")

	// an identity change is written early with the old revision, then again with the new one
	next2 := policy.Revise(revised, policy.State{IPCache: revised.IPCache, Policy: revised.Policy, CIDR: revised.CIDR,
		Endpoints: map[uint32]dpmaps.Endpoint{1: revised.Endpoints[1], 2: ep(2, "10.0.0.2", dpmaps.EndpointIngressEnforced, 0)}})
	e2 := next2.Endpoints[2]
	e2.Identity = 999
	next2.Endpoints[2] = e2
	next2 = policy.Revise(revised, next2)
	c = policy.Diff(revised, next2)
	require.Len(t, c.EndpointsIdentity, 1)
	assert.Equal(t, uint32(7), c.EndpointsIdentity[0].Endpoint.PolicyRevision)
	require.Len(t, c.EndpointsPermit, 1)
	assert.Equal(t, uint32(9), c.EndpointsPermit[0].Endpoint.PolicyRevision)
}
