package observer

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

// tierFlow is a NEW (or DROP) flow from client/client to stars/backend with the given attribution.
func tierFlow(v flow.Verdict, ps ...flow.Policy) *flow.Flow {
	f := podFlow("node-1", "t", v, flow.DirectionIngress)
	f.AllowedBy, f.DeniedBy = nil, nil
	if v == flow.VerdictDropped {
		f.DeniedBy = ps
	} else {
		f.AllowedBy = ps
	}
	return f
}

var (
	admitDeny = flow.Policy{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "deny-redis", Tier: flow.TierAdmin, Rule: "0", Action: flow.ActionDeny}
	adminPass = flow.Policy{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "pass-monitoring", Tier: flow.TierAdmin, Rule: "pass", Action: flow.ActionPass}
	npAllow   = flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "allow-client", Tier: flow.TierNetworkPolicy, Rule: "0", Action: flow.ActionAllow}
	baseDeny  = flow.Policy{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "baseline-deny", Tier: flow.TierBaseline, Rule: "1", Action: flow.ActionDeny}
	defDeny   = flow.Policy{Kind: flow.PolicyKindDefaultDeny, Tier: flow.TierNetworkPolicy}
	npSelects = flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "default-deny", Tier: flow.TierNetworkPolicy}
)

func TestDecisionOfNamesTheDecidingTier(t *testing.T) {
	reply := tierFlow(flow.VerdictForwarded, npAllow)
	reply.IsReply = true
	closed := tierFlow(flow.VerdictForwarded, npAllow)
	closed.EventType = flow.EventClose
	other := tierFlow(flow.VerdictDropped)
	other.DropReasonDesc = "CT_NO_MAP_FOUND"
	untiered := tierFlow(flow.VerdictForwarded, flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "old"})
	for _, tc := range []struct {
		name    string
		f       *flow.Flow
		ok      bool
		tier    string
		decider string
		passed  bool
	}{
		{"admin deny beats everything", tierFlow(flow.VerdictDropped, admitDeny), true, flow.TierAdmin, admitDeny.String(), false},
		{"admin pass then a NetworkPolicy allows", tierFlow(flow.VerdictForwarded, adminPass, npAllow), true, flow.TierNetworkPolicy, npAllow.String(), true},
		{"admin pass then the baseline denies", tierFlow(flow.VerdictDropped, adminPass, baseDeny), true, flow.TierBaseline, baseDeny.String(), true},
		{"admin pass then default allow", tierFlow(flow.VerdictForwarded, adminPass), true, TierPass, "", true},
		{"NetworkPolicy default deny (the selecting policy does not decide)", tierFlow(flow.VerdictDropped, defDeny, npSelects), true, flow.TierNetworkPolicy, defDeny.String(), false},
		{"no policy: default allow", tierFlow(flow.VerdictForwarded), true, TierDefault, "", false},
		{"a flow from before tiers is a NetworkPolicy decision", untiered, true, flow.TierNetworkPolicy, "NetworkPolicy/stars/old", false},
		{"a reply decides nothing", reply, false, "", "", false},
		{"a close decides nothing", closed, false, "", "", false},
		{"a drop for another reason decides nothing", other, false, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := DecisionOf(tc.f)
			require.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.tier, d.Tier)
			assert.Equal(t, tc.passed, d.Passed)
			if tc.decider == "" {
				assert.Nil(t, d.Decider)
			} else {
				require.NotNil(t, d.Decider)
				assert.Equal(t, tc.decider, d.Decider.String())
			}
		})
	}
}

func TestGraphEdgeCarriesDecidingTiersAndPolicies(t *testing.T) {
	g := NewGraph(GraphOptions{})
	g.Add(tierFlow(flow.VerdictDropped, admitDeny))
	g.Add(tierFlow(flow.VerdictDropped, admitDeny))
	g.Add(tierFlow(flow.VerdictForwarded, adminPass, npAllow))
	g.Add(tierFlow(flow.VerdictDropped, defDeny, npSelects))
	reply := tierFlow(flow.VerdictForwarded, npAllow)
	reply.IsReply = true
	g.Add(reply)

	v := g.View(GraphQuery{}, time.Now())
	require.Len(t, v.Edges, 1)
	e := v.Edges[0]
	assert.Equal(t, map[string]uint64{flow.TierAdmin: 2, flow.TierNetworkPolicy: 2}, e.Tiers)
	assert.Equal(t, flow.TierAdmin, e.Tier, "a tie goes to the tier evaluated first")
	assert.Equal(t, uint64(1), e.Passed)
	deciding := map[string]uint64{}
	for _, p := range e.Policies {
		deciding[p.Decision+" "+p.String()] = p.Deciding
	}
	assert.Equal(t, map[string]uint64{
		"allowed ClusterNetworkPolicy/pass-monitoring[rule pass Pass]": 0, // passed, did not decide
		"allowed NetworkPolicy/stars/allow-client":                     1,
		"denied ClusterNetworkPolicy/deny-redis[rule 0 Deny]":          2,
		"denied DefaultDeny":                      1,
		"denied NetworkPolicy/stars/default-deny": 0, // selects the endpoint, the default deny decided
	}, deciding)

	g.Add(tierFlow(flow.VerdictDropped, defDeny, npSelects))
	assert.Equal(t, flow.TierNetworkPolicy, g.View(GraphQuery{}, time.Now()).Edges[0].Tier, "the tier that decided most")

	world := tierFlow(flow.VerdictForwarded)
	world.Destination, world.DestinationService = flow.Endpoint{Identity: flow.IdentityWorld, IP: "1.1.1.1"}, nil
	g.Add(world)
	v = g.View(GraphQuery{}, time.Now())
	require.Len(t, v.Edges, 2)
	assert.Equal(t, "client/client->reserved:world", v.Edges[0].ID)
	assert.Equal(t, TierDefault, v.Edges[0].Tier)
	assert.Equal(t, map[string]uint64{TierDefault: 1}, v.Edges[0].Tiers)
}

