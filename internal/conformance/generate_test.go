package conformance

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
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
