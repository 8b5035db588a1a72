package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

// transportFlows are connections of the stars and shop demos as the agents record them: the client's
// and the server's hook, a reply, the close with its counters; some through a Service, some denied by
// a NetworkPolicy's default deny or a ClusterNetworkPolicy tier.
func transportFlows() []*flow.Flow {
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	pods := []flow.Endpoint{
		{Identity: 256, Namespace: "stars", PodName: "frontend-7c9d-abcde", IP: "10.244.1.5", Labels: []string{"k8s:io.kubernetes.pod.namespace=stars", "k8s:role=frontend"}, Workload: &flow.Workload{Name: "frontend", Kind: "Deployment"}},
		{Identity: 257, Namespace: "stars", PodName: "backend-5f6g-fghij", IP: "10.244.2.7", Labels: []string{"k8s:io.kubernetes.pod.namespace=stars", "k8s:role=backend"}, Workload: &flow.Workload{Name: "backend", Kind: "Deployment"}},
		{Identity: 300, Namespace: "client", PodName: "client-8h9i-klmno", IP: "10.244.1.9", Labels: []string{"k8s:io.kubernetes.pod.namespace=client", "k8s:role=client"}, Workload: &flow.Workload{Name: "client", Kind: "Deployment"}},
		{Identity: 310, Namespace: "shop", PodName: "orders-0", IP: "10.244.2.11", Labels: []string{"k8s:app=orders", "k8s:io.kubernetes.pod.namespace=shop"}, Workload: &flow.Workload{Name: "orders", Kind: "StatefulSet"}},
	}
	allow := []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "backend-policy", Tier: flow.TierNetworkPolicy, Rule: "0", Action: flow.ActionAllow}}
	cnpDeny := []flow.Policy{
		{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "guard", Tier: flow.TierAdmin, Rule: "from-shop", Action: flow.ActionPass},
		{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "baseline", Tier: flow.TierBaseline, Rule: "0", Action: flow.ActionDeny}}
	var out []*flow.Flow
	n := 0
	add := func(f flow.Flow) {
		n++
		f.Time = t0.Add(time.Duration(n) * 10 * time.Millisecond)
		f.UUID = fmt.Sprintf("8a3f2c10-0000-4e1b-9c7d-%012x", n)
		out = append(out, &f)
	}
	for i := range 24 {
		src, dst := pods[i%4], pods[(i+1)%4]
		sport, dport := uint16(40000+i), uint16([]int{6379, 80, 53, 5432}[i%4])
		proto := flow.ProtoTCP
		if dport == 53 {
			proto = flow.ProtoUDP
		}
		l4 := func(flags *flow.TCPFlags, reply bool) flow.L4 {
			if proto != flow.ProtoTCP {
				flags = nil
			}
			if reply {
				return flow.L4{Protocol: proto, SourcePort: dport, DestinationPort: sport, Flags: flags}
			}
			return flow.L4{Protocol: proto, SourcePort: sport, DestinationPort: dport, Flags: flags}
		}
		node := []string{"starlab-worker", "starlab-worker2"}[i%2]
		var svc *flow.Service
		ip := flow.IP{Source: src.IP, Destination: dst.IP}
		l := l4(&flow.TCPFlags{SYN: true}, false)
		if i%3 == 0 {
			svc = &flow.Service{Name: strings.SplitN(dst.PodName, "-", 2)[0], Namespace: dst.Namespace}
			ip.OrigDestination, l.OrigDestinationPort = "10.96.0.42", 8080
		}
		if i%5 == 4 { // denied at the server's ingress
			add(flow.Flow{Verdict: flow.VerdictDropped, DropReasonDesc: flow.DropPolicyDenied, EventType: flow.EventDrop, NodeName: node,
				IP: ip, L4: l, Source: src, Destination: dst, DestinationService: svc, TrafficDirection: flow.DirectionIngress,
				TraceObservationPoint: flow.ObsToEndpoint, DeniedBy: []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}}})
			continue
		}
		if i%7 == 6 { // denied by a Baseline ClusterNetworkPolicy at the client's egress
			add(flow.Flow{Verdict: flow.VerdictDropped, DropReasonDesc: flow.DropPolicyDenied, EventType: flow.EventDrop, NodeName: node,
				IP: ip, L4: l, Source: src, Destination: dst, TrafficDirection: flow.DirectionEgress,
				TraceObservationPoint: flow.ObsFromEndpoint, DeniedBy: cnpDeny})
			continue
		}
		add(flow.Flow{Verdict: flow.VerdictForwarded, EventType: flow.EventNew, NodeName: node, IP: ip, L4: l, Source: src, Destination: dst,
			DestinationService: svc, TrafficDirection: flow.DirectionEgress, TraceObservationPoint: flow.ObsFromEndpoint})
		add(flow.Flow{Verdict: flow.VerdictForwarded, EventType: flow.EventNew, NodeName: node, IP: flow.IP{Source: src.IP, Destination: dst.IP},
			L4: l4(&flow.TCPFlags{SYN: true}, false), Source: src, Destination: dst, TrafficDirection: flow.DirectionIngress,
			TraceObservationPoint: flow.ObsToEndpoint, AllowedBy: allow})
		add(flow.Flow{Verdict: flow.VerdictForwarded, EventType: flow.EventNew, NodeName: node, IsReply: true, IP: flow.IP{Source: dst.IP, Destination: src.IP},
			L4: l4(&flow.TCPFlags{SYN: true, ACK: true}, true), Source: dst, Destination: src, TrafficDirection: flow.DirectionEgress,
			TraceObservationPoint: flow.ObsFromEndpoint})
		add(flow.Flow{Verdict: flow.VerdictForwarded, EventType: flow.EventClose, NodeName: node, Packets: uint64(10 + i), Bytes: uint64(1000 * (i + 1)),
			IP: flow.IP{Source: src.IP, Destination: dst.IP}, L4: l4(&flow.TCPFlags{FIN: true, ACK: true}, false), Source: src, Destination: dst,
			TrafficDirection: flow.DirectionEgress, TraceObservationPoint: flow.ObsFromEndpoint})
	}
	return out
}

