package conformance

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/starlab-dev/starlab/internal/oracle"
)

func TestGenerateCountNamesTags(t *testing.T) {
	u := NewUniverse()
	all := Generate(u)
	require.GreaterOrEqual(t, len(all), 100, "the full set has at least 100 cases")
	seen := map[string]bool{}
	used := map[string]bool{}
	for _, c := range all {
		assert.False(t, seen[c.Name], "case name %s is unique", c.Name)
		seen[c.Name] = true
		assert.NotEmpty(t, c.Steps, c.Name)
		assert.True(t, slices.IsSorted(c.Tags), "%s tags sorted", c.Name)
		for _, tag := range c.Tags {
			assert.Contains(t, AllTags(), tag, "%s: tag %s is listed in AllTags", c.Name, tag)
			used[tag] = true
		}
		assert.True(t, c.HasTag(TagIngress) || c.HasTag(TagEgress), "%s names a direction", c.Name)
	}
	for _, tag := range AllTags() {
		if tag == TagSCTP {
			continue
		}
		assert.True(t, used[tag], "some case uses tag %s", tag)
	}
}

func TestGeneratedCasesAreValidForTheOracle(t *testing.T) {
	u := NewUniverse()
	for _, c := range Generate(u) {
		for _, s := range c.Steps {
			st := u.StateOf(s)
			o, err := u.Oracle(st)
			require.NoError(t, err, "%s step %s", c.Name, s.Name)
			assert.Empty(t, o.Warnings(), "%s step %s: the API server would reject it", c.Name, s.Name)
			tables, err := o.TruthTable(u.Pods(), Columns())
			require.NoError(t, err, "%s step %s", c.Name, s.Name)
			assert.Len(t, tables, 4)
		}
	}
}

// Each case's tags name what its policies use.
func TestTagsMatchPolicies(t *testing.T) {
	for _, c := range Generate(NewUniverse()) {
		var hasIPBlock, hasEndPort, hasNamed, hasExpr bool
		for _, s := range c.Steps {
			for _, np := range s.Policies {
				walkPeers(np, func(p networkingv1.NetworkPolicyPeer) {
					hasIPBlock = hasIPBlock || p.IPBlock != nil
					hasExpr = hasExpr || (p.PodSelector != nil && len(p.PodSelector.MatchExpressions) > 0) ||
						(p.NamespaceSelector != nil && len(p.NamespaceSelector.MatchExpressions) > 0)
				})
				walkPorts(np, func(p networkingv1.NetworkPolicyPort) {
					hasEndPort = hasEndPort || p.EndPort != nil
					hasNamed = hasNamed || (p.Port != nil && p.Port.StrVal != "")
				})
			}
		}
		assert.Equal(t, hasIPBlock, c.HasTag(TagIPBlock), "%s ipblock", c.Name)
		assert.Equal(t, hasEndPort, c.HasTag(TagEndPort), "%s end-port", c.Name)
		assert.Equal(t, hasNamed, c.HasTag(TagNamedPort), "%s named-port", c.Name)
		assert.Equal(t, hasExpr, c.HasTag(TagMatchExpressions), "%s match-expressions", c.Name)
	}
}

func walkPeers(np *networkingv1.NetworkPolicy, fn func(networkingv1.NetworkPolicyPeer)) {
	for _, r := range np.Spec.Ingress {
		for _, p := range r.From {
			fn(p)
		}
	}
	for _, r := range np.Spec.Egress {
		for _, p := range r.To {
			fn(p)
		}
	}
}

func walkPorts(np *networkingv1.NetworkPolicy, fn func(networkingv1.NetworkPolicyPort)) {
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			fn(p)
		}
	}
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			fn(p)
		}
	}
}

