package hubbleapi

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/starlab-dev/starlab/internal/flow"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func sampleFlows() []*flow.Flow {
	pol := flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "backend-policy"}
	return []*flow.Flow{
		{Time: t0, UUID: "a", Verdict: flow.VerdictForwarded, EventType: flow.EventNew, NodeName: "w1",
			IP: flow.IP{Source: "10.244.1.5", Destination: "10.244.2.7", OrigDestination: "10.96.0.10"},
			L4: flow.L4{Protocol: flow.ProtoTCP, SourcePort: 40000, DestinationPort: 6379, Flags: &flow.TCPFlags{SYN: true}},
			Source: flow.Endpoint{Identity: 256, Namespace: "stars", PodName: "frontend-1", Labels: []string{"k8s:role=frontend"},
				Workload: &flow.Workload{Name: "frontend", Kind: "Deployment"}},
			Destination:        flow.Endpoint{Identity: 257, Namespace: "stars", PodName: "backend-1", Labels: []string{"k8s:role=backend"}},
			DestinationService: &flow.Service{Name: "backend", Namespace: "stars"},
			TrafficDirection:   flow.DirectionIngress, TraceObservationPoint: flow.ObsToEndpoint, AllowedBy: []flow.Policy{pol}},
		{Time: t0.Add(time.Second), UUID: "b", Verdict: flow.VerdictDropped, EventType: flow.EventDrop, NodeName: "w2",
			DropReasonDesc:   flow.DropPolicyDenied,
			IP:               flow.IP{Source: "10.244.3.4", Destination: "10.244.2.7"},
			L4:               flow.L4{Protocol: flow.ProtoUDP, SourcePort: 5000, DestinationPort: 53},
			Source:           flow.Endpoint{Identity: 300, Namespace: "client", PodName: "client-1"},
			Destination:      flow.Endpoint{Identity: 257, Namespace: "stars", PodName: "backend-1"},
			TrafficDirection: flow.DirectionEgress, TraceObservationPoint: flow.ObsFromEndpoint,
			DeniedBy: []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}}},
		{Time: t0.Add(2 * time.Second), UUID: "c", Verdict: flow.VerdictDropped, EventType: flow.EventDrop, NodeName: "w2",
			DropReasonDesc: flow.DropPolicyWriteFailed, // Starlab's own reason: no Hubble number
			IP:             flow.IP{Source: "10.244.3.4", Destination: "10.244.1.5"},
			L4:             flow.L4{Protocol: flow.ProtoTCP, SourcePort: 5001, DestinationPort: 80},
			Source:         flow.Endpoint{Namespace: "client", PodName: "client-1"},
			Destination:    flow.Endpoint{Namespace: "stars", PodName: "frontend-1"}, TrafficDirection: flow.DirectionIngress},
	}
}

// serve runs the server over a store of the sample flows on a loopback port and returns a client.
func serve(t *testing.T, flows ...*flow.Flow) observerpb.ObserverClient {
	return observerpb.NewObserverClient(serveConn(t, flows...))
}

func serveConn(t *testing.T, flows ...*flow.Flow) *grpc.ClientConn {
	t.Helper()
	store := flow.NewStore(100)
	if flows == nil {
		flows = sampleFlows()
	}
	for _, f := range flows {
		store.Add(f)
	}
	nodes := func() []Node {
		return []Node{{Name: "w1", Address: "172.18.0.2", Connected: true, Flows: 1}, {Name: "w2", Address: "172.18.0.3", Flows: 2}}
	}
	srv := NewServer(store, nodes, func() float64 { return 2.5 }, "v0.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func getFlows(t *testing.T, c observerpb.ObserverClient, req *observerpb.GetFlowsRequest) ([]*flowpb.Flow, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.GetFlows(ctx, req)
	require.NoError(t, err)
	var out []*flowpb.Flow
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp.GetFlow())
	}
}

func uuids(fs []*flowpb.Flow) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.GetUuid())
	}
	return out
}

