//go:build datapath

package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
	fe "github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	tcp = fe.Proto(6)
	udp = fe.Proto(17)
)

func newEv(obs fe.ObsPoint, proto fe.Proto, src, dst string, dport uint16, srcID, dstID uint32) ev {
	dir := fe.DirectionIngress
	if obs == fe.ObsFromContainer {
		dir = fe.DirectionEgress
	}
	return ev{Type: fe.TypeNew, Verdict: fe.VerdictForwarded, Obs: obs, Dir: dir, Proto: proto, Src: src, Dst: dst,
		DstPort: dport, OrigDst: dst, OrigDstPort: dport, SrcID: srcID, DstID: dstID}
}

func (e ev) orig(dst string, dport uint16) ev { e.OrigDst, e.OrigDstPort = dst, dport; return e }
func (e ev) close() ev                        { e.Type = fe.TypeClose; return e }
func (e ev) policy(id uint32) ev              { e.PolicyID = id; return e }
func (e ev) drop(r fe.DropReason) ev {
	e.Type, e.Verdict, e.Reason = fe.TypeDrop, fe.VerdictDropped, r
	return e
}

func TestSameNodeAllowed(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")

	reply, remote := tcpRoundTrip(t, a.ns, "10.244.1.11:8080")
	require.Equal(t, "b 10.244.1.10 hello", reply)
	require.Equal(t, "10.244.1.11:8080", remote)

	out := newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257)
	in := newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257)
	requireEvents(t, l.n1, port(8080), out, in, out.close(), in.close())

	// CLOSE carries the packets and bytes of both directions
	n := 0
	for _, e := range l.n1.events {
		if e.Type == fe.TypeClose {
			n++
			assert.GreaterOrEqual(t, e.Packets, uint64(4), e.String())
			assert.Greater(t, e.Bytes, uint64(200), e.String())
		}
	}
	require.Equal(t, 2, n)
}

func TestCrossNode(t *testing.T) {
	l := newLab(t)
	a, c := l.pods["a"], l.pods["c"]
	serveTCP(t, c.ns, "c", ":8080")

	reply, _ := tcpRoundTrip(t, a.ns, "10.244.2.10:8080")
	require.Equal(t, "c 10.244.1.10 hello", reply)

	out := newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.2.10", 8080, 256, 258)
	in := newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.2.10", 8080, 256, 258)
	requireEvents(t, l.n1, port(8080), out, out.close())
	requireEvents(t, l.n2, port(8080), in, in.close())
}

func TestClusterIPDNATAndReverseNAT(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, c.ns, "c", ":8080")
	for _, n := range []*node{l.n1, l.n2} {
		require.NoError(t, n.dp.Maps.UpsertService(
			maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: maps.ProtoTCP},
			maps.Service{ID: 1}, []maps.Backend{{IP: b.ip, Port: 8080}}))
		require.NoError(t, n.dp.Maps.UpsertService(
			maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.20"), Port: 80, Proto: maps.ProtoTCP},
			maps.Service{ID: 2}, []maps.Backend{{IP: c.ip, Port: 8080}}))
	}

	// same node backend: the client sees the VIP, the server the client IP
	reply, remote := tcpRoundTrip(t, a.ns, "10.96.0.10:80")
	require.Equal(t, "b 10.244.1.10 hello", reply)
	require.Equal(t, "10.96.0.10:80", remote)
	// backend on the other node
	reply, remote = tcpRoundTrip(t, a.ns, "10.96.0.20:80")
	require.Equal(t, "c 10.244.1.10 hello", reply)
	require.Equal(t, "10.96.0.20:80", remote)

	outB := newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257).orig("10.96.0.10", 80)
	inB := newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257)
	outC := newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.2.10", 8080, 256, 258).orig("10.96.0.20", 80)
	// CLOSE is reported on the translated tuple, with the original destination
	closeB, closeC := outB.close(), outC.close()
	requireEvents(t, l.n1, port(80, 8080), outB, inB, outC, closeB, inB.close(), closeC)
}

