package policy

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/datapath/maps"
)

const (
	in  = DirIngress
	out = DirEgress
	tcp = ProtoTCP
	udp = ProtoUDP
	sct = ProtoSCTP
)

// world is the cluster every table case runs against.
//
//	prod  (team=a):  web  app=web         10.0.1.10 node-a  http=8080/TCP metrics=9090/TCP dns=53/UDP
//	                 web2 app=web,ver=2   10.0.1.11 node-b  http=80/TCP
//	                 db   app=db          10.0.1.20 node-a  pg=5432/TCP
//	dev   (team=b):  client app=client    10.0.2.10 node-a
//	                 web  app=web         10.0.2.11 node-b  http=8081/TCP
//	other (no labels): x app=x            10.0.3.10 node-b
//	nodes: node-a 172.18.0.2 (local), node-b 172.18.0.3; 8.8.8.8 is the world.
func world() Input {
	return Input{
		Namespaces: []Namespace{
			{Name: "prod", Labels: kv("team", "a")},
			{Name: "dev", Labels: kv("team", "b")},
			{Name: "other"},
		},
		Pods: []Pod{
			mkPod("prod/web", "10.0.1.10", "node-a", kv("app", "web"), cport("http", tcp, 8080), cport("metrics", tcp, 9090), cport("dns", udp, 53)),
			mkPod("prod/web2", "10.0.1.11", "node-b", kv("app", "web", "ver", "2"), cport("http", tcp, 80)),
			mkPod("prod/db", "10.0.1.20", "node-a", kv("app", "db"), cport("pg", tcp, 5432)),
			mkPod("dev/client", "10.0.2.10", "node-a", kv("app", "client")),
			mkPod("dev/web", "10.0.2.11", "node-b", kv("app", "web"), cport("http", tcp, 8081)),
			mkPod("other/x", "10.0.3.10", "node-b", kv("app", "x")),
		},
		Nodes: []Node{
			{Name: "node-a", IPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}},
			{Name: "node-b", IPs: []netip.Addr{netip.MustParseAddr("172.18.0.3")}},
		},
		LocalNode: "node-a",
		LocalEndpoints: map[PodRef]uint32{
			ref("prod/web"):   10,
			ref("prod/db"):    20,
			ref("dev/client"): 30,
		},
	}
}

// check is one packet: the local endpoint, the direction, the peer (a pod
// "ns/name" or an IP), protocol, port, and the expected verdict.
type check struct {
	ep    string
	dir   maps.Direction
	peer  string
	proto maps.Proto
	port  uint16
	want  bool
}

func (c check) String() string {
	d := "from"
	if c.dir == out {
		d = "to"
	}
	return fmt.Sprintf("%s %s %s proto %d port %d", c.ep, d, c.peer, c.proto, c.port)
}

func peerIP(t *testing.T, in Input, peer string) netip.Addr {
	t.Helper()
	if ip, err := netip.ParseAddr(peer); err == nil {
		return ip
	}
	for _, p := range in.Pods {
		if p.Ref() == ref(peer) {
			return p.IP
		}
	}
	t.Fatalf("unknown peer %q", peer)
	return netip.Addr{}
}

// runChecks compiles input and asserts every check on the compiled form
// (Result.Decide). Unless failClosed, the naive evaluator must agree too (it
// guards the table itself); with failClosed the compiled form may only be
// stricter than the naive one.
func runChecks(t *testing.T, input Input, checks []check, failClosed bool) *Result {
	t.Helper()
	res, err := Compile(input)
	require.NoError(t, err)
	for _, c := range checks {
		ip := peerIP(t, input, c.peer)
		epID, ok := input.LocalEndpoints[ref(c.ep)]
		require.True(t, ok, "check %s: not a local endpoint", c)
		got, _ := res.Decide(epID, c.dir, ip, c.proto, c.port)
		assert.Equal(t, c.want, got, "compiled: %s", c)
		naive := naiveDecide(input, ref(c.ep), c.dir, ip, c.proto, c.port)
		if failClosed {
			assert.False(t, got && !naive, "compiled allows what the objects deny: %s", c)
		} else {
			assert.Equal(t, c.want, naive, "naive evaluator (table sanity): %s", c)
		}
	}
	return res
}

