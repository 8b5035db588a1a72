package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// gen draws small choices from fuzz bytes (zeros once they run out).
type gen struct {
	data []byte
}

func (g *gen) n(max int) int {
	if len(g.data) == 0 || max <= 1 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return int(b) % max
}

func (g *gen) pick(opts ...string) string { return opts[g.n(len(opts))] }

var (
	fuzzNamespaces = []string{"a", "b", "c"}
	fuzzCIDRs      = []string{"10.0.0.0/24", "10.0.0.0/30", "10.0.0.4/31", "10.0.0.2/32", "0.0.0.0/0", "172.18.0.0/16", "10.0.0.0/29", "10.0.0.8/29", "10.0.0.6/32", "fd00::/8"}
	fuzzPorts      = []uint16{53, 80, 81, 82, 83, 8080, 1}
	// fuzzPolicyPorts are the numbers policies use: the container ports plus the edges (0 is invalid).
	fuzzPolicyPorts = append([]uint16{0, 65535, 65534}, fuzzPorts...)
	// fuzzProbePorts are the ports every decision is probed on: inside and at the edges of the
	// generated ranges (up to 65535), and port 0.
	fuzzProbePorts = append([]uint16{0, 84, 336, 337, 1000, 9999, 65535}, fuzzPorts...)
	fuzzNodeIPs    = []netip.Addr{netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.3")}
)

// value draws a label value for key: namespace names for kubernetes.io/metadata.name.
func (g *gen) value(key string) string {
	if key == namespaceNameLabel {
		return g.pick("a", "b", "c", "x")
	}
	return g.pick("x", "y")
}

func (g *gen) labels(keys ...string) map[string]string {
	m := map[string]string{}
	for _, k := range keys {
		if g.n(3) != 0 {
			m[k] = g.value(k)
		}
	}
	return m
}

func (g *gen) selector(keys ...string) *metav1.LabelSelector {
	switch g.n(6) {
	case 0:
		return nil
	case 1:
		return &metav1.LabelSelector{}
	case 2, 3:
		return &metav1.LabelSelector{MatchLabels: g.labels(keys...)}
	default:
		ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
		op := ops[g.n(len(ops))]
		req := metav1.LabelSelectorRequirement{Key: keys[g.n(len(keys))], Operator: op}
		if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
			req.Values = []string{g.value(req.Key)}
			if g.n(2) == 1 {
				req.Values = append(req.Values, g.value(req.Key))
			}
		}
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{req}}
	}
}

func (g *gen) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for range g.n(3) {
		switch g.n(6) {
		case 0:
			out = append(out, networkingv1.NetworkPolicyPeer{PodSelector: g.selector("app", "tier")})
		case 1:
			out = append(out, networkingv1.NetworkPolicyPeer{NamespaceSelector: g.selector("team", namespaceNameLabel)})
		case 2:
			out = append(out, networkingv1.NetworkPolicyPeer{PodSelector: g.selector("app", "tier"), NamespaceSelector: g.selector("team", namespaceNameLabel)})
		default:
			b := &networkingv1.IPBlock{CIDR: fuzzCIDRs[g.n(len(fuzzCIDRs))]}
			for range g.n(3) {
				b.Except = append(b.Except, fuzzCIDRs[g.n(len(fuzzCIDRs))])
			}
			out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: b})
		}
	}
	return out
}

func (g *gen) ports() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for range g.n(3) {
		var p networkingv1.NetworkPolicyPort
		if pr := g.pick("", "TCP", "UDP", "SCTP"); pr != "" {
			proto := corev1.Protocol(pr)
			p.Protocol = &proto
		}
		switch g.n(5) {
		case 0, 1:
		case 2:
			v := intstr.FromString(g.pick("http", "dns"))
			p.Port = &v
		default:
			v := intstr.FromInt32(int32(fuzzPolicyPorts[g.n(len(fuzzPolicyPorts))]))
			p.Port = &v
			if g.n(3) == 0 {
				// Narrow, 256 and 257 ports wide (the CIDR map's limit), up to 65535, one past it,
				// and below port (invalid).
				e := v.IntVal + []int32{0, 1, 2, 3, 255, 256, -1}[g.n(7)]
				if g.n(5) == 0 {
					e = []int32{65535, 65536}[g.n(2)]
				}
				p.EndPort = &e
			}
		}
		out = append(out, p)
	}
	return out
}

