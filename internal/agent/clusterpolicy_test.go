package agent

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/policy"
	"github.com/starlab-dev/starlab/internal/flow"
)

// adminPolicy is an Admin ClusterNetworkPolicy on namespace shop with one ingress rule from shop.
func adminPolicy(name string, prio int32, action cnpv1beta1.ClusterNetworkPolicyRuleAction) *cnpv1beta1.ClusterNetworkPolicy {
	shop := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}}
	return &cnpv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1"},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{
			Tier: cnpv1beta1.AdminTier, Priority: prio,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: shop},
			Ingress: []cnpv1beta1.ClusterNetworkPolicyIngressRule{{Name: "from-shop", Action: action,
				From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: shop}}}},
		},
	}
}

// A ClusterNetworkPolicy the API server should have refused (priority out of range) reaches the
// agent: an Event on it, the problem counted by reason, its Deny rule denies all.
func TestClusterPolicyBadInputReported(t *testing.T) {
	f := newPolicyFixture(t)
	f.addWeb(t)
	var counted []string
	f.p.cnpProblems = func(reason string) { counted = append(counted, reason) }
	require.NoError(t, f.cnps.Add(adminPolicy("too-high", 5000, cnpv1beta1.ClusterNetworkPolicyRuleActionDeny)))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Equal(t, []string{policy.ProblemReasonPriority}, counted)
	select {
	case ev := <-f.events.Events:
		assert.Contains(t, ev, "PolicyRuleFailedClosed")
		assert.Contains(t, ev, "spec.priority 5000")
	default:
		t.Fatal("no Event for the bad ClusterNetworkPolicy")
	}
	res := f.p.PolicyResult()
	require.NotNil(t, res)
	e := res.Endpoints[12]
	require.NotNil(t, e)
	assert.NotZero(t, e.Flags&policy.EndpointIngressTiers)
	// the same problem on the next compilation is not reported again
	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Len(t, counted, 1)
}

// Two Admin policies of the same priority selecting the same pods: an Event on each.
func TestClusterPolicyOverlapReported(t *testing.T) {
	f := newPolicyFixture(t)
	f.addWeb(t)
	require.NoError(t, f.cnps.Add(adminPolicy("a", 10, cnpv1beta1.ClusterNetworkPolicyRuleActionAccept)))
	require.NoError(t, f.cnps.Add(adminPolicy("b", 10, cnpv1beta1.ClusterNetworkPolicyRuleActionDeny)))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	var got []string
	for len(f.events.Events) > 0 {
		got = append(got, <-f.events.Events)
	}
	require.Len(t, got, 2, "one Event per policy: %v", got)
	for _, ev := range got {
		assert.True(t, strings.HasPrefix(ev, "Warning PriorityOverlap"), ev)
		assert.Contains(t, ev, "ClusterNetworkPolicies a and b")
	}
}

// The verdict metric keeps at most maxVerdictSeries policy/rule pairs.
func TestVerdictMetricBounded(t *testing.T) {
	m := newMetrics(&Agent{})
	m.verdictLabels = newBoundedLabels(2)
	for _, name := range []string{"p1", "p2", "p3", "p4"} {
		m.countVerdict(&flow.Flow{EventType: flow.EventNew, Verdict: flow.VerdictForwarded,
			AllowedBy: []flow.Policy{{Kind: flow.PolicyKindClusterNetworkPolicy, Name: name, Tier: flow.TierAdmin, Rule: "0"}}})
	}
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(m.verdicts))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	series := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "starlab_policy_verdicts_total" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "policy" {
					series[l.GetValue()] = mm.GetCounter().GetValue()
				}
			}
		}
	}
	assert.Equal(t, map[string]float64{"p1": 1, "p2": 1, "other": 2}, series)
}