func TestCompileSemantics(t *testing.T) {
	ingressAllowWebFrom := func(peers ...networkingv1.NetworkPolicyPeer) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{netpol("prod/allow", sel("app", "web"), nil, ingressRules(ingressRule(nil, peers...)), nil)}
	}
	tests := []struct {
		name       string
		policies   []*networkingv1.NetworkPolicy
		mutate     func(*Input)
		checks     []check
		failClosed bool
	}{
		{
			name: "no policy allows everything",
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 8080, true},
				{"prod/web", out, "8.8.8.8", udp, 53, true},
				{"dev/client", out, "other/x", sct, 1, true},
			},
		},
		{
			name:     "default deny ingress with empty podSelector selects every pod of its namespace only",
			policies: []*networkingv1.NetworkPolicy{netpol("prod/deny", &metav1.LabelSelector{}, nil, nil, nil)},
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 8080, false},
				{"prod/db", in, "prod/web", tcp, 5432, false},
				{"prod/web", in, "172.18.0.3", tcp, 8080, false},
				{"prod/web", out, "8.8.8.8", tcp, 443, true}, // egress not enforced
				{"dev/client", in, "prod/web", tcp, 80, true},
			},
		},
		{
			name:     "podSelector matchLabels selects only matching pods",
			policies: []*networkingv1.NetworkPolicy{netpol("prod/deny-db", sel("app", "db"), nil, nil, nil)},
			checks: []check{
				{"prod/db", in, "prod/web", tcp, 5432, false},
				{"prod/web", in, "prod/db", tcp, 8080, true},
			},
		},
		{
			name:     "peer with only podSelector means pods of the policy's namespace",
			policies: ingressAllowWebFrom(podPeer(sel("app", "db"))),
			checks: []check{
				{"prod/web", in, "prod/db", tcp, 8080, true},
				{"prod/web", in, "dev/client", tcp, 8080, false},
			},
		},
		{
			name: "peer with only podSelector does not match same labels in another namespace",
			policies: []*networkingv1.NetworkPolicy{
				netpol("dev/allow", sel("app", "client"), nil, ingressRules(ingressRule(nil, podPeer(sel("app", "web")))), nil),
			},
			checks: []check{
				{"dev/client", in, "dev/web", tcp, 9000, true},
				{"dev/client", in, "prod/web", tcp, 9000, false},
			},
		},
		{
			name:     "peer with only namespaceSelector means every pod of matching namespaces",
			policies: ingressAllowWebFrom(nsPeer(sel("team", "b"))),
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 8080, true},
				{"prod/web", in, "dev/web", udp, 53, true},
				{"prod/web", in, "prod/db", tcp, 8080, false},
				{"prod/web", in, "other/x", tcp, 8080, false},
			},
		},
		{
			name:     "empty namespaceSelector means all namespaces, never non-pods",
			policies: ingressAllowWebFrom(nsPeer(&metav1.LabelSelector{})),
			checks: []check{
				{"prod/web", in, "other/x", tcp, 8080, true},
				{"prod/web", in, "prod/db", tcp, 8080, true},
				{"prod/web", in, "8.8.8.8", tcp, 8080, false},
				{"prod/web", in, "172.18.0.3", tcp, 8080, false},
			},
		},
		{
			name:     "namespaceSelector by kubernetes.io/metadata.name",
			policies: ingressAllowWebFrom(nsPeer(sel("kubernetes.io/metadata.name", "other"))),
			checks: []check{
				{"prod/web", in, "other/x", tcp, 8080, true},
				{"prod/web", in, "dev/client", tcp, 8080, false},
			},
		},
		{
			name:     "podSelector and namespaceSelector in one peer are ANDed",
			policies: ingressAllowWebFrom(andPeer(sel("team", "b"), sel("app", "client"))),
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 8080, true},
				{"prod/web", in, "dev/web", tcp, 8080, false},
				{"prod/web", in, "prod/db", tcp, 8080, false},
			},
		},
		{
			name:     "separate peers are ORed",
			policies: ingressAllowWebFrom(nsPeer(sel("team", "b")), podPeer(sel("app", "db"))),
			checks: []check{
				{"prod/web", in, "dev/web", tcp, 8080, true},
				{"prod/web", in, "prod/db", tcp, 8080, true},
				{"prod/web", in, "other/x", tcp, 8080, false},
				{"prod/web", in, "prod/web2", tcp, 8080, false},
			},
		},
		{
			name:     "matchExpressions In",
			policies: ingressAllowWebFrom(andPeer(&metav1.LabelSelector{}, expr("app", metav1.LabelSelectorOpIn, "client", "x"))),
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 1, true},
				{"prod/web", in, "other/x", tcp, 1, true},
				{"prod/web", in, "dev/web", tcp, 1, false},
			},
		},
		{
			name:     "matchExpressions NotIn",
			policies: ingressAllowWebFrom(podPeer(expr("app", metav1.LabelSelectorOpNotIn, "db"))),
			checks: []check{
				{"prod/web", in, "prod/web2", tcp, 1, true},
				{"prod/web", in, "prod/db", tcp, 1, false},
			},
		},
		{
			name:     "matchExpressions Exists",
			policies: ingressAllowWebFrom(podPeer(expr("ver", metav1.LabelSelectorOpExists))),
			checks: []check{
				{"prod/web", in, "prod/web2", tcp, 1, true},
				{"prod/web", in, "prod/db", tcp, 1, false},
			},
		},
		{
			name:     "matchExpressions DoesNotExist on namespace labels",
			policies: ingressAllowWebFrom(nsPeer(expr("team", metav1.LabelSelectorOpDoesNotExist))),
			checks: []check{
				{"prod/web", in, "other/x", tcp, 1, true},
				{"prod/web", in, "dev/client", tcp, 1, false},
			},
		},
		{
			name: "missing from with ports allows every source on those ports",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/open-http", sel("app", "web"), nil, ingressRules(ingressRule(ports(port("TCP", 8080)))), nil),
			},
			checks: []check{
				{"prod/web", in, "8.8.8.8", tcp, 8080, true},
				{"prod/web", in, "172.18.0.3", tcp, 8080, true},
				{"prod/web", in, "dev/client", tcp, 8080, true},
				{"prod/web", in, "dev/client", tcp, 8081, false},
				{"prod/web", in, "dev/client", udp, 8080, false},
			},
		},
		{
			name: "empty ingress rule allows everything",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/deny", &metav1.LabelSelector{}, nil, nil, nil),
				netpol("prod/all", sel("app", "web"), nil, ingressRules(ingressRule(nil)), nil),
			},
			checks: []check{
				{"prod/web", in, "8.8.8.8", sct, 7, true},
				{"prod/web", in, "other/x", udp, 53, true},
				{"prod/db", in, "prod/web", tcp, 5432, false},
			},
		},
		{
			name:     "ipBlock with except",
			policies: ingressAllowWebFrom(blockPeer("10.0.0.0/16", "10.0.2.0/24")),
			checks: []check{
				{"prod/web", in, "prod/db", tcp, 8080, true},
				{"prod/web", in, "other/x", udp, 9, true},
				{"prod/web", in, "dev/client", tcp, 8080, false},
				{"prod/web", in, "8.8.8.8", tcp, 8080, false},
			},
		},
		{
			name:     "ipBlock except overlapping a pod IP another block still allows",
			policies: ingressAllowWebFrom(blockPeer("10.0.0.0/16", "10.0.2.0/24"), blockPeer("10.0.2.10/32")),
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 8080, true},
				{"prod/web", in, "dev/web", tcp, 8080, false},
				{"prod/web", in, "prod/db", tcp, 8080, true},
			},
		},
		{
			name: "ipBlock except re-allowed by a pod selector peer in another policy",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/cidr", sel("app", "web"), nil, ingressRules(ingressRule(nil, blockPeer("10.0.0.0/8", "10.0.2.0/24"))), nil),
				netpol("prod/pods", sel("app", "web"), nil, ingressRules(ingressRule(ports(port("TCP", 8080)), nsPeer(sel("team", "b")))), nil),
			},
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 8080, true},
				{"prod/web", in, "dev/client", tcp, 9090, false},
				{"prod/web", in, "other/x", tcp, 9090, true},
			},
		},
		{
			name: "ipBlock excepts with ports on different rules",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/a", sel("app", "web"), nil, ingressRules(
					ingressRule(ports(port("TCP", 8080)), blockPeer("10.0.0.0/16", "10.0.2.0/24")),
					ingressRule(ports(networkingv1.NetworkPolicyPort{Protocol: protoPtr("TCP")}), blockPeer("10.0.2.0/24", "10.0.2.10/32")),
					ingressRule(nil, blockPeer("10.0.2.10/32")),
				), nil),
			},
			checks: []check{
				{"prod/web", in, "dev/client", udp, 1, true},  // rule 2
				{"prod/web", in, "dev/web", tcp, 8080, true},  // rule 1 (rule 0 excepts it)
				{"prod/web", in, "dev/web", tcp, 9090, true},  // rule 1
				{"prod/web", in, "dev/web", udp, 8080, false}, // only TCP
				{"prod/web", in, "prod/db", tcp, 8080, true},  // rule 0
				{"prod/web", in, "prod/db", tcp, 9090, false},
			},
		},
		{
			name: "egress ipBlock covers pod IPs (raw IP match) and the world",
			policies: []*networkingv1.NetworkPolicy{
				netpol("dev/egress", sel("app", "client"), egressOnly(), nil, egressRules(
					egressRule(ports(port("TCP", 443)), blockPeer("0.0.0.0/0", "10.0.0.0/8", "172.16.0.0/12")),
					egressRule(nil, blockPeer("10.0.1.10/32")),
				)),
			},
			checks: []check{
				{"dev/client", out, "8.8.8.8", tcp, 443, true},
				{"dev/client", out, "8.8.8.8", tcp, 80, false},
				{"dev/client", out, "prod/db", tcp, 443, false},
				{"dev/client", out, "prod/web", udp, 53, true},
				{"dev/client", out, "172.18.0.2", tcp, 443, false},
				{"dev/client", in, "8.8.8.8", tcp, 1, true}, // ingress not enforced
			},
		},
		{
			name: "named port on ingress resolves on the local endpoint",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/named", &metav1.LabelSelector{}, nil, ingressRules(ingressRule(ports(namedPort("TCP", "http"), namedPort("UDP", "dns"), namedPort("TCP", "pg"))), ingressRule(ports(namedPort("SCTP", "dns")))), nil),
			},
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 8080, true},
				{"prod/web", in, "dev/client", tcp, 80, false},
				{"prod/web", in, "dev/client", udp, 53, true},
				{"prod/web", in, "dev/client", tcp, 53, false}, // dns is UDP
				{"prod/web", in, "dev/client", sct, 53, false}, // an SCTP "dns" names no port
				{"prod/web", in, "dev/client", tcp, 5432, false},
				{"prod/db", in, "dev/client", tcp, 5432, true},
				{"prod/db", in, "dev/client", tcp, 8080, false},
			},
		},
		{
			name: "named port on egress resolves on each peer pod to different numbers",
			policies: []*networkingv1.NetworkPolicy{
				netpol("dev/out", sel("app", "client"), nil, nil, egressRules(
					egressRule(ports(namedPort("TCP", "http")), andPeer(&metav1.LabelSelector{}, sel("app", "web"))),
				)),
			},
			checks: []check{
				{"dev/client", out, "prod/web", tcp, 8080, true},
				{"dev/client", out, "prod/web", tcp, 80, false},
				{"dev/client", out, "prod/web2", tcp, 80, true},
				{"dev/client", out, "prod/web2", tcp, 8080, false},
				{"dev/client", out, "dev/web", tcp, 8081, true},
				{"dev/client", out, "dev/web", tcp, 8080, false},
				{"dev/client", out, "8.8.8.8", tcp, 8080, false},
				{"dev/client", in, "prod/web", tcp, 1, false}, // Ingress is always a policy type
			},
		},
		{
			name: "named port on egress with no to matches only pods naming it",
			policies: []*networkingv1.NetworkPolicy{
				netpol("dev/out", sel("app", "client"), egressOnly(), nil, egressRules(egressRule(ports(namedPort("TCP", "pg"))))),
			},
			checks: []check{
				{"dev/client", out, "prod/db", tcp, 5432, true},
				{"dev/client", out, "prod/web", tcp, 5432, false},
				{"dev/client", out, "8.8.8.8", tcp, 5432, false},
			},
		},
		{
			name: "endPort range",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/range", sel("app", "web"), nil, ingressRules(
					ingressRule(ports(portRange("TCP", 8000, 8090)), podPeer(&metav1.LabelSelector{})),
					ingressRule(ports(portRange("UDP", 1000, 1003)), blockPeer("10.0.2.0/24")),
				), nil),
			},
			checks: []check{
				{"prod/web", in, "prod/db", tcp, 8000, true},
				{"prod/web", in, "prod/db", tcp, 8080, true},
				{"prod/web", in, "prod/db", tcp, 8090, true},
				{"prod/web", in, "prod/db", tcp, 8091, false},
				{"prod/web", in, "prod/db", tcp, 7999, false},
				{"prod/web", in, "prod/db", udp, 8080, false},
				{"prod/web", in, "dev/client", udp, 1000, true},
				{"prod/web", in, "dev/client", udp, 1003, true},
				{"prod/web", in, "dev/client", udp, 1004, false},
				{"prod/web", in, "dev/client", udp, 999, false},
			},
		},
		{
			name:     "UDP-only rule never allows TCP",
			policies: []*networkingv1.NetworkPolicy{netpol("prod/udp", sel("app", "web"), nil, ingressRules(ingressRule(ports(port("UDP", 53)))), nil)},
			checks: []check{
				{"prod/web", in, "dev/client", udp, 53, true},
				{"prod/web", in, "dev/client", tcp, 53, false},
				{"prod/web", in, "dev/client", sct, 53, false},
			},
		},
		{
			name: "SCTP distinct from TCP and UDP",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/sctp", sel("app", "web"), nil, ingressRules(ingressRule(ports(port("SCTP", 3868)), blockPeer("0.0.0.0/0"))), nil),
			},
			checks: []check{
				{"prod/web", in, "8.8.8.8", sct, 3868, true},
				{"prod/web", in, "8.8.8.8", tcp, 3868, false},
				{"prod/web", in, "8.8.8.8", udp, 3868, false},
			},
		},
		{
			name: "ports [{}] means all TCP ports",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/tcp", sel("app", "web"), nil, ingressRules(ingressRule([]networkingv1.NetworkPolicyPort{{}}, podPeer(sel("app", "db")))), nil),
			},
			checks: []check{
				{"prod/web", in, "prod/db", tcp, 1, true},
				{"prod/web", in, "prod/db", tcp, 65535, true},
				{"prod/web", in, "prod/db", udp, 53, false},
			},
		},
		{
			name: "no ports means all ports of all protocols",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/any", sel("app", "web"), nil, ingressRules(ingressRule(nil, podPeer(sel("app", "db")))), nil),
			},
			checks: []check{
				{"prod/web", in, "prod/db", udp, 53, true},
				{"prod/web", in, "prod/db", sct, 9, true},
				{"prod/web", in, "prod/db", 1, 0, true}, // ICMP
			},
		},
		{
			name: "policyTypes default: egress rules make Egress enforced, Ingress always",
			policies: []*networkingv1.NetworkPolicy{
				netpol("dev/out", sel("app", "client"), nil, nil, egressRules(egressRule(ports(port("UDP", 53))))),
			},
			checks: []check{
				{"dev/client", out, "8.8.8.8", udp, 53, true},
				{"dev/client", out, "8.8.8.8", tcp, 53, false},
				{"dev/client", in, "prod/web", tcp, 1, false},
			},
		},
		{
			name: "policyTypes [Egress] without rules denies egress only",
			policies: []*networkingv1.NetworkPolicy{
				netpol("dev/no-out", &metav1.LabelSelector{}, egressOnly(), nil, nil),
			},
			checks: []check{
				{"dev/client", out, "prod/web", tcp, 8080, false},
				{"dev/client", out, "172.18.0.2", udp, 53, false}, // host/DNS not automatically allowed
				{"dev/client", in, "prod/web", tcp, 1, true},
			},
		},
		{
			name: "policyTypes [Ingress] ignores egress rules",
			policies: []*networkingv1.NetworkPolicy{
				netpol("dev/in", &metav1.LabelSelector{}, ingressOnly(), nil, egressRules(egressRule(ports(port("TCP", 1))))),
			},
			checks: []check{
				{"dev/client", out, "8.8.8.8", tcp, 2, true},
				{"dev/client", in, "8.8.8.8", tcp, 1, false},
			},
		},
		{
			name: "policies add up (union)",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/p1", sel("app", "web"), nil, ingressRules(ingressRule(ports(port("TCP", 8080)), podPeer(sel("app", "db")))), nil),
				netpol("prod/p2", sel("app", "web"), nil, ingressRules(ingressRule(ports(port("TCP", 9090)), nsPeer(sel("team", "b")))), nil),
				netpol("prod/deny", &metav1.LabelSelector{}, bothTypes(), nil, nil),
			},
			checks: []check{
				{"prod/web", in, "prod/db", tcp, 8080, true},
				{"prod/web", in, "prod/db", tcp, 9090, false},
				{"prod/web", in, "dev/client", tcp, 9090, true},
				{"prod/web", in, "dev/client", tcp, 8080, false},
				{"prod/web", out, "prod/db", tcp, 5432, false},
			},
		},
		{
			name: "namespace label change takes effect",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/allow", sel("app", "web"), nil, ingressRules(ingressRule(nil, nsPeer(sel("team", "b")))), nil),
			},
			mutate: func(i *Input) { i.Namespaces[1].Labels = kv("team", "c") },
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 8080, false},
			},
		},
		{
			name: "pod label change takes effect on the selected endpoint",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/deny-db", sel("app", "db"), nil, nil, nil),
			},
			mutate: func(i *Input) { i.Pods[2].Labels = kv("app", "cache") },
			checks: []check{
				{"prod/db", in, "prod/web", tcp, 5432, true},
			},
		},
		{
			name: "egress to the host is not automatically allowed",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/out", sel("app", "web"), egressOnly(), nil, egressRules(egressRule(nil, podPeer(sel("app", "db"))))),
			},
			checks: []check{
				{"prod/web", out, "prod/db", tcp, 5432, true},
				{"prod/web", out, "172.18.0.2", udp, 53, false},
				{"prod/web", out, "172.18.0.3", tcp, 6443, false},
			},
		},
		{
			name: "named port toward an egress ipBlock resolves on the pods inside the block",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/out", sel("app", "web"), egressOnly(), nil, egressRules(egressRule(ports(namedPort("TCP", "http")), blockPeer("10.0.0.0/8", "10.0.2.0/24")))),
			},
			checks: []check{
				{"prod/web", out, "prod/web2", tcp, 80, true}, // web2 names http 80
				{"prod/web", out, "prod/web2", tcp, 8080, false},
				{"prod/web", out, "prod/web", tcp, 8080, true},
				{"prod/web", out, "dev/web", tcp, 8081, false}, // excepted
				{"prod/web", out, "prod/db", tcp, 5432, false}, // names no http
				{"prod/web", out, "10.0.0.200", tcp, 8080, false},
				{"prod/web", in, "dev/client", tcp, 8080, true}, // ingress not enforced
			},
		},
		{
			name: "fail closed: port range toward an ipBlock wider than the CIDR map takes",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/wide", sel("app", "web"), nil, ingressRules(ingressRule(ports(portRange("TCP", 1024, 65535)), blockPeer("10.0.0.0/8"))), nil),
			},
			failClosed: true,
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 2000, false},
			},
		},
		{
			name: "fail closed: unknown protocol",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/icmp", sel("app", "web"), nil, ingressRules(ingressRule(ports(port("ICMP", 1)))), nil),
			},
			failClosed: true,
			checks: []check{
				{"prod/web", in, "dev/client", tcp, 1, false},
			},
		},
		{
			name: "fail closed: invalid podSelector denies its whole namespace",
			policies: []*networkingv1.NetworkPolicy{
				netpol("prod/broken", expr("app", metav1.LabelSelectorOpIn), nil, nil, nil),
			},
			failClosed: true,
			checks: []check{
				{"prod/web", out, "8.8.8.8", tcp, 1, false},
				{"prod/db", in, "prod/web", tcp, 5432, false},
				{"dev/client", in, "prod/web", tcp, 1, true},
			},
		},
		{
			name: "named port on egress resolves per pod when pods sharing an identity name it differently",
			policies: []*networkingv1.NetworkPolicy{
				netpol("dev/out", sel("app", "client"), egressOnly(), nil, egressRules(egressRule(ports(namedPort("TCP", "http")), nsPeer(&metav1.LabelSelector{})))),
			},
			mutate: func(i *Input) {
				i.Pods = append(i.Pods, mkPod("prod/web3", "10.0.1.12", "node-b", kv("app", "web"), cport("http", tcp, 9999)))
			},
			checks: []check{
				{"dev/client", out, "prod/web", tcp, 8080, true},
				{"dev/client", out, "prod/web", tcp, 9999, false},
				{"dev/client", out, "prod/web3", tcp, 9999, true},
				{"dev/client", out, "prod/web3", tcp, 8080, false},
				{"dev/client", out, "prod/web2", tcp, 80, true},
				{"dev/client", out, "dev/web", tcp, 8081, true},
				{"dev/client", out, "prod/db", tcp, 8080, false},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			input := world()
			input.Policies = tc.policies
			if tc.mutate != nil {
				tc.mutate(&input)
			}
			res := runChecks(t, input, tc.checks, tc.failClosed)
			if tc.failClosed {
				assert.NotEmpty(t, res.Problems, "a fail-closed case must report its problem")
			} else {
				assert.Empty(t, res.Problems)
			}
		})
	}
}

