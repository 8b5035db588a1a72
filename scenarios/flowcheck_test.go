package scenarios

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/flow"
)

func conn(expected Cell, deniedBy ...string) Connection {
	return Connection{From: "client", To: "backend", Expected: expected, DstPod: "stars/backend-1",
		Result: demo.ProbeResult{LocalAddr: "10.244.1.5:40000"}, DeniedBy: deniedBy}
}

func fl(verdict flow.Verdict, dir flow.TrafficDirection, reply bool, mut ...func(*flow.Flow)) *flow.Flow {
	f := &flow.Flow{Time: time.Now(), Verdict: verdict, TrafficDirection: dir, IsReply: reply,
		IP:          flow.IP{Source: "10.244.1.5", Destination: "10.244.2.7"},
		L4:          flow.L4{Protocol: "TCP", SourcePort: 40000, DestinationPort: 6379},
		Destination: flow.Endpoint{Namespace: "stars", PodName: "backend-1"}}
	if reply {
		f.IP.Source, f.IP.Destination = f.IP.Destination, f.IP.Source
		f.L4.SourcePort, f.L4.DestinationPort = 6379, 40000
	}
	for _, m := range mut {
		m(f)
	}
	return f
}

func drop(deniedBy ...flow.Policy) *flow.Flow {
	return fl(flow.VerdictDropped, flow.DirectionIngress, false, func(f *flow.Flow) {
		f.DropReasonDesc = flow.DropPolicyDenied
		f.DeniedBy = deniedBy
	})
}

func TestJudge(t *testing.T) {
	np := func(ns, name string) flow.Policy {
		return flow.Policy{Kind: "NetworkPolicy", Namespace: ns, Name: name}
	}
	tests := []struct {
		name     string
		c        Connection
		flows    []*flow.Flow
		observed Cell
		problems []string
	}{
		{name: "allowed and forwarded", c: conn(Yes),
			flows:    []*flow.Flow{fl(flow.VerdictForwarded, flow.DirectionEgress, false), fl(flow.VerdictForwarded, flow.DirectionIngress, false), fl(flow.VerdictForwarded, flow.DirectionIngress, true)},
			observed: Yes},
		{name: "allowed but nothing seen", c: conn(Yes), observed: Unknown, problems: []string{"no FORWARDED ingress flow"}},
		{name: "allowed but forwarded to the wrong pod", c: conn(Yes),
			flows:    []*flow.Flow{fl(flow.VerdictForwarded, flow.DirectionIngress, false, func(f *flow.Flow) { f.Destination.PodName = "frontend-1" })},
			observed: Yes, problems: []string{`forwarded to "stars/frontend-1", want stars/backend-1`}},
		{name: "denied and dropped by the selecting policies", c: conn(No, "stars/default-deny", "stars/allow-ui"),
			flows:    []*flow.Flow{fl(flow.VerdictForwarded, flow.DirectionEgress, false), drop(np("stars", "allow-ui"), np("stars", "default-deny"))},
			observed: No},
		{name: "denied with DefaultDeny entries naming the policies", c: conn(No, "stars/default-deny"),
			flows:    []*flow.Flow{drop(flow.Policy{Kind: "DefaultDeny", Namespace: "stars", Name: "default-deny"})},
			observed: No},
		{name: "denied by an Admin tier Deny, not the selecting policies", c: conn(No, "stars/default-deny"),
			flows:    []*flow.Flow{drop(flow.Policy{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "deny-client", Tier: flow.TierAdmin, Action: "Deny"})},
			observed: No},
		{name: "denied but denied_by wrong", c: conn(No, "stars/default-deny"),
			flows:    []*flow.Flow{drop(np("stars", "backend-policy"))},
			observed: No, problems: []string{"denied_by [NetworkPolicy/stars/backend-policy], want the policies selecting stars/backend-1: [stars/default-deny]"}},
		{name: "denied but forwarded at ingress and answered", c: conn(No, "stars/default-deny"),
			flows:    []*flow.Flow{drop(np("stars", "default-deny")), fl(flow.VerdictForwarded, flow.DirectionIngress, false), fl(flow.VerdictForwarded, flow.DirectionIngress, true)},
			observed: Unknown, problems: []string{"a FORWARDED ingress flow for a denied connection", "a forwarded reply (SYN-ACK) for a denied connection"}},
		{name: "denied but no drop seen", c: conn(No), flows: []*flow.Flow{fl(flow.VerdictForwarded, flow.DirectionEgress, false)},
			observed: Unknown, problems: []string{"no DROPPED POLICY_DENIED ingress flow"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Flows of other connections must not count.
			other := fl(flow.VerdictForwarded, flow.DirectionIngress, false, func(f *flow.Flow) { f.L4.SourcePort = 1 })
			mine := tt.c.flowsOf(append(tt.flows, other))
			require.Len(t, mine, len(tt.flows))
			observed, problems := judge(tt.c, mine)
			assert.Equal(t, tt.observed, observed)
			assert.Equal(t, tt.problems, problems)
		})
	}
}

