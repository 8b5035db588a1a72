package scenarios

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/starlab-dev/starlab/internal/flow"
)

func TestDecidedBy(t *testing.T) {
	pass := flow.Policy{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "pass-client-to-frontend", Tier: flow.TierAdmin, Action: flow.ActionPass}
	np := flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "frontend-policy", Tier: flow.TierNetworkPolicy, Action: flow.ActionAllow}
	deny := flow.Policy{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "deny-client-to-stars", Tier: flow.TierAdmin, Action: flow.ActionDeny}
	wantNP := flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "frontend-policy", Tier: flow.TierNetworkPolicy}
	assert.True(t, decidedBy([]flow.Policy{pass, np}, wantNP, "pass-client-to-frontend"))
	assert.True(t, decidedBy([]flow.Policy{pass, np}, wantNP, ""))
	assert.False(t, decidedBy([]flow.Policy{np}, wantNP, "pass-client-to-frontend"), "the Pass must be listed")
	assert.False(t, decidedBy([]flow.Policy{pass}, flow.Policy{Kind: pass.Kind, Name: pass.Name, Tier: pass.Tier}, ""), "a Pass does not decide")
	assert.True(t, decidedBy([]flow.Policy{deny}, flow.Policy{Kind: deny.Kind, Name: deny.Name, Tier: flow.TierAdmin}, ""))
	assert.False(t, decidedBy([]flow.Policy{deny}, flow.Policy{Kind: deny.Kind, Name: deny.Name, Tier: flow.TierBaseline}, ""), "the tier must match")
}