func TestCompileEndpointMetadata(t *testing.T) {
	input := world()
	input.Policies = []*networkingv1.NetworkPolicy{
		netpol("prod/b-second", sel("app", "web"), nil, ingressRules(
			ingressRule(ports(port("TCP", 1))),
			ingressRule(ports(port("TCP", 8080)), podPeer(sel("app", "db"))),
		), nil),
		netpol("prod/a-first", &metav1.LabelSelector{}, bothTypes(), nil, nil),
		netpol("dev/other", sel("app", "nobody"), nil, nil, nil),
	}
	res, err := Compile(input)
	require.NoError(t, err)

	// Policy ids start at 1, in namespace/name order for a fresh allocator.
	assert.Equal(t, map[uint32]PolicyRef{
		1: {ID: 1, Namespace: "dev", Name: "other"},
		2: {ID: 2, Namespace: "prod", Name: "a-first"},
		3: {ID: 3, Namespace: "prod", Name: "b-second"},
	}, res.Policies)

	web := res.Endpoints[10]
	require.NotNil(t, web)
	assert.Equal(t, EndpointIngressEnforced|EndpointEgressEnforced, web.Flags)
	assert.Equal(t, []PolicyRef{res.Policies[2], res.Policies[3]}, web.IngressPolicies)
	assert.Equal(t, []PolicyRef{res.Policies[2]}, web.EgressPolicies)
	assert.Equal(t, ref("prod/web"), web.Pod)
	assert.GreaterOrEqual(t, web.Identity, FirstPodIdentity)

	// Rule index and policy id in the values.
	allowed, pid := res.Decide(10, DirIngress, netip.MustParseAddr("10.0.1.20"), ProtoTCP, 8080)
	assert.True(t, allowed)
	assert.Equal(t, uint32(3), pid)
	dbID := res.Endpoints[20].Identity
	assert.Contains(t, web.Policy, maps.PolicyEntry{
		Key:   maps.PolicyKey{EpID: 10, PeerID: dbID, Dir: DirIngress, Proto: ProtoTCP, Port: 8080, PortPrefixLen: 16},
		Value: maps.PolicyValue{Action: ActionAllow, Rule: 1, PolicyID: 3},
	})
	assert.Contains(t, web.Policy, maps.PolicyEntry{
		Key:   maps.PolicyKey{EpID: 10, PeerID: IdentityAny, Dir: DirIngress, Proto: ProtoTCP, Port: 1, PortPrefixLen: 16},
		Value: maps.PolicyValue{Action: ActionAllow, Rule: 0, PolicyID: 3},
	})

	// ipcache: every pod IP and node IP.
	byIP := map[netip.Prefix]uint32{}
	for _, e := range res.IPCache {
		byIP[e.Prefix] = e.Identity
	}
	assert.Len(t, byIP, len(input.Pods)+2)
	assert.Equal(t, IdentityHost, byIP[netip.MustParsePrefix("172.18.0.2/32")])
	assert.Equal(t, IdentityRemoteNode, byIP[netip.MustParsePrefix("172.18.0.3/32")])
	assert.Equal(t, dbID, byIP[netip.MustParsePrefix("10.0.1.20/32")])
	// Same namespace + labels = same identity; same labels in another namespace = another one.
	assert.NotEqual(t, byIP[netip.MustParsePrefix("10.0.1.10/32")], byIP[netip.MustParsePrefix("10.0.2.11/32")])
	assert.Equal(t, Identity{ID: dbID, Namespace: "prod", Labels: kv("app", "db")}, res.Identities[dbID])

	// Endpoints not selected by anything are not enforced.
	assert.Equal(t, maps.EndpointFlags(0), res.Endpoints[30].Flags&(EndpointIngressEnforced|EndpointEgressEnforced|EndpointPolicyError))
}

