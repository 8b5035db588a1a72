package oracle

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The specs of kubernetes/kubernetes test/e2e/network/netpol/network_policy.go (read at commit
// 008b3652959ca58af8be3fb5b6ecfe9ae7638282), one row per ginkgo spec, named after it. Each row holds
// the spec's pods, its container ports and protocols, its policies in their final state (update specs:
// after the last update; deletion specs: after the deletion), and every ValidateOrFail of that final
// state with its expected reachability built by the same Expect* calls in the same order. As upstream,
// loopback (a pod to itself) is ignored. Namespaces are literally x, y and z.

type upstreamCheck struct {
	port   int32
	proto  corev1.Protocol
	expect func(r *reach)
}

type upstreamCase struct {
	name      string
	pods      []string
	ports     []int32
	protocols []corev1.Protocol
	nsLabels  map[string]map[string]string
	podLabels map[string]map[string]string
	policies  []*networkingv1.NetworkPolicy
	checks    []upstreamCheck
}

const (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
	nsK  = MetadataNameLabel
)

var (
	protoTCP  = proto(tcp)
	protoUDP  = proto(udp)
	protoSCTP = proto(sctp)
	all       = metav1.LabelSelector{}
)

func rIn(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports}
}

func rEg(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports}
}

func peers(p ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return p }

