package conformance

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Policy-building helpers for the generators.

func netpol(ns, name string, target metav1.LabelSelector) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: target},
	}
}

func podSel(pod string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: map[string]string{"pod": pod}}
}

func nsSel(ns string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"ns": ns}}
}

func ptrSel(s metav1.LabelSelector) *metav1.LabelSelector { return &s }

func expr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func ipBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func hostCIDR(ip netip.Addr) string { return netip.PrefixFrom(ip, ip.BitLen()).String() }

func numPort(port int32, proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func namedPort(name string, proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func rangePort(from, to int32, proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	p := numPort(from, proto)
	p.EndPort = &to
	return p
}

func protoOnly(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

// withRule adds one rule (peers, ports) in direction dir and sets policyTypes to dir.
func withRule(np *networkingv1.NetworkPolicy, dir string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) *networkingv1.NetworkPolicy {
	if dir == dirIngress {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
	} else {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
	}
	return withTypes(np, dir)
}

// withTypes sets spec.policyTypes to the given directions.
func withTypes(np *networkingv1.NetworkPolicy, dirs ...string) *networkingv1.NetworkPolicy {
	np.Spec.PolicyTypes = nil
	for _, d := range dirs {
		if d == dirIngress {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		} else {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	return np
}

const (
	dirIngress = "ingress"
	dirEgress  = "egress"
)
