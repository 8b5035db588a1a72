package conformance

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// peerChoice is one way to name the other side of a rule.
type peerChoice struct {
	name  string
	tags  []string
	peers []networkingv1.NetworkPolicyPeer
}

// portChoice is one way to restrict a rule's ports.
type portChoice struct {
	name  string
	tags  []string
	ports []networkingv1.NetworkPolicyPort
}

func peerChoices(u *Universe) []peerChoice {
	yb := u.IPs["y/b"]
	wide := netip.PrefixFrom(u.IPs["x/a"], 16).Masked().String()
	return []peerChoice{
		{"pod-b", []string{TagPodSelector}, []networkingv1.NetworkPolicyPeer{{PodSelector: ptrSel(podSel("b"))}}},
		{"all-pods-in-ns", []string{TagPodSelector}, []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}},
		{"ns-y", []string{TagNamespaceSelector}, []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y")}}},
		{"all-namespaces", []string{TagNamespaceSelector}, []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}},
		{"ns-y-and-pod-b", []string{TagNsAndPod, TagNamespaceSelector, TagPodSelector}, []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y"), PodSelector: ptrSel(podSel("b"))}}},
		{"ns-y-or-pod-b", []string{TagMultiPeer, TagNamespaceSelector, TagPodSelector}, []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y")}, {PodSelector: ptrSel(podSel("b"))}}},
		{"ns-in-y-z", []string{TagMatchExpressions, TagNamespaceSelector}, []networkingv1.NetworkPolicyPeer{{NamespaceSelector: expr("ns", metav1.LabelSelectorOpIn, "y", "z")}}},
		{"pod-notin-a", []string{TagMatchExpressions, TagPodSelector}, []networkingv1.NetworkPolicyPeer{{PodSelector: expr("pod", metav1.LabelSelectorOpNotIn, "a")}}},
		{"all-ns-pod-exists-c", []string{TagMatchExpressions, TagNsAndPod, TagNamespaceSelector, TagPodSelector}, []networkingv1.NetworkPolicyPeer{{NamespaceSelector: expr("team", metav1.LabelSelectorOpDoesNotExist), PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pod", Operator: metav1.LabelSelectorOpExists}, {Key: "pod", Operator: metav1.LabelSelectorOpIn, Values: []string{"c"}}}}}}},
		{"ipblock-y-b", []string{TagIPBlock}, []networkingv1.NetworkPolicyPeer{ipBlock(hostCIDR(yb))}},
		{"ipblock-except-y-b", []string{TagIPBlock, TagIPBlockExcept}, []networkingv1.NetworkPolicyPeer{ipBlock(wide, hostCIDR(yb))}},
	}
}

func portChoices() []portChoice {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	return []portChoice{
		{"all-ports", []string{TagAllPorts, TagTCP, TagUDP}, nil},
		{"tcp-80", []string{TagPort, TagTCP}, []networkingv1.NetworkPolicyPort{numPort(80, tcp)}},
		{"udp-81", []string{TagPort, TagUDP}, []networkingv1.NetworkPolicyPort{numPort(81, udp)}},
		{"named-serve-81-tcp", []string{TagNamedPort, TagTCP}, []networkingv1.NetworkPolicyPort{namedPort(PortName(81, tcp), tcp)}},
		{"tcp-80-81-endport", []string{TagEndPort, TagTCP}, []networkingv1.NetworkPolicyPort{rangePort(80, 81, tcp)}},
		{"udp-any-port", []string{TagProtocolOnly, TagUDP}, []networkingv1.NetworkPolicyPort{protoOnly(udp)}},
	}
}

// genPeers: one policy selecting x/a with one rule, for every direction x peer x port choice.
func genPeers(u *Universe) []Case {
	var out []Case
	for _, dir := range []string{dirIngress, dirEgress} {
		for _, pc := range peerChoices(u) {
			for _, po := range portChoices() {
				np := withRule(netpol("x", "allow-"+pc.name, podSel("a")), dir, pc.peers, po.ports)
				out = append(out, Case{
					Name:  dir + "/" + pc.name + "/" + po.name,
					Tags:  tags(append(append([]string{dir}, pc.tags...), po.tags...)...),
					Steps: []Step{{Name: "apply", Policies: pols(np)}},
				})
			}
		}
	}
	return out
}
