package policy

import (
	"fmt"
	"net/netip"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// benchInput builds a cluster of 10 namespaces and 3 nodes with nPods pods
// (50 apps, 2 tiers, so up to 1,000 identities) and nPolicies policies of
// five kinds in rotation: default deny, allow from a podSelector on a port
// range, allow from a namespaceSelector AND podSelector on a named port,
// egress to an ipBlock with excepts on exact ports, egress to all pods of an
// app in any namespace on a named port.
func benchInput(nPods, nPolicies int) Input {
	in := Input{LocalNode: "node-0", LocalEndpoints: map[PodRef]uint32{}}
	for n := range 3 {
		in.Nodes = append(in.Nodes, Node{Name: fmt.Sprintf("node-%d", n), IPs: []netip.Addr{netip.AddrFrom4([4]byte{172, 18, 0, byte(2 + n)})}})
	}
	for ns := range 10 {
		in.Namespaces = append(in.Namespaces, Namespace{Name: fmt.Sprintf("ns%d", ns), Labels: kv("team", fmt.Sprintf("t%d", ns%3))})
	}
	for i := range nPods {
		p := Pod{
			Name:      fmt.Sprintf("pod%d", i),
			Namespace: fmt.Sprintf("ns%d", i%10),
			Labels:    kv("app", fmt.Sprintf("app%d", i%50), "tier", fmt.Sprintf("tier%d", i/50%2)),
			IP:        netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(1 + i%250)}),
			Node:      fmt.Sprintf("node-%d", i%3),
			Ports:     []ContainerPort{{Name: "http", Port: uint16(8000 + i%50%7), Protocol: ProtoTCP}, {Name: "dns", Port: 53, Protocol: ProtoUDP}},
		}
		in.Pods = append(in.Pods, p)
		if p.Node == in.LocalNode {
			in.LocalEndpoints[p.Ref()] = uint32(1000 + i)
		}
	}
	for i := range nPolicies {
		ns := fmt.Sprintf("ns%d", i%10)
		app := func(k int) *metav1.LabelSelector { return sel("app", fmt.Sprintf("app%d", k%50)) }
		var np *networkingv1.NetworkPolicy
		name := fmt.Sprintf("%s/p%d", ns, i)
		switch i % 5 {
		case 0:
			np = netpol(name, &metav1.LabelSelector{}, nil, nil, nil)
		case 1:
			np = netpol(name, app(i), nil, ingressRules(ingressRule(ports(portRange("TCP", 8000, 8090)), andPeer(&metav1.LabelSelector{}, app(i+1)))), nil)
		case 2:
			np = netpol(name, app(i), nil, ingressRules(ingressRule(ports(namedPort("TCP", "http")), andPeer(sel("team", "t1"), app(i+2)))), nil)
		case 3:
			np = netpol(name, app(i), egressOnly(), nil, egressRules(egressRule(ports(port("TCP", 443), portRange("TCP", 8000, 8015)),
				blockPeer("0.0.0.0/0", "10.0.0.0/8", "172.16.0.0/12"), blockPeer(fmt.Sprintf("10.244.%d.0/24", i%4), fmt.Sprintf("10.244.%d.128/25", i%4)))))
		default:
			np = netpol(name, app(i), egressOnly(), nil, egressRules(egressRule(ports(namedPort("TCP", "http"), namedPort("UDP", "dns")), andPeer(&metav1.LabelSelector{}, app(i+3)))))
		}
		in.Policies = append(in.Policies, np)
	}
	return in
}

func BenchmarkCompile(b *testing.B) {
	for _, nPods := range []int{10, 1000} {
		for _, nPolicies := range []int{10, 1000} {
			b.Run(fmt.Sprintf("pods=%d/policies=%d", nPods, nPolicies), func(b *testing.B) {
				in := benchInput(nPods, nPolicies)
				var res *Result
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if res, err = Compile(in); err != nil {
						b.Fatal(err)
					}
				}
				if len(res.Problems) > 0 {
					b.Fatalf("%d unexpected problems, first: %v", len(res.Problems), res.Problems[0])
				}
				policyEntries, cidrEntries := 0, 0
				for _, ep := range res.Endpoints {
					policyEntries += len(ep.Policy)
					cidrEntries += len(ep.CIDR)
				}
				b.ReportMetric(float64(len(res.Endpoints)), "endpoints")
				b.ReportMetric(float64(len(res.IPCache)), "ipcache")
				b.ReportMetric(float64(policyEntries), "policy-entries")
				b.ReportMetric(float64(cidrEntries), "cidr-entries")
			})
		}
	}
}
