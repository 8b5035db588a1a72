package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/datapath/maps"
)

type fakeRoutes struct {
	log  []string
	fail netip.Prefix
}

func (f *fakeRoutes) Replace(cidr netip.Prefix, gw netip.Addr) error {
	if cidr == f.fail {
		return errors.New("network unreachable")
	}
	f.log = append(f.log, fmt.Sprintf("replace %s via %s", cidr, gw))
	return nil
}

func (f *fakeRoutes) Delete(cidr netip.Prefix, gw netip.Addr) error {
	f.log = append(f.log, fmt.Sprintf("delete %s via %s", cidr, gw))
	return nil
}

type fakeConfig struct{ written []maps.Config }

func (f *fakeConfig) SetConfig(c maps.Config) error {
	f.written = append(f.written, c)
	return nil
}

func node(name, cidr string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
	for i, ip := range ips {
		t := corev1.NodeInternalIP
		if i > 0 {
			t = corev1.NodeExternalIP
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: t, Address: ip})
	}
	return n
}

func TestNodeRoutesSync(t *testing.T) {
	r := newNodeRoutes("n1", maps.EventLevel(0), slog.Default())
	routes, cfg := &fakeRoutes{}, &fakeConfig{}
	r.routes, r.sink = routes, cfg
	r.dev = netdev{Index: 2, Name: "eth0"}

	r.sync([]*corev1.Node{node("n1", "10.244.1.0/24", "172.18.0.2", "192.0.2.1"), node("n2", "10.244.2.0/24", "172.18.0.3"), node("n3", "", "172.18.0.4")})
	assert.Equal(t, []string{"replace 10.244.2.0/24 via 172.18.0.3"}, routes.log, "no route without a pod CIDR")
	assert.Equal(t, []maps.Config{{NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("192.0.2.1")}, NetdevIfindex: 2}}, cfg.written)
	assert.True(t, r.isNodeIP(netip.MustParseAddr("192.0.2.1")))
	assert.False(t, r.isNodeIP(netip.MustParseAddr("172.18.0.3")))

	// Same nodes: nothing written. Then n2 moves and the route to n4 fails.
	routes.log, cfg.written = nil, nil
	r.sync([]*corev1.Node{node("n1", "10.244.1.0/24", "172.18.0.2", "192.0.2.1"), node("n2", "10.244.2.0/24", "172.18.0.3")})
	assert.Empty(t, routes.log)
	assert.Empty(t, cfg.written)
	routes.fail = netip.MustParsePrefix("10.244.4.0/24")
	r.sync([]*corev1.Node{node("n1", "10.244.1.0/24", "172.18.0.2", "192.0.2.1"), node("n2", "10.244.2.0/24", "172.18.0.5"), node("n4", "10.244.4.0/24", "172.18.0.6")})
	assert.Equal(t, []string{"replace 10.244.2.0/24 via 172.18.0.5"}, routes.log, "a failed route is retried on the next sync")

	// n2 gone: its route goes; uninstall removes the rest.
	routes.log = nil
	routes.fail = netip.Prefix{}
	r.sync([]*corev1.Node{node("n1", "10.244.1.0/24", "172.18.0.2")})
	assert.Equal(t, []string{"delete 10.244.2.0/24 via 172.18.0.5"}, routes.log)
	assert.Len(t, cfg.written, 1, "own addresses changed")
	r.sync([]*corev1.Node{node("n1", "10.244.1.0/24", "172.18.0.2"), node("n2", "10.244.2.0/24", "172.18.0.3")})
	routes.log = nil
	r.removeAll()
	assert.Equal(t, []string{"delete 10.244.2.0/24 via 172.18.0.3"}, routes.log)
}
