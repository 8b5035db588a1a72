package oracle

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// cnp builds a ClusterNetworkPolicy whose subject is every pod of the namespaces with labels nsSel.
func cnp(name string, tier policyv1beta1.Tier, priority int32, nsSel map[string]string) *policyv1beta1.ClusterNetworkPolicy {
	return &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{Tier: tier, Priority: priority,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: nsSel}}},
	}
}

// ingressFromNS adds an ingress rule from the pods of namespaces with labels nsSel (protocols optional).
func ingressFromNS(p *policyv1beta1.ClusterNetworkPolicy, name string, action policyv1beta1.ClusterNetworkPolicyRuleAction,
	nsSel map[string]string, protos ...policyv1beta1.ClusterNetworkPolicyProtocol) *policyv1beta1.ClusterNetworkPolicy {
	p.Spec.Ingress = append(p.Spec.Ingress, policyv1beta1.ClusterNetworkPolicyIngressRule{Name: name, Action: action,
		From:      []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{MatchLabels: nsSel}}},
		Protocols: protos})
	return p
}

func egressTo(p *policyv1beta1.ClusterNetworkPolicy, name string, action policyv1beta1.ClusterNetworkPolicyRuleAction,
	peer policyv1beta1.ClusterNetworkPolicyEgressPeer, protos ...policyv1beta1.ClusterNetworkPolicyProtocol) *policyv1beta1.ClusterNetworkPolicy {
	p.Spec.Egress = append(p.Spec.Egress, policyv1beta1.ClusterNetworkPolicyEgressRule{Name: name, Action: action,
		To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{peer}, Protocols: protos})
	return p
}

func tcpPort(n int32) policyv1beta1.ClusterNetworkPolicyProtocol {
	return policyv1beta1.ClusterNetworkPolicyProtocol{TCP: &policyv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &policyv1beta1.Port{Number: n}}}
}

const (
	accept = policyv1beta1.ClusterNetworkPolicyRuleActionAccept
	deny   = policyv1beta1.ClusterNetworkPolicyRuleActionDeny
	pass   = policyv1beta1.ClusterNetworkPolicyRuleActionPass
	admin  = policyv1beta1.AdminTier
	base   = policyv1beta1.BaselineTier
)

var (
	nsX = map[string]string{MetadataNameLabel: "x"}
	nsY = map[string]string{MetadataNameLabel: "y"}
)

// allowAllIngress is a NetworkPolicy selecting every pod of x and allowing all ingress.
func allowAllIngress() *networkingv1.NetworkPolicy {
	return in("x", genPolicy("allow-all", all, ingressRules(rIn(nil))))
}

// denyAllIngress selects every pod of x for ingress and allows nothing.
func denyAllIngress() *networkingv1.NetworkPolicy {
	return in("x", genPolicy("deny-all", all, ingressRules()))
}

func cnpCluster(nps []*networkingv1.NetworkPolicy, cnps ...*policyv1beta1.ClusterNetworkPolicy) Cluster {
	c := semanticsCluster(nps...)
	c.ClusterPolicies = cnps
	return c
}

