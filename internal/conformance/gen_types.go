package conformance

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// genPolicyTypes: what spec.policyTypes does to rules that are there or missing.
func genPolicyTypes(u *Universe) []Case {
	fromB := []networkingv1.NetworkPolicyPeer{{PodSelector: ptrSel(podSel("b"))}}
	tcp80 := []networkingv1.NetworkPolicyPort{numPort(80, corev1.ProtocolTCP)}
	mk := func(name string) *networkingv1.NetworkPolicy { return netpol("x", name, podSel("a")) }

	// Ingress rule, policyTypes Egress only: the ingress rule is ignored, egress is denied.
	egressOnly := mk("ingress-rule-egress-type")
	egressOnly.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromB}}
	withTypes(egressOnly, dirEgress)

	// No policyTypes with an egress rule: both directions are isolated.
	defaulted := mk("egress-rule-no-types")
	defaulted.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: fromB, Ports: tcp80}}

	// No policyTypes, no rules: ingress isolated only.
	empty := mk("no-rules-no-types")

	// Both types, only an ingress rule: egress denied entirely.
	both := mk("both-types-ingress-rule")
	both.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: fromB, Ports: tcp80}}
	withTypes(both, dirIngress, dirEgress)

	// Both types with both rules.
	full := mk("both-types-both-rules")
	full.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y")}}}}
	full.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: ptrSel(podSel("c"))}}}}
	withTypes(full, dirIngress, dirEgress)

	one := func(name string, np *networkingv1.NetworkPolicy, t ...string) Case {
		return Case{Name: "policy-types/" + name, Tags: tags(append([]string{TagPolicyTypes, TagPodSelector}, t...)...), Steps: []Step{{Name: "apply", Policies: pols(np)}}}
	}
	return []Case{
		one("ingress-rule-egress-type", egressOnly, TagIngress, TagEgress),
		one("egress-rule-no-types", defaulted, TagIngress, TagEgress, TagPort, TagTCP),
		one("no-rules-no-types", empty, TagIngress, TagDenyAll),
		one("both-types-ingress-rule", both, TagIngress, TagEgress, TagPort, TagTCP),
		one("both-types-both-rules", full, TagIngress, TagEgress, TagNamespaceSelector, TagNsAndPod),
	}
}
