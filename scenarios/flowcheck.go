package scenarios

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/flow"
)

// Connection is one probe connection whose flows are checked.
type Connection struct {
	From, To string // matrix row and column
	// Expected is Yes (allowed) or No (denied).
	Expected Cell
	Result   demo.ProbeResult
	// SrcIP is the source pod's IP (the probe reports 0.0.0.0 for a connect that failed).
	SrcIP string
	// DstPod is namespace/name of the pod behind the target (after service translation).
	DstPod string
	// DeniedBy are the namespace/name of the policies expected in denied_by (the ones selecting DstPod).
	DeniedBy []string
}

// protocol is the connection's L4 protocol as flows name it (TCP when the probe did not say).
func (c Connection) protocol() string {
	if c.Result.Protocol == "" {
		return "TCP"
	}
	return strings.ToUpper(c.Result.Protocol)
}

// srcAddr returns the pod IP and source port of the connection, if the probe bound a socket.
func (c Connection) srcAddr() (string, uint16, bool) {
	host, port, err := net.SplitHostPort(c.Result.LocalAddr)
	if err != nil {
		return "", 0, false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, false
	}
	if ip := net.ParseIP(host); (ip == nil || ip.IsUnspecified()) && c.SrcIP != "" {
		host = c.SrcIP
	}
	return host, uint16(p), true
}

// flowsOf returns the flows of c: its packets (source ip:port) and the replies to them.
func (c Connection) flowsOf(all []*flow.Flow) []*flow.Flow {
	ip, port, ok := c.srcAddr()
	if !ok {
		return nil
	}
	proto := c.protocol()
	var out []*flow.Flow
	for _, f := range all {
		if !strings.EqualFold(f.L4.Protocol, proto) {
			continue // a DNS query over UDP may use the same port number as the TCP probe
		}
		if (f.IP.Source == ip && f.L4.SourcePort == port) || (f.IP.Destination == ip && f.L4.DestinationPort == port) {
			out = append(out, f)
		}
	}
	return out
}

// connectionFilters are the observer filters that select the flows of every connection.
func connectionFilters(conns []Connection) []flow.Filter {
	var fs []flow.Filter
	for _, c := range conns {
		ip, port, ok := c.srcAddr()
		if !ok {
			continue
		}
		proto := []string{c.protocol()}
		fs = append(fs,
			flow.Filter{SourceIP: []string{ip}, SourcePort: []uint16{port}, Protocol: proto},
			flow.Filter{DestinationIP: []string{ip}, DestinationPort: []uint16{port}, Protocol: proto})
	}
	return fs
}

func isIngressForward(f *flow.Flow) bool {
	return !f.IsReply && f.Verdict == flow.VerdictForwarded && f.TrafficDirection == flow.DirectionIngress
}

func isPolicyDrop(f *flow.Flow) bool {
	return f.Verdict == flow.VerdictDropped && f.DropReasonDesc == flow.DropPolicyDenied && f.TrafficDirection == flow.DirectionIngress
}

func podKey(e flow.Endpoint) string {
	if e.PodName == "" {
		return ""
	}
	return e.Namespace + "/" + e.PodName
}