func TestSelect(t *testing.T) {
	all := Generate(NewUniverse())
	tests := []struct {
		name    string
		sel     Selection
		check   func(t *testing.T, got []Case)
		wantErr string
	}{
		{name: "full", sel: Selection{}, check: func(t *testing.T, got []Case) { assert.Len(t, got, len(all)) }},
		{name: "quick has every listed case", sel: Selection{Profile: ProfileQuick}, check: func(t *testing.T, got []Case) {
			assert.Len(t, got, len(quickCases()))
		}},
		{name: "include", sel: Selection{Include: []string{TagIPBlock}}, check: func(t *testing.T, got []Case) {
			require.NotEmpty(t, got)
			for _, c := range got {
				assert.True(t, c.HasTag(TagIPBlock), c.Name)
			}
		}},
		{name: "exclude", sel: Selection{Exclude: []string{TagEgress, TagUpdate}}, check: func(t *testing.T, got []Case) {
			require.NotEmpty(t, got)
			for _, c := range got {
				assert.False(t, c.HasTag(TagEgress) || c.HasTag(TagUpdate), c.Name)
			}
		}},
		{name: "unknown tag", sel: Selection{Include: []string{"nope"}}, wantErr: `tag "nope" is unknown`},
		{name: "unknown profile", sel: Selection{Profile: "slow"}, wantErr: `profile "slow" is unknown`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(all, tt.sel)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, got)
		})
	}
}

// TestClusterPolicyCasesWalkTheTiers: the oracle's expectations for the cluster-network-policy cases.
func TestClusterPolicyCasesWalkTheTiers(t *testing.T) {
	u := NewUniverse()
	byName := map[string]Case{}
	for _, c := range Generate(u) {
		byName[c.Name] = c
	}
	type cell struct {
		from, to string
		port     int32
		proto    corev1.Protocol
		allowed  bool
		tier     string
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	for name, cells := range map[string][]cell{
		"cnp/admin-deny-over-np-allow":               {{"y/a", "x/a", 80, tcp, false, oracle.TierAdmin}, {"z/a", "x/a", 80, tcp, true, oracle.TierNetworkPolicy}},
		"cnp/admin-pass-then-np-deny":                {{"y/a", "x/a", 80, tcp, false, oracle.TierNetworkPolicy}},
		"cnp/baseline-deny-without-np":               {{"y/a", "x/a", 80, tcp, false, oracle.TierBaseline}, {"x/b", "x/a", 81, udp, false, oracle.TierBaseline}, {"x/a", "y/a", 80, tcp, true, oracle.TierDefault}},
		"cnp/baseline-not-consulted-when-np-selects": {{"y/a", "x/a", 80, tcp, true, oracle.TierNetworkPolicy}, {"z/a", "x/a", 80, tcp, false, oracle.TierNetworkPolicy}},
		"cnp/admin-priority-over-name":               {{"y/a", "x/a", 80, tcp, true, oracle.TierAdmin}, {"z/a", "x/a", 80, tcp, false, oracle.TierNetworkPolicy}},
		"cnp/admin-egress-deny-tcp-80":               {{"x/a", "z/a", 80, tcp, false, oracle.TierAdmin}, {"x/a", "z/a", 80, udp, true, oracle.TierDefault}, {"x/a", "z/a", 81, tcp, true, oracle.TierDefault}},
	} {
		c, ok := byName[name]
		require.True(t, ok, name)
		assert.True(t, c.HasTag(TagClusterNetworkPolicy), name)
		o, err := u.Oracle(u.StateOf(c.Steps[0]))
		require.NoError(t, err, name)
		for _, ce := range cells {
			fromNS, fromPod, _ := strings.Cut(ce.from, "/")
			toNS, toPod, _ := strings.Cut(ce.to, "/")
			v, err := o.Evaluate(oracle.PodEndpoint(fromNS, fromPod), oracle.PodEndpoint(toNS, toPod), ce.port, ce.proto)
			require.NoError(t, err)
			assert.Equal(t, ce.allowed, v.Allowed, "%s %s -> %s %s/%d: %s", name, ce.from, ce.to, ce.proto, ce.port, v.Reason)
			decider := v.Ingress
			if !v.Egress.Allowed || v.Egress.Tier == oracle.TierAdmin {
				decider = v.Egress
			}
			assert.Equal(t, ce.tier, decider.Tier, "%s %s -> %s: %s", name, ce.from, ce.to, v.Reason)
		}
	}
	sel, err := Select(Generate(u), Selection{Exclude: DefaultExcludes()})
	require.NoError(t, err)
	for _, c := range sel {
		assert.False(t, c.HasTag(TagClusterNetworkPolicy), "%s runs only with --include cluster-network-policy", c.Name)
	}
}