func TestClusterNetworkPolicyTierWalk(t *testing.T) {
	a, b, c := PodEndpoint("x", "a"), PodEndpoint("x", "b"), PodEndpoint("y", "c")
	tests := []struct {
		name     string
		nps      []*networkingv1.NetworkPolicy
		cnps     []*policyv1beta1.ClusterNetworkPolicy
		from, to Endpoint
		port     int32
		allowed  bool
		tier     string
		walk     string // the ingress walk
	}{
		{name: "admin deny beats a NetworkPolicy allow", from: c, to: a, port: 8080, allowed: false, tier: TierAdmin,
			nps:  []*networkingv1.NetworkPolicy{allowAllIngress()},
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("deny-y", admin, 10, nsX), "no-y", deny, nsY)},
			walk: "Admin: deny by cnp/deny-y ingress rule 0 (no-y)"},
		{name: "admin pass then NetworkPolicy deny", from: c, to: a, port: 8080, allowed: false, tier: TierNetworkPolicy,
			nps:  []*networkingv1.NetworkPolicy{denyAllIngress()},
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("pass-y", admin, 10, nsX), "", pass, nsY)},
			walk: "Admin: pass by cnp/pass-y ingress rule 0 → NetworkPolicy: deny: selected by x/deny-all, no rule allows it"},
		{name: "admin pass skips the rest of the admin tier", from: c, to: a, port: 8080, allowed: true, tier: TierNetworkPolicy,
			nps: []*networkingv1.NetworkPolicy{allowAllIngress()},
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("pass-y", admin, 10, nsX), "", pass, nsY),
				ingressFromNS(cnp("deny-y", admin, 20, nsX), "", deny, nsY)},
			walk: "Admin: pass by cnp/pass-y ingress rule 0 → NetworkPolicy: allowed by x/allow-all ingress rule 0"},
		{name: "admin accept beats a NetworkPolicy deny", from: c, to: a, port: 8080, allowed: true, tier: TierAdmin,
			nps:  []*networkingv1.NetworkPolicy{denyAllIngress()},
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("accept-y", admin, 10, nsX), "", accept, nsY)},
			walk: "Admin: accept by cnp/accept-y ingress rule 0"},
		{name: "baseline deny when no NetworkPolicy selects", from: c, to: a, port: 8080, allowed: false, tier: TierBaseline,
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("baseline-deny", base, 10, nsX), "", deny, nsY)},
			walk: "Admin: no policy selects → NetworkPolicy: no policy selects → Baseline: deny by cnp/baseline-deny ingress rule 0"},
		{name: "baseline not consulted when a NetworkPolicy selects", from: c, to: a, port: 8080, allowed: true, tier: TierNetworkPolicy,
			nps:  []*networkingv1.NetworkPolicy{allowAllIngress()},
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("baseline-deny", base, 10, nsX), "", deny, nsY)},
			walk: "Admin: no policy selects → NetworkPolicy: allowed by x/allow-all ingress rule 0"},
		{name: "the example walk: admin pass, no NetworkPolicy, baseline deny", from: c, to: a, port: 8080, allowed: false, tier: TierBaseline,
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("allow-monitoring", admin, 5, nsX), "", pass, nsY),
				ingressFromNS(cnp("baseline-deny", base, 10, nsX), "", deny, nsY)},
			walk: "Admin: pass by cnp/allow-monitoring ingress rule 0 → NetworkPolicy: no policy selects → Baseline: deny by cnp/baseline-deny ingress rule 0"},
		{name: "default allow when no tier decides", from: b, to: a, port: 8080, allowed: true, tier: TierDefault,
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("deny-y", admin, 10, nsX), "", deny, nsY)},
			walk: "Admin: no rule of cnp/deny-y matches → NetworkPolicy: no policy selects → Baseline: no policy selects → Default: allow"},
		{name: "priority order over creation order", from: c, to: a, port: 8080, allowed: true, tier: TierAdmin,
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(cnp("a-deny", admin, 50, nsX), "", deny, nsY),
				ingressFromNS(cnp("z-accept", admin, 20, nsX), "", accept, nsY)},
			walk: "Admin: accept by cnp/z-accept ingress rule 0"},
		{name: "rule order inside a policy", from: c, to: a, port: 8080, allowed: false, tier: TierAdmin,
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(ingressFromNS(cnp("ordered", admin, 10, nsX), "first", deny, nsY, tcpPort(8080)), "second", accept, nsY)},
			walk: "Admin: deny by cnp/ordered ingress rule 0 (first)"},
		{name: "a rule's protocols must match", from: c, to: a, port: 8081, allowed: true, tier: TierAdmin,
			cnps: []*policyv1beta1.ClusterNetworkPolicy{ingressFromNS(ingressFromNS(cnp("ordered", admin, 10, nsX), "first", deny, nsY, tcpPort(8080)), "second", accept, nsY)},
			walk: "Admin: accept by cnp/ordered ingress rule 1 (second)"},
		{name: "a policy without rules for the direction does not affect it", from: c, to: a, port: 8080, allowed: true, tier: TierDefault,
			cnps: []*policyv1beta1.ClusterNetworkPolicy{egressTo(cnp("egress-only", admin, 10, nsX), "", deny, policyv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: &metav1.LabelSelector{}})},
			walk: "Admin: no policy selects → NetworkPolicy: no policy selects → Baseline: no policy selects → Default: allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := New(cnpCluster(tt.nps, tt.cnps...))
			require.NoError(t, err)
			v, err := o.Evaluate(tt.from, tt.to, tt.port, tcp)
			require.NoError(t, err)
			assert.Equal(t, tt.allowed, v.Allowed, v.Reason)
			assert.Equal(t, tt.tier, v.Ingress.Tier)
			assert.Equal(t, tt.walk, v.Ingress.Reason)
			assert.Equal(t, tt.walk, walkText(v.Ingress.Walk))
			assert.Equal(t, TierDefault, v.Egress.Tier, "no egress policy: the egress walk ends in default allow")
		})
	}
}