// fuzzInput builds a small cluster: namespaces, pods with labels and named
// ports, node IPs, and up to four policies.
func fuzzInput(g *gen) Input {
	in := Input{
		Nodes: []Node{
			{Name: "local", IPs: fuzzNodeIPs[:1], Labels: map[string]string{"role": "x"}},
			{Name: "remote", IPs: fuzzNodeIPs[1:], Labels: map[string]string{"role": "y"}},
		},
		LocalNode:      "local",
		LocalEndpoints: map[PodRef]uint32{},
	}
	for _, ns := range fuzzNamespaces {
		in.Namespaces = append(in.Namespaces, Namespace{Name: ns, Labels: g.labels("team")})
	}
	in.Namespaces = relabelNamespaces(g, in.Namespaces)
	for i := range 1 + g.n(6) {
		p := Pod{
			Name:      fmt.Sprintf("p%d", i),
			Namespace: fuzzNamespaces[g.n(len(fuzzNamespaces))],
			Labels:    g.labels("app", "tier"),
			IP:        netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + i)}),
			Node:      g.pick("local", "remote"),
		}
		for range g.n(3) {
			p.Ports = append(p.Ports, ContainerPort{
				Name:     g.pick("http", "dns"),
				Port:     fuzzPorts[g.n(len(fuzzPorts))],
				Protocol: []maps.Proto{ProtoTCP, ProtoUDP}[g.n(2)],
			})
		}
		switch g.n(8) {
		case 0:
			p.HostNetwork = true
			p.IP = fuzzNodeIPs[0]
			if p.Node == "remote" {
				p.IP = fuzzNodeIPs[1]
			}
		case 1:
			p.IP = netip.Addr{} // pending
		}
		in.Pods = append(in.Pods, p)
		if p.Node == "local" && !p.HostNetwork && p.IP.IsValid() {
			in.LocalEndpoints[p.Ref()] = uint32(100 + i)
		}
	}
	for i := range g.n(5) {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{
			Namespace: fuzzNamespaces[g.n(len(fuzzNamespaces))], Name: fmt.Sprintf("np%d", i),
		}}
		if s := g.selector("app", "tier"); s != nil {
			np.Spec.PodSelector = *s
		}
		switch g.n(4) {
		case 1:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		case 2:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		case 3:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		}
		for range g.n(3) {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: g.peers(), Ports: g.ports()})
		}
		for range g.n(3) {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: g.peers(), Ports: g.ports()})
		}
		in.Policies = append(in.Policies, np)
	}
	for i := range g.n(4) {
		in.ClusterPolicies = append(in.ClusterPolicies, g.clusterPolicy(i))
	}
	return in
}

// relabelNamespaces draws a changed namespace snapshot: each namespace keeps its labels, gets new
// ones (a relabel), loses them, or loses its Namespace object (not yet seen by the informer).
func relabelNamespaces(g *gen, nss []Namespace) []Namespace {
	var out []Namespace
	for _, ns := range nss {
		switch g.n(6) {
		case 0:
			ns.Labels = g.labels("team")
		case 1:
			ns.Labels = nil
		case 2:
			continue
		}
		out = append(out, ns)
	}
	return out
}

// FuzzCompile compiles random clusters and policies (then the same cluster
// after a namespace change) and probes every local endpoint in both
// directions against pod IPs, node IPs, non-pod cluster IPs and the world, on
// TCP, UDP and SCTP. The compiled form must never allow what the naive
// evaluator of the objects denies, must fail closed exactly for the endpoints
// the objects make unrepresentable (naiveFailClosed), and must agree with the
// naive evaluator on every other endpoint.
func FuzzCompile(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{5, 1, 1, 1, 0, 0, 1, 0, 2, 1, 2, 2, 3, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("stars: default deny then allow ui and backend"))
	f.Add([]byte{3, 0, 2, 1, 4, 5, 2, 2, 1, 3, 3, 3, 3, 2, 1, 0, 2, 2, 3, 1, 2, 3, 2, 1, 0, 9, 9, 9, 4, 2, 2, 3, 3, 3, 1, 1, 0, 2})
	f.Add([]byte("ipBlock except overlaps pods: 10.0.0.0/24 except 10.0.0.0/30, named port http on egress"))
	f.Add([]byte{255, 254, 253, 252, 251, 250, 249, 248, 247, 246, 245, 244, 243, 242, 241, 240, 239, 238, 237, 236, 235, 234, 233, 232, 231, 230, 229, 228, 227, 226, 225})
	f.Add([]byte("endPort ranges 80-83 to pods and ipBlocks with UDP and SCTP; matchExpressions In NotIn Exists DoesNotExist; namespaceSelector team"))
	f.Fuzz(checkAgainstNaive)
}

// TestCompileMatchesNaiveRandom runs the fuzz property over a fixed set of
// pseudo-random inputs, so plain `go test` covers far more than the seeds.
func TestCompileMatchesNaiveRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	n := 10000
	if testing.Short() {
		n = 1000
	}
	for range n {
		data := make([]byte, 40+rng.IntN(160))
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		checkAgainstNaive(t, data)
	}
}

