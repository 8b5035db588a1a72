package hubbleapi

import (
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/starlab-dev/starlab/internal/flow"
)

// roundTripFlows are Starlab flows with every field the agents fill, in each form they take.
func roundTripFlows() map[string]*flow.Flow {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	front := flow.Endpoint{Identity: 256, Namespace: "stars", PodName: "frontend-6d4b9-x2x", IP: "10.244.1.5",
		Labels:   []string{"k8s:io.kubernetes.pod.namespace=stars", "k8s:role=frontend"},
		Workload: &flow.Workload{Name: "frontend", Kind: "Deployment"}}
	back := flow.Endpoint{Identity: 257, Namespace: "stars", PodName: "backend-0", IP: "10.244.2.7",
		Labels: []string{"k8s:role=backend"}, Workload: &flow.Workload{Name: "backend", Kind: "StatefulSet"}}
	world := flow.Endpoint{Identity: flow.IdentityWorld, IP: "203.0.113.9", Labels: []string{"reserved:world"}}
	return map[string]*flow.Flow{
		"new through a service, allowed by a NetworkPolicy": {Time: at, UUID: "8a3f2c10-0001-4e1b-9c7d-000000000001",
			Verdict: flow.VerdictForwarded, EventType: flow.EventNew, NodeName: "starlab-worker",
			IP:     flow.IP{Source: front.IP, Destination: back.IP, OrigDestination: "10.96.0.10"},
			L4:     flow.L4{Protocol: flow.ProtoTCP, SourcePort: 40000, DestinationPort: 6379, OrigDestinationPort: 80, Flags: &flow.TCPFlags{SYN: true}},
			Source: front, Destination: back, DestinationService: &flow.Service{Name: "backend", Namespace: "stars"},
			TrafficDirection: flow.DirectionIngress, TraceObservationPoint: flow.ObsToEndpoint,
			AllowedBy: []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "backend-policy", Tier: flow.TierNetworkPolicy, Rule: "0", Action: flow.ActionAllow}}},
		"egress: an Admin pass, then a Baseline deny": {Time: at.Add(time.Millisecond), UUID: "8a3f2c10-0002-4e1b-9c7d-000000000002",
			Verdict: flow.VerdictDropped, DropReasonDesc: flow.DropPolicyDenied, EventType: flow.EventDrop, NodeName: "starlab-worker2",
			IP: flow.IP{Source: back.IP, Destination: front.IP}, L4: flow.L4{Protocol: flow.ProtoUDP, SourcePort: 5353, DestinationPort: 53},
			Source: back, Destination: front, SourceService: &flow.Service{Name: "backend", Namespace: "stars"},
			TrafficDirection: flow.DirectionEgress, TraceObservationPoint: flow.ObsFromEndpoint,
			DeniedBy: []flow.Policy{
				{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "guard", Tier: flow.TierAdmin, Rule: "from-shop", Action: flow.ActionPass},
				{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "baseline", Tier: flow.TierBaseline, Rule: "1", Action: flow.ActionDeny}}},
		"default deny from the world": {Time: at.Add(2 * time.Millisecond), UUID: "8a3f2c10-0003-4e1b-9c7d-000000000003",
			Verdict: flow.VerdictDropped, DropReasonDesc: flow.DropPolicyDenied, EventType: flow.EventDrop, NodeName: "starlab-worker",
			IP: flow.IP{Source: world.IP, Destination: back.IP}, L4: flow.L4{Protocol: flow.ProtoTCP, SourcePort: 1, DestinationPort: 6379, Flags: &flow.TCPFlags{SYN: true, ECE: true, CWR: true}},
			Source: world, Destination: back, TrafficDirection: flow.DirectionIngress, TraceObservationPoint: flow.ObsFromNetwork,
			DeniedBy: []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}, {Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "backend-policy", Tier: flow.TierNetworkPolicy}}},
		"a drop reason of Starlab's own": {Time: at.Add(3 * time.Millisecond), UUID: "8a3f2c10-0004-4e1b-9c7d-000000000004",
			Verdict: flow.VerdictDropped, DropReasonDesc: flow.DropPolicyUnrepresentable, EventType: flow.EventDrop, NodeName: "w",
			IP: flow.IP{Source: front.IP, Destination: back.IP}, L4: flow.L4{Protocol: flow.ProtoTCP, SourcePort: 40001, DestinationPort: 81, Flags: &flow.TCPFlags{}},
			Source: front, Destination: back, TrafficDirection: flow.DirectionIngress, TraceObservationPoint: flow.ObsToEndpoint},
		"a service without backends": {Time: at.Add(4 * time.Millisecond), UUID: "8a3f2c10-0005-4e1b-9c7d-000000000005",
			Verdict: flow.VerdictDropped, DropReasonDesc: flow.DropServiceBackendNotFound, EventType: flow.EventDrop, NodeName: "w",
			IP: flow.IP{Source: front.IP, Destination: "10.96.0.99"}, L4: flow.L4{Protocol: flow.ProtoTCP, SourcePort: 40002, DestinationPort: 80, Flags: &flow.TCPFlags{SYN: true}},
			Source: front, Destination: flow.Endpoint{Identity: flow.IdentityWorld, IP: "10.96.0.99"},
			DestinationService: &flow.Service{Name: "empty", Namespace: "stars"}, TrafficDirection: flow.DirectionEgress, TraceObservationPoint: flow.ObsFromEndpoint},
		"a reply's close with counters": {Time: at.Add(5 * time.Millisecond), UUID: "8a3f2c10-0006-4e1b-9c7d-000000000006",
			Verdict: flow.VerdictForwarded, EventType: flow.EventClose, NodeName: "w", IsReply: true, Packets: 12, Bytes: 4096,
			IP: flow.IP{Source: back.IP, Destination: front.IP}, L4: flow.L4{Protocol: flow.ProtoTCP, SourcePort: 6379, DestinationPort: 40000, Flags: &flow.TCPFlags{FIN: true, ACK: true, PSH: true, RST: true, URG: true}},
			Source: back, Destination: front, TrafficDirection: flow.DirectionIngress, TraceObservationPoint: flow.ObsToEndpoint},
		"ICMP, SCTP and protocol numbers": {Time: at.Add(6 * time.Millisecond), UUID: "8a3f2c10-0007-4e1b-9c7d-000000000007",
			Verdict: flow.VerdictForwarded, EventType: flow.EventNew, NodeName: "w",
			IP: flow.IP{Source: front.IP, Destination: back.IP}, L4: flow.L4{Protocol: flow.ProtoICMPv4, SourcePort: 8, DestinationPort: 1234},
			Source: front, Destination: back, TrafficDirection: flow.DirectionEgress, TraceObservationPoint: flow.ObsFromEndpoint},
		"SCTP": {Time: at.Add(7 * time.Millisecond), UUID: "s", Verdict: flow.VerdictForwarded, EventType: flow.EventNew,
			IP: flow.IP{Source: front.IP, Destination: back.IP}, L4: flow.L4{Protocol: flow.ProtoSCTP, SourcePort: 9, DestinationPort: 3868},
			Source: front, Destination: back, TrafficDirection: flow.DirectionUnknown},
		"GRE, an endpoint address apart from the flow's, no enums": {Time: at.Add(8 * time.Millisecond), UUID: "g",
			IP: flow.IP{Source: "10.0.0.1", Destination: "10.0.0.2"}, L4: flow.L4{Protocol: "47", Flags: &flow.TCPFlags{}},
			Source: flow.Endpoint{Identity: flow.IdentityHost}, Destination: flow.Endpoint{IP: "10.0.0.3"}, DropReasonDesc: "ODD"},
	}
}