func TestClusterNetworkPolicySamePriorityOverlapReported(t *testing.T) {
	o, err := New(cnpCluster(nil,
		ingressFromNS(cnp("b-deny", admin, 10, nsX), "", deny, nsY),
		ingressFromNS(cnp("a-accept", admin, 10, nsX), "", accept, nsY)))
	require.NoError(t, err)
	v, err := o.Evaluate(PodEndpoint("y", "c"), PodEndpoint("x", "a"), 8080, tcp)
	require.NoError(t, err)
	require.Len(t, v.Ingress.Ambiguous, 1)
	assert.Contains(t, v.Ingress.Ambiguous[0], "cnp/a-accept and cnp/b-deny have priority 10")
	assert.True(t, v.Allowed, "equal priorities are ordered by name, deterministically")
}

func TestClusterNetworkPolicyEgressPeers(t *testing.T) {
	nodeIP := netip.MustParseAddr("172.18.0.2")
	c := cnpCluster(nil,
		egressTo(cnp("deny-nodes", admin, 1, nsX), "", deny, policyv1beta1.ClusterNetworkPolicyEgressPeer{Nodes: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}),
		egressTo(cnp("deny-dns", admin, 2, nsX), "", deny, policyv1beta1.ClusterNetworkPolicyEgressPeer{Networks: []policyv1beta1.CIDR{"8.8.8.0/24"}},
			policyv1beta1.ClusterNetworkPolicyProtocol{UDP: &policyv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &policyv1beta1.Port{Range: &policyv1beta1.PortRange{Start: 50, End: 60}}}}),
		egressTo(cnp("deny-named", admin, 3, nsX), "", deny, policyv1beta1.ClusterNetworkPolicyEgressPeer{Pods: &policyv1beta1.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}}},
			policyv1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: "http"}))
	c.Nodes = []Node{{Name: "w1", Labels: map[string]string{"role": "worker"}, IPs: []netip.Addr{nodeIP}}}
	o, err := New(c)
	require.NoError(t, err)
	b := PodEndpoint("x", "b")
	for _, tt := range []struct {
		to      Endpoint
		port    int32
		proto   corev1.Protocol
		allowed bool
	}{
		{IPEndpoint(nodeIP), 10250, tcp, false},                      // nodes peer
		{IPEndpoint(netip.MustParseAddr("8.8.8.8")), 53, udp, false}, // networks, port range
		{IPEndpoint(netip.MustParseAddr("8.8.8.8")), 53, tcp, true},  // other protocol
		{IPEndpoint(netip.MustParseAddr("8.8.8.8")), 61, udp, true},  // outside the range
		{PodEndpoint("x", "a"), 8080, tcp, false},                    // named port on the destination pod
		{PodEndpoint("x", "a"), 8081, tcp, true},
	} {
		v, err := o.Evaluate(b, tt.to, tt.port, tt.proto)
		require.NoError(t, err)
		assert.Equal(t, tt.allowed, v.Allowed, "%s %s/%d: %s", tt.to, tt.proto, tt.port, v.Reason)
	}
}