// bothAPIs serves one observer's store over its HTTP API and Hubble's gRPC API on loopback: the
// --observer-url and the --server of `starlab observe`.
func bothAPIs(t *testing.T, flows []*flow.Flow) (*observer.Observer, string, string) {
	t.Helper()
	o, err := observer.New(observer.Config{})
	require.NoError(t, err)
	for _, f := range flows {
		o.Ingest(f)
	}
	srv := httptest.NewServer(o.Handler())
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer()
	o.HubbleServer("v0.test").Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return o, srv.URL, ln.Addr().String()
}

// Every filter and output format gives the same lines over gRPC, NDJSON and the wire form, from one store.
func TestObserveSameOverGRPCAndNDJSON(t *testing.T) {
	flows := transportFlows()
	_, url, addr := bothAPIs(t, flows)
	for _, args := range [][]string{
		{"--last", "1000"},
		{}, // the last 20
		{"--last", "7", "--verdict", "DROPPED"},
		{"--from-namespace", "stars", "--not", "--verdict", "DROPPED", "--last", "100"},
		{"--namespace", "client", "--protocol", "udp", "--last", "100"},
		{"--pod", "stars/backend", "--not", "--type", "CLOSE", "--last", "100"},
		{"--to-service", "stars/backend", "--last", "100"},
		{"--label", "role=frontend", "--to-port", "6379", "--last", "100"},
		{"--from-workload", "client/client", "--tcp-flags", "SYN", "--last", "100"},
		{"--node", "starlab-worker2", "--traffic-direction", "ingress", "--last", "100"},
		{"--drop-reason", "POLICY_DENIED", "--from-identity", "300", "--last", "100"},
		{"--ip", "10.244.2.11", "--not", "--from-ip", "10.244.1.0/24", "--last", "100"},
		{"--since", "2026-12-02T09:00:00.5Z", "--until", "2026-12-02T09:00:00.9Z"},
		{"--since", "2026-12-02T09:00:00.3Z", "--last", "4", "--type", "NEW"},
		// Starlab's own filters, matched by the client over gRPC.
		{"--policy", "stars/backend-policy", "--last", "5"},
		{"--tier", "Baseline", "--last", "100"},
		{"--not", "--tier", "Admin", "--verdict", "DROPPED", "--last", "100"},
		{"--from-pod", "stars/frontend", "--from-namespace", "stars", "--last", "3"},
	} {
		for _, output := range [][]string{{"-o", "json"}, {"-o", "compact"}, {"-o", "table"}, {"--connections", "-o", "json"}, {"--connections", "-o", "table"}} {
			a := append(append([]string{}, args...), output...)
			t.Run(strings.Join(a, " "), func(t *testing.T) {
				wire, err := run(t, append([]string{"observe", "--observer-url", url}, a...)...)
				require.NoError(t, err)
				ndjson, err := run(t, append([]string{"observe", "--observer-url", url, "--transport", "ndjson"}, a...)...)
				require.NoError(t, err)
				grpcOut, err := run(t, append([]string{"observe", "--server", addr}, a...)...)
				require.NoError(t, err)
				require.NotEmpty(t, strings.TrimSpace(ndjson), "the case selects some flows")
				assert.Equal(t, ndjson, grpcOut)
				assert.Equal(t, ndjson, wire)
			})
		}
	}
}