// checkAgainstNaive compiles one random cluster, then the same cluster after its namespaces
// changed (relabels, lost labels, missing Namespace objects) with the same Allocator, as the agent
// does, and checks both results against the naive evaluator.
func checkAgainstNaive(t *testing.T, data []byte) {
	g := &gen{data: data}
	first := fuzzInput(g)
	second := first
	second.Namespaces = relabelNamespaces(g, first.Namespaces)
	alloc := NewAllocator()
	for _, input := range []Input{first, second} {
		input.Alloc = alloc
		res, err := Compile(input)
		if err != nil {
			t.Fatalf("compile %q: %v", data, err)
		}
		checkResultAgainstNaive(t, data, input, res)
	}
}

// checkResultAgainstNaive probes every local endpoint in both directions. An endpoint must fail
// closed exactly when naiveFailClosed says its policies are unrepresentable (no over-eager
// deny-all), and otherwise agree with naiveDecide on every probe.
func checkResultAgainstNaive(t *testing.T, data []byte, input Input, res *Result) {
	t.Helper()
	peers := []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("10.0.0.200"), netip.MustParseAddr("172.18.0.9")}
	peers = append(peers, fuzzNodeIPs...)
	for _, p := range input.Pods {
		if p.IP.IsValid() && !p.HostNetwork {
			peers = append(peers, p.IP)
		}
	}
	for podRef, epID := range input.LocalEndpoints {
		exact := res.Endpoints[epID].Flags&EndpointPolicyError == 0
		if wantFail := naiveFailClosed(input, podRef); wantFail == exact {
			t.Fatalf("input %q: endpoint %s fail-closed %v, the objects say unrepresentable %v\nproblems: %v%s", data, podRef, !exact, wantFail, res.Problems, policiesYAML(input))
		}
		for _, dir := range []maps.Direction{DirIngress, DirEgress} {
			for _, ip := range peers {
				for _, proto := range []maps.Proto{ProtoTCP, ProtoUDP, ProtoSCTP} {
					for _, port := range fuzzProbePorts {
						got, _ := res.Decide(epID, dir, ip, proto, port)
						tiers := res.Endpoints[epID].Flags&(EndpointIngressTiers|EndpointEgressTiers) != 0
						if stop := decideStopAtExcept(res, epID, dir, ip, proto, port); !tiers && stop != got {
							t.Fatalf("input %q: an except entry that stops the CIDR lookups gives %v, falling through gives %v: %s dir %d peer %s proto %d port %d\nendpoint: %+v", data, stop, got, podRef, dir, ip, proto, port, res.Endpoints[epID])
						}
						want := naiveDecideTiers(input, podRef, dir, ip, proto, port)
						if got && !want {
							t.Fatalf("input %q: compiled allows what the objects deny: %s dir %d peer %s proto %d port %d\nproblems: %v\nendpoint: %+v", data, podRef, dir, ip, proto, port, res.Problems, res.Endpoints[epID])
						}
						if exact && got != want {
							t.Fatalf("input %q: compiled %v, objects %v (no problem reported): %s dir %d peer %s proto %d port %d\nendpoint: %+v", data, got, want, podRef, dir, ip, proto, port, res.Endpoints[epID])
						}
					}
				}
			}
		}
	}
}

// decideStopAtExcept is Decide with the other reading of "first hit wins" in
// sl_cidr_policy: an except hit ends the lookups with a deny. The compiled
// entries must give the same verdict either way.
func decideStopAtExcept(r *Result, ep uint32, dir maps.Direction, ip netip.Addr, proto maps.Proto, port uint16) bool {
	e := r.Endpoints[ep]
	if e == nil || e.Flags&EndpointPolicyError != 0 {
		return false
	}
	enforced := EndpointIngressEnforced
	if dir == DirEgress {
		enforced = EndpointEgressEnforced
	}
	if e.Flags&enforced == 0 {
		return true
	}
	peer := r.lookupIdentity(ip)
	for _, l := range [][2]uint32{{peer, uint32(proto)}, {peer, 0}, {0, uint32(proto)}, {0, 0}} {
		if _, ok := e.lookupPolicy(dir, l[0], maps.Proto(l[1]), port); ok {
			return true
		}
	}
	for _, l := range [][2]uint16{{uint16(proto), port}, {uint16(proto), 0}, {0, 0}} {
		if v, ok := e.lookupCIDR(dir, maps.Proto(l[0]), l[1], ip); ok {
			return v.Action == ActionAllow
		}
	}
	return false
}

