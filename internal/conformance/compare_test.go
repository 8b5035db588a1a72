package conformance

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/oracle"
)

// fabricate returns probes (and observations) that agree with the oracle, for unit tests only.
func fabricate(t *testing.T, u *Universe, o *oracle.Oracle) ([]Probe, map[cellKey]Observation) {
	t.Helper()
	probes := MatrixProbes(u, AllModes())
	obs := map[cellKey]Observation{}
	for i := range probes {
		p := &probes[i]
		v, err := expect(o, p.Mode, p.From, p.To, oracle.PortProto{Port: p.Port, Protocol: p.Protocol})
		require.NoError(t, err)
		p.Reachable = v.Allowed
		ob := Observation{Verdict: verdictWord(v.Allowed), AllowedBy: allowingPolicies(v)}
		if !v.Allowed {
			ob.Direction, ob.DeniedBy = denyingSide(v)
			ob.AllowedBy = nil
		}
		obs[keyOf(p.Mode, p.From, p.To, oracle.PortProto{Port: p.Port, Protocol: p.Protocol})] = ob
	}
	return probes, obs
}

func find(cells []Cell, from, to string, port int32, proto string) *Cell {
	for i := range cells {
		c := &cells[i]
		if c.Mode == ModePodIP && c.From == from && c.To == to && c.Port == port && string(c.Protocol) == proto {
			return c
		}
	}
	return nil
}

func TestCompare(t *testing.T) {
	u := NewUniverse()
	all := Generate(u)
	byName := map[string]Case{}
	for _, c := range all {
		byName[c.Name] = c
	}
	tests := []struct {
		name    string
		caseN   string
		mutate  func(probes []Probe, obs map[cellKey]Observation)
		flows   bool
		wrong   int
		cell    [4]string // from, to, port, proto of a wrong cell
		whyPart string
	}{
		{name: "all agree", caseN: "deny-all/ingress/ns-x", flows: true},
		{name: "probe connects where denied", caseN: "deny-all/ingress/ns-x", flows: true,
			mutate: func(p []Probe, obs map[cellKey]Observation) {
				setProbe(p, "y/a", "x/b", 80, "TCP", true)
				obs[cellKey{"y/a", "x/b", 80, "TCP", ModePodIP}] = Observation{Verdict: ObservedAllowed}
			},
			wrong: 1, cell: [4]string{"y/a", "x/b", "80", "TCP"}, whyPart: "probe: allowed, expected denied"},
		{name: "denied_by names the wrong policy", caseN: "deny-all/ingress/ns-x", flows: true,
			mutate: func(p []Probe, obs map[cellKey]Observation) {
				obs[cellKey{"z/c", "x/a", 81, "UDP", ModePodIP}] = Observation{Verdict: ObservedDenied, Direction: "INGRESS", DeniedBy: []string{"x/other"}}
			},
			wrong: 1, cell: [4]string{"z/c", "x/a", "81", "UDP"}, whyPart: "denied_by [x/other], the oracle names [x/deny-all-ingress]"},
		{name: "drop on the wrong side", caseN: "deny-all/egress/ns-x", flows: true,
			mutate: func(p []Probe, obs map[cellKey]Observation) {
				obs[cellKey{"x/a", "y/b", 80, "TCP", ModePodIP}] = Observation{Verdict: ObservedDenied, Direction: "INGRESS", DeniedBy: []string{"x/deny-all-egress"}}
			},
			wrong: 1, cell: [4]string{"x/a", "y/b", "80", "TCP"}, whyPart: "dropped at ingress, expected at egress"},
		{name: "allowed_by not an allowing policy", caseN: "ingress/pod-b/tcp-80", flows: true,
			mutate: func(p []Probe, obs map[cellKey]Observation) {
				obs[cellKey{"x/b", "x/a", 80, "TCP", ModePodIP}] = Observation{Verdict: ObservedAllowed, AllowedBy: []string{"x/nope"}}
			},
			wrong: 1, cell: [4]string{"x/b", "x/a", "80", "TCP"}, whyPart: "allowed_by x/nope"},
		{name: "missing flows", caseN: "ingress/pod-b/tcp-80", flows: true,
			mutate: func(p []Probe, obs map[cellKey]Observation) { delete(obs, cellKey{"x/b", "x/a", 80, "TCP", ModePodIP}) },
			wrong:  1, cell: [4]string{"x/b", "x/a", "80", "TCP"}, whyPart: "flows: none observed"},
		{name: "probe denied where allowed, no flows mode", caseN: "ingress/pod-b/tcp-80",
			mutate: func(p []Probe, obs map[cellKey]Observation) { setProbe(p, "x/b", "x/a", 80, "TCP", false) },
			wrong:  1, cell: [4]string{"x/b", "x/a", "80", "TCP"}, whyPart: "probe: denied, expected allowed (allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := byName[tt.caseN]
			require.True(t, ok, tt.caseN)
			o, err := u.Oracle(u.StateOf(c.Steps[0]))
			require.NoError(t, err)
			probes, obs := fabricate(t, u, o)
			if tt.mutate != nil {
				tt.mutate(probes, obs)
			}
			if !tt.flows {
				obs = nil
			}
			cells, wrong, err := Compare(o, u.Pods(), AllModes(), probes, obs)
			require.NoError(t, err)
			assert.Len(t, cells, 2*4*81)
			assert.Equal(t, tt.wrong, wrong)
			if tt.wrong == 0 {
				return
			}
			port := int32(80)
			if tt.cell[2] == "81" {
				port = 81
			}
			cell := find(cells, tt.cell[0], tt.cell[1], port, tt.cell[3])
			require.NotNil(t, cell)
			assert.True(t, cell.Wrong)
			assert.Contains(t, strings.Join(cell.Why, "; "), tt.whyPart)
		})
	}
}

