//go:build datapath

package loader

import (
	"net/netip"
	"testing"
	"time"

	fe "github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/require"
)

// A Service's external address (spec.externalIPs, a LoadBalancer ingress IP) that the network
// routes to a node is served from outside: DNAT to a local backend, or DNAT + SNAT to the node's
// address for a backend on another node; the client sees the external address answer. A ClusterIP
// routed the same way is not (in-cluster only).
func TestExternalAddressFromOutside(t *testing.T) {
	l := newLab(t)
	b, c := l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, c.ns, "c", ":8080")
	nsRun(t, l.extNS, "ip", "route", "replace", "203.0.113.0/24", "via", node1IP)
	nsRun(t, l.extNS, "ip", "route", "replace", "10.96.0.0/16", "via", node1IP)
	m := l.n1.dp.Maps
	for _, s := range []struct {
		vip   string
		id    uint32
		flags maps.ServiceFlags
		be    netip.Addr
	}{
		{"203.0.113.10", 100, maps.ServiceExternal, b.ip},
		{"203.0.113.11", 101, maps.ServiceExternal, c.ip},
		{"10.96.0.95", 102, 0, b.ip},
	} {
		require.NoError(t, m.UpsertService(maps.ServiceKey{VIP: netip.MustParseAddr(s.vip), Port: 80, Proto: maps.ProtoTCP},
			maps.Service{ID: s.id, Flags: s.flags}, []maps.Backend{{IP: s.be, Port: 8080}}))
	}

	reply, remote := tcpRoundTrip(t, l.extNS, "203.0.113.10:80")
	require.Equal(t, "b "+ext+" hello", reply, "local backend: the client's address is kept")
	require.Equal(t, "203.0.113.10:80", remote)
	reply, remote = tcpRoundTrip(t, l.extNS, "203.0.113.11:80")
	require.Equal(t, "c "+node1IP+" hello", reply, "remote backend: SNAT to the node's address")
	require.Equal(t, "203.0.113.11:80", remote)

	_, err := dial(l.extNS, "tcp4", "10.96.0.95:80", "", time.Second)
	require.Error(t, err, "a ClusterIP is not served from outside")

	// loadBalancerSourceRanges: a client outside every range is dropped (LB_SOURCE_RANGE_DENIED),
	// one inside is served
	lbKey := maps.ServiceKey{VIP: netip.MustParseAddr("203.0.113.12"), Port: 80, Proto: maps.ProtoTCP}
	require.NoError(t, m.UpsertService(lbKey, maps.Service{ID: 103, Flags: maps.ServiceExternal,
		SourceRanges: []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}}, []maps.Backend{{IP: b.ip, Port: 8080}}))
	requireBlocked(t, l.extNS, "203.0.113.12:80")
	requireDrop(t, l.n1, fe.DropLBSourceRange, fe.ObsFromNetdev, "203.0.113.12")
	require.NoError(t, m.UpsertService(lbKey, maps.Service{ID: 103, Flags: maps.ServiceExternal,
		SourceRanges: []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix(ext + "/32")}}, []maps.Backend{{IP: b.ip, Port: 8080}}))
	reply, _ = tcpRoundTrip(t, l.extNS, "203.0.113.12:80")
	require.Equal(t, "b "+ext+" hello", reply)
	// and from a pod: pod a is outside the ranges
	_, err = dial(l.pods["a"].ns, "tcp4", "203.0.113.12:80", "", time.Second)
	require.Error(t, err, "a pod outside loadBalancerSourceRanges")
	requireDrop(t, l.n1, fe.DropLBSourceRange, fe.ObsFromContainer, "203.0.113.12")
	// deleting the frontend removes its ranges
	require.NoError(t, m.DeleteService(lbKey))
	n := 0
	var k, v [12]byte
	for it := m.LBSourceRanges.Iterate(); it.Next(&k, &v); {
		n++
	}
	require.Zero(t, n, "no source ranges left behind")
}
