package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/maps"
)

const (
	accept = cnpv1beta1.ClusterNetworkPolicyRuleActionAccept
	deny   = cnpv1beta1.ClusterNetworkPolicyRuleActionDeny
	pass   = cnpv1beta1.ClusterNetworkPolicyRuleActionPass
)

// cnp builds a ClusterNetworkPolicy whose subject is the namespaces matching subjectNS.
func cnp(name string, tier cnpv1beta1.Tier, prio int32, subjectNS *metav1.LabelSelector, ingress ...cnpv1beta1.ClusterNetworkPolicyIngressRule) *cnpv1beta1.ClusterNetworkPolicy {
	return &cnpv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{
			Tier: tier, Priority: prio,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: subjectNS},
			Ingress: ingress,
		},
	}
}

// fromNS is an ingress rule from the pods of the namespaces matching s, on the given protocols.
func fromNS(name string, action cnpv1beta1.ClusterNetworkPolicyRuleAction, s *metav1.LabelSelector, protos ...cnpv1beta1.ClusterNetworkPolicyProtocol) cnpv1beta1.ClusterNetworkPolicyIngressRule {
	return cnpv1beta1.ClusterNetworkPolicyIngressRule{Name: name, Action: action,
		From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: s}}, Protocols: protos}
}

func cnpTCP(n int32) cnpv1beta1.ClusterNetworkPolicyProtocol {
	return cnpv1beta1.ClusterNetworkPolicyProtocol{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1beta1.Port{Number: n}}}
}

func tcpRange(lo, hi int32) cnpv1beta1.ClusterNetworkPolicyProtocol {
	return cnpv1beta1.ClusterNetworkPolicyProtocol{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1beta1.Port{Range: &cnpv1beta1.PortRange{Start: lo, End: hi}}}}
}

func namedCNPPort(n string) cnpv1beta1.ClusterNetworkPolicyProtocol {
	return cnpv1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: n}
}

// tierCluster: server pod in namespace "srv" (10.0.0.1, local, port "http" 80), clients in
// "mon" (10.0.0.2) and "other" (10.0.0.3).
func tierCluster(nps []*networkingv1.NetworkPolicy, cnps ...*cnpv1beta1.ClusterNetworkPolicy) Input {
	return Input{
		Pods: []Pod{
			mkPod("srv/server", "10.0.0.1", "n1", kv("app", "server"), cport("http", ProtoTCP, 80)),
			mkPod("mon/prom", "10.0.0.2", "n1", kv("app", "prom")),
			mkPod("other/client", "10.0.0.3", "n2", kv("app", "client")),
		},
		Namespaces: []Namespace{
			{Name: "srv", Labels: kv("team", "srv")},
			{Name: "mon", Labels: kv("team", "mon")},
			{Name: "other", Labels: kv("team", "other")},
		},
		Policies:        nps,
		ClusterPolicies: cnps,
		LocalNode:       "n1",
		LocalEndpoints:  map[PodRef]uint32{ref("srv/server"): 7, ref("mon/prom"): 8},
	}
}

var (
	mon        = netip.MustParseAddr("10.0.0.2")
	other      = netip.MustParseAddr("10.0.0.3")
	srvNS      = sel("kubernetes.io/metadata.name", "srv")
	monNS      = sel("kubernetes.io/metadata.name", "mon")
	allNS      = &metav1.LabelSelector{}
	npAllowMon = netpol("srv/allow-mon", &metav1.LabelSelector{}, ingressOnly(), ingressRules(ingressRule(nil, nsPeer(monNS))), nil)
	npDenyAll  = netpol("srv/deny-all", &metav1.LabelSelector{}, ingressOnly(), nil, nil)
)

