package conformance

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// genMultiple: several policies at once; the allowed set is the union of what each allows.
func genMultiple(u *Universe) []Case {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	peer := func(s *metav1.LabelSelector, ns *metav1.LabelSelector) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{PodSelector: s, NamespaceSelector: ns}}
	}
	ports := func(p ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return p }
	var out []Case
	for _, dir := range []string{dirIngress, dirEgress} {
		a := withRule(netpol("x", "allow-b-tcp-80", podSel("a")), dir, peer(ptrSel(podSel("b")), nil), ports(numPort(80, tcp)))
		b := withRule(netpol("x", "allow-ns-z-udp", podSel("a")), dir, peer(nil, nsSel("z")), ports(protoOnly(udp)))
		c := withRule(netpol("x", "allow-c-81", metav1.LabelSelector{}), dir, peer(ptrSel(podSel("c")), &metav1.LabelSelector{}), ports(numPort(81, tcp), numPort(81, udp)))
		two := withRule(netpol("x", "two-rules", podSel("b")), dir, peer(ptrSel(podSel("a")), nil), ports(numPort(80, tcp)))
		withRule(two, dir, peer(nil, nsSel("y")), ports(namedPort(PortName(81, udp), udp)))
		out = append(out,
			Case{Name: "multiple/" + dir + "/union-same-pod", Tags: tags(TagMultiplePolicies, dir, TagPodSelector, TagNamespaceSelector, TagPort, TagProtocolOnly, TagTCP, TagUDP),
				Steps: []Step{{Name: "apply", Policies: pols(a, b)}}},
			Case{Name: "multiple/" + dir + "/overlapping-selectors", Tags: tags(TagMultiplePolicies, dir, TagPodSelector, TagNsAndPod, TagNamespaceSelector, TagPort, TagTCP, TagUDP),
				Steps: []Step{{Name: "apply", Policies: pols(a, c)}}},
			Case{Name: "multiple/" + dir + "/deny-all-plus-allow", Tags: tags(TagMultiplePolicies, TagDenyAll, dir, TagPodSelector, TagPort, TagTCP),
				Steps: []Step{{Name: "apply", Policies: pols(denyAll("x", dir), a)}}},
			Case{Name: "multiple/" + dir + "/two-rules-one-policy", Tags: tags(dir, TagPodSelector, TagNamespaceSelector, TagPort, TagNamedPort, TagTCP, TagUDP),
				Steps: []Step{{Name: "apply", Policies: pols(two)}}},
		)
	}
	in := withRule(netpol("y", "ingress-from-x", metav1.LabelSelector{}), dirIngress, peer(nil, nsSel("x")), nil)
	eg := withRule(netpol("x", "egress-to-y-a", metav1.LabelSelector{}), dirEgress, peer(ptrSel(podSel("a")), nsSel("y")), nil)
	out = append(out, Case{Name: "multiple/ingress-y-and-egress-x", Tags: tags(TagMultiplePolicies, TagIngress, TagEgress, TagNamespaceSelector, TagNsAndPod, TagPodSelector),
		Steps: []Step{{Name: "apply", Policies: pols(in, eg)}}})
	return out
}
