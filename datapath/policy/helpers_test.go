package policy

import (
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// Small builders so test tables read like the YAML they stand for.

func kv(pairs ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

func sel(pairs ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: kv(pairs...)}
}

func expr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func podPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func nsPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func andPeer(ns, pod *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pod}
}

func blockPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func protoPtr(p corev1.Protocol) *corev1.Protocol { return &p }

func port(proto corev1.Protocol, p int) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(int32(p))
	return networkingv1.NetworkPolicyPort{Protocol: protoPtr(proto), Port: &v}
}

func portRange(proto corev1.Protocol, lo, hi int) networkingv1.NetworkPolicyPort {
	p := port(proto, lo)
	e := int32(hi)
	p.EndPort = &e
	return p
}

func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: protoPtr(proto), Port: &v}
}

func ingressRule(ports []networkingv1.NetworkPolicyPort, from ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: from, Ports: ports}
}

func egressRule(ports []networkingv1.NetworkPolicyPort, to ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: to, Ports: ports}
}

func ports(p ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return p }

// netpol builds a NetworkPolicy "ns/name".
func netpol(ref string, podSelector *metav1.LabelSelector, types []networkingv1.PolicyType,
	ingress []networkingv1.NetworkPolicyIngressRule, egress []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	ns, name, _ := strings.Cut(ref, "/")
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: types,
			Ingress:     ingress,
			Egress:      egress,
		},
	}
	if podSelector != nil {
		np.Spec.PodSelector = *podSelector
	}
	return np
}

func ingressOnly() []networkingv1.PolicyType {
	return []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
}

func egressOnly() []networkingv1.PolicyType {
	return []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
}

func bothTypes() []networkingv1.PolicyType {
	return []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
}

func ingressRules(r ...networkingv1.NetworkPolicyIngressRule) []networkingv1.NetworkPolicyIngressRule {
	return r
}

func egressRules(r ...networkingv1.NetworkPolicyEgressRule) []networkingv1.NetworkPolicyEgressRule {
	return r
}

func ref(s string) PodRef {
	ns, name, _ := strings.Cut(s, "/")
	return PodRef{Namespace: ns, Name: name}
}

func mkPod(refStr, ip, node string, labels map[string]string, ports ...ContainerPort) Pod {
	r := ref(refStr)
	p := Pod{Name: r.Name, Namespace: r.Namespace, Labels: labels, Node: node, Ports: ports}
	if ip != "" {
		p.IP = netip.MustParseAddr(ip)
	}
	return p
}

func cport(name string, proto maps.Proto, n uint16) ContainerPort {
	return ContainerPort{Name: name, Protocol: proto, Port: n}
}
