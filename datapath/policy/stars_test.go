package policy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStarsDemo runs the stars demo's policy steps (shared/notes/stars-demo.md)
// and checks the whole reachability matrix after each one. A connection works
// when the client's egress and the server's ingress both allow it; the pods
// are spread over two nodes and each node compiles its own view.
func TestStarsDemo(t *testing.T) {
	base := Input{
		Namespaces: []Namespace{
			{Name: "management-ui", Labels: kv("role", "management-ui")},
			{Name: "stars"},
			{Name: "client", Labels: kv("role", "client")},
		},
		Pods: []Pod{
			mkPod("management-ui/management-ui", "10.244.1.5", "worker", kv("role", "management-ui"), cport("", tcp, 9001)),
			mkPod("stars/backend", "10.244.1.6", "worker", kv("role", "backend"), cport("", tcp, 6379)),
			mkPod("stars/frontend", "10.244.2.7", "worker2", kv("role", "frontend"), cport("", tcp, 80)),
			mkPod("client/client", "10.244.2.8", "worker2", kv("role", "client"), cport("", tcp, 9000)),
		},
		Nodes: []Node{
			{Name: "worker", IPs: []netip.Addr{netip.MustParseAddr("172.18.0.3")}},
			{Name: "worker2", IPs: []netip.Addr{netip.MustParseAddr("172.18.0.4")}},
		},
	}
	epIDs := map[string]uint32{"management-ui/management-ui": 11, "stars/backend": 12, "stars/frontend": 21, "client/client": 22}
	nodeOf := map[string]string{"management-ui/management-ui": "worker", "stars/backend": "worker", "stars/frontend": "worker2", "client/client": "worker2"}

	fromUI := ingressRules(ingressRule(nil, nsPeer(sel("role", "management-ui"))))
	steps := [][]*networkingv1.NetworkPolicy{
		nil,
		{
			netpol("stars/default-deny", &metav1.LabelSelector{}, nil, nil, nil),
			netpol("client/default-deny", &metav1.LabelSelector{}, nil, nil, nil),
		},
		{
			netpol("stars/allow-ui", &metav1.LabelSelector{}, nil, fromUI, nil),
			netpol("client/allow-ui", &metav1.LabelSelector{}, nil, fromUI, nil),
		},
		{netpol("stars/backend-policy", sel("role", "backend"), nil,
			ingressRules(ingressRule(ports(port("TCP", 6379)), podPeer(sel("role", "frontend")))), nil)},
		{netpol("stars/frontend-policy", sel("role", "frontend"), nil,
			ingressRules(ingressRule(ports(port("TCP", 80)), nsPeer(sel("role", "client")))), nil)},
	}

	const (
		ui = "management-ui/management-ui"
		f  = "stars/frontend"
		b  = "stars/backend"
		c  = "client/client"
	)
	type conn struct {
		src, dst string
		port     uint16
	}
	conns := []conn{
		{ui, f, 80}, {ui, b, 6379}, {ui, c, 9000},
		{f, b, 6379}, {b, f, 80}, {c, f, 80}, {c, b, 6379}, {f, c, 9000}, {b, c, 9000},
	}
	y, n := true, false
	// Rows: the table of stars-demo.md, one column per conn above.
	want := [][]bool{
		{y, y, y, y, y, y, y, y, y}, // 0 no policy
		{n, n, n, n, n, n, n, n, n}, // 1 default-deny
		{y, y, y, n, n, n, n, n, n}, // 2 allow-ui
		{y, y, y, y, n, n, n, n, n}, // 3 backend-policy
		{y, y, y, y, n, y, n, n, n}, // 4 frontend-policy
	}

	var policies []*networkingv1.NetworkPolicy
	allocs := map[string]*Allocator{"worker": NewAllocator(), "worker2": NewAllocator()}
	for step, add := range steps {
		policies = append(policies, add...)
		results := map[string]*Result{}
		for node, alloc := range allocs {
			input := base
			input.Policies = policies
			input.LocalNode = node
			input.Alloc = alloc
			input.LocalEndpoints = map[PodRef]uint32{}
			for pod, id := range epIDs {
				if nodeOf[pod] == node {
					input.LocalEndpoints[ref(pod)] = id
				}
			}
			res, err := Compile(input)
			require.NoError(t, err)
			require.Empty(t, res.Problems)
			results[node] = res
		}
		ipOf := func(pod string) netip.Addr { return peerIP(t, base, pod) }
		for i, cn := range conns {
			src, dst := results[nodeOf[cn.src]], results[nodeOf[cn.dst]]
			egress, _ := src.Decide(epIDs[cn.src], DirEgress, ipOf(cn.dst), ProtoTCP, cn.port)
			ingress, _ := dst.Decide(epIDs[cn.dst], DirIngress, ipOf(cn.src), ProtoTCP, cn.port)
			assert.Equal(t, want[step][i], egress && ingress, "step %d: %s -> %s:%d", step, cn.src, cn.dst, cn.port)
			// The UDP twin of every allowed TCP connection stays denied once a port rule governs it.
			if step >= 3 && cn.src == f && cn.dst == b {
				udpIn, _ := dst.Decide(epIDs[cn.dst], DirIngress, ipOf(cn.src), ProtoUDP, cn.port)
				assert.False(t, udpIn, "step %d: frontend -> backend UDP %d", step, cn.port)
			}
		}
	}
}