func setProbe(p []Probe, from, to string, port int32, proto string, reachable bool) {
	for i := range p {
		if p[i].Mode == ModePodIP && p[i].From == from && p[i].To == to && p[i].Port == port && string(p[i].Protocol) == proto {
			p[i].Reachable = reachable
		}
	}
}

func TestLoopbackIgnored(t *testing.T) {
	u := NewUniverse()
	o, err := u.Oracle(u.StateOf(Step{Policies: pols(denyAll("x", dirIngress))}))
	require.NoError(t, err)
	cells, wrong, err := Compare(o, u.Pods(), AllModes(), nil, nil)
	require.NoError(t, err)
	ignored := 0
	for _, c := range cells {
		if c.Ignored {
			ignored++
			assert.Equal(t, c.From, c.To)
		}
	}
	assert.Equal(t, 2*4*9, ignored)
	assert.Equal(t, 2*4*72, wrong, "every non-loopback cell is wrong when nothing was probed")
}

// TestJudgeCellNamesTheDecidingClusterPolicy: a connection denied (or accepted) by a ClusterNetworkPolicy
// must be attributed to it in the flows, not to the NetworkPolicies that select the pod.
func TestJudgeCellNamesTheDecidingClusterPolicy(t *testing.T) {
	u := NewUniverse()
	var c Case
	for _, g := range Generate(u) {
		if g.Name == "cnp/admin-deny-over-np-allow" {
			c = g
		}
	}
	require.NotEmpty(t, c.Steps)
	o, err := u.Oracle(u.StateOf(c.Steps[0]))
	require.NoError(t, err)
	denied, err := o.Evaluate(oracle.PodEndpoint("y", "a"), oracle.PodEndpoint("x", "a"), 80, corev1.ProtocolTCP)
	require.NoError(t, err)
	probe := &Probe{Reachable: false}
	assert.Empty(t, judgeCell(denied, probe, &Observation{Verdict: ObservedDenied, Direction: "INGRESS", DeniedBy: []string{"cnp/admin-deny-from-y"}}, true))
	assert.NotEmpty(t, judgeCell(denied, probe, &Observation{Verdict: ObservedDenied, Direction: "INGRESS", DeniedBy: []string{"x/allow-all-ingress"}}, true))
	allowed, err := o.Evaluate(oracle.PodEndpoint("z", "a"), oracle.PodEndpoint("x", "a"), 80, corev1.ProtocolTCP)
	require.NoError(t, err)
	assert.Empty(t, judgeCell(allowed, &Probe{Reachable: true}, &Observation{Verdict: ObservedAllowed, AllowedBy: []string{"x/allow-all-ingress"}}, true))
	assert.Equal(t, []string{"cnp/x"}, policyRefs([]flow.Policy{{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "x", Tier: flow.TierAdmin, Action: flow.ActionDeny}, {Kind: flow.PolicyKindDefaultDeny}}))
	assert.Equal(t, []string{"x/np"}, policyRefs([]flow.Policy{{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "p", Tier: flow.TierAdmin, Action: flow.ActionPass},
		{Kind: flow.PolicyKindNetworkPolicy, Namespace: "x", Name: "np", Tier: flow.TierNetworkPolicy, Action: flow.ActionAllow}}), "an Admin Pass did not decide")
}