func TestGetFlowsAsHubbleFlows(t *testing.T) {
	c := serve(t)
	fs, err := getFlows(t, c, &observerpb.GetFlowsRequest{Number: 10})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, uuids(fs), "oldest first, as hubble prints them")

	a := fs[0]
	assert.Equal(t, flowpb.Verdict_FORWARDED, a.GetVerdict())
	assert.Equal(t, flowpb.FlowType_L3_L4, a.GetType())
	assert.Equal(t, flowpb.TrafficDirection_INGRESS, a.GetTrafficDirection())
	assert.Equal(t, flowpb.TraceObservationPoint_TO_ENDPOINT, a.GetTraceObservationPoint())
	assert.Equal(t, int32(messageTypePolicyVerdict), a.GetEventType().GetType())
	assert.Equal(t, "stars", a.GetSource().GetNamespace())
	assert.Equal(t, "frontend-1", a.GetSource().GetPodName())
	assert.Equal(t, []string{"k8s:role=frontend"}, a.GetSource().GetLabels())
	assert.Equal(t, "frontend", a.GetSource().GetWorkloads()[0].GetName())
	assert.Equal(t, "backend", a.GetDestinationService().GetName())
	assert.Equal(t, uint32(6379), a.GetL4().GetTCP().GetDestinationPort())
	assert.True(t, a.GetL4().GetTCP().GetFlags().GetSYN())
	assert.Equal(t, flowpb.IPVersion_IPv4, a.GetIP().GetIpVersion())
	require.Len(t, a.GetIngressAllowedBy(), 1)
	assert.Equal(t, "backend-policy", a.GetIngressAllowedBy()[0].GetName())
	assert.Equal(t, "Starlab", a.GetEmitter().GetName())

	b := fs[1]
	assert.Equal(t, flowpb.Verdict_DROPPED, b.GetVerdict())
	assert.Equal(t, flowpb.DropReason_POLICY_DENIED, b.GetDropReasonDesc())
	assert.Equal(t, int32(messageTypePolicyVerdict), b.GetEventType().GetType(), "a policy denial is a policy verdict (hubble: DENIED BY ...)")
	assert.Equal(t, int32(messageTypeDrop), fs[2].GetEventType().GetType(), "other drops are drop notifications")
	assert.Equal(t, int32(flowpb.DropReason_DROP_REASON_UNKNOWN), fs[2].GetEventType().GetSubType())
	assert.Equal(t, uint32(53), b.GetL4().GetUDP().GetDestinationPort())
	require.Len(t, b.GetEgressDeniedBy(), 1)
	assert.Equal(t, flow.PolicyKindDefaultDeny, b.GetEgressDeniedBy()[0].GetKind())

	assert.Equal(t, flowpb.DropReason_DROP_REASON_UNKNOWN, fs[2].GetDropReasonDesc())
	assert.Contains(t, fs[2].GetSummary(), "POLICY_WRITE_FAILED", "Starlab's own drop reasons stay readable")
}