func TestUDPService(t *testing.T) {
	l := newLab(t)
	a, c := l.pods["a"], l.pods["c"]
	serveUDP(t, c.ns, "c", ":5353")
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.53"), Port: 53, Proto: maps.ProtoUDP},
		maps.Service{ID: 5}, []maps.Backend{{IP: c.ip, Port: 5353}}))

	// a connected UDP socket only accepts the answer if it comes from the VIP
	got, err := udpRoundTrip(a.ns, "10.96.0.53:53", "q1")
	require.NoError(t, err)
	require.Equal(t, "c 10.244.1.10 q1", got)

	requireEvents(t, l.n1, port(53, 5353),
		newEv(fe.ObsFromContainer, udp, "10.244.1.10", "10.244.2.10", 5353, 256, 258).orig("10.96.0.53", 53))
	requireEvents(t, l.n2, port(5353), newEv(fe.ObsToContainer, udp, "10.244.1.10", "10.244.2.10", 5353, 256, 258))
}

func TestNodePort(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, c.ns, "c", ":8080")
	for _, n := range []*node{l.n1, l.n2} {
		require.NoError(t, n.dp.Maps.UpsertService(maps.ServiceKey{Port: 30080, Proto: maps.ProtoTCP, Scope: maps.ScopeNodePort},
			maps.Service{ID: 10}, []maps.Backend{{IP: b.ip, Port: 8080}}))
		require.NoError(t, n.dp.Maps.UpsertService(maps.ServiceKey{Port: 30081, Proto: maps.ProtoTCP, Scope: maps.ScopeNodePort},
			maps.Service{ID: 11}, []maps.Backend{{IP: c.ip, Port: 8080}}))
	}

	// external host -> node1:30080 -> local backend b (DNAT only)
	reply, remote := tcpRoundTrip(t, l.extNS, node1IP+":30080")
	require.Equal(t, "b "+ext+" hello", reply)
	require.Equal(t, node1IP+":30080", remote)
	// external host -> node1:30081 -> remote backend c (DNAT + SNAT to node1)
	reply, remote = tcpRoundTrip(t, l.extNS, node1IP+":30081")
	require.Equal(t, "c "+node1IP+" hello", reply)
	require.Equal(t, node1IP+":30081", remote)
	// a pod dialing <nodeIP>:<nodePort> (DNAT in from-container)
	reply, remote = tcpRoundTrip(t, a.ns, node2IP+":30080")
	require.Equal(t, "b 10.244.1.10 hello", reply)
	require.Equal(t, node2IP+":30080", remote)

	isExt := func(e fe.Event) bool { return e.Src.String() == ext || e.Dst.String() == ext }
	netLocal := ev{Type: fe.TypeNew, Verdict: fe.VerdictForwarded, Obs: fe.ObsFromNetdev, Dir: fe.DirectionIngress, Proto: tcp,
		Src: ext, Dst: "10.244.1.11", DstPort: 8080, OrigDst: node1IP, OrigDstPort: 30080, SrcID: 2, DstID: 257}
	netRemote := ev{Type: fe.TypeNew, Verdict: fe.VerdictForwarded, Obs: fe.ObsFromNetdev, Dir: fe.DirectionIngress, Proto: tcp,
		Src: node1IP, Dst: "10.244.2.10", DstPort: 8080, OrigDst: node1IP, OrigDstPort: 30081, SrcID: 2, DstID: 258}
	inLocal := newEv(fe.ObsToContainer, tcp, ext, "10.244.1.11", 8080, 2, 257)
	requireEvents(t, l.n1, func(e fe.Event) bool {
		return (isExt(e) || e.ObsPoint == fe.ObsFromNetdev) && e.Type == fe.TypeNew
	}, netLocal, netRemote, inLocal)
	// node2 sees the SNATed connection from node1 (remote-node identity)
	requireEvents(t, l.n2, func(e fe.Event) bool { return e.Type == fe.TypeNew && e.Src.String() == node1IP },
		newEv(fe.ObsToContainer, tcp, node1IP, "10.244.2.10", 8080, 6, 258))
	// the pod's NodePort connection
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeNew && e.Src == a.ip },
		newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257).orig(node2IP, 30080),
		newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257))
}