func podSel(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func nsSel(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func both(ns, pod *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pod}
}

func noop(*reach) {}

func podA() map[string]string { return map[string]string{"pod": "a"} }

func upstreamCases() []upstreamCase {
	tcpOnly := []corev1.Protocol{tcp}
	p80, p81, p8081 := []int32{80}, []int32{81}, []int32{80, 81}
	check := func(port int32, pr corev1.Protocol, f func(r *reach)) upstreamCheck {
		return upstreamCheck{port: port, proto: pr, expect: f}
	}
	// Shared specs of the TCP, UDP and SCTP contexts.
	defaultDenyIngress := func(pr corev1.Protocol) upstreamCase {
		return upstreamCase{
			pods: []string{"x/a", "x/b", "y/a", "y/b"}, ports: p80, protocols: []corev1.Protocol{pr},
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("deny-ingress", all, ingressRules()))},
			checks:   []upstreamCheck{check(80, pr, func(r *reach) { r.peer("", "", "x", "", false) })},
		}
	}
	byPorts81 := func(pr corev1.Protocol, pods []string) upstreamCase {
		return upstreamCase{
			pods: pods, ports: p81, protocols: []corev1.Protocol{pr},
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-ns-selector", podA(),
				ingressRules(rIn(peers(nsSel(ml(nsK, "y"))), numPort(81, proto(pr))))))},
			checks: []upstreamCheck{check(81, pr, func(r *reach) {
				r.peer("x", "", "x", "a", false)
				r.peer("y", "", "x", "a", true)
				r.peer("z", "", "x", "a", false)
			})},
		}
	}
	podInOtherNS := func(pr corev1.Protocol, pods []string) upstreamCase {
		return upstreamCase{
			pods: pods, ports: p80, protocols: []corev1.Protocol{pr},
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-ns-y-pod-a-via-namespace-pod-selector", podA(),
				ingressRules(rIn(peers(both(ml(nsK, "y"), ml("pod", "a")))))))},
			checks: []upstreamCheck{check(80, pr, func(r *reach) {
				r.allIngress("x/a", false)
				r.expect("y/a", "x/a", true)
			})},
		}
	}
	named := func(name string, c upstreamCase) upstreamCase {
		c.name = name
		return c
	}

	return []upstreamCase{
		named("TCP: should support a 'default-deny-ingress' policy", defaultDenyIngress(tcp)),
		{
			name: "TCP: should support a 'default-deny-all' policy",
			pods: []string{"x/a", "x/b", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("deny-all", all, ingressRules(), egressRules()))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.peer("", "", "x", "", false)
				r.peer("x", "", "", "", false)
			})},
		},
		{
			name: "TCP: should enforce policy to allow traffic from pods within server namespace based on PodSelector",
			pods: []string{"x/a", "x/b", "x/c", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("x-a-allows-x-b", podA(), ingressRules(rIn(peers(podSel(ml("pod", "b")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allIngress("x/a", false)
				r.expect("x/b", "x/a", true)
			})},
		},
		{
			name: "TCP: should enforce policy to allow ingress traffic for a target",
			pods: []string{"x/a", "x/b", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{
				in("x", genPolicy("deny-all", all, ingressRules())),
				in("x", genPolicyLabels("allow-all-to-a", podA(), ingressRules(rIn(peers(both(&metav1.LabelSelector{}, &metav1.LabelSelector{})))))),
			},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allIngress("x/a", true)
				r.allIngress("x/b", false)
			})},
		},
		{
			name: "TCP: should enforce policy to allow ingress traffic from pods in all namespaces",
			pods: []string{"x/a", "x/b", "y/a", "z/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-from-another-ns", podA(), ingressRules(rIn(peers(nsSel(ml()))))))},
			checks:   []upstreamCheck{check(80, tcp, noop)},
		},
		{
			name: "TCP: should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
			pods: []string{"x/a", "x/b", "y/a", "z/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-ns-selector", podA(), ingressRules(rIn(peers(nsSel(ml(nsK, "y")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.peer("x", "", "x", "a", false)
				r.peer("z", "", "x", "a", false)
			})},
		},
		{
			name: "TCP: should enforce policy based on PodSelector with MatchExpressions",
			pods: []string{"x/a", "x/b", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("x-a-allows-x-b", podA(),
				ingressRules(rIn(peers(podSel(me("pod", metav1.LabelSelectorOpIn, "b")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allIngress("x/a", false)
				r.expect("x/b", "x/a", true)
			})},
		},
		{
			name: "TCP: should enforce policy based on NamespaceSelector with MatchExpressions",
			pods: []string{"x/a", "x/b", "y/a", "z/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-ns-y-match-selector", podA(),
				ingressRules(rIn(peers(nsSel(me(nsK, metav1.LabelSelectorOpIn, "y")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.peer("x", "", "x", "a", false)
				r.peer("z", "", "x", "a", false)
			})},
		},
		{
			name: "TCP: should enforce policy based on PodSelector or NamespaceSelector",
			pods: []string{"x/a", "x/b", "x/c", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-ns-y-match-selector", podA(),
				ingressRules(rIn(peers(nsSel(me(nsK, metav1.LabelSelectorOpNotIn, "x")), podSel(ml("pod", "b")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.expect("x/a", "x/a", false)
				r.expect("x/c", "x/a", false)
			})},
		},
		{
			name: "TCP: should enforce policy based on PodSelector and NamespaceSelector",
			pods: []string{"x/a", "x/b", "y/a", "y/b", "z/b"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-ns-y-podselector-and-nsselector", podA(),
				ingressRules(rIn(peers(both(me(nsK, metav1.LabelSelectorOpNotIn, "x"), ml("pod", "b")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allIngress("x/a", false)
				r.expect("y/b", "x/a", true)
				r.expect("z/b", "x/a", true)
			})},
		},
		{
			name: "TCP: should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
			pods: []string{"x/a", "x/b", "y/a", "y/b", "y/c"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-ns-y-z-pod-b-c", podA(),
				ingressRules(rIn(peers(both(me(nsK, metav1.LabelSelectorOpNotIn, "x"), me("pod", metav1.LabelSelectorOpIn, "b", "c")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.peer("x", "", "x", "a", false)
				r.expect("y/a", "x/a", false)
			})},
		},
		{
			name: "TCP: should enforce policy based on any PodSelectors",
			pods: []string{"x/a", "x/b", "x/c"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-ns-x-pod-b-c", podA(),
				ingressRules(rIn(peers(podSel(ml("pod", "b")), podSel(ml("pod", "c")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allIngress("x/a", false)
				r.expect("x/b", "x/a", true)
				r.expect("x/c", "x/a", true)
			})},
		},
		named("TCP: should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
			podInOtherNS(tcp, []string{"x/a", "x/b", "y/a", "y/b", "z/a"})),
		named("TCP: should enforce policy based on Ports", byPorts81(tcp, []string{"x/a", "x/b", "y/a", "y/b", "z/a"})),
		{
			name: "TCP: should enforce multiple, stacked policies with overlapping podSelectors",
			pods: []string{"x/a", "x/b", "y/a", "y/b", "z/a"}, ports: p8081, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{
				in("x", genPolicyLabels("allow-client-a-via-ns-selector", podA(), ingressRules(rIn(peers(nsSel(ml(nsK, "y"))), numPort(81, protoTCP))))),
				in("x", genPolicyLabels("allow-client-a-via-ns-selector-80", podA(), ingressRules(rIn(peers(nsSel(ml(nsK, "y"))), numPort(80, protoTCP))))),
			},
			checks: func() []upstreamCheck {
				allow := func(r *reach) {
					r.peer("x", "", "x", "a", false)
					r.peer("y", "", "x", "a", true)
					r.peer("z", "", "x", "a", false)
				}
				return []upstreamCheck{check(81, tcp, allow), check(80, tcp, allow)}
			}(),
		},
		{
			name: "TCP: should support allow-all policy",
			pods: []string{"x/a", "x/b", "y/a"}, ports: p8081, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-all", map[string]string{}, ingressRules(networkingv1.NetworkPolicyIngressRule{})))},
			checks:   []upstreamCheck{check(80, tcp, noop), check(81, tcp, noop)},
		},
		{
			name: "TCP: should allow ingress access on one named port",
			pods: []string{"x/a", "x/b", "y/a"}, ports: p8081, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-all", map[string]string{}, ingressRules(rIn(nil, namedPort("serve-81-tcp", nil)))))},
			checks: []upstreamCheck{
				check(81, tcp, noop),
				check(80, tcp, func(r *reach) { r.peer("", "", "x", "", false) }),
			},
		},
		{
			name: "TCP: should allow ingress access from namespace on one named port",
			pods: []string{"x/a", "x/b", "y/a", "z/a"}, ports: p8081, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-ns-selector-80", podA(),
				ingressRules(rIn(peers(nsSel(ml(nsK, "y"))), namedPort("serve-80-tcp", protoTCP)))))},
			checks: []upstreamCheck{
				check(80, tcp, func(r *reach) {
					r.peer("x", "", "x", "a", false)
					r.peer("z", "", "x", "a", false)
				}),
				check(81, tcp, func(r *reach) { r.allIngress("x/a", false) }),
			},
		},
		{
			name: "TCP: should allow egress access on one named port",
			pods: []string{"x/a", "y/a"}, ports: p8081, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-egress", map[string]string{}, egressRules(rEg(nil, namedPort("serve-80-tcp", nil)))))},
			checks: []upstreamCheck{
				check(80, tcp, noop),
				check(81, tcp, func(r *reach) { r.peer("x", "", "", "", false) }),
			},
		},
		{
			name: "TCP: should enforce updated policy",
			pods: []string{"x/a", "y/a"}, ports: p81, protocols: tcpOnly,
			policies: func() []*networkingv1.NetworkPolicy {
				np := in("x", genPolicyLabels("allow-all-mutate-to-deny-all", map[string]string{}, ingressRules(networkingv1.NetworkPolicyIngressRule{})))
				np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{} // the update
				return []*networkingv1.NetworkPolicy{np}
			}(),
			checks: []upstreamCheck{check(81, tcp, func(r *reach) { r.peer("", "", "x", "", false) })},
		},
		{
			name: "TCP: should allow ingress access from updated namespace",
			pods: []string{"x/a", "y/a"}, ports: p80, protocols: tcpOnly,
			nsLabels: map[string]map[string]string{"y": {"ns2": "updated"}},
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-ns-selector", podA(), ingressRules(rIn(peers(nsSel(ml("ns2", "updated")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allIngress("x/a", false)
				r.peer("y", "", "", "", true)
			})},
		},
		{
			name: "TCP: should allow ingress access from updated pod",
			pods: []string{"x/a", "x/b"}, ports: p80, protocols: tcpOnly,
			podLabels: map[string]map[string]string{"x/b": {"pod": "b", "pod2": "updated"}},
			policies:  []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-pod-selector", podA(), ingressRules(rIn(peers(podSel(ml("pod", "b", "pod2", "updated")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allIngress("x/a", false)
				r.expect("x/b", "x/a", true)
			})},
		},
		{
			name: "TCP: should deny ingress from pods on other namespaces",
			pods: []string{"x/a", "x/b", "y/a", "z/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("deny-empty-policy", all, ingressRules(rIn(peers(podSel(ml()))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.peer("y", "", "x", "", false)
				r.peer("z", "", "x", "", false)
			})},
		},
		{
			name: "TCP: should deny ingress access to updated pod",
			pods: []string{"x/a", "y/a"}, ports: p80, protocols: tcpOnly,
			podLabels: map[string]map[string]string{"x/a": {"target": "isolated"}},
			policies:  []*networkingv1.NetworkPolicy{in("x", genPolicy("deny-ingress-via-label-selector", *ml("target", "isolated"), ingressRules()))},
			checks:    []upstreamCheck{check(80, tcp, func(r *reach) { r.allIngress("x/a", false) })},
		},
		{
			name: "TCP: should deny egress from pods based on PodSelector",
			pods: []string{"x/a", "x/b", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("deny-egress-pod-a", *ml("pod", "a"), egressRules()))},
			checks:   []upstreamCheck{check(80, tcp, func(r *reach) { r.allEgress("x/a", false) })},
		},
		{
			name: "TCP: should deny egress from all pods in a namespace",
			pods: []string{"x/a", "x/b", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("deny-egress-ns-x", all, egressRules()))},
			checks:   []upstreamCheck{check(80, tcp, func(r *reach) { r.peer("x", "", "", "", false) })},
		},
		{
			name: "TCP: should work with Ingress, Egress specified together",
			pods: []string{"x/a", "x/b", "x/c", "y/a"}, ports: p8081, protocols: tcpOnly,
			policies: func() []*networkingv1.NetworkPolicy {
				np := in("x", genPolicyLabels("allow-client-a-via-pod-selector", podA(), ingressRules(rIn(peers(podSel(ml("pod", "b")))))))
				np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{rEg(nil, numPort(80, nil))}
				np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}
				return []*networkingv1.NetworkPolicy{np}
			}(),
			checks: []upstreamCheck{
				check(80, tcp, func(r *reach) {
					r.allIngress("x/a", false)
					r.expect("x/b", "x/a", true)
				}),
				check(81, tcp, func(r *reach) {
					r.allIngress("x/a", false)
					r.allEgress("x/a", false)
					r.expect("x/b", "x/a", true)
				}),
			},
		},
		{
			name: "TCP: should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
			pods: []string{"x/a", "y/a", "y/b"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{
				in("x", genPolicyLabels("allow-to-ns-y-pod-a", podA(), egressRules(rEg(peers(both(ml(nsK, "y"), ml("pod", "a"))))))),
				in("y", genPolicyLabels("allow-from-xa-on-ya-match-selector", podA(), ingressRules(rIn(peers(both(ml(nsK, "x"), ml("pod", "a"))))))),
				in("y", genPolicyLabels("allow-from-xa-on-yb-match-selector", map[string]string{"pod": "b"}, ingressRules(rIn(peers(both(ml(nsK, "x"), ml("pod", "a"))))))),
			},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.peer("x", "a", "", "", false)
				r.peer("", "", "y", "a", false)
				r.peer("x", "a", "y", "a", true)
				r.peer("", "", "y", "b", false)
			})},
		},
		{
			name: "TCP: should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
			pods: []string{"x/a", "y/a", "y/b"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-to-ns-y-pod-a", podA(), egressRules(rEg(peers(both(ml(nsK, "y"), ml("pod", "a")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allEgress("x/a", false)
				r.expect("x/a", "y/a", true)
			})},
		},
		{
			name: "TCP: should enforce ingress policy allowing any port traffic to a server on a specific protocol",
			pods: []string{"x/a", "y/a"}, ports: p80, protocols: []corev1.Protocol{tcp, udp},
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-ingress-by-proto", podA(),
				ingressRules(rIn(nil, networkingv1.NetworkPolicyPort{Protocol: protoTCP}))))},
			checks: []upstreamCheck{
				check(80, tcp, noop),
				check(80, udp, func(r *reach) { r.peer("", "", "x", "a", false) }),
			},
		},
		{
			name: "TCP: should enforce multiple ingress policies with ingress allow-all policy taking precedence",
			pods: []string{"x/a", "y/a"}, ports: p81, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{
				in("x", genPolicyLabels("allow-ingress-port-80", map[string]string{}, ingressRules(rIn(nil, numPort(80, nil))))),
				in("x", genPolicyLabels("allow-ingress", map[string]string{}, ingressRules(networkingv1.NetworkPolicyIngressRule{}))),
			},
			checks: []upstreamCheck{check(81, tcp, noop)},
		},
		{
			name: "TCP: should enforce multiple egress policies with egress allow-all policy taking precedence",
			pods: []string{"x/a", "y/a"}, ports: p81, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{
				in("x", genPolicyLabels("allow-egress-port-80", map[string]string{}, egressRules(rEg(nil, numPort(80, nil))))),
				in("x", genPolicyLabels("allow-egress", map[string]string{}, egressRules(networkingv1.NetworkPolicyEgressRule{}))),
			},
			checks: []upstreamCheck{check(81, tcp, noop)},
		},
		{
			name: "TCP: should stop enforcing policies after they are deleted",
			pods: []string{"x/a", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: nil, // deny-all in x, then deleted
			checks:   []upstreamCheck{check(80, tcp, noop)},
		},
		{
			name: "TCP: should allow egress access to server in CIDR block",
			pods: []string{"x/a", "y/a", "y/b"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-cidr-egress-rule", podA(),
				egressRules(rEg(peers(cidrPeer("10.244.2.11/32"))))))}, // y/b's IP
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allEgress("x/a", false)
				r.expect("x/a", "y/b", true)
			})},
		},
		{
			name: "TCP: should enforce except clause while egress access to server in CIDR block",
			pods: []string{"x/a", "x/b", "x/c"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-cidr-egress-rule", podA(),
				egressRules(rEg(peers(cidrPeer("0.0.0.0/4", "10.244.1.11/32"))))))}, // makeLargeCIDRForIP(x/b), except x/b
			checks: []upstreamCheck{check(80, tcp, func(r *reach) { r.expect("x/a", "x/b", false) })},
		},
		{
			name: "TCP: should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
			pods: []string{"x/a", "x/b", "x/c"}, ports: p80, protocols: tcpOnly,
			// The update replaces the except policy (same name) with one allowing x/b's IP only.
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-cidr-egress-rule", podA(),
				egressRules(rEg(peers(cidrPeer("10.244.1.11/32"))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.allEgress("x/a", false)
				r.expect("x/a", "x/b", true)
			})},
		},
		{
			name: "TCP: should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
			pods: []string{"x/a", "x/b", "y/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{
				in("x", genPolicy("allow-egress-for-target", *ml("pod", "a"), egressRules(networkingv1.NetworkPolicyEgressRule{}))),
				in("x", genPolicy("deny-ingress-via-label-selector", *ml("pod", "a"), ingressRules())),
			},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) { r.allIngress("x/a", false) })},
		},
		{
			name: "TCP: should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
			pods: []string{"x/a", "y/a"}, ports: p81, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{
				in("x", genPolicy("deny-ingress", all, ingressRules())),
				in("x", genPolicyLabels("allow-only-sctp-ingress-on-port-81", podA(), ingressRules(rIn(nil, numPort(81, protoSCTP))))),
			},
			checks: []upstreamCheck{check(81, tcp, func(r *reach) { r.peer("", "", "x", "", false) })},
		},
		{
			name: "TCP: should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
			pods: []string{"x/a", "y/a"}, ports: p81, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-only-sctp-ingress-on-port-80", podA(), ingressRules(rIn(nil, numPort(80, protoSCTP)))))},
			checks:   []upstreamCheck{check(81, tcp, func(r *reach) { r.allIngress("x/a", false) })},
		},
		{
			name: "TCP: should not allow access by TCP when a policy specifies only UDP",
			pods: []string{"x/a", "y/a"}, ports: p81, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-only-udp-ingress-on-port-81", podA(), ingressRules(rIn(nil, numPort(81, protoUDP)))))},
			checks:   []upstreamCheck{check(81, tcp, func(r *reach) { r.allIngress("x/a", false) })},
		},
		{
			name: "TCP: should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
			pods: []string{"x/a", "x/b", "y/a", "z/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-client-a-via-ns-selector-for-immutable-ns-label", podA(),
				ingressRules(rIn(peers(nsSel(ml(corev1.LabelMetadataName, "y")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) {
				r.peer("x", "", "x", "a", false)
				r.peer("z", "", "x", "a", false)
			})},
		},
		{
			name: "TCP: should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
			pods: []string{"x/a", "x/b", "y/a", "z/a"}, ports: p80, protocols: tcpOnly,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicyLabels("allow-ns-y-match-selector-for-immutable-ns-label", podA(),
				egressRules(rEg(peers(nsSel(me(corev1.LabelMetadataName, metav1.LabelSelectorOpNotIn, "y")))))))},
			checks: []upstreamCheck{check(80, tcp, func(r *reach) { r.peer("x", "a", "y", "", false) })},
		},
		named("UDP: should support a 'default-deny-ingress' policy", defaultDenyIngress(udp)),
		named("UDP: should enforce policy based on Ports", byPorts81(udp, []string{"x/a", "x/b", "y/a", "z/a"})),
		named("UDP: should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
			podInOtherNS(udp, []string{"x/a", "x/b", "y/a"})),
		named("SCTP: should support a 'default-deny-ingress' policy", defaultDenyIngress(sctp)),
		named("SCTP: should enforce policy based on Ports", byPorts81(sctp, []string{"x/a", "x/b", "y/a", "z/a"})),
		named("SCTP: should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
			podInOtherNS(sctp, []string{"x/a", "x/b", "y/a"})),
	}
}