func TestTierWalk(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nps      []*networkingv1.NetworkPolicy
		cnps     []*cnpv1beta1.ClusterNetworkPolicy
		peer     netip.Addr
		port     uint16
		allowed  bool
		tier     Tier
		policy   string // deciding policy (String of its ref), "" = none
		rule     uint16
		passedBy string
	}{
		{name: "Admin Deny over NetworkPolicy allow", nps: []*networkingv1.NetworkPolicy{npAllowMon},
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("deny-mon", cnpv1beta1.AdminTier, 10, srvNS, fromNS("no-mon", deny, monNS))},
			peer: mon, port: 80, allowed: false, tier: TierAdmin, policy: "cnp/deny-mon"},
		{name: "Admin Pass then NetworkPolicy deny", nps: []*networkingv1.NetworkPolicy{npDenyAll},
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("pass-mon", cnpv1beta1.AdminTier, 10, srvNS, fromNS("", pass, monNS)),
				cnp("accept-all", cnpv1beta1.AdminTier, 20, srvNS, fromNS("", accept, allNS))},
			peer: mon, port: 80, allowed: false, tier: TierNetworkPolicy, passedBy: "cnp/pass-mon"},
		{name: "Admin Pass then NetworkPolicy allow", nps: []*networkingv1.NetworkPolicy{npAllowMon},
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("pass-mon", cnpv1beta1.AdminTier, 10, srvNS, fromNS("", pass, monNS))},
			peer: mon, port: 80, allowed: true, tier: TierNetworkPolicy, policy: "srv/allow-mon", passedBy: "cnp/pass-mon"},
		{name: "Baseline Deny when no NetworkPolicy selects",
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("baseline-deny", cnpv1beta1.BaselineTier, 0, srvNS, fromNS("", deny, allNS))},
			peer: other, port: 80, allowed: false, tier: TierBaseline, policy: "cnp/baseline-deny"},
		{name: "Baseline not consulted when a NetworkPolicy selects", nps: []*networkingv1.NetworkPolicy{npAllowMon},
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("baseline-deny", cnpv1beta1.BaselineTier, 0, srvNS, fromNS("", deny, allNS))},
			peer: mon, port: 80, allowed: true, tier: TierNetworkPolicy, policy: "srv/allow-mon"},
		{name: "Baseline Pass is the default allow",
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("b", cnpv1beta1.BaselineTier, 0, srvNS, fromNS("", pass, allNS), fromNS("", deny, allNS))},
			peer: other, port: 80, allowed: true, tier: TierNone},
		{name: "priority order over creation order",
			// "z-first" is listed (created) first, but priority 5 beats 50.
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("z-first", cnpv1beta1.AdminTier, 50, srvNS, fromNS("", deny, allNS)),
				cnp("a-second", cnpv1beta1.AdminTier, 5, srvNS, fromNS("", accept, monNS))},
			peer: mon, port: 80, allowed: true, tier: TierAdmin, policy: "cnp/a-second"},
		{name: "rule order inside a policy",
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("ordered", cnpv1beta1.AdminTier, 5, srvNS,
				fromNS("accept-80", accept, monNS, cnpTCP(80)), fromNS("deny-all", deny, allNS))},
			peer: mon, port: 80, allowed: true, tier: TierAdmin, policy: "cnp/ordered", rule: 0},
		{name: "rule order inside a policy, later rule on another port",
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("ordered", cnpv1beta1.AdminTier, 5, srvNS,
				fromNS("accept-80", accept, monNS, cnpTCP(80)), fromNS("deny-all", deny, allNS))},
			peer: mon, port: 81, allowed: false, tier: TierAdmin, policy: "cnp/ordered", rule: 1},
		{name: "port range folds under an exact port", nps: []*networkingv1.NetworkPolicy{npAllowMon},
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("r", cnpv1beta1.AdminTier, 5, srvNS,
				fromNS("deny-range", deny, monNS, tcpRange(70, 90)), fromNS("accept-80", accept, monNS, cnpTCP(80)))},
			peer: mon, port: 80, allowed: false, tier: TierAdmin, policy: "cnp/r", rule: 0},
		{name: "named port on the subject", nps: []*networkingv1.NetworkPolicy{npDenyAll},
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("named", cnpv1beta1.AdminTier, 5, srvNS, fromNS("http", accept, monNS, namedCNPPort("http")))},
			peer: mon, port: 80, allowed: true, tier: TierAdmin, policy: "cnp/named"},
		{name: "Admin rule for other subjects is not applied", nps: []*networkingv1.NetworkPolicy{npAllowMon},
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("mon-only", cnpv1beta1.AdminTier, 5, monNS, fromNS("", deny, allNS))},
			peer: mon, port: 80, allowed: true, tier: TierNetworkPolicy, policy: "srv/allow-mon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Compile(tierCluster(tc.nps, tc.cnps...))
			require.NoError(t, err)
			v := res.DecideVerdict(7, DirIngress, tc.peer, ProtoTCP, tc.port)
			assert.Equal(t, tc.allowed, v.Allowed, "allowed")
			assert.Equal(t, tc.tier, v.Tier, "tier")
			name := func(id uint32) string {
				if id == 0 {
					return ""
				}
				return res.Policies[id].String()
			}
			assert.Equal(t, tc.policy, name(v.PolicyID), "deciding policy")
			assert.Equal(t, tc.rule, v.Rule, "rule")
			assert.Equal(t, tc.passedBy, name(v.PassPolicyID), "pass")
			in := tierCluster(tc.nps, tc.cnps...)
			assert.Equal(t, naiveDecideTiers(in, ref("srv/server"), DirIngress, tc.peer, ProtoTCP, tc.port), v.Allowed, "naive model")
		})
	}
}