func TestNoBackendRefusedAtOnce(t *testing.T) {
	l := newLab(t)
	a := l.pods["a"]
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.99"), Port: 80, Proto: maps.ProtoTCP}, maps.Service{ID: 9}, nil))
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.99"), Port: 53, Proto: maps.ProtoUDP}, maps.Service{ID: 19}, nil))

	start := time.Now()
	_, err := dial(a.ns, "tcp4", "10.96.0.99:80", "", 5*time.Second)
	elapsed := time.Since(start)
	require.Error(t, err)
	require.True(t, errors.Is(err, syscall.ECONNREFUSED), "want ECONNREFUSED, got %v", err)
	require.Less(t, elapsed, 500*time.Millisecond, "refusal must be immediate")

	_, err = udpRoundTrip(a.ns, "10.96.0.99:53", "q")
	require.Error(t, err)

	drop := ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropServiceBackendNotFound, Obs: fe.ObsFromContainer,
		Dir: fe.DirectionEgress, Proto: tcp, Src: "10.244.1.10", Dst: "10.96.0.99", DstPort: 80, OrigDst: "10.96.0.99",
		OrigDstPort: 80, SrcID: 256, DstID: 2}
	udrop := drop
	udrop.Proto, udrop.DstPort, udrop.OrigDstPort = udp, 53, 53
	requireEvents(t, l.n1, port(80, 53), drop, udrop)
}

func TestConntrackKeepsBackendAcrossChange(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, c.ns, "c", ":8080")
	key := maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: maps.ProtoTCP}
	require.NoError(t, l.n1.dp.Maps.UpsertService(key, maps.Service{ID: 1}, []maps.Backend{{IP: b.ip, Port: 8080}}))

	conn, err := dial(a.ns, "tcp4", "10.96.0.10:80", "", 3*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	got, err := ask(conn, "one")
	require.NoError(t, err)
	require.Equal(t, "b 10.244.1.10 one", got)

	// the endpoints change: c takes slot 0, b moves to slot 1
	require.NoError(t, l.n1.dp.Maps.UpsertService(key, maps.Service{ID: 1},
		[]maps.Backend{{IP: c.ip, Port: 8080}, {IP: b.ip, Port: 8080}}))
	got, err = ask(conn, "two")
	require.NoError(t, err)
	require.Equal(t, "b 10.244.1.10 two", got, "established flow keeps its backend")

	// then b is gone from the service entirely: the open connection still
	// talks to b (kept in conntrack), new connections go to c
	require.NoError(t, l.n1.dp.Maps.UpsertService(key, maps.Service{ID: 1}, []maps.Backend{{IP: c.ip, Port: 8080}}))
	got, err = ask(conn, "three")
	require.NoError(t, err)
	require.Equal(t, "b 10.244.1.10 three", got)
	for i := 0; i < 3; i++ {
		reply, _ := tcpRoundTrip(t, a.ns, "10.96.0.10:80")
		require.Equal(t, "c 10.244.1.10 hello", reply)
	}
}

func TestIngressDenied(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, b.ns, "b", ":9090")
	l.setFlags(b, maps.EndpointIngressEnforced)
	require.NoError(t, l.n1.dp.Maps.UpsertPolicy(
		maps.PolicyKey{EpID: uint32(b.ifindex), PeerID: a.identity, Dir: maps.Ingress, Proto: maps.ProtoTCP, Port: 8080, PortPrefixLen: 16},
		maps.PolicyValue{Action: maps.ActionAllow, PolicyID: 41, Rule: 1}))

	reply, _ := tcpRoundTrip(t, a.ns, "10.244.1.11:8080")
	require.Equal(t, "b 10.244.1.10 hello", reply)
	requireBlocked(t, a.ns, "10.244.1.11:9090") // port not allowed
	requireBlocked(t, c.ns, "10.244.1.11:8080") // peer not allowed
	// the node itself (kubelet probes) is always allowed
	reply, _ = tcpRoundTrip(t, l.n1.ns, "10.244.1.11:9090")
	require.Equal(t, "b "+node1IP+" hello", reply)

	toB := func(e fe.Event) bool {
		return e.ObsPoint == fe.ObsToContainer && e.Dst == b.ip && e.Type != fe.TypeClose
	}
	requireEvents(t, l.n1, toB,
		newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257).policy(41),
		newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.1.11", 9090, 256, 257).drop(fe.DropPolicyDenied),
		newEv(fe.ObsToContainer, tcp, "10.244.2.10", "10.244.1.11", 8080, 258, 257).drop(fe.DropPolicyDenied),
		newEv(fe.ObsToContainer, tcp, node1IP, "10.244.1.11", 9090, 1, 257))
}

