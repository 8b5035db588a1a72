package agent

import (
	"strconv"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
	"github.com/starlab-dev/starlab/internal/flow"
)

// attribute names the rules that decided a flow event: allowed_by for a forwarded flow, denied_by
// for a policy drop. An Admin Pass the decision went through comes first. A drop by a
// ClusterNetworkPolicy names its Deny rule; a NetworkPolicy default deny names the default deny
// and every NetworkPolicy selecting the endpoint for the direction.
func attribute(res *policy.Result, ev *flowevent.Event) (allowed, denied []flow.Policy) {
	dir := policy.DirIngress
	if ev.Direction == flowevent.DirectionEgress {
		dir = policy.DirEgress
	}
	var chain []flow.Policy
	if ev.PassPolicyID != 0 {
		if p, ok := policyName(res, ev.PassPolicyID, dir, ev.PassRule, maps.CNPPass); ok {
			chain = append(chain, p)
		}
	}
	policyDrop := ev.DropReason == flowevent.DropPolicyDenied || ev.DropReason == flowevent.DropPolicyUnrepresentable || ev.DropReason == flowevent.DropPolicyWriteFailed
	if ev.Verdict == flowevent.VerdictDropped {
		if !policyDrop {
			return nil, nil
		}
		if ref, ok := res.Policies[ev.PolicyID]; ok && ev.PolicyID != 0 && ref.IsCluster() {
			p, _ := policyName(res, ev.PolicyID, dir, ev.Rule, maps.CNPDeny)
			return nil, append(chain, p)
		}
		denied = append(chain, flow.Policy{Kind: flow.PolicyKindDefaultDeny, Tier: flow.TierNetworkPolicy})
		for _, ref := range policiesSelecting(res, ev.Ifindex, dir) {
			denied = append(denied, flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: ref.Namespace, Name: ref.Name, Tier: flow.TierNetworkPolicy})
		}
		return nil, denied
	}
	if ev.PolicyID != 0 {
		if p, ok := policyName(res, ev.PolicyID, dir, ev.Rule, maps.CNPAccept); ok {
			return append(chain, p), nil
		}
	}
	if len(chain) > 0 {
		return chain, nil
	}
	return nil, nil
}

// policyName is the flow.Policy of a policy id's rule; action is used for ClusterNetworkPolicies.
func policyName(res *policy.Result, id uint32, dir maps.Direction, rule uint16, action maps.CNPAction) (flow.Policy, bool) {
	ref, ok := res.Policies[id]
	if !ok {
		return flow.Policy{}, false
	}
	if !ref.IsCluster() {
		return flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: ref.Namespace, Name: ref.Name, Tier: flow.TierNetworkPolicy,
			Rule: strconv.Itoa(int(rule)), Action: flow.ActionAllow}, true
	}
	name := strconv.Itoa(int(rule))
	if names := res.ClusterRules[id][dir]; int(rule) < len(names) && names[rule] != "" {
		name = names[rule]
	}
	return flow.Policy{Kind: flow.PolicyKindClusterNetworkPolicy, Name: ref.Name, Tier: ref.Tier.String(), Rule: name, Action: action.String()}, true
}
