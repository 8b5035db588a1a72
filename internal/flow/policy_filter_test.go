package flow

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPolicyFilter(t *testing.T) {
	allowed := benchFlow(1, time.Now()) // allowed by stars/allow-client
	denied := benchFlow(1, time.Now())
	denied.AllowedBy, denied.DeniedBy = nil, []Policy{{Kind: PolicyKindDefaultDeny}, {Kind: PolicyKindNetworkPolicy, Namespace: "shop", Name: "deny-db"}}
	none := benchFlow(1, time.Now())
	none.AllowedBy = nil
	for _, tt := range []struct {
		policy string
		want   []bool // allowed, denied, none
	}{
		{"allow-client", []bool{true, false, false}},
		{"stars/allow-client", []bool{true, false, false}},
		{"shop/allow-client", []bool{false, false, false}},
		{"deny-db", []bool{false, true, false}},
		{"shop/", []bool{false, true, false}},
	} {
		m, err := NewMatcher([]Filter{{Policy: []string{tt.policy}}}, nil)
		require.NoError(t, err)
		for i, f := range []*Flow{allowed, denied, none} {
			require.Equal(t, tt.want[i], m.Match(f), "policy %s, flow %d", tt.policy, i)
		}
	}
	_, err := NewMatcher([]Filter{{Policy: []string{"a/b/c"}}}, nil)
	require.ErrorContains(t, err, "policy")
	var q Filter
	require.NoError(t, filterParams["policy"].set(&q, "stars/allow-client"))
	require.Equal(t, []string{"stars/allow-client"}, q.Policy)
}