func TestEgressDenied(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, c.ns, "c", ":8080")
	serveTCP(t, c.ns, "c", ":8081")
	l.setFlags(a, maps.EndpointEgressEnforced)
	require.NoError(t, l.n1.dp.Maps.UpsertPolicy(
		maps.PolicyKey{EpID: uint32(a.ifindex), PeerID: b.identity, Dir: maps.Egress, Proto: maps.ProtoTCP, Port: 8080, PortPrefixLen: 16},
		maps.PolicyValue{Action: maps.ActionAllow, PolicyID: 42, Rule: 1}))
	// ipBlock 10.244.2.0/24 port 8081 (except 10.244.2.99/32)
	require.NoError(t, l.n1.dp.Maps.UpsertCIDRPolicies([]maps.CIDRPolicyEntry{
		{Key: maps.CIDRPolicyKey{EpID: uint32(a.ifindex), Dir: maps.Egress, Proto: maps.ProtoTCP, Port: 8081,
			Prefix: netip.MustParsePrefix("10.244.2.0/24")}, Value: maps.PolicyValue{Action: maps.ActionAllow, PolicyID: 43}},
		{Key: maps.CIDRPolicyKey{EpID: uint32(a.ifindex), Dir: maps.Egress, Proto: maps.ProtoTCP, Port: 8081,
			Prefix: netip.MustParsePrefix("10.244.2.99/32")}, Value: maps.PolicyValue{Action: maps.ActionExcept, PolicyID: 43}},
	}))

	reply, _ := tcpRoundTrip(t, a.ns, "10.244.1.11:8080")
	require.Equal(t, "b 10.244.1.10 hello", reply)
	requireBlocked(t, a.ns, "10.244.2.10:8080")
	reply, _ = tcpRoundTrip(t, a.ns, "10.244.2.10:8081")
	require.Equal(t, "c 10.244.1.10 hello", reply)

	fromA := func(e fe.Event) bool {
		return e.ObsPoint == fe.ObsFromContainer && e.Src == a.ip && e.Type != fe.TypeClose
	}
	requireEvents(t, l.n1, fromA,
		newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257).policy(42),
		newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.2.10", 8080, 256, 258).drop(fe.DropPolicyDenied),
		newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.2.10", 8081, 256, 258).policy(43))
}

func TestStatefulReplyAllowed(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, a.ns, "a", ":7070")
	// b: ingress from a on 8080 only, no egress rule at all
	l.setFlags(b, maps.EndpointIngressEnforced|maps.EndpointEgressEnforced)
	require.NoError(t, l.n1.dp.Maps.UpsertPolicy(
		maps.PolicyKey{EpID: uint32(b.ifindex), PeerID: a.identity, Dir: maps.Ingress, Proto: maps.ProtoTCP, Port: 8080, PortPrefixLen: 16},
		maps.PolicyValue{Action: maps.ActionAllow, PolicyID: 44}))

	// replies of b pass through conntrack
	reply, _ := tcpRoundTrip(t, a.ns, "10.244.1.11:8080")
	require.Equal(t, "b 10.244.1.10 hello", reply)
	// b may not open connections itself
	requireBlocked(t, b.ns, "10.244.1.10:7070")

	fromB := func(e fe.Event) bool { return e.ObsPoint == fe.ObsFromContainer && e.Src == b.ip }
	requireEvents(t, l.n1, fromB,
		newEv(fe.ObsFromContainer, tcp, "10.244.1.11", "10.244.1.10", 7070, 257, 256).drop(fe.DropPolicyDenied))
	ct, err := l.n1.dp.Maps.LookupCT(maps.CTKey{Src: b.ip, Dst: a.ip, SrcPort: 8080, Proto: maps.ProtoTCP, Scope: maps.CTEgress, DstPort: findPort(t, l.n1, b.ip)})
	require.NoError(t, err)
	require.NotZero(t, ct.Flags&maps.CTReply)
	require.GreaterOrEqual(t, ct.Packets, uint64(2), "b's reply packets went through the reply entry")
}

// findPort returns the client port of the NEW event towards dst.
func findPort(t *testing.T, n *node, dst netip.Addr) uint16 {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.events {
		if e.Type == fe.TypeNew && e.Dst == dst && e.ObsPoint == fe.ObsToContainer {
			return e.SrcPort
		}
	}
	t.Fatalf("no NEW event towards %s", dst)
	return 0
}

func TestSpoofedSourceDropped(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	nsRun(t, a.ns, "ip", "addr", "add", "10.244.1.99/32", "dev", "eth0")

	c, err := dial(a.ns, "tcp4", "10.244.1.11:8080", "10.244.1.99", 1500*time.Millisecond)
	if err == nil {
		c.Close()
	}
	require.Error(t, err)
	requireEvents(t, l.n1, port(8080), ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropInvalidSourceIP,
		Obs: fe.ObsFromContainer, Dir: fe.DirectionEgress, Proto: tcp, Src: "10.244.1.99", Dst: "10.244.1.11", DstPort: 8080,
		OrigDst: "10.244.1.11", OrigDstPort: 8080, SrcID: 256})
}

