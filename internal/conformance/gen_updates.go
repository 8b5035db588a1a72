package conformance

import (
	networkingv1 "k8s.io/api/networking/v1"
)

// genUpdates: a state changed under a running policy set: the policy edited, a pod or namespace
// relabelled, a policy deleted.
func genUpdates(u *Universe) []Case {
	var out []Case
	for _, dir := range []string{dirIngress, dirEgress} {
		fromPod := func(pod string) *networkingv1.NetworkPolicy {
			return withRule(netpol("x", "allow-pod", podSel("a")), dir, []networkingv1.NetworkPolicyPeer{{PodSelector: ptrSel(podSel(pod))}}, nil)
		}
		fromNs := withRule(netpol("x", "allow-ns-y", podSel("a")), dir, []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y")}}, nil)
		out = append(out,
			Case{Name: "update/" + dir + "/policy-changed", Tags: tags(TagUpdate, TagUpdatePolicy, dir, TagPodSelector),
				Steps: []Step{{Name: "allow pod b", Policies: pols(fromPod("b"))}, {Name: "allow pod c instead", Policies: pols(fromPod("c"))}}},
			Case{Name: "update/" + dir + "/peer-pod-relabelled", Tags: tags(TagUpdate, TagUpdatePodLabel, dir, TagPodSelector),
				Steps: []Step{
					{Name: "allow pod b", Policies: pols(fromPod("b"))},
					{Name: "x/c relabelled pod=b", Policies: pols(fromPod("b")), PodLabels: map[string]map[string]string{"x/c": {"pod": "b"}}},
					{Name: "x/c labels back", Policies: pols(fromPod("b"))},
				}},
			Case{Name: "update/" + dir + "/target-pod-relabelled", Tags: tags(TagUpdate, TagUpdatePodLabel, dir, TagDenyAll, TagPodSelector),
				Steps: []Step{
					{Name: "deny x/a", Policies: pols(withTypes(netpol("x", "deny-a", podSel("a")), dir))},
					{Name: "x/a relabelled pod=d", Policies: pols(withTypes(netpol("x", "deny-a", podSel("a")), dir)), PodLabels: map[string]map[string]string{"x/a": {"pod": "d"}}},
				}},
			Case{Name: "update/" + dir + "/namespace-relabelled", Tags: tags(TagUpdate, TagUpdateNsLabel, dir, TagNamespaceSelector),
				Steps: []Step{
					{Name: "allow ns y", Policies: pols(fromNs)},
					{Name: "z relabelled ns=y", Policies: pols(fromNs), NamespaceLabels: map[string]map[string]string{"z": {"ns": "y"}}},
					{Name: "y relabelled ns=other", Policies: pols(fromNs), NamespaceLabels: map[string]map[string]string{"z": {"ns": "y"}, "y": {"ns": "other"}}},
				}},
			Case{Name: "update/" + dir + "/policy-deleted", Tags: tags(TagUpdate, TagDeletePolicy, dir, TagDenyAll),
				Steps: []Step{{Name: "deny all in x", Policies: pols(denyAll("x", dir))}, {Name: "policy deleted"}}},
			Case{Name: "update/" + dir + "/one-of-two-deleted", Tags: tags(TagUpdate, TagDeletePolicy, TagMultiplePolicies, dir, TagDenyAll, TagPodSelector),
				Steps: []Step{{Name: "deny all + allow pod b", Policies: pols(denyAll("x", dir), fromPod("b"))}, {Name: "allow deleted", Policies: pols(denyAll("x", dir))}}},
		)
	}
	return out
}
