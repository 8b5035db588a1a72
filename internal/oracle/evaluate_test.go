package oracle

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// semanticsCluster: namespace x with pods a (named port http=8080/TCP) and b, a hostNetwork pod h, a
// Service web selecting a with a named targetPort, and an external address.
func semanticsCluster(policies ...*networkingv1.NetworkPolicy) Cluster {
	return Cluster{
		Namespaces: []Namespace{{Name: "x"}, {Name: "y", Labels: map[string]string{"team": "y"}}},
		Pods: []Pod{
			{Namespace: "x", Name: "a", Labels: map[string]string{"app": "a"}, IP: netip.MustParseAddr("10.0.0.1"),
				Ports: []ContainerPort{{Name: "http", Port: 8080, Protocol: tcp}}},
			{Namespace: "x", Name: "b", Labels: map[string]string{"app": "b"}, IP: netip.MustParseAddr("10.0.0.2")},
			{Namespace: "y", Name: "c", Labels: map[string]string{"app": "b"}, IP: netip.MustParseAddr("10.0.1.1")},
			{Namespace: "x", Name: "h", Labels: map[string]string{"app": "h"}, IP: netip.MustParseAddr("172.18.0.2"), HostNetwork: true},
		},
		Services: []Service{{Namespace: "x", Name: "web", Selector: map[string]string{"app": "a"}, ClusterIP: netip.MustParseAddr("10.96.0.10"),
			Ports: []ServicePort{{Port: 80, Protocol: tcp, TargetPort: intstr.FromString("http")}}}},
		Externals: []External{{Name: "dns", IP: netip.MustParseAddr("8.8.8.8")}},
		Policies:  policies,
	}
}

func portRangeRule(lo, hi int32) networkingv1.NetworkPolicyPort {
	p := numPort(lo, nil)
	p.EndPort = &hi
	return p
}