func TestPolicyErrorFailsClosed(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, a.ns, "a", ":7070")
	l.setFlags(b, maps.EndpointPolicyError)
	// even an explicit allow does not open a POLICY_ERROR endpoint
	require.NoError(t, l.n1.dp.Maps.UpsertPolicy(
		maps.PolicyKey{EpID: uint32(b.ifindex), Dir: maps.Ingress}, maps.PolicyValue{Action: maps.ActionAllow, PolicyID: 45}))

	requireBlocked(t, a.ns, "10.244.1.11:8080")
	requireBlocked(t, b.ns, "10.244.1.10:7070")
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop },
		newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257).drop(fe.DropPolicyUnrepresentable),
		newEv(fe.ObsFromContainer, tcp, "10.244.1.11", "10.244.1.10", 7070, 257, 256).drop(fe.DropPolicyUnrepresentable))
}

func TestRestartKeepsAttachmentsAndConnections(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	key := maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: maps.ProtoTCP}
	require.NoError(t, l.n1.dp.Maps.UpsertService(key, maps.Service{ID: 1}, []maps.Backend{{IP: b.ip, Port: 8080}}))
	conn, err := dial(a.ns, "tcp4", "10.96.0.10:80", "", 3*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	_, err = ask(conn, "before")
	require.NoError(t, err)

	// "agent restart": drop every fd, load again from the pins, re-attach
	l.n1.reader.Close()
	require.NoError(t, l.n1.dp.Close())
	got, err := ask(conn, "during")
	require.NoError(t, err, "programs must stay attached through pinned links")
	require.True(t, strings.HasPrefix(got, "b "))
	dp, err := Load(t.Context(), Options{PinDir: l.n1.dp.PinDir()})
	require.NoError(t, err)
	l.n1.dp = dp
	l.n1.reader = nil
	var live []Attachment
	require.NoError(t, inNS(l.n1.ns, func() error { live, err = dp.UpdatePinnedLinks(); return err }))
	require.ElementsMatch(t, []Attachment{
		{a.ifindex, "from-container"}, {a.ifindex, "to-container"},
		{b.ifindex, "from-container"}, {b.ifindex, "to-container"}, {l.n1.eth0, "from-netdev"}, {l.n1.eth0, "to-netdev"},
	}, live)
	require.NoError(t, inNS(l.n1.ns, func() error { return dp.AttachEndpoint(a.ifindex) }), "re-attach is idempotent")
	got, err = ask(conn, "after")
	require.NoError(t, err)
	require.Equal(t, "b 10.244.1.10 after", got)

	// endpoint delete: detach and remove from the maps. Were the programs
	// still attached, a's packets would now be dropped (UNKNOWN_ENDPOINT).
	require.NoError(t, inNS(l.n1.ns, func() error { return dp.DetachEndpoint(a.ifindex) }))
	require.NoError(t, dp.Maps.DeleteEndpoint(uint32(a.ifindex)))
	require.NoFileExists(t, dp.linkPin(a.ifindex, hookFromContainer))
	reply, _ := tcpRoundTrip(t, a.ns, "10.244.1.11:8080")
	require.Equal(t, "b 10.244.1.10 hello", reply)
	c, err := dp.Maps.ReadCounters()
	require.NoError(t, err)
	require.Zero(t, c.Drops[uint8(fe.DropUnknownEndpoint)])
}

// The clsact/cls_bpf fallback (kernels without TCX) runs the same programs.
func TestLegacyTCFallback(t *testing.T) {
	l := newLabMode(t, AttachLegacyTC)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: maps.ProtoTCP},
		maps.Service{ID: 1}, []maps.Backend{{IP: b.ip, Port: 8080}}))
	reply, remote := tcpRoundTrip(t, a.ns, "10.96.0.10:80")
	require.Equal(t, "b 10.244.1.10 hello", reply)
	require.Equal(t, "10.96.0.10:80", remote)
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeNew && e.Src == a.ip },
		newEv(fe.ObsFromContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257).orig("10.96.0.10", 80),
		newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257))
	out, err := exec.Command("ip", "netns", "exec", l.n1.ns, "tc", "filter", "show", "dev", a.hostIf, "ingress").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "sl_from-container")
	require.Contains(t, string(out), "direct-action")

	// detach removes the filter
	require.NoError(t, inNS(l.n1.ns, func() error { return l.n1.dp.DetachEndpoint(a.ifindex) }))
	out, err = exec.Command("ip", "netns", "exec", l.n1.ns, "tc", "filter", "show", "dev", a.hostIf, "ingress").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NotContains(t, string(out), "sl_from-container")
}

