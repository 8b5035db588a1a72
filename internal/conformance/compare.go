package conformance

import (
	"fmt"
	"slices"
	"strings"

	"github.com/starlab-dev/starlab/internal/oracle"
)

// cellKey identifies a connection of a matrix.
type cellKey struct {
	from, to string
	port     int32
	proto    string
	mode     string
}

func keyOf(mode, from, to string, pp oracle.PortProto) cellKey {
	return cellKey{from, to, pp.Port, string(pp.Protocol), mode}
}

// Compare joins the oracle's expectations with the probes and (when obs is not nil) the flow
// observations into cells, one truth table per mode and column, marking and explaining every wrong
// cell. Service-mode cells are evaluated toward the pod's Service (its backends on the targetPort).
func Compare(o *oracle.Oracle, pods []string, modes []string, probes []Probe, obs map[cellKey]Observation) ([]Cell, int, error) {
	byKey := map[cellKey]*Probe{}
	for i := range probes {
		p := &probes[i]
		byKey[keyOf(p.Mode, p.From, p.To, oracle.PortProto{Port: p.Port, Protocol: p.Protocol})] = p
	}
	var cells []Cell
	wrong := 0
	for _, mode := range modes {
		for _, pp := range Columns() {
			for _, from := range pods {
				for _, to := range pods {
					v, err := expect(o, mode, from, to, pp)
					if err != nil {
						return nil, 0, err
					}
					c := Cell{Mode: mode, From: from, To: to, Port: pp.Port, Protocol: pp.Protocol, Expected: v.Allowed, Reason: v.Reason}
					if from == to {
						c.Ignored = true
						cells = append(cells, c)
						continue
					}
					k := keyOf(mode, from, to, pp)
					c.Probe = byKey[k]
					if obs != nil {
						if ob, ok := obs[k]; ok {
							c.Observed = &ob
						}
					}
					c.Why = judgeCell(v, c.Probe, c.Observed, obs != nil)
					c.Wrong = len(c.Why) > 0
					if c.Wrong {
						wrong++
					}
					cells = append(cells, c)
				}
			}
		}
	}
	return cells, wrong, nil
}

// expect asks the oracle about one connection in a probe mode.
func expect(o *oracle.Oracle, mode, from, to string, pp oracle.PortProto) (oracle.Verdict, error) {
	sns, sname, _ := strings.Cut(from, "/")
	dns, dname, _ := strings.Cut(to, "/")
	dst := oracle.PodEndpoint(dns, dname)
	if serviceMode(mode) {
		dst = oracle.ServiceEndpoint(dns, ServiceName(dname))
	}
	v, err := o.Evaluate(oracle.PodEndpoint(sns, sname), dst, pp.Port, pp.Protocol)
	if err != nil {
		return oracle.Verdict{}, fmt.Errorf("oracle %s -> %s %s (%s): %w", from, to, pp, mode, err)
	}
	return v, nil
}

func verdictWord(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// judgeCell lists what is wrong with one connection: the probe against the oracle, the flows
// against the oracle (verdict, drop direction, denied_by, allowed_by).
func judgeCell(v oracle.Verdict, p *Probe, ob *Observation, flows bool) []string {
	var why []string
	exp := verdictWord(v.Allowed)
	switch {
	case p == nil:
		why = append(why, "not probed")
	case p.Reachable != v.Allowed:
		msg := fmt.Sprintf("probe: %s, expected %s (%s)", verdictWord(p.Reachable), exp, v.Reason)
		if p.Error != "" {
			msg += ": " + p.Error
		}
		if p.Reconfirmed {
			msg += " (confirmed by a second try)"
		}
		why = append(why, msg)
	}
	if !flows {
		return why
	}
	if ob == nil {
		return append(why, "flows: none observed for this connection")
	}
	if ob.Verdict != exp {
		return append(why, fmt.Sprintf("flows: %s, expected %s", ob.Verdict, exp))
	}
	if !v.Allowed {
		dir, want := denyingSide(v)
		if !strings.EqualFold(ob.Direction, dir) {
			why = append(why, fmt.Sprintf("flows: dropped at %s, expected at %s", strings.ToLower(ob.Direction), dir))
		}
		if !slices.Equal(ob.DeniedBy, want) {
			why = append(why, fmt.Sprintf("flows: denied_by %v, the oracle names %v", ob.DeniedBy, want))
		}
		return why
	}
	allowedBy := allowingPolicies(v)
	for _, got := range ob.AllowedBy {
		if !slices.Contains(allowedBy, got) {
			why = append(why, fmt.Sprintf("flows: allowed_by %s, the oracle's allowing rules are in %v", got, allowedBy))
		}
	}
	return why
}

// denyingSide returns the direction that denies (egress first, as the packet meets it first) and
// the policies the flow must name, sorted: the ClusterNetworkPolicy (cnp/NAME) whose rule denied when
// the Admin or Baseline tier decided, else the NetworkPolicies selecting that side.
func denyingSide(v oracle.Verdict) (string, []string) {
	d := v.Ingress
	if !v.Egress.Allowed {
		d = v.Egress
	}
	if p := clusterDecider(d); p != "" {
		return d.Direction, []string{p}
	}
	want := slices.Clone(d.SelectedBy)
	slices.Sort(want)
	return d.Direction, want
}

// clusterDecider is the ClusterNetworkPolicy (cnp/NAME) that decided d, or "" when another tier did.
func clusterDecider(d oracle.DirVerdict) string {
	if d.Tier != oracle.TierAdmin && d.Tier != oracle.TierBaseline || len(d.Walk) == 0 {
		return ""
	}
	return d.Walk[len(d.Walk)-1].Policy
}

// allowingPolicies are the policies with a rule allowing v, either direction: the accepting
// ClusterNetworkPolicy where the Admin or Baseline tier decided, the allowing NetworkPolicies where
// that tier did.
func allowingPolicies(v oracle.Verdict) []string {
	var out []string
	for _, d := range []oracle.DirVerdict{v.Egress, v.Ingress} {
		if p := clusterDecider(d); p != "" {
			out = append(out, p)
			continue
		}
		for _, r := range d.AllowedBy {
			out = append(out, r.Policy)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
