package conformance

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/oracle"
)

// FlowSource returns the flows an observer saw in a window (the observer client through a
// port-forward in a real run).
type FlowSource interface {
	Flows(ctx context.Context, q flow.Query, emit func(*flow.Flow) error) error
}

// connID identifies one probe connection in flows: source ip:port and protocol.
type connID struct {
	ip    string
	port  uint16
	proto string
}

// probeConn returns the flow identity of p, if the probe bound a socket.
func probeConn(p Probe) (connID, bool) {
	host, port, err := net.SplitHostPort(p.LocalAddr)
	if err != nil {
		return connID{}, false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return connID{}, false
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = p.SrcIP
	}
	return connID{host, uint16(n), strings.ToUpper(string(p.Protocol))}, true
}

// Observe reads the flows of the given probes (everything leaving the universe's namespaces since
// since) and judges each connection, polling until every one is conclusive or wait passes.
func Observe(ctx context.Context, src FlowSource, namespaces []string, probes []Probe, since time.Time, wait time.Duration) (map[cellKey]Observation, error) {
	q := flow.Query{Allow: []flow.Filter{{SourceNamespace: namespaces}}, Since: since.Add(-time.Second)}
	deadline := time.Now().Add(wait)
	for {
		var flows []*flow.Flow
		if err := src.Flows(ctx, q, func(f *flow.Flow) error { flows = append(flows, f); return nil }); err != nil {
			return nil, fmt.Errorf("read the probes' flows from the observer: %w", err)
		}
		obs, conclusive := judgeFlows(probes, flows)
		if conclusive || time.Now().After(deadline) {
			return obs, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the probes' flows: %w", ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// judgeFlows groups flows by connection and judges each probe's; conclusive reports whether every
// connection has a verdict matching its probe (so waiting longer cannot change anything we expect).
// A connection is its source ip:port and protocol plus its destination (the address dialled, or the
// backend after service translation): concurrent UDP sockets of one pod may share a source port.
func judgeFlows(probes []Probe, flows []*flow.Flow) (map[cellKey]Observation, bool) {
	byConn := map[connID][]*flow.Flow{}
	for _, f := range flows {
		if f.IsReply {
			continue
		}
		id := connID{f.IP.Source, f.L4.SourcePort, strings.ToUpper(f.L4.Protocol)}
		byConn[id] = append(byConn[id], f)
	}
	out := map[cellKey]Observation{}
	conclusive := true
	for _, p := range probes {
		id, ok := probeConn(p)
		if !ok {
			continue
		}
		var mine []*flow.Flow
		for _, f := range byConn[id] {
			if toDestination(f, p) {
				mine = append(mine, f)
			}
		}
		ob := judgeConnection(mine)
		out[keyOf(p.Mode, p.From, p.To, oracle.PortProto{Port: p.Port, Protocol: p.Protocol})] = ob
		if ob.Verdict != verdictWord(p.Reachable) {
			conclusive = false
		}
	}
	return out, conclusive
}

// judgeConnection reads one connection's (non-reply) flows: denied when policy dropped it and no
// ingress forward exists, allowed when the destination's ingress forwarded it and nothing dropped.
func judgeConnection(fl []*flow.Flow) Observation {
	var ob Observation
	var fwdIngress, drops int
	for _, f := range fl {
		ob.Flows = append(ob.Flows, formatFlow(f))
		switch {
		case f.Verdict == flow.VerdictDropped && (f.DropReasonDesc == flow.DropPolicyDenied || f.DropReasonDesc == flow.DropPolicyUnrepresentable):
			drops++
			ob.Direction = string(f.TrafficDirection)
			ob.DeniedBy = policyRefs(f.DeniedBy)
		case f.Verdict == flow.VerdictForwarded:
			if f.TrafficDirection == flow.DirectionIngress {
				fwdIngress++
			}
			ob.AllowedBy = append(ob.AllowedBy, policyRefs(f.AllowedBy)...)
		}
	}
	slices.Sort(ob.AllowedBy)
	ob.AllowedBy = slices.Compact(ob.AllowedBy)
	switch {
	case drops > 0 && fwdIngress == 0:
		ob.Verdict = ObservedDenied
		ob.AllowedBy = nil
	case fwdIngress > 0 && drops == 0:
		ob.Verdict = ObservedAllowed
		ob.Direction = ""
	default:
		ob.Verdict = ObservedUnknown
	}
	return ob
}

// policyRefs returns namespace/name of the NetworkPolicies and cnp/NAME of the ClusterNetworkPolicies
// that decided (an Admin Pass listed before the deciding rule and the DefaultDeny marker left out),
// sorted: the oracle's names.
func policyRefs(ps []flow.Policy) []string {
	var out []string
	for _, p := range ps {
		switch {
		case p.Name == "" || p.Action == flow.ActionPass:
		case p.Kind == flow.PolicyKindNetworkPolicy:
			out = append(out, p.Namespace+"/"+p.Name)
		case p.Kind == flow.PolicyKindClusterNetworkPolicy:
			out = append(out, "cnp/"+p.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func formatFlow(f *flow.Flow) string {
	s := fmt.Sprintf("%s %s %s:%d -> %s:%d %s %s %s", f.NodeName, f.L4.Protocol, f.IP.Source, f.L4.SourcePort,
		f.IP.Destination, f.L4.DestinationPort, f.TrafficDirection, f.Verdict, f.EventType)
	if f.DropReasonDesc != "" {
		s += " " + f.DropReasonDesc
	}
	if len(f.DeniedBy) > 0 {
		s += fmt.Sprintf(" denied_by=%v", f.DeniedBy)
	}
	if len(f.AllowedBy) > 0 {
		s += fmt.Sprintf(" allowed_by=%v", f.AllowedBy)
	}
	return s
}

// toDestination reports whether f goes where p dialled: p.Dst (the address dialled) or p.Backend
// (the pod behind it), before or after translation. Probes without those (unit tests) match any.
func toDestination(f *flow.Flow, p Probe) bool {
	if p.Dst == "" {
		return true
	}
	dst := net.JoinHostPort(f.IP.Destination, strconv.Itoa(int(f.L4.DestinationPort)))
	orig := ""
	if f.IP.OrigDestination != "" {
		orig = net.JoinHostPort(f.IP.OrigDestination, strconv.Itoa(int(f.L4.OrigDestinationPort)))
	}
	for _, want := range append([]string{p.Dst, p.Backend}, p.backends...) {
		if want != "" && (dst == want || orig == want) {
			return true
		}
	}
	return false
}