func TestGetFlowsFiltersAsHubbleCLISendsThem(t *testing.T) {
	c := serve(t)
	for _, tc := range []struct {
		name string
		req  *observerpb.GetFlowsRequest
		want []string
	}{
		{"last 2", &observerpb.GetFlowsRequest{Number: 2}, []string{"b", "c"}},
		{"first 1", &observerpb.GetFlowsRequest{Number: 1, First: true}, []string{"a"}},
		{"--verdict DROPPED", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}}, []string{"b", "c"}},
		{"--from-namespace client (source_pod client/)", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{SourcePod: []string{"client/"}}}}, []string{"b", "c"}},
		{"--to-pod stars/backend", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{DestinationPod: []string{"stars/backend"}}}}, []string{"a", "b"}},
		{"--namespace stars: either side, two filters ORed", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{
			{SourcePod: []string{"stars/"}}, {DestinationPod: []string{"stars/"}}}}, []string{"a", "b", "c"}},
		{"--port 53 --protocol udp", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{DestinationPort: []string{"53"}, Protocol: []string{"udp"}}}}, []string{"b"}},
		{"--drop-reason-desc POLICY_DENIED", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_POLICY_DENIED}}}}, []string{"b"}},
		{"--traffic-direction egress", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{TrafficDirection: []flowpb.TrafficDirection{flowpb.TrafficDirection_EGRESS}}}}, []string{"b"}},
		{"--type drop (policy denials included)", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{EventType: []*flowpb.EventTypeFilter{{Type: messageTypeDrop}}}}}, []string{"b", "c"}},
		{"--tcp-flags SYN", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{TcpFlags: []*flowpb.TCPFlags{{SYN: true}}}}}, []string{"a"}},
		{"--not --verdict DROPPED (blacklist)", &observerpb.GetFlowsRequest{Number: 10, Blacklist: []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}}, []string{"a"}},
		{"--node-name w1", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{NodeName: []string{"w1"}}}}, []string{"a"}},
		{"--label k8s:role=backend", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{DestinationLabel: []string{"k8s:role=backend"}}}}, []string{"a"}},
		{"--since", &observerpb.GetFlowsRequest{Number: 10, Since: timestamppb.New(t0.Add(1500 * time.Millisecond))}, []string{"c"}},
		{"--ipv4", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{IpVersion: []flowpb.IPVersion{flowpb.IPVersion_IPv4}}}}, []string{"a", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := getFlows(t, c, tc.req)
			require.NoError(t, err)
			assert.Equal(t, tc.want, uuids(fs))
		})
	}
}

func TestGetFlowsRefusesFiltersItCannotAnswer(t *testing.T) {
	c := serve(t)
	for _, f := range []*flowpb.FlowFilter{
		{HttpMethod: []string{"GET"}},
		{SourceFqdn: []string{"example.com"}},
		{DestinationPort: []string{"http"}},
		{IpVersion: []flowpb.IPVersion{flowpb.IPVersion_IPv6}},
		{Verdict: []flowpb.Verdict{flowpb.Verdict_VERDICT_UNKNOWN}},
	} {
		_, err := getFlows(t, c, &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{f}})
		require.Error(t, err, "%v", f)
		assert.Equal(t, codes.InvalidArgument, status.Code(err), "%v: %v", f, err)
	}
}

func TestServerStatusNodesAndNamespaces(t *testing.T) {
	fs := sampleFlows()
	fs[1].Time = time.Now() // seen in the last hour: client and stars
	fs[2].Time = time.Now()
	c := serve(t, fs...)
	ctx := context.Background()
	st, err := c.ServerStatus(ctx, &observerpb.ServerStatusRequest{})
	require.NoError(t, err)
	assert.Equal(t, uint64(3), st.GetNumFlows())
	assert.Equal(t, uint64(100), st.GetMaxFlows())
	assert.Equal(t, uint64(3), st.GetSeenFlows())
	assert.Equal(t, uint32(1), st.GetNumConnectedNodes().GetValue())
	assert.Equal(t, uint32(1), st.GetNumUnavailableNodes().GetValue())
	assert.Equal(t, []string{"w2"}, st.GetUnavailableNodes())
	assert.InDelta(t, 2.5, st.GetFlowsRate(), 0.001)

	nodes, err := c.GetNodes(ctx, &observerpb.GetNodesRequest{})
	require.NoError(t, err)
	require.Len(t, nodes.GetNodes(), 2)
	assert.Equal(t, "w1", nodes.GetNodes()[0].GetName())
	assert.Equal(t, "172.18.0.2", nodes.GetNodes()[0].GetAddress())

	ns, err := c.GetNamespaces(ctx, &observerpb.GetNamespacesRequest{})
	require.NoError(t, err)
	var names []string
	for _, n := range ns.GetNamespaces() {
		names = append(names, n.GetNamespace())
	}
	assert.Equal(t, []string{"client", "stars"}, names, "namespaces of the last hour's flows, sorted")
}

func TestHealthCheckAsHubbleStatusAsks(t *testing.T) {
	conn := serveConn(t)
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: ObserverServiceName})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
}