func TestEvaluateSemantics(t *testing.T) {
	a, b, c := PodEndpoint("x", "a"), PodEndpoint("x", "b"), PodEndpoint("y", "c")
	ext := IPEndpoint(netip.MustParseAddr("8.8.8.8"))
	tests := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		from, to Endpoint
		port     int32
		proto    corev1.Protocol
		allowed  bool
		reason   string
	}{
		{name: "no policy allows", from: b, to: a, port: 8080, allowed: true},
		{name: "egress defaults off without egress rules", from: a, to: ext, port: 53, proto: udp, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("in-only", all, ingressRules()))}},
		{name: "egress on when egress rules present (no policyTypes)", from: a, to: ext, port: 53, proto: udp, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
				PodSelector: all, Egress: []networkingv1.NetworkPolicyEgressRule{rEg(peers(podSel(ml())))}}})},
			reason: "denied on egress: default deny: selected by x/, no egress rule allows to dns (8.8.8.8) on UDP/53"},
		{name: "named port resolves on the destination pod (ingress)", from: b, to: a, port: 8080, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(nil, namedPort("http", nil)))))}},
		{name: "named port does not match another number", from: b, to: a, port: 8081, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(nil, namedPort("http", nil)))))}},
		{name: "named port on egress resolves on the target pod", from: b, to: a, port: 8080, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, egressRules(rEg(nil, namedPort("http", nil)))))}},
		{name: "named port on egress to an external IP matches nothing", from: b, to: ext, port: 8080, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, egressRules(rEg(nil, namedPort("http", nil)))))}},
		{name: "endPort range includes its end", from: b, to: a, port: 8083, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(nil, portRangeRule(8080, 8083)))))}},
		{name: "endPort range excludes beyond", from: b, to: a, port: 8084, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(nil, portRangeRule(8080, 8083)))))}},
		{name: "port without protocol is TCP only", from: b, to: a, port: 8080, proto: sctp, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(nil, numPort(8080, nil)))))}},
		{name: "nil namespaceSelector means the policy's namespace", from: c, to: a, port: 8080, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(peers(podSel(ml("app", "b")))))))}},
		{name: "namespaceSelector AND podSelector", from: c, to: a, port: 8080, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(peers(both(ml("team", "y"), ml("app", "b")))))))}},
		{name: "ipBlock matches pod IPs", from: b, to: a, port: 8080, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(peers(cidrPeer("10.0.0.0/24", "10.0.0.1/32"))))))}},
		{name: "ipBlock except", from: b, to: a, port: 8080, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(peers(cidrPeer("10.0.0.0/24", "10.0.0.2/32"))))))}},
		{name: "ipBlock matches outside addresses", from: a, to: ext, port: 53, proto: udp, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, egressRules(rEg(peers(cidrPeer("8.8.0.0/16"))))))}},
		{name: "hostNetwork pod is not isolated", from: b, to: PodEndpoint("x", "h"), port: 22, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules()))}},
		{name: "hostNetwork peer is not matched by podSelector", from: PodEndpoint("x", "h"), to: b, port: 22, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(rIn(peers(podSel(ml("app", "h")))))))}},
		{name: "service with named targetPort evaluates the backend port", from: b, to: ServiceEndpoint("x", "web"), port: 80, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", *ml("app", "a"), ingressRules(rIn(nil, numPort(8080, nil)))))}},
		{name: "service port 80 is not the backend's 80", from: b, to: IPEndpoint(netip.MustParseAddr("10.96.0.10")), port: 80, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", *ml("app", "a"), ingressRules(rIn(nil, numPort(80, nil)))))}},
		{name: "egress ipBlock of the ClusterIP does not match: policy sees the backend after DNAT", from: b, to: ServiceEndpoint("x", "web"), port: 80, allowed: false,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", *ml("app", "b"), egressRules(rEg(peers(cidrPeer("10.96.0.10/32"))))))}},
		{name: "egress ipBlock of the backend matches", from: b, to: ServiceEndpoint("x", "web"), port: 80, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", *ml("app", "b"), egressRules(rEg(peers(cidrPeer("10.0.0.1/32"))))))}},
		{name: "empty ports and peers allow everything", from: c, to: a, port: 9, proto: sctp, allowed: true,
			policies: []*networkingv1.NetworkPolicy{in("x", genPolicy("p", all, ingressRules(networkingv1.NetworkPolicyIngressRule{})))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := New(semanticsCluster(tt.policies...))
			require.NoError(t, err)
			v, err := o.Evaluate(tt.from, tt.to, tt.port, tt.proto)
			require.NoError(t, err)
			assert.Equal(t, tt.allowed, v.Allowed, v.Reason)
			if tt.reason != "" {
				assert.Equal(t, tt.reason, v.Reason)
			}
		})
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	bad := semanticsCluster()
	bad.Pods = append(bad.Pods, Pod{Namespace: "nope", Name: "p"})
	_, err := New(bad)
	assert.ErrorContains(t, err, `pod nope/p: namespace "nope" is not defined`)

	np := in("x", genPolicy("broken", all, ingressRules(rIn(peers(cidrPeer("10.0.0.0/33"))))))
	_, err = New(semanticsCluster(np))
	assert.ErrorContains(t, err, "networkpolicy x/broken: spec.ingress[0]: peer 0: ipBlock.cidr")
}

func TestParseEndpoint(t *testing.T) {
	o, err := New(semanticsCluster())
	require.NoError(t, err)
	for s, want := range map[string]Endpoint{
		"x/a":        PodEndpoint("x", "a"),
		"x/web":      ServiceEndpoint("x", "web"),
		"svc/x/web":  ServiceEndpoint("x", "web"),
		"pod/x/b":    PodEndpoint("x", "b"),
		"10.96.0.10": IPEndpoint(netip.MustParseAddr("10.96.0.10")),
	} {
		got, err := o.ParseEndpoint(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got, s)
	}
	_, err = o.ParseEndpoint("q/a")
	assert.ErrorContains(t, err, `namespace "q" is not defined (namespaces: x, y)`)
	_, err = o.ParseEndpoint("x/zz")
	assert.ErrorContains(t, err, "no pod or service x/zz (pods in x: a, b, h; services: web)")
}