func TestCompileIsDeterministic(t *testing.T) {
	a := world()
	a.Policies = []*networkingv1.NetworkPolicy{
		netpol("prod/x", sel("app", "web"), nil, ingressRules(ingressRule(ports(portRange("TCP", 10, 300)), blockPeer("10.0.0.0/8", "10.0.2.0/24"))), nil),
		netpol("prod/y", &metav1.LabelSelector{}, nil, ingressRules(ingressRule(nil, nsPeer(sel("team", "b")))), nil),
	}
	b := world()
	b.Policies = []*networkingv1.NetworkPolicy{a.Policies[1], a.Policies[0]}
	for i, j := 0, len(b.Pods)-1; i < j; i, j = i+1, j-1 {
		b.Pods[i], b.Pods[j] = b.Pods[j], b.Pods[i]
	}
	ra, err := Compile(a)
	require.NoError(t, err)
	rb, err := Compile(b)
	require.NoError(t, err)
	assert.Equal(t, ra, rb)
}

func TestAllocatorKeepsNumbersStable(t *testing.T) {
	alloc := NewAllocator()
	input := world()
	input.Alloc = alloc
	input.Policies = []*networkingv1.NetworkPolicy{netpol("prod/p", &metav1.LabelSelector{}, nil, nil, nil)}
	first, err := Compile(input)
	require.NoError(t, err)
	dbID := first.Endpoints[20].Identity

	// A new pod set sorting before db and a new policy sorting before p keep old numbers.
	input.Pods = append(input.Pods, mkPod("prod/aaa", "10.0.1.99", "node-b", kv("app", "aaa")))
	input.Policies = append(input.Policies, netpol("prod/a", &metav1.LabelSelector{}, nil, nil, nil))
	second, err := Compile(input)
	require.NoError(t, err)
	assert.Equal(t, dbID, second.Endpoints[20].Identity)
	assert.Equal(t, PolicyRef{ID: 1, Namespace: "prod", Name: "p"}, second.Policies[1])
	assert.Equal(t, PolicyRef{ID: 2, Namespace: "prod", Name: "a"}, second.Policies[2])

	// A label set that disappears retires its number; it comes back with a new one.
	input.Pods[2].Labels = kv("app", "db2")
	third, err := Compile(input)
	require.NoError(t, err)
	input.Pods[2].Labels = kv("app", "db")
	fourth, err := Compile(input)
	require.NoError(t, err)
	assert.NotEqual(t, dbID, third.Endpoints[20].Identity)
	assert.NotEqual(t, dbID, fourth.Endpoints[20].Identity)
	assert.NotEqual(t, third.Endpoints[20].Identity, fourth.Endpoints[20].Identity)
	for id := range fourth.Identities {
		assert.GreaterOrEqual(t, id, FirstPodIdentity)
	}
}

