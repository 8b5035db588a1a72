package oracle

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The upstream e2e model (test/e2e/network/netpol/model.go): namespaces x, y, z labelled ns=<name>
// (plus kubernetes.io/metadata.name), pods labelled pod=<name>, one container per port x protocol
// with the container port named serve-<port>-<protocol>, and one Service per pod (s-<ns>-<pod>,
// selector pod=<name>, one port per container, no targetPort) through which the suite probes.

// upstreamCluster builds the model for the pods ("x/a", ...) of one spec.
func upstreamCluster(pods []string, ports []int32, protocols []corev1.Protocol, nsLabels, podLabels map[string]map[string]string) Cluster {
	var c Cluster
	for i, ns := range []string{"x", "y", "z"} {
		l := map[string]string{"ns": ns}
		for k, v := range nsLabels[ns] {
			l[k] = v
		}
		c.Namespaces = append(c.Namespaces, Namespace{Name: ns, Labels: l})
		for j, name := range []string{"a", "b", "c"} {
			ref := ns + "/" + name
			if indexOf(pods, ref) < 0 {
				continue
			}
			l := map[string]string{"pod": name}
			for k, v := range podLabels[ref] {
				l[k] = v
			}
			p := Pod{Namespace: ns, Name: name, Labels: l, IP: netip.AddrFrom4([4]byte{10, 244, byte(1 + i), byte(10 + j)})}
			svc := Service{Namespace: ns, Name: "s-" + ns + "-" + name, Selector: map[string]string{"pod": name},
				ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(1 + i), byte(10 + j)})}
			for _, proto := range protocols {
				for _, port := range ports {
					lower := strings.ToLower(string(proto))
					p.Ports = append(p.Ports, ContainerPort{Name: fmt.Sprintf("serve-%d-%s", port, lower), Port: port, Protocol: proto})
					svc.Ports = append(svc.Ports, ServicePort{Name: fmt.Sprintf("service-port-%s-%d", lower, port), Port: port, Protocol: proto})
				}
			}
			c.Pods = append(c.Pods, p)
			c.Services = append(c.Services, svc)
		}
	}
	return c
}

// reach is upstream's Reachability.Expected: default true, then the spec's Expect* calls in order.
type reach struct {
	pods []string
	m    map[[2]string]bool
}

func newReach(pods []string) *reach {
	r := &reach{pods: pods, m: map[[2]string]bool{}}
	for _, f := range pods {
		for _, t := range pods {
			r.m[[2]string{f, t}] = true
		}
	}
	return r
}

func (r *reach) expect(from, to string, v bool) { r.m[[2]string{from, to}] = v }

// peer is ExpectPeer: "" matches any namespace or pod.
func (r *reach) peer(fromNS, fromPod, toNS, toPod string, v bool) {
	match := func(ref, ns, pod string) bool {
		n, p, _ := strings.Cut(ref, "/")
		return (ns == "" || ns == n) && (pod == "" || pod == p)
	}
	for _, f := range r.pods {
		for _, t := range r.pods {
			if match(f, fromNS, fromPod) && match(t, toNS, toPod) {
				r.m[[2]string{f, t}] = v
			}
		}
	}
}

func (r *reach) allIngress(to string, v bool) {
	for _, f := range r.pods {
		r.m[[2]string{f, to}] = v
	}
}

func (r *reach) allEgress(from string, v bool) {
	for _, t := range r.pods {
		r.m[[2]string{from, t}] = v
	}
}

// Policy builders named after upstream's (policies.go).

type tweak func(*networkingv1.NetworkPolicy)

func genPolicy(name string, sel metav1.LabelSelector, tweaks ...tweak) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.NetworkPolicySpec{PodSelector: sel}}
	for _, t := range tweaks {
		t(np)
	}
	return np
}

func genPolicyLabels(name string, l map[string]string, tweaks ...tweak) *networkingv1.NetworkPolicy {
	return genPolicy(name, metav1.LabelSelector{MatchLabels: l}, tweaks...)
}

func in(ns string, np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	np.Namespace = ns
	return np
}

func ingressRules(rules ...networkingv1.NetworkPolicyIngressRule) tweak {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Spec.Ingress == nil {
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		np.Spec.Ingress = append(np.Spec.Ingress, rules...)
	}
}

func egressRules(rules ...networkingv1.NetworkPolicyEgressRule) tweak {
	return func(np *networkingv1.NetworkPolicy) {
		if np.Spec.Egress == nil {
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
		np.Spec.Egress = append(np.Spec.Egress, rules...)
	}
}

func ml(pairs ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func me(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func proto(p corev1.Protocol) *corev1.Protocol { return &p }

func numPort(p int32, pr *corev1.Protocol) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(p)
	return networkingv1.NetworkPolicyPort{Port: &v, Protocol: pr}
}

func namedPort(name string, pr *corev1.Protocol) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Port: &v, Protocol: pr}
}

func cidrPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}