// A followed stream over gRPC prints the new flows that match, as over NDJSON, and ends on Ctrl-C.
func TestObserveFollowOverGRPC(t *testing.T) {
	o, _, addr := bothAPIs(t, nil)
	for _, tc := range []struct {
		name    string
		args    []string
		history int // buffered flows printed first: the earlier cases' flows are in the store
	}{
		{"exact", []string{"--verdict", "DROPPED"}, 0},
		{"matched by the client", []string{"--tier", "Baseline"}, 0},
		{"last N, matched by the client", []string{"--tier", "Baseline", "--last", "1"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := NewRootCommand()
			var out syncBuffer
			cmd.SetOut(&out)
			cmd.SetErr(&bytes.Buffer{})
			cmd.SetArgs(append([]string{"observe", "--grpc", "--server", addr, "-f", "-o", "json"}, tc.args...))
			require.Eventually(t, func() bool { return o.Store().Subscribers() == 0 }, 5*time.Second, 5*time.Millisecond, "the last case's follower is gone")
			done := make(chan error, 1)
			go func() { done <- cmd.ExecuteContext(ctx) }()
			require.Eventually(t, func() bool { return o.Store().Subscribers() == 1 }, 5*time.Second, 5*time.Millisecond)
			want := tc.history
			for _, f := range transportFlows() {
				g := *f
				g.UUID = tc.name + f.UUID
				g.Time = time.Now()
				if len(g.DeniedBy) == 2 {
					want++
				}
				o.Ingest(&g)
			}
			require.Eventually(t, func() bool { return strings.Count(out.String(), `"tier":"Baseline"`) == want }, 5*time.Second, 5*time.Millisecond)
			cancel()
			require.NoError(t, <-done, "Ctrl-C ends a followed stream without error")
			assert.NotContains(t, out.String(), "FORWARDED")
		})
	}
}

func TestObserveTransportFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--transport", "udp"}, `--transport "udp": use grpc, http or ndjson`},
		{[]string{"--grpc", "--transport", "ndjson"}, "disagree"},
		{[]string{"--server", "127.0.0.1:1", "--transport", "ndjson"}, "--server is a Hubble gRPC address"},
		{[]string{"--observer-url", "http://127.0.0.1:1", "--grpc"}, "--observer-url is the observer's HTTP API"},
		{[]string{"--input-file", "x.ndjson", "--grpc"}, "--input-file reads a saved file"},
	} {
		_, err := run(t, append([]string{"observe"}, tc.args...)...)
		require.Error(t, err, "%v", tc.args)
		assert.Contains(t, err.Error(), tc.want)
	}
}
