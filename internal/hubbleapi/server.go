package hubbleapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sort"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/starlab-dev/starlab/internal/flow"
)

// Port serves Hubble's gRPC API on the observer, the port a Cilium agent serves it on (Starlab's HTTP
// APIs keep 4245): `kubectl -n starlab-system port-forward deploy/starlab-observer 4245:4244`, then plain
// `hubble observe` (whose default server is localhost:4245).
const Port = 4244

// Node is one node as ServerStatus and GetNodes report it.
type Node struct {
	Name      string
	Address   string
	Connected bool
	Flows     uint64 // flows received from the node
}

// Server is Hubble's observer.Observer over a flow store: GetFlows (with Hubble's filters, last N,
// first N, since/until, follow), ServerStatus, GetNodes and GetNamespaces. Agent and debug events are
// not Starlab's: those calls answer Unimplemented.
type Server struct {
	observerpb.UnimplementedObserverServer
	store   *flow.Store
	nodes   func() []Node
	version string
	started time.Time
	rate    func() float64
}

// NewServer serves store; nodes lists the nodes the flows come from (nil: this process is the one
// node, named self), rate is the current flows per second (nil: not measured).
func NewServer(store *flow.Store, nodes func() []Node, rate func() float64, version string) *Server {
	return &Server{store: store, nodes: nodes, rate: rate, version: version, started: time.Now()}
}

// ObserverServiceName is the name `hubble status` health-checks (ObserverServiceName of
// github.com/cilium/cilium/pkg/hubble/api/v1, which imports pkg/monitor/api: see messageTypeDrop).
const ObserverServiceName = "hubble.server.Observer"

// Register adds the server to g, with gRPC's health service answering SERVING for Hubble's observer
// service (what `hubble status` checks first).
func (s *Server) Register(g *grpc.Server) {
	observerpb.RegisterObserverServer(g, s)
	h := health.NewServer()
	h.SetServingStatus(ObserverServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, h)
}

// Serve listens on addr and serves Hubble's API until ctx ends.
func (s *Server) Serve(ctx context.Context, addr string, opts ...grpc.ServerOption) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("hubble API listen %s: %w", addr, err)
	}
	g := grpc.NewServer(opts...)
	s.Register(g)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("hubble API serve %s: %w", addr, err)
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			g.Stop() // followers never end on their own
		}
		return nil
	}
}

// BinaryVersion is the module version this binary was built from ("devel" in a checkout), the
// version Starlab's servers report.
func BinaryVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// Query is req as a Starlab flow query.
func Query(req *observerpb.GetFlowsRequest) (flow.Query, error) {
	var q flow.Query
	for i, pf := range req.GetWhitelist() {
		f, err := FilterFromProto(pf)
		if err != nil {
			return q, fmt.Errorf("whitelist[%d]: %w", i, err)
		}
		q.Allow = append(q.Allow, f)
	}
	for i, pf := range req.GetBlacklist() {
		f, err := FilterFromProto(pf)
		if err != nil {
			return q, fmt.Errorf("blacklist[%d]: %w", i, err)
		}
		q.Deny = append(q.Deny, f)
	}
	if t := req.GetSince(); t != nil {
		q.Since = t.AsTime()
	}
	if t := req.GetUntil(); t != nil {
		q.Until = t.AsTime()
	}
	q.Follow = req.GetFollow()
	if !req.GetFirst() {
		q.Last = int(min(req.GetNumber(), uint64(1<<31-1)))
	}
	// Hubble's rule: a follow without a number and without since sends only new flows
	// (`hubble observe --follow`), no history.
	q.NoHistory = q.Follow && req.GetNumber() == 0 && req.GetSince() == nil && !req.GetFirst()
	// A field mask (hubble sends one for some outputs) narrows nothing: the whole flow is always sent.
	return q, q.Validate()
}

// GetFlows streams the matching buffered flows and, with follow, every new one.
func (s *Server) GetFlows(req *observerpb.GetFlowsRequest, stream grpc.ServerStreamingServer[observerpb.GetFlowsResponse]) error {
	q, err := Query(req)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	first := req.GetFirst() && req.GetNumber() > 0
	var sent uint64
	errEnough := errors.New("first N sent")
	err = s.store.Query(stream.Context(), q, func(f *flow.Flow) error {
		if first && sent >= req.GetNumber() {
			return errEnough
		}
		sent++
		return stream.Send(&observerpb.GetFlowsResponse{
			ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: ToProto(f, s.version)},
			NodeName:      f.NodeName, Time: timestamppb.New(f.Time),
		})
	}, nil)
	switch {
	case err == nil, errors.Is(err, errEnough):
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil // the client went away
	}
	return status.Error(codes.Internal, err.Error())
}

// ServerStatus reports the buffer and the nodes, as `hubble status` prints them.
func (s *Server) ServerStatus(context.Context, *observerpb.ServerStatusRequest) (*observerpb.ServerStatusResponse, error) {
	resp := &observerpb.ServerStatusResponse{
		NumFlows: uint64(s.store.Len()), MaxFlows: uint64(s.store.Capacity()), SeenFlows: s.store.Total(),
		UptimeNs: uint64(time.Since(s.started).Nanoseconds()), Version: EmitterName + " " + s.version,
	}
	if s.rate != nil {
		resp.FlowsRate = s.rate()
	}
	var connected, unavailable uint32
	for _, n := range s.nodeList() {
		if n.Connected {
			connected++
		} else {
			unavailable++
			resp.UnavailableNodes = append(resp.UnavailableNodes, n.Name)
		}
	}
	resp.NumConnectedNodes, resp.NumUnavailableNodes = wrapperspb.UInt32(connected), wrapperspb.UInt32(unavailable)
	return resp, nil
}

// GetNodes lists the nodes and whether their flows reach this server.
func (s *Server) GetNodes(context.Context, *observerpb.GetNodesRequest) (*observerpb.GetNodesResponse, error) {
	resp := &observerpb.GetNodesResponse{}
	for _, n := range s.nodeList() {
		st := relaypb.NodeState_NODE_CONNECTED
		if !n.Connected {
			st = relaypb.NodeState_NODE_UNAVAILABLE
		}
		resp.Nodes = append(resp.Nodes, &observerpb.Node{Name: n.Name, Version: EmitterName + " " + s.version, Address: n.Address, State: st, SeenFlows: n.Flows})
	}
	return resp, nil
}

// GetNamespaces lists the namespaces seen in the buffered flows of the last hour, sorted.
func (s *Server) GetNamespaces(ctx context.Context, _ *observerpb.GetNamespacesRequest) (*observerpb.GetNamespacesResponse, error) {
	seen := map[string]bool{}
	err := s.store.Query(ctx, flow.Query{Since: time.Now().Add(-time.Hour)}, func(f *flow.Flow) error {
		for _, ns := range []string{f.Source.Namespace, f.Destination.Namespace} {
			if ns != "" {
				seen[ns] = true
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	names := make([]string, 0, len(seen))
	for ns := range seen {
		names = append(names, ns)
	}
	sort.Strings(names)
	resp := &observerpb.GetNamespacesResponse{}
	for _, ns := range names {
		resp.Namespaces = append(resp.Namespaces, &observerpb.Namespace{Namespace: ns})
	}
	return resp, nil
}

func (s *Server) nodeList() []Node {
	if s.nodes == nil {
		return nil
	}
	return s.nodes()
}