func TestFailedConnectUsesPodIP(t *testing.T) {
	c := Connection{SrcIP: "10.244.1.5", Result: demo.ProbeResult{LocalAddr: "0.0.0.0:40000"}}
	ip, port, ok := c.srcAddr()
	require.True(t, ok)
	assert.Equal(t, "10.244.1.5", ip)
	assert.EqualValues(t, 40000, port)
	_, _, ok = Connection{Result: demo.ProbeResult{LocalAddr: "0.0.0.0:0"}}.srcAddr()
	assert.False(t, ok)
}

func TestConnectionFilters(t *testing.T) {
	fs := connectionFilters([]Connection{conn(Yes), {Result: demo.ProbeResult{}}})
	require.Len(t, fs, 2)
	assert.Equal(t, []string{"10.244.1.5"}, fs[0].SourceIP)
	assert.Equal(t, []uint16{40000}, fs[0].SourcePort)
	assert.Equal(t, []uint16{40000}, fs[1].DestinationPort)
}

func TestExpectedUIGraphAndDOM(t *testing.T) {
	m, err := MatrixFromTable(table(
		[]string{`from \ to`, "client", "frontend", "backend"},
		[]string{"management-ui", "yes", "yes", "no"},
		[]string{"client", "ignored", "yes", "no"},
		[]string{"frontend", "no", "ignored", "yes"},
		[]string{"backend", "yes", "yes", "ignored"},
	))
	require.NoError(t, err)
	want := UIGraph{Present: map[string]bool{"C": true, "F": true, "B": false}, Edges: []string{"C->F", "F->B"}}
	assert.Equal(t, want, expectedUIGraph(m))

	dom := `<html><body><svg><line class="edge" data-from="F" data-to="B" x1="1"></line>
<line class="edge" data-from="C" data-to="F"></line>
<g class="node" data-id="C" data-present="true"></g><g class="node" data-id="F" data-present="true"></g>
<g class="node missing" data-id="B" data-present="false"></g></svg></body></html>`
	got, err := parseUIDOM(dom)
	require.NoError(t, err)
	assert.True(t, uiEqual(want, got), "%v vs %v", want, got)
	_, err = parseUIDOM("<html></html>")
	require.ErrorContains(t, err, "no star nodes")
}

func TestSummarizeLatencies(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := SummarizeLatencies(d)
	assert.Equal(t, LatencySummary{N: 100, Min: time.Millisecond, P50: 50 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}, s)
	assert.Equal(t, LatencySummary{}, SummarizeLatencies(nil))
	assert.Contains(t, s.String(), "p99=99ms")
}

func TestStarsPolicyFile(t *testing.T) {
	f, err := starsPolicyFile("allow-ui")
	require.NoError(t, err)
	assert.Equal(t, "stars/policies/2-allow-ui.yaml", f)
	_, err = starsPolicyFile("ui")
	require.ErrorContains(t, err, "unknown stars policy")
}

func TestFlowsOfMatchesTheProbeProtocolOnly(t *testing.T) {
	tcp := fl(flow.VerdictForwarded, flow.DirectionIngress, false)
	dns := fl(flow.VerdictForwarded, flow.DirectionEgress, false, func(f *flow.Flow) {
		f.L4.Protocol, f.L4.DestinationPort = "UDP", 53 // a DNS query that reused the port number
	})
	got := conn(Yes).flowsOf([]*flow.Flow{tcp, dns})
	assert.Equal(t, []*flow.Flow{tcp}, got)
	for _, f := range connectionFilters([]Connection{conn(Yes)}) {
		assert.Equal(t, []string{"TCP"}, f.Protocol)
	}
}