// TestUpstreamNetpolSuite checks the oracle against every spec's expected truth table, pod to pod and
// through each destination pod's Service (the way the suite probes).
func TestUpstreamNetpolSuite(t *testing.T) {
	cases := upstreamCases()
	require.Len(t, cases, 48, "one row per ginkgo spec of network_policy.go")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := upstreamCluster(tc.pods, tc.ports, tc.protocols, tc.nsLabels, tc.podLabels)
			c.Policies = tc.policies
			o, err := New(c)
			require.NoError(t, err)
			require.Empty(t, o.Warnings())
			for _, chk := range tc.checks {
				want := newReach(tc.pods)
				chk.expect(want)
				tables, err := o.TruthTable(tc.pods, []PortProto{{Port: chk.port, Protocol: chk.proto}})
				require.NoError(t, err)
				table := tables[0]
				for _, from := range tc.pods {
					for _, to := range tc.pods {
						if from == to {
							continue // loopback is undefined upstream and ignored
						}
						got, ok := table.Allowed(from, to)
						require.True(t, ok)
						assert.Equal(t, want.m[[2]string{from, to}], got, "%s -> %s on %s/%d", from, to, chk.proto, chk.port)
						dst := o.Pod(to)
						sv, err := o.Evaluate(PodEndpoint(o.Pod(from).Namespace, o.Pod(from).Name),
							ServiceEndpoint(dst.Namespace, "s-"+dst.Namespace+"-"+dst.Name), chk.port, chk.proto)
						require.NoError(t, err)
						assert.Equal(t, got, sv.Allowed, "%s -> service of %s on %s/%d: %s", from, to, chk.proto, chk.port, sv.Reason)
					}
				}
				if t.Failed() {
					t.Logf("truth table:\n%s", table.Text())
				}
			}
		})
	}
}