// dialFromPort dials with a fixed local port (SO_REUSEADDR, so a TIME_WAIT
// socket on that port towards another destination does not block it).
func dialFromPort(ns, addr string, lport int) (net.Conn, error) {
	var c net.Conn
	err := inNS(ns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{Port: lport},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			}}
		var err error
		c, err = d.Dial("tcp4", addr)
		return err
	})
	return c, err
}

// A client port reused towards the same backend, once directly and once
// through the ClusterIP (and back), must get the right (reverse) NAT each
// time: stale conntrack entries of the earlier flow are replaced.
func TestPortReuseDirectAndViaService(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: maps.ProtoTCP},
		maps.Service{ID: 1}, []maps.Backend{{IP: b.ip, Port: 8080}}))
	rounds := []struct {
		addr  string
		lport int
	}{
		{"10.244.1.11:8080", 40123}, {"10.96.0.10:80", 40123}, // direct, then via the service
		{"10.96.0.10:80", 40124}, {"10.244.1.11:8080", 40124}, // via the service, then direct
	}
	for i, r := range rounds {
		addr := r.addr
		c, err := dialFromPort(a.ns, addr, r.lport)
		require.NoError(t, err, "round %d to %s", i, addr)
		got, err := ask(c, "x")
		require.NoError(t, err, "round %d to %s", i, addr)
		require.Equal(t, "b 10.244.1.10 x", got)
		require.Equal(t, addr, c.RemoteAddr().String())
		require.NoError(t, c.Close())
	}
}