func TestFromProtoInvertsToProto(t *testing.T) {
	for name, f := range roundTripFlows() {
		t.Run(name, func(t *testing.T) {
			pb := ToProto(f, "v0.test")
			back := FromProto(pb)
			assert.Equal(t, f, back, "FromProto(ToProto(f))")

			// Through the wire too: what a gRPC client decodes.
			b, err := proto.Marshal(pb)
			require.NoError(t, err)
			var decoded flowpb.Flow
			require.NoError(t, proto.Unmarshal(b, &decoded))
			assert.Equal(t, f, FromProto(&decoded), "FromProto(unmarshal(marshal(ToProto(f))))")

			// ToProto(FromProto(x)) is x for every Flow a Starlab server sends.
			again := ToProto(back, "v0.test")
			assert.True(t, proto.Equal(pb, again), "ToProto(FromProto(x)):\n%v\n%v", pb, again)
		})
	}
}

// Only what Hubble's fields cannot hold goes into the extensions; an ordinary flow has none.
func TestExtensionsOnlyWhenNeeded(t *testing.T) {
	for name, want := range map[string][]string{
		"new through a service, allowed by a NetworkPolicy":        {extOrigDestination, extOrigDestinationPort},
		"egress: an Admin pass, then a Baseline deny":              nil,
		"a drop reason of Starlab's own":                           {extDropReasonDesc},
		"a reply's close with counters":                            {extPackets, extBytes},
		"ICMP, SCTP and protocol numbers":                          {extSourcePort, extDestinationPort},
		"GRE, an endpoint address apart from the flow's, no enums": {extDropReasonDesc, extEventType, extTrafficDirection, extProtocol, extTCPFlags, extSourceIP, extDestinationIP},
	} {
		t.Run(name, func(t *testing.T) {
			pb := ToProto(roundTripFlows()[name], "v")
			if want == nil {
				assert.Nil(t, pb.GetExtensions())
				return
			}
			require.NotNil(t, pb.GetExtensions())
			assert.Equal(t, structTypeURL, pb.GetExtensions().GetTypeUrl())
			var keys []string
			for k := range extFields(t, pb) {
				keys = append(keys, k)
			}
			assert.ElementsMatch(t, want, keys)
		})
	}
}

