package hubbleapi

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/starlab-dev/starlab/internal/flow"
)

// A ClusterNetworkPolicy keeps its kind; tier, rule and action travel as labels.
func TestPoliciesProtoClusterNetworkPolicy(t *testing.T) {
	got := policiesProto([]flow.Policy{
		{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "guard", Tier: flow.TierAdmin, Rule: "from-shop", Action: flow.ActionPass},
		{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "allow-client"},
	})
	assert.Equal(t, flow.PolicyKindClusterNetworkPolicy, got[0].GetKind())
	assert.Equal(t, "guard", got[0].GetName())
	assert.Empty(t, got[0].GetNamespace())
	assert.Equal(t, []string{"tier=Admin", "rule=from-shop", "action=Pass"}, got[0].GetLabels())
	assert.Empty(t, got[1].GetLabels())
}