func TestTierOverlapReported(t *testing.T) {
	res, err := Compile(tierCluster(nil,
		cnp("b", cnpv1beta1.AdminTier, 7, allNS, fromNS("", deny, monNS)),
		cnp("a", cnpv1beta1.AdminTier, 7, srvNS, fromNS("", accept, monNS)),
		cnp("c", cnpv1beta1.AdminTier, 8, srvNS, fromNS("", accept, monNS)),
		cnp("d", cnpv1beta1.BaselineTier, 7, srvNS, fromNS("", accept, monNS))))
	require.NoError(t, err)
	require.Len(t, res.Overlaps, 1)
	o := res.Overlaps[0]
	assert.Equal(t, TierAdmin, o.Tier)
	assert.Equal(t, int32(7), o.Priority)
	assert.Equal(t, "a", o.A.Name)
	assert.Equal(t, "b", o.B.Name)
	assert.Equal(t, ref("srv/server"), o.Pod)
	// same priority: name order decides (a accepts before b denies)
	v := res.DecideVerdict(7, DirIngress, mon, ProtoTCP, 80)
	assert.True(t, v.Allowed)
	assert.Equal(t, "a", res.Policies[v.PolicyID].Name)
}

func TestTierBadInput(t *testing.T) {
	badCIDR := cnp("bad-cidr", cnpv1beta1.AdminTier, 5, srvNS)
	badCIDR.Spec.Subject = cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: monNS}
	badCIDR.Spec.Egress = []cnpv1beta1.ClusterNetworkPolicyEgressRule{
		{Action: deny, To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"10.0.0.0/33"}}}},
	}
	badAccept := cnp("bad-accept", cnpv1beta1.AdminTier, 5, srvNS)
	badAccept.Spec.Subject = cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: monNS}
	badAccept.Spec.Egress = []cnpv1beta1.ClusterNetworkPolicyEgressRule{
		{Action: accept, To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"nonsense"}}}},
	}
	for _, tc := range []struct {
		name    string
		cnps    []*cnpv1beta1.ClusterNetworkPolicy
		nps     []*networkingv1.NetworkPolicy
		ep      uint32
		dir     maps.Direction
		peer    netip.Addr
		port    uint16
		reason  string
		allowed bool
	}{
		{name: "priority out of range: Deny rule denies all",
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("p", cnpv1beta1.AdminTier, 1001, srvNS, fromNS("", deny, sel("kubernetes.io/metadata.name", "nowhere")))},
			ep:   7, dir: DirIngress, peer: mon, port: 80, reason: ProblemReasonPriority, allowed: false},
		{name: "priority out of range: Accept rule matches nothing", nps: []*networkingv1.NetworkPolicy{npDenyAll},
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("p", cnpv1beta1.AdminTier, -1, srvNS, fromNS("", accept, allNS))},
			ep:   7, dir: DirIngress, peer: mon, port: 80, reason: ProblemReasonPriority, allowed: false},
		{name: "unknown action denies all",
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("u", cnpv1beta1.AdminTier, 5, srvNS, fromNS("", "Allow", sel("kubernetes.io/metadata.name", "nowhere")))},
			ep:   7, dir: DirIngress, peer: mon, port: 80, reason: ProblemReasonAction, allowed: false},
		{name: "bad CIDR in a Deny rule denies all", cnps: []*cnpv1beta1.ClusterNetworkPolicy{badCIDR},
			ep: 8, dir: DirEgress, peer: other, port: 80, reason: ProblemReasonCIDR, allowed: false},
		{name: "bad CIDR in an Accept rule matches nothing", cnps: []*cnpv1beta1.ClusterNetworkPolicy{badAccept},
			ep: 8, dir: DirEgress, peer: other, port: 80, reason: ProblemReasonCIDR, allowed: true},
		{name: "missing named port matches nothing",
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{cnp("n", cnpv1beta1.AdminTier, 5, srvNS, fromNS("", deny, allNS, namedCNPPort("nope")))},
			ep:   7, dir: DirIngress, peer: mon, port: 80, reason: ProblemReasonNamedPort, allowed: true},
		{name: "wide range toward networks: Deny denies all",
			cnps: []*cnpv1beta1.ClusterNetworkPolicy{func() *cnpv1beta1.ClusterNetworkPolicy {
				p := cnp("w", cnpv1beta1.AdminTier, 5, monNS)
				p.Spec.Egress = []cnpv1beta1.ClusterNetworkPolicyEgressRule{{Action: deny,
					To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"192.0.2.0/24"}}}, Protocols: []cnpv1beta1.ClusterNetworkPolicyProtocol{tcpRange(1, 1000)}}}
				return p
			}()},
			ep: 8, dir: DirEgress, peer: other, port: 80, reason: ProblemReasonUnrepresentable, allowed: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Compile(tierCluster(tc.nps, tc.cnps...))
			require.NoError(t, err)
			var reasons []string
			for _, p := range res.Problems {
				reasons = append(reasons, p.Reason)
				require.NotNil(t, p.Policy, "problem %s", p)
				assert.True(t, p.Policy.IsCluster())
			}
			assert.Contains(t, reasons, tc.reason)
			v := res.DecideVerdict(tc.ep, tc.dir, tc.peer, ProtoTCP, tc.port)
			assert.Equal(t, tc.allowed, v.Allowed)
			assert.Zero(t, res.Endpoints[tc.ep].Flags&EndpointPolicyError, "a ClusterNetworkPolicy fails closed per rule, not per endpoint")
		})
	}
}