func TestCompileUnknownEndpointFailsClosed(t *testing.T) {
	input := world()
	input.LocalEndpoints[ref("prod/ghost")] = 99
	res, err := Compile(input)
	require.NoError(t, err)
	require.Contains(t, res.Endpoints, uint32(99))
	assert.NotZero(t, res.Endpoints[99].Flags&EndpointPolicyError)
	allowed, _ := res.Decide(99, DirEgress, netip.MustParseAddr("8.8.8.8"), ProtoTCP, 80)
	assert.False(t, allowed)
	require.Len(t, res.Problems, 1)
	assert.Contains(t, res.Problems[0].String(), "prod/ghost")
}

func TestCompileRejectsMalformedInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Input)
		want   string
	}{
		{"nil policy", func(i *Input) { i.Policies = []*networkingv1.NetworkPolicy{nil} }, "nil"},
		{"duplicate pod", func(i *Input) { i.Pods = append(i.Pods, i.Pods[0]) }, "listed twice"},
		{"duplicate policy", func(i *Input) {
			p := netpol("prod/p", nil, nil, nil, nil)
			i.Policies = []*networkingv1.NetworkPolicy{p, p}
		}, "listed twice"},
		{"ep id reused", func(i *Input) { i.LocalEndpoints[ref("prod/web2")] = 10 }, "ep_id 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			input := world()
			tc.mutate(&input)
			_, err := Compile(input)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestPodFromK8s(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "web", Labels: kv("app", "web")},
		Spec: corev1.PodSpec{
			NodeName: "node-a",
			Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 8080},
				{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.1.10"},
	}
	got := PodFromK8s(pod)
	assert.Equal(t, Pod{
		Name: "web", Namespace: "prod", Labels: kv("app", "web"), Node: "node-a",
		IP:    netip.MustParseAddr("10.0.1.10"),
		Ports: []ContainerPort{{Name: "http", Port: 8080, Protocol: ProtoTCP}, {Name: "dns", Port: 53, Protocol: ProtoUDP}},
	}, got)
	now := metav1.Now()
	pod.DeletionTimestamp = &now
	got = PodFromK8s(pod)
	assert.True(t, got.Terminating)
	assert.Equal(t, netip.MustParseAddr("10.0.1.10"), got.IP, "a terminating pod keeps its IP (and identity) until it is gone")
	pod.Status.Phase = corev1.PodSucceeded
	assert.False(t, PodFromK8s(pod).IP.IsValid(), "a finished pod's IP may belong to another pod")

	node := NodeFromK8s(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "172.18.0.2"},
			{Type: corev1.NodeHostName, Address: "node-a"},
			{Type: corev1.NodeInternalIP, Address: "fc00::2"},
		}},
	})
	assert.Equal(t, Node{Name: "node-a", IPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}}, node)
}