// One client port open at once towards two ClusterIPs of the same backend and
// to the backend directly: the pod's kernel sees three 4-tuples, the server
// would see one. The later flows get another source port (nf_nat's clash
// resolution), so all three connections work side by side, each with the
// right reverse NAT; before, the second flow took over the first one's reply
// entry and one of them stalled (starlab bench: `read: i/o timeout` after the
// handshake).
func TestClientPortClashAcrossServices(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	for i, vip := range []string{"10.96.0.10", "10.96.0.11"} {
		require.NoError(t, l.n1.dp.Maps.UpsertService(
			maps.ServiceKey{VIP: netip.MustParseAddr(vip), Port: 80, Proto: maps.ProtoTCP},
			maps.Service{ID: uint32(i + 1)}, []maps.Backend{{IP: b.ip, Port: 8080}}))
	}
	const lport = 40200
	addrs := []string{"10.96.0.10:80", "10.96.0.11:80", "10.244.1.11:8080"}
	conns := make([]net.Conn, len(addrs))
	for i, addr := range addrs {
		c, err := dialFromPort(a.ns, addr, lport)
		require.NoError(t, err, "dial %s from port %d", addr, lport)
		t.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	for round := range 2 {
		for i, c := range conns {
			got, err := ask(c, fmt.Sprintf("r%d", round))
			require.NoError(t, err, "round %d on the connection to %s", round, addrs[i])
			require.Equal(t, fmt.Sprintf("b 10.244.1.10 r%d", round), got, "connection to %s", addrs[i])
			require.Equal(t, addrs[i], c.RemoteAddr().String())
		}
	}
	cnt, err := l.n1.dp.Maps.ReadCounters()
	require.NoError(t, err)
	require.Equal(t, uint64(2), cnt.CTPortClash, "the second and the third flow get another source port")
}

// A client port reused one connection after the other towards ClusterIPs of
// the same backend (what a pod's kernel does all the time: its ephemeral
// ports are unique per destination, not per backend). While the earlier
// flow is closing, the next one gets another source port; once the earlier
// flow is closed both ways and idle for a second its tuple is free again
// and the next flow keeps its own port: the port space towards one backend
// is not held by closed flows until GC (the failed dials of starlab bench at
// 5,000 connections/s, CT_TUPLE_IN_USE, once clash resolution kept them).
func TestClientPortReusedAfterClose(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	vips := []string{"10.96.0.10", "10.96.0.11", "10.96.0.12"}
	for i, vip := range vips {
		require.NoError(t, l.n1.dp.Maps.UpsertService(
			maps.ServiceKey{VIP: netip.MustParseAddr(vip), Port: 80, Proto: maps.ProtoTCP},
			maps.Service{ID: uint32(i + 1)}, []maps.Backend{{IP: b.ip, Port: 8080}}))
	}
	const lport = 40300
	roundTrip := func(vip string) {
		t.Helper()
		c, err := dialFromPort(a.ns, vip+":80", lport)
		require.NoError(t, err, "dial %s from port %d", vip, lport)
		got, err := ask(c, "x")
		require.NoError(t, err, "round trip to %s from port %d", vip, lport)
		require.Equal(t, "b 10.244.1.10 x", got)
		require.NoError(t, c.Close())
	}
	clashes := func() uint64 {
		t.Helper()
		cnt, err := l.n1.dp.Maps.ReadCounters()
		require.NoError(t, err)
		return cnt.CTPortClash
	}
	roundTrip(vips[0])
	roundTrip(vips[1]) // the first flow is still closing: another source port
	require.Equal(t, uint64(1), clashes())
	time.Sleep(1500 * time.Millisecond)
	roundTrip(vips[2]) // the first flow's tuple is free again: its own port
	require.Equal(t, uint64(1), clashes())
}

// externalTrafficPolicy: Local with only a remote backend, and a NodePort
// without backends: the external client is refused at once (RST out of the
// node device) and the drop is reported at from-netdev.
func TestNodePortLocalPolicyAndNoBackend(t *testing.T) {
	l := newLab(t)
	c := l.pods["c"]
	serveTCP(t, c.ns, "c", ":8080")
	require.NoError(t, l.n1.dp.Maps.UpsertService(maps.ServiceKey{Port: 30082, Proto: maps.ProtoTCP, Scope: maps.ScopeNodePort},
		maps.Service{ID: 12, Flags: maps.ServiceLocal}, []maps.Backend{{IP: c.ip, Port: 8080}}))
	require.NoError(t, l.n1.dp.Maps.UpsertService(maps.ServiceKey{Port: 30083, Proto: maps.ProtoTCP, Scope: maps.ScopeNodePort},
		maps.Service{ID: 13}, nil))

	for _, addr := range []string{node1IP + ":30082", node1IP + ":30083"} {
		start := time.Now()
		_, err := dial(l.extNS, "tcp4", addr, "", 5*time.Second)
		require.True(t, errors.Is(err, syscall.ECONNREFUSED), "%s: want ECONNREFUSED, got %v", addr, err)
		require.Less(t, time.Since(start), 500*time.Millisecond)
	}
	drop := func(p uint16) ev {
		return ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropServiceBackendNotFound, Obs: fe.ObsFromNetdev,
			Dir: fe.DirectionIngress, Proto: tcp, Src: ext, Dst: node1IP, DstPort: p, OrigDst: node1IP, OrigDstPort: p,
			SrcID: 2, DstID: 1}
	}
	requireEvents(t, l.n1, port(30082, 30083), drop(30082), drop(30083))
}

// sessionAffinity: ClientIP pins every connection of a client to one backend.
func TestSessionAffinity(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, c.ns, "c", ":8080")
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: maps.ProtoTCP},
		maps.Service{ID: 1, Flags: maps.ServiceAffinity, AffinityTimeout: 10800}, []maps.Backend{{IP: b.ip, Port: 8080}, {IP: c.ip, Port: 8080}}))
	first, _ := tcpRoundTrip(t, a.ns, "10.96.0.10:80")
	for i := 0; i < 8; i++ {
		got, _ := tcpRoundTrip(t, a.ns, "10.96.0.10:80")
		require.Equal(t, first[:1], got[:1], "connection %d went to another backend", i)
	}
}

