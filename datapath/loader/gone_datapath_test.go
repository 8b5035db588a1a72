//go:build datapath

package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	fe "github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/require"
)

// Backends whose pod is gone (issue 12's soak: a terminating backend used after its pod exited).
// On kind, a node has a default route out of its device, so a packet to a pod address that has no
// pod any more leaves the node and the connection hangs until its timeout. The lab's nodes get the
// same default route (via the external host, which does not forward: the packet is lost).

// kindDefaultRoutes gives both nodes a default route out of eth0, as kind nodes have.
func kindDefaultRoutes(t *testing.T, l *lab) {
	for _, n := range []*node{l.n1, l.n2} {
		nsRun(t, n.ns, "ip", "route", "replace", "default", "via", ext)
	}
}

// guardPodCIDR writes the node's config with its pod CIDR (as the agent does once its endpoints
// are restored).
func guardPodCIDR(t *testing.T, n *node) {
	require.NoError(t, n.dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{n.ip}, NetdevIfindex: uint32(n.eth0),
		PodCIDR: netip.MustParsePrefix(n.podCIDR)}))
}

// dialFrom connects from netns ns, from the local address laddr (ip:port; port 0: any).
func dialFrom(ns, laddr, addr string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := inNS(ns, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(laddr))}
		c, err := d.Dial("tcp4", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return time.Since(start), err
}

// requireRefused asserts the connection was refused (RST) within 500 ms.
func requireRefused(t *testing.T, took time.Duration, err error, what string) {
	t.Helper()
	require.Error(t, err, what)
	require.True(t, errors.Is(err, syscall.ECONNREFUSED), "%s: want ECONNREFUSED, got %v", what, err)
	require.Less(t, took, 500*time.Millisecond, "%s: the refusal must be immediate", what)
}

// requireDrop waits for a DROP event with reason at obs towards dst on node n.
func requireDrop(t *testing.T, n *node, reason fe.DropReason, obs fe.ObsPoint, dst string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for e := range n.distinct(func(e fe.Event) bool { return e.Type == fe.TypeDrop }) {
			if e.Reason == reason && e.Obs == obs && e.Dst == dst {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("node %s: no DROP %s at %v to %s; events:\n%s", n.name, reason, obs, dst, n.dump(func(fe.Event) bool { return true }))
}

// A Service still lists a backend whose pod is gone, on this node or another: a new connection is
// refused at once (RST), never routed out of the node; a live backend in the pod CIDR still answers.
func TestGoneBackendRefusedAtOnce(t *testing.T) {
	l := newLab(t)
	kindDefaultRoutes(t, l)
	guardPodCIDR(t, l.n1)
	guardPodCIDR(t, l.n2)
	a, c := l.pods["a"], l.pods["c"]
	serveTCP(t, c.ns, "c", ":8080")
	for i, be := range []string{"10.244.2.99", "10.244.1.99", c.ip.String()} {
		vip := fmt.Sprintf("10.96.0.%d", 60+i)
		require.NoError(t, l.n1.dp.Maps.UpsertService(maps.ServiceKey{VIP: netip.MustParseAddr(vip), Port: 80, Proto: maps.ProtoTCP},
			maps.Service{ID: uint32(60 + i)}, []maps.Backend{{IP: netip.MustParseAddr(be), Port: 8080}}))
	}

	took, err := dialFrom(a.ns, a.ip.String()+":0", "10.96.0.60:80", 3*time.Second)
	requireRefused(t, took, err, "backend gone on the other node")
	requireDrop(t, l.n2, fe.DropEndpointGone, fe.ObsFromNetdev, "10.244.2.99")

	took, err = dialFrom(a.ns, a.ip.String()+":0", "10.96.0.61:80", 3*time.Second)
	requireRefused(t, took, err, "backend gone on this node")
	requireDrop(t, l.n1, fe.DropEndpointGone, fe.ObsFromContainer, "10.96.0.61")

	reply, _ := tcpRoundTrip(t, a.ns, "10.96.0.62:80")
	require.Equal(t, "c 10.244.1.10 hello", reply)
	// and a pod address is dialled directly as before
	reply, _ = tcpRoundTrip(t, a.ns, c.ip.String()+":8080")
	require.Equal(t, "c 10.244.1.10 hello", reply)
}

// A connection whose first SYN was load balanced to a backend that then went away: its conntrack
// entry points at the dead address, and the retransmitted SYN (here: the same 4-tuple dialled
// again) must be refused, not sent after it. Before the pod CIDR guard it hangs (shown first).
func TestStaleConntrackToGonePodRefused(t *testing.T) {
	l := newLab(t)
	kindDefaultRoutes(t, l)
	a := l.pods["a"]
	for i, be := range []string{"10.244.1.99", "10.244.2.99"} {
		vip := fmt.Sprintf("10.96.0.%d", 70+i)
		require.NoError(t, l.n1.dp.Maps.UpsertService(maps.ServiceKey{VIP: netip.MustParseAddr(vip), Port: 80, Proto: maps.ProtoTCP},
			maps.Service{ID: uint32(70 + i)}, []maps.Backend{{IP: netip.MustParseAddr(be), Port: 8080}}))
	}
	for i, vip := range []string{"10.96.0.70:80", "10.96.0.71:80"} {
		laddr := fmt.Sprintf("%s:%d", a.ip, 41000+i)
		_, err := dialFrom(a.ns, laddr, vip, 400*time.Millisecond)
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "%s without the guard: the SYN is routed out and lost (hang), got %v", vip, err)
	}
	guardPodCIDR(t, l.n1)
	guardPodCIDR(t, l.n2)
	for i, vip := range []string{"10.96.0.70:80", "10.96.0.71:80"} {
		laddr := fmt.Sprintf("%s:%d", a.ip, 41000+i)
		took, err := dialFrom(a.ns, laddr, vip, 3*time.Second)
		requireRefused(t, took, err, vip+" again, over its conntrack entry")
	}
	requireDrop(t, l.n1, fe.DropEndpointGone, fe.ObsFromContainer, "10.96.0.70")
	requireDrop(t, l.n2, fe.DropEndpointGone, fe.ObsFromNetdev, "10.244.2.99")
	// the local flow's entries went with the refusal: the next SYN is a new flow, refused again
	took, err := dialFrom(a.ns, a.ip.String()+":41000", "10.96.0.70:80", 3*time.Second)
	requireRefused(t, took, err, "10.96.0.70:80 a third time")
}
