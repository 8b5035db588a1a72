package conformance

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// clusterPolicy is a ClusterNetworkPolicy of tier and priority whose subject is every pod of namespace ns.
func clusterPolicy(name string, tier policyv1beta1.Tier, priority int32, ns string) *policyv1beta1.ClusterNetworkPolicy {
	return &policyv1beta1.ClusterNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: policyv1beta1.GroupVersion.String(), Kind: "ClusterNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{Tier: tier, Priority: priority,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: nsSel(ns)}},
	}
}

// cnpIngress adds an ingress rule of action from the pods of namespace from (every namespace when "").
func cnpIngress(p *policyv1beta1.ClusterNetworkPolicy, action policyv1beta1.ClusterNetworkPolicyRuleAction, from string) *policyv1beta1.ClusterNetworkPolicy {
	sel := &metav1.LabelSelector{}
	if from != "" {
		sel = nsSel(from)
	}
	p.Spec.Ingress = append(p.Spec.Ingress, policyv1beta1.ClusterNetworkPolicyIngressRule{Name: string(action) + "-from-" + from, Action: action,
		From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: sel}}})
	return p
}

func cnps(p ...*policyv1beta1.ClusterNetworkPolicy) []*policyv1beta1.ClusterNetworkPolicy { return p }

// genClusterPolicies: the ClusterNetworkPolicy tier walk over NetworkPolicy (tag cluster-network-policy).
func genClusterPolicies(u *Universe) []Case {
	const (
		accept = policyv1beta1.ClusterNetworkPolicyRuleActionAccept
		deny   = policyv1beta1.ClusterNetworkPolicyRuleActionDeny
		pass   = policyv1beta1.ClusterNetworkPolicyRuleActionPass
		admin  = policyv1beta1.AdminTier
		base   = policyv1beta1.BaselineTier
	)
	allowFromY := withRule(netpol("x", "allow-from-y", metav1.LabelSelector{}), dirIngress,
		[]networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y")}}, nil)
	egressDeny := clusterPolicy("admin-deny-egress-z-tcp-80", admin, 10, "x")
	egressDeny.Spec.Egress = []policyv1beta1.ClusterNetworkPolicyEgressRule{{Name: "no-z-80", Action: deny,
		To:        []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Namespaces: nsSel("z")}},
		Protocols: []policyv1beta1.ClusterNetworkPolicyProtocol{{TCP: &policyv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &policyv1beta1.Port{Number: 80}}}}}}
	tagged := func(t ...string) []string { return tags(append(t, TagClusterNetworkPolicy)...) }
	return []Case{
		{Name: "cnp/admin-deny-over-np-allow", Tags: tagged(TagIngress, TagAllowAll, TagNamespaceSelector),
			Steps: []Step{{Name: "apply", Policies: pols(allowAll("x", dirIngress)),
				ClusterPolicies: cnps(cnpIngress(clusterPolicy("admin-deny-from-y", admin, 10, "x"), deny, "y"))}}},
		{Name: "cnp/admin-pass-then-np-deny", Tags: tagged(TagIngress, TagDenyAll, TagNamespaceSelector),
			Steps: []Step{{Name: "apply", Policies: pols(denyAll("x", dirIngress)),
				ClusterPolicies: cnps(cnpIngress(clusterPolicy("admin-pass-from-y", admin, 5, "x"), pass, "y"),
					cnpIngress(clusterPolicy("admin-accept-from-y", admin, 10, "x"), accept, "y"))}}},
		{Name: "cnp/baseline-deny-without-np", Tags: tagged(TagIngress, TagNamespaceSelector),
			Steps: []Step{{Name: "apply", ClusterPolicies: cnps(cnpIngress(clusterPolicy("baseline-deny-x", base, 10, "x"), deny, ""))}}},
		{Name: "cnp/baseline-not-consulted-when-np-selects", Tags: tagged(TagIngress, TagNamespaceSelector),
			Steps: []Step{{Name: "apply", Policies: pols(allowFromY),
				ClusterPolicies: cnps(cnpIngress(clusterPolicy("baseline-deny-x", base, 10, "x"), deny, ""))}}},
		{Name: "cnp/admin-priority-over-name", Tags: tagged(TagIngress, TagDenyAll, TagNamespaceSelector),
			Steps: []Step{{Name: "apply", Policies: pols(denyAll("x", dirIngress)),
				ClusterPolicies: cnps(cnpIngress(clusterPolicy("a-admin-deny-from-y", admin, 50, "x"), deny, "y"),
					cnpIngress(clusterPolicy("z-admin-accept-from-y", admin, 20, "x"), accept, "y"))}}},
		{Name: "cnp/admin-egress-deny-tcp-80", Tags: tagged(TagEgress, TagPort, TagTCP, TagNamespaceSelector),
			Steps: []Step{{Name: "apply", ClusterPolicies: cnps(egressDeny)}, {Name: "delete"}}},
	}
}