func extFields(t *testing.T, pb *flowpb.Flow) map[string]any {
	t.Helper()
	m, err := pb.GetExtensions().UnmarshalNew()
	require.NoError(t, err)
	s, ok := m.(interface{ AsMap() map[string]any })
	require.True(t, ok)
	return s.AsMap()
}

// A flow from Cilium's own Hubble (no Starlab extensions) reads as far as Starlab's model goes.
func TestFromProtoOfACiliumFlow(t *testing.T) {
	at := time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC)
	pb := &flowpb.Flow{
		Time: timestamppb.New(at), Uuid: "c1", Verdict: flowpb.Verdict_DROPPED, DropReasonDesc: flowpb.DropReason_POLICY_DENIED,
		EventType: &flowpb.CiliumEventType{Type: messageTypePolicyVerdict}, NodeName: "kind-worker",
		IP: &flowpb.IP{Source: "10.0.1.2", Destination: "10.0.2.3", IpVersion: flowpb.IPVersion_IPv4},
		L4: &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{SourcePort: 1000, DestinationPort: 80, Flags: &flowpb.TCPFlags{SYN: true}}}},
		Source: &flowpb.Endpoint{ID: 9, Identity: 1234, Namespace: "a", PodName: "p", Labels: []string{"k8s:app=x"},
			Workloads: []*flowpb.Workload{{Name: "p", Kind: "Deployment"}, {Name: "second", Kind: "ReplicaSet"}}},
		Destination:      &flowpb.Endpoint{Identity: 2, Labels: []string{"reserved:world"}},
		TrafficDirection: flowpb.TrafficDirection_EGRESS, Reply: true, TraceObservationPoint: flowpb.TraceObservationPoint_TO_PROXY,
		EgressDeniedBy: []*flowpb.Policy{{Name: "deny", Namespace: "a", Kind: "CiliumNetworkPolicy", Labels: []string{"k8s:io.cilium.k8s.policy.name=deny"}}},
		L7:             &flowpb.Layer7{},
	}
	assert.Equal(t, &flow.Flow{Time: at, UUID: "c1", Verdict: flow.VerdictDropped, DropReasonDesc: flow.DropPolicyDenied,
		EventType: flow.EventDrop, NodeName: "kind-worker", IP: flow.IP{Source: "10.0.1.2", Destination: "10.0.2.3"},
		L4:               flow.L4{Protocol: flow.ProtoTCP, SourcePort: 1000, DestinationPort: 80, Flags: &flow.TCPFlags{SYN: true}},
		Source:           flow.Endpoint{Identity: 1234, Namespace: "a", PodName: "p", IP: "10.0.1.2", Labels: []string{"k8s:app=x"}, Workload: &flow.Workload{Name: "p", Kind: "Deployment"}},
		Destination:      flow.Endpoint{Identity: 2, IP: "10.0.2.3", Labels: []string{"reserved:world"}},
		TrafficDirection: flow.DirectionEgress, IsReply: true, TraceObservationPoint: "TO_PROXY",
		DeniedBy: []flow.Policy{{Kind: "CiliumNetworkPolicy", Namespace: "a", Name: "deny"}}}, FromProto(pb))

	pb.IsReply = wrapperspb.Bool(false)
	assert.False(t, FromProto(pb).IsReply, "is_reply, when set, wins over the deprecated reply")
}
