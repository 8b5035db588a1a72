package conformance

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Probe modes: what address a probe dials.
const (
	ModePodIP     = "pod-ip"     // the destination pod's IP
	ModeServiceIP = "service-ip" // the ClusterIP of the destination pod's own Service s-<pod>
	// ModeServiceName dials the Service's DNS name s-<pod>.<ns>.svc.<ClusterDomain>. (the pods
	// resolve it through the cluster DNS, so every policy with egress also allows DNS:
	// WithDNSEgress).
	ModeServiceName = "service-name"
)

// ClusterDomain is the cluster's DNS domain (kind's and kubeadm's default).
const ClusterDomain = "cluster.local"

// AllModes lists the default probe modes (the ones needing no cluster DNS).
func AllModes() []string { return []string{ModePodIP, ModeServiceIP} }

// KnownModes lists every probe mode.
func KnownModes() []string { return []string{ModePodIP, ModeServiceIP, ModeServiceName} }

// serviceMode reports whether mode dials the destination's Service (by ClusterIP or by name).
func serviceMode(mode string) bool { return mode == ModeServiceIP || mode == ModeServiceName }

// ParseModes checks a --modes list.
func ParseModes(modes []string) ([]string, error) {
	if len(modes) == 0 {
		return []string{ModePodIP}, nil
	}
	for _, m := range modes {
		if !slices.Contains(KnownModes(), m) {
			return nil, fmt.Errorf("probe mode %q is unknown: use %s", m, strings.Join(KnownModes(), ", "))
		}
	}
	return modes, nil
}

// ServiceName is the Service in front of pod ns/name (selecting it by PodIDLabel).
func ServiceName(podName string) string { return "s-" + podName }

// DNSNamespace is where the cluster DNS runs.
const DNSNamespace = "kube-system"

// WithDNSEgress returns st with, in every policy that isolates egress, one more egress rule
// allowing UDP and TCP 53 to the pods of DNSNamespace, as cyclonus does, so service-name probes can
// resolve their target. The suite never probes port 53, so no expected cell changes; the oracle
// and the cluster both get the policies with the rule.
func WithDNSEgress(st State) State {
	out := st
	out.Policies = make(map[string]*networkingv1.NetworkPolicy, len(st.Policies))
	udp, tcp, port := corev1.ProtocolUDP, corev1.ProtocolTCP, intstr.FromInt32(53)
	rule := networkingv1.NetworkPolicyEgressRule{
		To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": DNSNamespace}}}},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}, {Protocol: &tcp, Port: &port}},
	}
	for k, np := range st.Policies {
		if !isolatesEgress(np) {
			out.Policies[k] = np
			continue
		}
		c := np.DeepCopy()
		c.Spec.Egress = append(c.Spec.Egress, *rule.DeepCopy())
		if len(c.Spec.PolicyTypes) == 0 {
			// Without policyTypes a policy with egress rules isolates egress too, and ingress
			// always: say so, as the added rule would otherwise be the only reason.
			c.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		}
		out.Policies[k] = c
	}
	return out
}

// isolatesEgress reports whether np selects its pods for egress.
func isolatesEgress(np *networkingv1.NetworkPolicy) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return len(np.Spec.Egress) > 0
	}
	return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
}