// TestSessionAffinityTimeout: the ClientIP affinity lasts its timeout (sl_affinity, as Cilium's
// lb4_affinity). Within the timeout every new connection of the client reaches the backend it was
// given; once the timeout has passed since its last connection, the next one is load balanced
// anew by its 5-tuple (and pinned again). Over 10 rounds spaced past the timeout, 4 backends are
// all reached by one backend only with probability 4^-9; a stateless client-IP hash picks the same
// backend in every round.
func TestSessionAffinityTimeout(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	var backends []maps.Backend
	byName := map[string]maps.Backend{}
	for _, p := range []*pod{b, c} {
		for _, port := range []uint16{8080, 8081} {
			name := fmt.Sprintf("%s%d", p.name, port)
			serveTCP(t, p.ns, name, fmt.Sprintf(":%d", port))
			byName[name] = maps.Backend{IP: p.ip, Port: port}
			backends = append(backends, byName[name])
		}
	}
	client, err := maps.IPToU32(a.ip)
	require.NoError(t, err)
	const timeout = time.Second
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: maps.ProtoTCP},
		maps.Service{ID: 1, Flags: maps.ServiceAffinity, AffinityTimeout: uint32(timeout / time.Second)}, backends))
	backendOf := func() string {
		reply, _ := tcpRoundTrip(t, a.ns, "10.96.0.10:80")
		return strings.Fields(reply)[0]
	}
	seen := map[string]int{}
	var chosen []string
	var recorded []maps.Backend // the sl_affinity entry after each round
	for round := 0; round < 10; round++ {
		first := backendOf()
		for i := 0; i < 5; i++ {
			require.Equal(t, first, backendOf(), "round %d: connection %d within the timeout went to another backend", round, i)
		}
		seen[first]++
		chosen = append(chosen, first)
		var v bpfobj.SlSlAffinityVal
		var rec maps.Backend
		if err := l.n1.dp.Maps.Affinity.Lookup(&bpfobj.SlSlAffinityKey{ClientIp: client, SvcId: 1}, &v); err == nil {
			rec = maps.Backend{IP: maps.U32ToIP(v.BackendIp), Port: maps.Ntohs(v.BackendPort)}
		}
		recorded = append(recorded, rec)
		time.Sleep(timeout + 300*time.Millisecond)
	}
	require.Greater(t, len(seen), 1, "after the timeout new connections must be load balanced anew, got %v", seen)
	for round, name := range chosen {
		assert.Equal(t, byName[name], recorded[round], "round %d: sl_affinity records the backend", round)
	}
}

// TestHairpin: a pod reaching itself through its own Service (the backend chosen is the client).
// The datapath SNATs the source to the hairpin address 169.254.42.1 (SL_HAIRPIN_ADDR, as Cilium's
// IPV4_LOOPBACK) and hands the packet straight back into the pod; the reply is reverse-translated
// at from-container (source back to the VIP, destination back to the pod) and handed back too.
func TestHairpin(t *testing.T) {
	l := newLab(t)
	b := l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.30"), Port: 80, Proto: maps.ProtoTCP},
		maps.Service{ID: 3}, []maps.Backend{{IP: b.ip, Port: 8080}}))
	for i := 0; i < 3; i++ {
		reply, remote := tcpRoundTrip(t, b.ns, "10.96.0.30:80")
		require.Equal(t, "b 169.254.42.1 hello", reply, "the server sees the hairpin address")
		require.Equal(t, "10.96.0.30:80", remote, "the client sees the VIP")
	}
	// other pods still reach b with their own address
	reply, _ := tcpRoundTrip(t, l.pods["a"].ns, "10.96.0.30:80")
	require.Equal(t, "b 10.244.1.10 hello", reply)
}

// A NodePort whose backend is in the node's own network namespace (a hostNetwork pod on the node
// the client dialled) answers: DNAT only at from-netdev, the stack delivers it, and sl_to_netdev
// translates the reply's source back to the NodePort the client dialled.
func TestNodePortToHostNetworkBackendOnTheSameNode(t *testing.T) {
	l := newLab(t)
	serveTCP(t, l.n1.ns, "h", node1IP+":9090")
	require.NoError(t, l.n1.dp.Maps.UpsertService(maps.ServiceKey{Port: 30090, Proto: maps.ProtoTCP, Scope: maps.ScopeNodePort},
		maps.Service{ID: 12}, []maps.Backend{{IP: l.n1.ip, Port: 9090}}))

	for range 3 { // a new connection each time: every one is translated both ways
		reply, remote := tcpRoundTrip(t, l.extNS, node1IP+":30090")
		require.Equal(t, "h "+ext+" hello", reply)
		require.Equal(t, node1IP+":30090", remote, "the reply comes from the NodePort the client dialled")
	}
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeNew && e.ObsPoint == fe.ObsFromNetdev },
		ev{Type: fe.TypeNew, Verdict: fe.VerdictForwarded, Obs: fe.ObsFromNetdev, Dir: fe.DirectionIngress, Proto: tcp,
			Src: ext, Dst: node1IP, DstPort: 9090, OrigDst: node1IP, OrigDstPort: 30090, SrcID: 2, DstID: 1})
}