func TestClusterNetworkPolicyBadInput(t *testing.T) {
	bad := func(mut func(p *policyv1beta1.ClusterNetworkPolicy)) *policyv1beta1.ClusterNetworkPolicy {
		p := ingressFromNS(cnp("bad", admin, 10, nsX), "", deny, nsY)
		mut(p)
		return p
	}
	for name, tt := range map[string]struct {
		p    *policyv1beta1.ClusterNetworkPolicy
		want string
	}{
		"priority out of range": {bad(func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Priority = 1001 }), "spec.priority 1001: want 0..1000"},
		"unknown action":        {bad(func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Ingress[0].Action = "Allow" }), `action "Allow": want Accept, Deny or Pass`},
		"unknown tier":          {bad(func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Tier = "Developer" }), `spec.tier "Developer"`},
		"pass in baseline":      {bad(func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Tier = base; p.Spec.Ingress[0].Action = pass }), "Pass is not allowed in the Baseline tier"},
		"bad CIDR": {egressTo(cnp("bad", admin, 1, nsX), "", deny, policyv1beta1.ClusterNetworkPolicyEgressPeer{Networks: []policyv1beta1.CIDR{"10.0.0.0/33"}}),
			`networks "10.0.0.0/33"`},
		"two subjects": {bad(func(p *policyv1beta1.ClusterNetworkPolicy) { p.Spec.Subject.Pods = &policyv1beta1.NamespacedPod{} }), "set exactly one of namespaces and pods"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(cnpCluster(nil, tt.p))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "clusternetworkpolicy bad: "), err.Error())
		})
	}
}

func TestNoClusterNetworkPolicyKeepsTheNetworkPolicyReason(t *testing.T) {
	o, err := New(cnpCluster([]*networkingv1.NetworkPolicy{denyAllIngress()}))
	require.NoError(t, err)
	v, err := o.Evaluate(PodEndpoint("x", "b"), PodEndpoint("x", "a"), 8080, tcp)
	require.NoError(t, err)
	assert.Empty(t, v.Ingress.Walk)
	assert.Empty(t, v.Ingress.Tier)
	assert.True(t, strings.HasPrefix(v.Ingress.Reason, "default deny: selected by x/deny-all"), v.Ingress.Reason)
}

func TestLoadClusterNetworkPolicy(t *testing.T) {
	objs := &Objects{}
	require.NoError(t, objs.Add("cnp.yaml", []byte(`apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Node
metadata: {name: w1, labels: {role: worker}}
status: {addresses: [{type: InternalIP, address: 172.18.0.3}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: deny-nodes}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {}}
  egress:
  - name: no-kubelet
    action: Deny
    to: [{nodes: {matchLabels: {role: worker}}}]
    protocols: [{tcp: {destinationPort: {number: 10250}}}]
`)))
	require.Len(t, objs.ClusterPolicies, 1)
	require.Len(t, objs.Nodes, 1)
	c, err := objs.Cluster()
	require.NoError(t, err)
	c.Pods = []Pod{{Namespace: "x", Name: "p", IP: netip.MustParseAddr("10.244.0.5")}}
	o, err := New(c)
	require.NoError(t, err)
	v, err := o.Evaluate(PodEndpoint("x", "p"), IPEndpoint(netip.MustParseAddr("172.18.0.3")), 10250, tcp)
	require.NoError(t, err)
	assert.False(t, v.Allowed)
	assert.Equal(t, "Admin: deny by cnp/deny-nodes egress rule 0 (no-kubelet)", v.Egress.Reason)

	err = (&Objects{}).Add("bad.yaml", []byte("apiVersion: policy.networking.k8s.io/v9\nkind: ClusterNetworkPolicy\nmetadata: {name: x}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "want policy.networking.k8s.io/v1beta1")
}
