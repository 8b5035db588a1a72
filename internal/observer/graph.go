package observer

import (
	"maps"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/starlab-dev/starlab/internal/flow"
)

// Graph node kinds beyond workload kinds (Deployment, StatefulSet, ...).
const (
	NodeKindPod      = "Pod"
	NodeKindService  = "Service"
	NodeKindReserved = "Reserved" // host, world, remote-node, unmanaged
	NodeKindIP       = "IP"
)

// GraphNode is a workload (or service, or reserved identity) in one namespace.
type GraphNode struct {
	ID        string   `json:"id"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Services  []string `json:"services,omitempty"` // services it was reached through
	Pods      []string `json:"pods,omitempty"`
}

// GraphPolicy is a policy named by flows on an edge: the rule that decided them, an Admin Pass they
// went through, or (for a NetworkPolicy default deny) a policy selecting the endpoint.
type GraphPolicy struct {
	flow.Policy
	Decision string `json:"decision"` // "allowed" or "denied"
	Flows    uint64 `json:"flows"`
	Deciding uint64 `json:"deciding,omitempty"` // of them, decided by this rule (not passed or merely selecting)
}

// Deciding tiers of an edge (GraphEdge.Tiers, GraphEdge.Tier) beyond the policy tiers flow.TierAdmin,
// flow.TierNetworkPolicy and flow.TierBaseline.
const (
	// TierPass: an Admin-tier Pass handed the decision down and no NetworkPolicy or Baseline rule
	// decided (default allow after the Pass).
	TierPass = "Pass"
	// TierDefault: no policy selects the endpoints; allowed by default.
	TierDefault = "Default"
)

// tierOrder is the precedence that breaks ties between tiers deciding as many flows of an edge.
var tierOrder = []string{flow.TierAdmin, flow.TierNetworkPolicy, flow.TierBaseline, TierPass, TierDefault}

// Decision is how one flow was decided: the deciding tier, the deciding rule (nil for TierPass and
// TierDefault) and whether an Admin Pass came first.
type Decision struct {
	Tier    string
	Decider *flow.Policy
	Passed  bool
}

// DecisionOf says which tier decided a flow. ok is false for flows that are not a policy decision:
// replies, CLOSE events, established traffic and drops for other reasons than policy.
func DecisionOf(f *flow.Flow) (d Decision, ok bool) {
	if f.IsReply {
		return Decision{}, false
	}
	var ps []flow.Policy
	switch {
	case f.Verdict == flow.VerdictDropped && len(f.DeniedBy) > 0:
		ps = f.DeniedBy
	case f.Verdict == flow.VerdictForwarded && f.EventType == flow.EventNew:
		ps = f.AllowedBy
	default:
		return Decision{}, false
	}
	for i := range ps {
		p := &ps[i]
		if p.Action == flow.ActionPass {
			d.Passed = true
			continue
		}
		d.Decider = p
		d.Tier = policyTier(p)
		return d, true
	}
	if d.Passed {
		d.Tier = TierPass
	} else {
		d.Tier = TierDefault
	}
	return d, true
}

// policyTier is a policy's tier; flows from before tiers were attributed name none, and every kind
// but ClusterNetworkPolicy is then of the NetworkPolicy tier.
func policyTier(p *flow.Policy) string {
	if p.Tier != "" {
		return p.Tier
	}
	if p.Kind == flow.PolicyKindClusterNetworkPolicy {
		return flow.TierAdmin
	}
	return flow.TierNetworkPolicy
}

// GraphEdge aggregates the flows from one node to another.
type GraphEdge struct {
	ID          string            `json:"id"`
	Source      string            `json:"source"`
	Target      string            `json:"target"`
	Forwarded   uint64            `json:"forwarded"` // connections forwarded
	Dropped     uint64            `json:"dropped"`   // drop events
	Flows       uint64            `json:"flows"`     // every flow event on the edge
	Verdict     string            `json:"verdict"`   // "forwarded", "dropped" or "mixed"
	LastVerdict flow.Verdict      `json:"last_verdict"`
	Ports       []string          `json:"ports"` // "TCP/6379"
	Service     string            `json:"service,omitempty"`
	DropReasons map[string]uint64 `json:"drop_reasons,omitempty"`
	Policies    []GraphPolicy     `json:"policies,omitempty"`
	// Tiers counts the edge's policy decisions (new connections and policy drops) by the tier that
	// decided them: Admin, NetworkPolicy, Baseline, Pass or Default. Tier is the one that decided
	// most (ties: in that order), Passed how many went through an Admin Pass first.
	Tiers    map[string]uint64 `json:"tiers,omitempty"`
	Tier     string            `json:"tier,omitempty"`
	Passed   uint64            `json:"passed,omitempty"`
	LastSeen time.Time         `json:"last_seen"`
	Recent   []*flow.Flow      `json:"recent,omitempty"` // newest last
}

// GraphView is the service map the graph API returns.
type GraphView struct {
	Generated  time.Time    `json:"generated"`
	Namespaces []string     `json:"namespaces"`
	Nodes      []*GraphNode `json:"nodes"`
	Edges      []*GraphEdge `json:"edges"`
	Truncated  uint64       `json:"truncated,omitempty"` // edges not tracked because the graph was full
}

// GraphOptions tune the aggregation.
type GraphOptions struct {
	MaxEdges int // edges kept (default 10000); flows of new edges beyond it are counted in Truncated
	Recent   int // recent flows kept per edge (default 10)
}

// Graph aggregates flows into a service dependency graph across all namespaces.
type Graph struct {
	opts      GraphOptions
	mu        sync.Mutex
	nodes     map[string]*GraphNode
	edges     map[string]*edgeState
	truncated uint64
}

type edgeState struct {
	GraphEdge
	ports    map[string]struct{}
	policies map[string]*GraphPolicy
	recent   []*flow.Flow // ring
	next     int
}

// NewGraph returns an empty graph.
func NewGraph(opts GraphOptions) *Graph {
	if opts.MaxEdges <= 0 {
		opts.MaxEdges = 10000
	}
	if opts.Recent <= 0 {
		opts.Recent = 10
	}
	return &Graph{opts: opts, nodes: map[string]*GraphNode{}, edges: map[string]*edgeState{}}
}

// nodeFor maps a flow endpoint to its graph node (service is the service the flow dialled, if any).
func nodeFor(e *flow.Endpoint, svc *flow.Service) GraphNode {
	switch {
	case e.PodName != "" && e.Workload != nil && e.Workload.Name != "":
		return GraphNode{ID: e.Namespace + "/" + e.Workload.Name, Namespace: e.Namespace, Name: e.Workload.Name, Kind: e.Workload.Kind}
	case e.PodName != "":
		return GraphNode{ID: e.Namespace + "/" + e.PodName, Namespace: e.Namespace, Name: e.PodName, Kind: NodeKindPod}
	case svc != nil:
		return GraphNode{ID: svc.Namespace + "/svc:" + svc.Name, Namespace: svc.Namespace, Name: svc.Name, Kind: NodeKindService}
	}
	if n := flow.ReservedIdentityName(e.Identity); n != "" {
		return GraphNode{ID: "reserved:" + n, Name: n, Kind: NodeKindReserved}
	}
	if e.IP != "" {
		return GraphNode{ID: "ip:" + e.IP, Name: e.IP, Kind: NodeKindIP}
	}
	return GraphNode{ID: "reserved:world", Name: "world", Kind: NodeKindReserved}
}

// countsConnection says whether a forwarded flow counts as a new connection on its edge: one NEW event
// per hook reaches us, so a pod-to-pod connection is counted where it enters the destination (ingress),
// and a connection to a non-pod where it leaves the source (egress).
func countsConnection(f *flow.Flow) bool {
	if f.Verdict != flow.VerdictForwarded || f.EventType != flow.EventNew || f.IsReply {
		return false
	}
	if f.TrafficDirection == flow.DirectionIngress {
		return true
	}
	return f.Destination.PodName == ""
}

// EdgeID is the id of the edge a flow belongs to: "<client node>-><server node>". A reply belongs to
// the edge of its connection (its destination is the client).
func EdgeID(f *flow.Flow) string {
	if f.IsReply {
		return nodeFor(&f.Destination, f.DestinationService).ID + "->" + nodeFor(&f.Source, f.SourceService).ID
	}
	return nodeFor(&f.Source, f.SourceService).ID + "->" + nodeFor(&f.Destination, f.DestinationService).ID
}

// Add folds one flow into the graph. Reply flows are skipped: an edge points from client to server.
func (g *Graph) Add(f *flow.Flow) {
	if f.IsReply {
		return
	}
	src := nodeFor(&f.Source, f.SourceService)
	dst := nodeFor(&f.Destination, f.DestinationService)
	id := src.ID + "->" + dst.ID
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.edges[id]
	if !ok {
		if len(g.edges) >= g.opts.MaxEdges {
			g.truncated++
			return
		}
		e = &edgeState{GraphEdge: GraphEdge{ID: id, Source: src.ID, Target: dst.ID}, ports: map[string]struct{}{},
			policies: map[string]*GraphPolicy{}, recent: make([]*flow.Flow, 0, g.opts.Recent)}
		g.edges[id] = e
	}
	g.addNode(src, f.Source.PodName, "")
	svcName := ""
	if f.DestinationService != nil {
		svcName = f.DestinationService.Name
	}
	g.addNode(dst, f.Destination.PodName, svcName)

	e.Flows++
	switch {
	case f.Verdict == flow.VerdictDropped:
		e.Dropped++
		if e.DropReasons == nil {
			e.DropReasons = map[string]uint64{}
		}
		e.DropReasons[f.DropReasonDesc]++
	case countsConnection(f):
		e.Forwarded++
	}
	if f.Verdict == flow.VerdictForwarded || f.Verdict == flow.VerdictDropped {
		e.LastVerdict = f.Verdict
	}
	if f.Time.After(e.LastSeen) {
		e.LastSeen = f.Time
	}
	port := f.L4.DestinationPort
	if f.L4.OrigDestinationPort != 0 && f.DestinationService != nil {
		port = f.L4.OrigDestinationPort
	}
	if f.L4.Protocol != "" {
		p := f.L4.Protocol
		if port != 0 {
			p += "/" + strconv.Itoa(int(port))
		}
		e.ports[p] = struct{}{}
	}
	if f.DestinationService != nil {
		e.Service = f.DestinationService.Namespace + "/" + f.DestinationService.Name
	}
	d, decided := DecisionOf(f)
	for i := range f.AllowedBy {
		e.policy(&f.AllowedBy[i], "allowed", decided && d.Decider == &f.AllowedBy[i])
	}
	for i := range f.DeniedBy {
		e.policy(&f.DeniedBy[i], "denied", decided && d.Decider == &f.DeniedBy[i])
	}
	if decided {
		if e.Tiers == nil {
			e.Tiers = map[string]uint64{}
		}
		e.Tiers[d.Tier]++
		if d.Passed {
			e.Passed++
		}
	}
	if len(e.recent) < g.opts.Recent {
		e.recent = append(e.recent, f)
	} else {
		e.recent[e.next] = f
		e.next = (e.next + 1) % len(e.recent)
	}
}

func (e *edgeState) policy(p *flow.Policy, decision string, deciding bool) {
	key := decision + "|" + p.String()
	gp, ok := e.policies[key]
	if !ok {
		gp = &GraphPolicy{Policy: *p, Decision: decision}
		e.policies[key] = gp
	}
	gp.Flows++
	if deciding {
		gp.Deciding++
	}
}

// mainTier is the tier that decided most of tiers' flows ("" when none).
func mainTier(tiers map[string]uint64) string {
	best, n := "", uint64(0)
	for _, t := range tierOrder {
		if tiers[t] > n {
			best, n = t, tiers[t]
		}
	}
	return best
}

func (g *Graph) addNode(n GraphNode, pod, svc string) {
	cur, ok := g.nodes[n.ID]
	if !ok {
		c := n
		cur = &c
		g.nodes[n.ID] = cur
	}
	if pod != "" && !slices.Contains(cur.Pods, pod) && len(cur.Pods) < 50 {
		cur.Pods = append(cur.Pods, pod)
		sort.Strings(cur.Pods)
	}
	if svc != "" && !slices.Contains(cur.Services, svc) {
		cur.Services = append(cur.Services, svc)
		sort.Strings(cur.Services)
	}
}

// GraphQuery selects part of the graph.
type GraphQuery struct {
	Namespaces []string  // edges touching any of these namespaces (empty: all)
	Since      time.Time // edges seen at or after (zero: all)
	Recent     bool      // include each edge's recent flows
	Edge       string    // only this edge (its id), e.g. to read its recent flows
}

// ParseGraphQuery reads namespace (repeatable), since (RFC 3339 or duration ago) and recent.
func ParseGraphQuery(v url.Values, now time.Time) (GraphQuery, error) {
	var q GraphQuery
	for k, vals := range v {
		last := vals[len(vals)-1]
		switch k {
		case "namespace":
			for _, s := range vals {
				for _, ns := range strings.Split(s, ",") {
					if ns = strings.TrimSpace(ns); ns != "" {
						q.Namespaces = append(q.Namespaces, ns)
					}
				}
			}
		case "since":
			t, err := flow.ParseTime(last, now)
			if err != nil {
				return GraphQuery{}, errorf("query parameter since: %w", err)
			}
			q.Since = t
		case "edge":
			q.Edge = last
		case "recent":
			b, err := strconv.ParseBool(last)
			if err != nil {
				return GraphQuery{}, errorf("query parameter recent=%q: use true or false", last)
			}
			q.Recent = b
		default:
			return GraphQuery{}, errorf("unknown query parameter %q for the graph: use namespace, since, recent, edge", k)
		}
	}
	return q, nil
}

// View returns a copy of the graph selected by q, sorted by id.
func (g *Graph) View(q GraphQuery, now time.Time) GraphView {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := GraphView{Generated: now, Truncated: g.truncated, Nodes: []*GraphNode{}, Edges: []*GraphEdge{}}
	used := map[string]bool{}
	nsOK := func(id string) bool {
		if len(q.Namespaces) == 0 {
			return true
		}
		n := g.nodes[id]
		return n != nil && slices.Contains(q.Namespaces, n.Namespace)
	}
	for _, e := range g.edges {
		if q.Edge != "" && e.ID != q.Edge {
			continue
		}
		if !q.Since.IsZero() && e.LastSeen.Before(q.Since) {
			continue
		}
		if !nsOK(e.Source) && !nsOK(e.Target) {
			continue
		}
		out := e.GraphEdge
		out.Ports = make([]string, 0, len(e.ports))
		for p := range e.ports {
			out.Ports = append(out.Ports, p)
		}
		sort.Strings(out.Ports)
		if e.Tiers != nil {
			out.Tiers = maps.Clone(e.Tiers)
			out.Tier = mainTier(e.Tiers)
		}
		if e.DropReasons != nil {
			out.DropReasons = make(map[string]uint64, len(e.DropReasons))
			for k, c := range e.DropReasons {
				out.DropReasons[k] = c
			}
		}
		out.Policies = nil
		for _, p := range e.policies {
			out.Policies = append(out.Policies, *p)
		}
		sort.Slice(out.Policies, func(i, j int) bool {
			a, b := out.Policies[i], out.Policies[j]
			if a.Decision != b.Decision {
				return a.Decision < b.Decision
			}
			return a.String() < b.String()
		})
		switch {
		case out.Dropped > 0 && out.Forwarded > 0:
			out.Verdict = "mixed"
		case out.Dropped > 0:
			out.Verdict = "dropped"
		default:
			out.Verdict = "forwarded"
		}
		out.Recent = nil
		if q.Recent {
			n := len(e.recent)
			out.Recent = make([]*flow.Flow, 0, n)
			for i := range n {
				out.Recent = append(out.Recent, e.recent[(e.next+i)%n])
			}
		}
		v.Edges = append(v.Edges, &out)
		used[e.Source], used[e.Target] = true, true
	}
	nss := map[string]bool{}
	for id := range used {
		n := *g.nodes[id]
		n.Pods = slices.Clone(n.Pods)
		n.Services = slices.Clone(n.Services)
		v.Nodes = append(v.Nodes, &n)
		if n.Namespace != "" {
			nss[n.Namespace] = true
		}
	}
	for ns := range nss {
		v.Namespaces = append(v.Namespaces, ns)
	}
	sort.Strings(v.Namespaces)
	if v.Namespaces == nil {
		v.Namespaces = []string{}
	}
	sort.Slice(v.Nodes, func(i, j int) bool { return v.Nodes[i].ID < v.Nodes[j].ID })
	sort.Slice(v.Edges, func(i, j int) bool { return v.Edges[i].ID < v.Edges[j].ID })
	return v
}