// judge classifies one connection from its flows: Yes when the destination's ingress forwarded it,
// No when policy dropped it at ingress, Unknown when neither (or both) was seen; problems lists every
// expectation the flows break.
func judge(c Connection, fl []*flow.Flow) (Cell, []string) {
	var fwd, drop, reply []*flow.Flow
	for _, f := range fl {
		switch {
		case isIngressForward(f):
			fwd = append(fwd, f)
		case isPolicyDrop(f):
			drop = append(drop, f)
		case f.IsReply && f.Verdict == flow.VerdictForwarded:
			reply = append(reply, f)
		}
	}
	var problems []string
	observed := Unknown
	switch {
	case len(fwd) > 0 && len(drop) == 0:
		observed = Yes
	case len(drop) > 0 && len(fwd) == 0:
		observed = No
	}
	switch c.Expected {
	case Yes:
		if len(fwd) == 0 {
			problems = append(problems, "no FORWARDED ingress flow")
		}
		if len(drop) > 0 {
			problems = append(problems, fmt.Sprintf("%d POLICY_DENIED drops", len(drop)))
		}
		for _, f := range fwd {
			if c.DstPod != "" && podKey(f.Destination) != c.DstPod {
				problems = append(problems, fmt.Sprintf("forwarded to %q, want %s", podKey(f.Destination), c.DstPod))
			}
		}
	case No:
		if len(drop) == 0 {
			problems = append(problems, "no DROPPED POLICY_DENIED ingress flow")
		}
		if len(fwd) > 0 {
			problems = append(problems, "a FORWARDED ingress flow for a denied connection")
		}
		if len(reply) > 0 {
			problems = append(problems, "a forwarded reply (SYN-ACK) for a denied connection")
		}
		for _, f := range drop {
			// a drop decided in a ClusterNetworkPolicy tier (Admin or Baseline Deny) names that policy,
			// not the NetworkPolicies selecting the pod: which tier and policy is asserted by the admin
			// policy steps ("... is DROPPED by ClusterNetworkPolicy ... in the Admin tier")
			if slices.ContainsFunc(f.DeniedBy, func(p flow.Policy) bool { return p.Kind == flow.PolicyKindClusterNetworkPolicy }) {
				continue
			}
			var got []string
			for _, p := range f.DeniedBy {
				if p.Name != "" {
					got = append(got, p.Namespace+"/"+p.Name)
				}
			}
			slices.Sort(got)
			got = slices.Compact(got)
			want := slices.Clone(c.DeniedBy)
			slices.Sort(want)
			if len(f.DeniedBy) == 0 || !slices.Equal(got, want) {
				problems = append(problems, fmt.Sprintf("denied_by %v, want the policies selecting %s: %v", policyNames(f.DeniedBy), c.DstPod, want))
				break
			}
		}
	}
	return observed, problems
}

func policyNames(ps []flow.Policy) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// FlowVerdicts waits (polling the observer, up to timeout) until every connection's flows settle its
// verdict, then returns the flow-observed matrix cells, problems per connection and the flows involved.
func (e *Env) FlowVerdicts(ctx context.Context, conns []Connection, since time.Time, timeout time.Duration) (map[int]Cell, map[int][]string, []*flow.Flow, error) {
	filters := connectionFilters(conns)
	if len(filters) == 0 {
		return nil, nil, nil, fmt.Errorf("no probe connection reported its source address: cannot match flows")
	}
	q := flow.Query{Allow: filters, Since: since.Add(-2 * time.Second)}
	var (
		cells    map[int]Cell
		problems map[int][]string
		flows    []*flow.Flow
	)
	evaluate := func() bool {
		cells, problems = map[int]Cell{}, map[int][]string{}
		settled := true
		for i, c := range conns {
			cell, p := judge(c, c.flowsOf(flows))
			cells[i] = cell
			if len(p) > 0 {
				problems[i] = p
			}
			if cell != c.Expected {
				settled = false
			}
		}
		return settled
	}
	err := poll(ctx, timeout, 250*time.Millisecond, "flows of every probe connection at the observer", func(ctx context.Context) (bool, string, error) {
		got, err := e.Observe(ctx, q)
		if err != nil {
			return false, "", err // keep the flows of the last good read for the report
		}
		flows = got
		return evaluate(), fmt.Sprintf("%d flows so far", len(flows)), nil
	})
	if err != nil && flows == nil {
		return nil, nil, nil, err
	}
	// One last read after settling: a late forwarded packet of a denied connection must still fail.
	if late, lerr := e.Observe(ctx, q); lerr == nil {
		flows = late
	}
	evaluate()
	return cells, problems, flows, nil
}

// FormatFlow renders a flow on one line, `hubble observe` compact style.
func FormatFlow(f *flow.Flow) string {
	src, dst := f.Source.String(), f.Destination.String()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s:%d -> %s:%d %s %s", f.Time.Format("15:04:05.000"), f.NodeName, src, f.L4.SourcePort, dst, f.L4.DestinationPort, f.TrafficDirection, f.Verdict)
	if f.DropReasonDesc != "" {
		fmt.Fprintf(&b, " %s", f.DropReasonDesc)
	}
	if f.IsReply {
		b.WriteString(" reply")
	}
	if f.EventType != "" {
		fmt.Fprintf(&b, " %s", f.EventType)
	}
	if len(f.DeniedBy) > 0 {
		fmt.Fprintf(&b, " denied_by=%v", policyNames(f.DeniedBy))
	}
	if len(f.AllowedBy) > 0 {
		fmt.Fprintf(&b, " allowed_by=%v", policyNames(f.AllowedBy))
	}
	return b.String()
}
