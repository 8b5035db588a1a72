package conformance

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/starlab-dev/starlab/internal/flow"
)

func fl(src string, sport uint16, proto string, dir flow.TrafficDirection, v flow.Verdict, reason string, reply bool, by ...flow.Policy) *flow.Flow {
	f := &flow.Flow{IP: flow.IP{Source: src, Destination: "10.244.2.11"}, L4: flow.L4{Protocol: proto, SourcePort: sport, DestinationPort: 80},
		TrafficDirection: dir, Verdict: v, DropReasonDesc: reason, IsReply: reply}
	if v == flow.VerdictDropped {
		f.DeniedBy = by
	} else {
		f.AllowedBy = by
	}
	return f
}

func TestJudgeFlows(t *testing.T) {
	np := func(ns, name string) flow.Policy {
		return flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: ns, Name: name}
	}
	dd := flow.Policy{Kind: flow.PolicyKindDefaultDeny}
	probe := Probe{Mode: ModePodIP, From: "x/a", To: "y/b", Port: 80, Protocol: "TCP", LocalAddr: "0.0.0.0:40000", SrcIP: "10.244.1.10"}
	tests := []struct {
		name       string
		reachable  bool
		flows      []*flow.Flow
		want       Observation
		conclusive bool
	}{
		{"ingress drop", false, []*flow.Flow{
			fl("10.244.1.10", 40000, "TCP", flow.DirectionEgress, flow.VerdictForwarded, "", false),
			fl("10.244.1.10", 40000, "TCP", flow.DirectionIngress, flow.VerdictDropped, flow.DropPolicyDenied, false, dd, np("y", "deny")),
		}, Observation{Verdict: ObservedDenied, Direction: "INGRESS", DeniedBy: []string{"y/deny"}}, true},
		{"allowed with attribution", true, []*flow.Flow{
			fl("10.244.1.10", 40000, "TCP", flow.DirectionEgress, flow.VerdictForwarded, "", false, np("x", "eg")),
			fl("10.244.1.10", 40000, "TCP", flow.DirectionIngress, flow.VerdictForwarded, "", false, np("y", "in")),
			fl("10.244.2.11", 80, "TCP", flow.DirectionIngress, flow.VerdictForwarded, "", true),
		}, Observation{Verdict: ObservedAllowed, AllowedBy: []string{"x/eg", "y/in"}}, true},
		{"other connection's flows ignored", true, []*flow.Flow{
			fl("10.244.1.10", 40001, "TCP", flow.DirectionIngress, flow.VerdictForwarded, "", false),
			fl("10.244.1.10", 40000, "UDP", flow.DirectionIngress, flow.VerdictForwarded, "", false),
		}, Observation{Verdict: ObservedUnknown}, false},
		{"forward and drop is unknown", true, []*flow.Flow{
			fl("10.244.1.10", 40000, "TCP", flow.DirectionIngress, flow.VerdictForwarded, "", false),
			fl("10.244.1.10", 40000, "TCP", flow.DirectionIngress, flow.VerdictDropped, flow.DropPolicyDenied, false, dd),
		}, Observation{Verdict: ObservedUnknown, Direction: "INGRESS"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := probe
			p.Reachable = tt.reachable
			obs, conclusive := judgeFlows([]Probe{p}, tt.flows)
			got := obs[cellKey{"x/a", "y/b", 80, "TCP", ModePodIP}]
			got.Flows = nil
			assert.Equal(t, tt.want.Verdict, got.Verdict)
			assert.Equal(t, tt.want.Direction, got.Direction)
			assert.Equal(t, tt.want.DeniedBy, got.DeniedBy)
			if tt.want.Verdict == ObservedAllowed {
				assert.Equal(t, tt.want.AllowedBy, got.AllowedBy)
			}
			assert.Equal(t, tt.conclusive, conclusive)
		})
	}
}

func TestProbeConn(t *testing.T) {
	tests := []struct {
		local string
		want  connID
		ok    bool
	}{
		{"10.244.1.10:5000", connID{"10.244.1.10", 5000, "UDP"}, true},
		{"0.0.0.0:5000", connID{"10.244.9.9", 5000, "UDP"}, true},
		{"", connID{}, false},
	}
	for _, tt := range tests {
		got, ok := probeConn(Probe{LocalAddr: tt.local, SrcIP: "10.244.9.9", Protocol: "UDP"})
		assert.Equal(t, tt.ok, ok, tt.local)
		assert.Equal(t, tt.want, got, tt.local)
	}
}

func TestJudgeFlowsMatchesDestination(t *testing.T) {
	p := Probe{Mode: ModeServiceIP, From: "x/b", To: "z/c", Port: 80, Protocol: "UDP", Reachable: true,
		LocalAddr: "10.244.2.31:33205", SrcIP: "10.244.2.31", Dst: "10.96.0.5:80", Backend: "10.244.1.32:80"}
	other := &flow.Flow{IP: flow.IP{Source: "10.244.2.31", Destination: "10.244.2.30"}, L4: flow.L4{Protocol: "UDP", SourcePort: 33205, DestinationPort: 81},
		TrafficDirection: flow.DirectionIngress, Verdict: flow.VerdictForwarded}
	mine := &flow.Flow{IP: flow.IP{Source: "10.244.2.31", Destination: "10.244.1.32", OrigDestination: "10.96.0.5"}, L4: flow.L4{Protocol: "UDP", SourcePort: 33205, DestinationPort: 80, OrigDestinationPort: 80},
		TrafficDirection: flow.DirectionIngress, Verdict: flow.VerdictForwarded}
	tests := []struct {
		name  string
		flows []*flow.Flow
		want  string
	}{
		{"another socket with the same source port is not this connection", []*flow.Flow{other}, ObservedUnknown},
		{"the translated flow is", []*flow.Flow{other, mine}, ObservedAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs, _ := judgeFlows([]Probe{p}, tt.flows)
			got := obs[cellKey{"x/b", "z/c", 80, "UDP", ModeServiceIP}]
			assert.Equal(t, tt.want, got.Verdict)
			if tt.want == ObservedAllowed {
				assert.Len(t, got.Flows, 1)
			}
		})
	}
}