// TestTierFoldCIDR: an Admin Deny on a wide network and an Accept on a narrower one inside it,
// with a NetworkPolicy ipBlock except: each LPM hit carries the covering rules.
func TestTierFoldCIDR(t *testing.T) {
	p := cnp("nets", cnpv1beta1.AdminTier, 5, monNS)
	p.Spec.Egress = []cnpv1beta1.ClusterNetworkPolicyEgressRule{
		{Action: deny, To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"192.0.2.0/24"}}}},
		{Action: accept, To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"192.0.2.128/25"}}}, Protocols: []cnpv1beta1.ClusterNetworkPolicyProtocol{cnpTCP(443)}},
		{Action: pass, To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{"198.51.100.0/24"}}}},
	}
	np := netpol("mon/egress", &metav1.LabelSelector{}, egressOnly(), nil, egressRules(egressRule(ports(port(corev1.ProtocolTCP, 443)), blockPeer("0.0.0.0/0", "198.51.100.7/32"))))
	in := tierCluster([]*networkingv1.NetworkPolicy{np}, p)
	res, err := Compile(in)
	require.NoError(t, err)
	require.NotZero(t, res.Endpoints[8].Flags&EndpointEgressTiers)
	for _, c := range []struct {
		ip      string
		port    uint16
		allowed bool
		tier    Tier
	}{
		{"192.0.2.1", 443, false, TierAdmin},            // deny wins: rule 0 before rule 1
		{"192.0.2.200", 443, false, TierAdmin},          // the /25 accept is rule 1: rule 0 covers it
		{"198.51.100.1", 443, true, TierNetworkPolicy},  // pass, then the ipBlock allows
		{"198.51.100.7", 443, false, TierNetworkPolicy}, // pass, then the except
		{"8.8.8.8", 443, true, TierNetworkPolicy},
		{"8.8.8.8", 80, false, TierNetworkPolicy},
	} {
		ip := netip.MustParseAddr(c.ip)
		v := res.DecideVerdict(8, DirEgress, ip, ProtoTCP, c.port)
		assert.Equal(t, c.allowed, v.Allowed, "%s:%d", c.ip, c.port)
		assert.Equal(t, c.tier, v.Tier, "%s:%d", c.ip, c.port)
		assert.Equal(t, naiveDecideTiers(in, ref("mon/prom"), DirEgress, ip, ProtoTCP, c.port), v.Allowed, "naive %s:%d", c.ip, c.port)
	}
}