func TestGraphQueryOneEdge(t *testing.T) {
	g := NewGraph(GraphOptions{})
	g.Add(tierFlow(flow.VerdictForwarded, npAllow))
	world := tierFlow(flow.VerdictForwarded)
	world.Destination, world.DestinationService = flow.Endpoint{Identity: flow.IdentityWorld, IP: "1.1.1.1"}, nil
	g.Add(world)
	q, err := ParseGraphQuery(url.Values{"edge": {"client/client->stars/backend"}, "recent": {"true"}}, time.Now())
	require.NoError(t, err)
	v := g.View(q, time.Now())
	require.Len(t, v.Edges, 1)
	assert.Equal(t, "client/client->stars/backend", v.Edges[0].ID)
	assert.Len(t, v.Edges[0].Recent, 1)
	assert.Len(t, v.Nodes, 2, "only the edge's nodes")
	_, err = ParseGraphQuery(url.Values{"edges": {"x"}}, time.Now())
	assert.ErrorContains(t, err, "use namespace, since, recent, edge")
}

func TestEdgeIDOfAReplyIsItsConnectionsEdge(t *testing.T) {
	f := tierFlow(flow.VerdictForwarded, npAllow)
	r := *f
	r.IsReply = true
	r.Source, r.Destination = f.Destination, f.Source
	r.SourceService, r.DestinationService = f.DestinationService, nil
	assert.Equal(t, "client/client->stars/backend", EdgeID(f))
	assert.Equal(t, EdgeID(f), EdgeID(&r))
}

// TestConnectionsFoldRepliesAndClose serves /api/v1/connections: one connection seen at both hooks,
// with its reply and its close, is one row; another edge's flows are left out.
func TestConnectionsFoldRepliesAndClose(t *testing.T) {
	obs, srv := startObserver(t)
	eg := podFlow("node-1", "e", flow.VerdictForwarded, flow.DirectionEgress)
	in := podFlow("node-2", "i", flow.VerdictForwarded, flow.DirectionIngress)
	rep := podFlow("node-2", "r", flow.VerdictForwarded, flow.DirectionEgress)
	rep.IsReply = true
	rep.Source, rep.Destination = in.Destination, in.Source
	rep.IP = flow.IP{Source: in.IP.Destination, Destination: in.IP.Source}
	rep.L4.SourcePort, rep.L4.DestinationPort = in.L4.DestinationPort, in.L4.SourcePort
	rep.DestinationService, rep.AllowedBy = nil, nil
	cl := podFlow("node-2", "c", flow.VerdictForwarded, flow.DirectionIngress)
	cl.EventType, cl.Packets, cl.Bytes, cl.AllowedBy = flow.EventClose, 12, 3400, nil
	second := podFlow("node-2", "d", flow.VerdictDropped, flow.DirectionIngress)
	second.L4.SourcePort = 40001
	world := podFlow("node-1", "w", flow.VerdictForwarded, flow.DirectionEgress)
	world.Destination, world.DestinationService, world.IP.Destination = flow.Endpoint{Identity: flow.IdentityWorld, IP: "1.1.1.1"}, nil, "1.1.1.1"
	for i, f := range []*flow.Flow{eg, in, rep, cl, second, world} {
		f.Time = time.Now().Add(time.Duration(i) * time.Millisecond)
		obs.Ingest(f)
	}

	var v ConnectionsView
	getJSON(t, srv.URL+"/api/v1/connections?edge="+url.QueryEscape("client/client->stars/backend"), &v)
	assert.Equal(t, 6, v.Scanned)
	assert.Equal(t, 5, v.Events)
	require.Len(t, v.Connections, 2, "two connections, not five events")
	newest, first := v.Connections[0], v.Connections[1]
	assert.Equal(t, uint16(40001), newest.ClientPort)
	assert.Equal(t, flow.VerdictDropped, newest.Verdict)
	assert.Equal(t, 4, first.Events)
	assert.Equal(t, 1, first.Replies)
	assert.True(t, first.Closed)
	assert.Equal(t, uint64(12), first.Packets)
	assert.Equal(t, "client-abc", first.Client.PodName)
	assert.Equal(t, "allow-client", first.Policies[0].Name)

	getJSON(t, srv.URL+"/api/v1/connections?last=1", &v)
	assert.Len(t, v.Connections, 1)
	assert.Equal(t, 2, v.More)

	resp, err := srv.Client().Get(srv.URL + "/api/v1/connections?last=0")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
}