// cnpPeer draws a ClusterNetworkPolicy peer; egress peers also draw networks and nodes.
func (g *gen) cnpPeer(egress bool) cnpv1beta1.ClusterNetworkPolicyEgressPeer {
	kinds := 2
	if egress {
		kinds = 4
	}
	switch g.n(kinds) {
	case 0:
		return cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: g.nonNilSelector("team", namespaceNameLabel)}
	case 1:
		return cnpv1beta1.ClusterNetworkPolicyEgressPeer{Pods: g.namespacedPod()}
	case 2:
		var nets []cnpv1beta1.CIDR
		for range 1 + g.n(2) {
			nets = append(nets, cnpv1beta1.CIDR(fuzzCIDRs[g.n(len(fuzzCIDRs))]))
		}
		return cnpv1beta1.ClusterNetworkPolicyEgressPeer{Networks: nets}
	default:
		return cnpv1beta1.ClusterNetworkPolicyEgressPeer{Nodes: g.nonNilSelector("role")}
	}
}

func (g *gen) nonNilSelector(keys ...string) *metav1.LabelSelector {
	if s := g.selector(keys...); s != nil {
		return s
	}
	return &metav1.LabelSelector{}
}

func (g *gen) namespacedPod() *cnpv1beta1.NamespacedPod {
	return &cnpv1beta1.NamespacedPod{NamespaceSelector: *g.nonNilSelector("team", namespaceNameLabel), PodSelector: *g.nonNilSelector("app", "tier")}
}

// cnpProtocols draws protocols: numbers, ranges (at most 256 wide: the CIDR map's limit for
// networks peers), whole protocols and, without networks/nodes peers, named ports.
func (g *gen) cnpProtocols(named bool) []cnpv1beta1.ClusterNetworkPolicyProtocol {
	var out []cnpv1beta1.ClusterNetworkPolicyProtocol
	for range g.n(3) {
		if named && g.n(4) == 0 {
			out = append(out, cnpv1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: g.pick("http", "dns")})
			continue
		}
		var port *cnpv1beta1.Port
		switch g.n(4) {
		case 0:
		case 1:
			lo := int32(fuzzPorts[g.n(len(fuzzPorts))])
			port = &cnpv1beta1.Port{Range: &cnpv1beta1.PortRange{Start: lo, End: min(65535, lo+[]int32{0, 3, 255}[g.n(3)])}}
		default:
			port = &cnpv1beta1.Port{Number: int32(fuzzPorts[g.n(len(fuzzPorts))])}
		}
		var p cnpv1beta1.ClusterNetworkPolicyProtocol
		switch g.n(3) {
		case 0:
			p.TCP = &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}
		case 1:
			p.UDP = &cnpv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: port}
		default:
			p.SCTP = &cnpv1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port}
		}
		out = append(out, p)
	}
	return out
}

// clusterPolicy draws a valid ClusterNetworkPolicy: tier, a priority from a small set (ties
// happen), a subject and up to three rules per direction.
func (g *gen) clusterPolicy(i int) *cnpv1beta1.ClusterNetworkPolicy {
	p := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp%d", i)}}
	p.Spec.Tier = []cnpv1beta1.Tier{cnpv1beta1.AdminTier, cnpv1beta1.BaselineTier}[g.n(2)]
	p.Spec.Priority = []int32{0, 5, 5, 1000}[g.n(4)]
	if g.n(2) == 0 {
		p.Spec.Subject.Namespaces = g.nonNilSelector("team", namespaceNameLabel)
	} else {
		p.Spec.Subject.Pods = g.namespacedPod()
	}
	actions := []cnpv1beta1.ClusterNetworkPolicyRuleAction{cnpv1beta1.ClusterNetworkPolicyRuleActionAccept, cnpv1beta1.ClusterNetworkPolicyRuleActionDeny, cnpv1beta1.ClusterNetworkPolicyRuleActionPass}
	for range g.n(3) {
		r := cnpv1beta1.ClusterNetworkPolicyIngressRule{Action: actions[g.n(3)]}
		for range 1 + g.n(2) {
			pr := g.cnpPeer(false)
			r.From = append(r.From, cnpv1beta1.ClusterNetworkPolicyIngressPeer{Namespaces: pr.Namespaces, Pods: pr.Pods})
		}
		r.Protocols = g.cnpProtocols(true)
		p.Spec.Ingress = append(p.Spec.Ingress, r)
	}
	for range g.n(3) {
		r := cnpv1beta1.ClusterNetworkPolicyEgressRule{Action: actions[g.n(3)]}
		named := true
		for range 1 + g.n(2) {
			pr := g.cnpPeer(true)
			named = named && pr.Networks == nil && pr.Nodes == nil
			r.To = append(r.To, pr)
		}
		r.Protocols = g.cnpProtocols(named)
		p.Spec.Egress = append(p.Spec.Egress, r)
	}
	return p
}
