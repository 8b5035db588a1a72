//go:build datapath

package loader

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	fe "github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 11 (datapath hardening): each test proves one closed fail-open path
// with real packets through the lab.

// udpRecorder listens on addr in netns ns and delivers every payload it
// receives on the returned channel.
func udpRecorder(t *testing.T, ns, addr string) <-chan string {
	t.Helper()
	ch, _ := udpSocket(t, ns, addr)
	return ch
}

// udpSocket is udpRecorder that also returns its socket (to send from it).
func udpSocket(t *testing.T, ns, addr string) (<-chan string, net.PacketConn) {
	t.Helper()
	pc := listenUDPIn(t, ns, addr)
	ch := make(chan string, 64)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch, pc
}

// received reports whether want arrives on ch within d.
func received(ch <-chan string, want string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case got := <-ch:
			if got == want {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// sendUDP sends one datagram from netns ns (from laddr, may be nil) to addr,
// with skb->mark set to mark when non-zero (SO_MARK).
func sendUDP(t *testing.T, ns string, laddr *net.UDPAddr, addr, payload string, mark int) {
	t.Helper()
	require.NoError(t, inNS(ns, func() error {
		d := net.Dialer{LocalAddr: laddr}
		if mark != 0 {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, mark)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		c, err := d.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	}))
}

func allowIngress(t *testing.T, p *pod, peer uint32, proto maps.Proto, port uint16, policyID uint32) {
	t.Helper()
	require.NoError(t, p.node.dp.Maps.UpsertPolicy(
		maps.PolicyKey{EpID: uint32(p.ifindex), PeerID: peer, Dir: maps.Ingress, Proto: proto, Port: port, PortPrefixLen: 16},
		maps.PolicyValue{Action: maps.ActionAllow, PolicyID: policyID, Rule: 1}))
}

// Item 3: a deny written to the maps cuts an open TCP connection (ingress
// policy of the server) and a UDP stream (egress policy of the client): the
// endpoint's policy revision changed, so the established flows are looked up
// in policy again and dropped with POLICY_DENIED.
func TestNewDenyCutsEstablishedTCPAndUDPStream(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveUDP(t, c.ns, "c", ":5353")

	conn, err := dial(a.ns, "tcp4", "10.244.1.11:8080", "", 3*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	got, err := ask(conn, "one")
	require.NoError(t, err)
	require.Equal(t, "b 10.244.1.10 one", got)

	stream, err := dial(a.ns, "udp4", "10.244.2.10:5353", "", time.Second)
	require.NoError(t, err)
	defer stream.Close()
	udpAsk := func(msg string) (string, error) {
		buf := make([]byte, 512)
		if _, err := stream.Write([]byte(msg)); err != nil {
			return "", err
		}
		_ = stream.SetReadDeadline(time.Now().Add(time.Second))
		n, err := stream.Read(buf)
		return string(buf[:n]), err
	}
	got, err = udpAsk("u1")
	require.NoError(t, err)
	require.Equal(t, "c 10.244.1.10 u1", got)

	// the denies, no allow entries: b isolated for ingress (cuts the TCP
	// connection at b's to-container), then a for egress (cuts the UDP
	// stream at a's from-container)
	l.setFlags(b, maps.EndpointIngressEnforced)
	_, err = ask(conn, "two")
	assert.Error(t, err, "the open TCP connection must be cut by the new deny")
	l.setFlags(a, maps.EndpointEgressEnforced)
	_, err = udpAsk("u2")
	assert.Error(t, err, "the UDP stream must be cut by the new deny")

	// (TCP retransmits after a's egress deny, if any, are dropped at a's from-container: not asserted)
	requireEvents(t, l.n1, func(e fe.Event) bool {
		return e.Type == fe.TypeDrop && !(e.ObsPoint == fe.ObsFromContainer && e.Proto == tcp)
	},
		newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.1.11", 8080, 256, 257).drop(fe.DropPolicyDenied),
		newEv(fe.ObsFromContainer, udp, "10.244.1.10", "10.244.2.10", 5353, 256, 258).drop(fe.DropPolicyDenied))
}

// Item 3: a policy change that still allows the flow keeps it (the entry
// takes the new revision), and the flow is not reported as dropped.
func TestPolicyChangeKeepsAllowedEstablishedFlow(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	conn, err := dial(a.ns, "tcp4", "10.244.1.11:8080", "", 3*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	_, err = ask(conn, "one")
	require.NoError(t, err)

	allowIngress(t, b, a.identity, maps.ProtoTCP, 8080, 46)
	l.setFlags(b, maps.EndpointIngressEnforced)
	for _, m := range []string{"two", "three"} {
		got, err := ask(conn, m)
		require.NoError(t, err)
		require.Equal(t, "b 10.244.1.10 "+m, got)
	}
	c, err := l.n1.dp.Maps.ReadCounters()
	require.NoError(t, err)
	require.Zero(t, c.Drops[uint8(fe.DropPolicyDenied)])
}

// Item 6: a packet arriving on the node device with the source address of a
// local pod is dropped at sl_from_netdev (INVALID_SOURCE_IP), so a host on
// the node's network cannot borrow that pod's identity; traffic with the
// host's own address still passes.
func TestNodeDeviceDropsSpoofedLocalPodSource(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	got6000 := udpRecorder(t, b.ns, ":6000")
	got6001 := udpRecorder(t, b.ns, ":6001")
	l.setFlags(b, maps.EndpointIngressEnforced)
	allowIngress(t, b, a.identity, maps.ProtoUDP, 6000, 47)
	allowIngress(t, b, maps.IdentityWorld, maps.ProtoUDP, 6001, 48)
	// the external host claims pod a's address and routes the pod CIDR via node 1
	nsRun(t, l.extNS, "ip", "addr", "add", a.ip.String()+"/32", "dev", "lo")
	nsRun(t, l.extNS, "ip", "route", "add", "10.244.1.0/24", "via", node1IP)

	sendUDP(t, l.extNS, &net.UDPAddr{IP: net.ParseIP(a.ip.String())}, "10.244.1.11:6000", "spoofed", 0)
	require.False(t, received(got6000, "spoofed", time.Second), "a packet from the node network with a local pod's source must not reach the pod")
	sendUDP(t, l.extNS, &net.UDPAddr{IP: net.ParseIP(ext)}, "10.244.1.11:6001", "legit", 0)
	require.True(t, received(got6001, "legit", 2*time.Second), "traffic from the node network with its own source passes")

	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop },
		ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropInvalidSourceIP, Obs: fe.ObsFromNetdev,
			Dir: fe.DirectionIngress, Proto: udp, Src: "10.244.1.10", Dst: "10.244.1.11", DstPort: 6000,
			OrigDst: "10.244.1.11", OrigDstPort: 6000, SrcID: 256, DstID: 257})
}

// Item 8: skb->mark 0x51a70000 (the value the RST of a service without
// backends used to carry) set by a host process does not skip
// sl_to_container: policy still denies the packet.
func TestHostMarkDoesNotBypassPolicy(t *testing.T) {
	l := newLab(t)
	b := l.pods["b"]
	got := udpRecorder(t, b.ns, ":6002")
	l.setFlags(b, maps.EndpointIngressEnforced)
	// a host process with a non-node source address (identity world)
	nsRun(t, l.n1.ns, "ip", "addr", "add", "10.99.0.1/32", "dev", "lo")

	sendUDP(t, l.n1.ns, &net.UDPAddr{IP: net.ParseIP("10.99.0.1")}, "10.244.1.11:6002", "marked", 0x51a70000)
	require.False(t, received(got, "marked", time.Second), "a marked packet from a host process must be subject to policy")
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop },
		newEv(fe.ObsToContainer, udp, "10.99.0.1", "10.244.1.11", 6002, 2, 257).drop(fe.DropPolicyDenied))
}

// Item 5: a NodePort packet that the local backend's ingress policy denies
// is dropped at sl_from_netdev before any conntrack state exists, so the
// backend (egress-isolated) cannot answer through a reply entry it was never
// allowed.
func TestDeniedNodePortLeavesNoReplyPinhole(t *testing.T) {
	l := newLab(t)
	b := l.pods["b"]
	require.NoError(t, l.n1.dp.Maps.UpsertService(maps.ServiceKey{Port: 30053, Proto: maps.ProtoUDP, Scope: maps.ScopeNodePort},
		maps.Service{ID: 14}, []maps.Backend{{IP: b.ip, Port: 5353}}))
	l.setFlags(b, maps.EndpointIngressEnforced|maps.EndpointEgressEnforced)
	extGot, extPC := udpSocket(t, l.extNS, ":7777")

	_, err := extPC.WriteTo([]byte("q"), &net.UDPAddr{IP: net.ParseIP(node1IP), Port: 30053})
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond) // the packet has crossed sl_from_netdev
	for _, k := range []maps.CTKey{
		{Src: netip.MustParseAddr(ext), Dst: netip.MustParseAddr(node1IP), SrcPort: 7777, DstPort: 30053, Proto: maps.ProtoUDP, Scope: maps.CTNetdev},
		{Src: b.ip, Dst: netip.MustParseAddr(ext), SrcPort: 5353, DstPort: 7777, Proto: maps.ProtoUDP, Scope: maps.CTEgress},
	} {
		_, err := l.n1.dp.Maps.LookupCT(k)
		assert.Error(t, err, "no conntrack entry %+v for a denied NodePort packet", k)
	}
	// b tries to use the pinhole: from its backend port to the client
	sendUDP(t, b.ns, &net.UDPAddr{Port: 5353}, ext+":7777", "pinhole", 0)
	require.False(t, received(extGot, "pinhole", time.Second), "the denied NodePort packet must leave no reply path")
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop && e.Src.String() == ext },
		ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropPolicyDenied, Obs: fe.ObsFromNetdev,
			Dir: fe.DirectionIngress, Proto: udp, Src: ext, Dst: "10.244.1.11", DstPort: 5353,
			OrigDst: node1IP, OrigDstPort: 30053, SrcID: 2, DstID: 257})
}

// Item 5: a spoofed NodePort SYN whose reply tuple is that of an in-cluster
// connection cannot overwrite that connection's conntrack entry (the
// connection keeps working), and the SYN is dropped (CT_TUPLE_IN_USE).
func TestSpoofedNodePortSYNCannotTakeOverReplies(t *testing.T) {
	l := newLab(t)
	b, c := l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	require.NoError(t, l.n1.dp.Maps.UpsertService(maps.ServiceKey{Port: 30080, Proto: maps.ProtoTCP, Scope: maps.ScopeNodePort},
		maps.Service{ID: 10}, []maps.Backend{{IP: b.ip, Port: 8080}}))

	conn, err := dialFromPort(c.ns, "10.244.1.11:8080", 41000)
	require.NoError(t, err)
	defer conn.Close()
	got, err := ask(conn, "one")
	require.NoError(t, err)
	require.Equal(t, "b 10.244.2.10 one", got)

	// the external host forges c's address and port towards the NodePort
	nsRun(t, l.extNS, "ip", "addr", "add", c.ip.String()+"/32", "dev", "lo")
	var d net.Dialer
	require.NoError(t, inNS(l.extNS, func() error {
		d = net.Dialer{Timeout: 500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.ip.String()), Port: 41000}}
		if fc, err := d.Dial("tcp4", node1IP+":30080"); err == nil {
			fc.Close()
		}
		return nil
	}))

	got, err = ask(conn, "two")
	require.NoError(t, err, "the in-cluster connection must keep its replies")
	require.Equal(t, "b 10.244.2.10 two", got)
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop && e.ObsPoint == fe.ObsFromNetdev },
		ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropCTTupleInUse, Obs: fe.ObsFromNetdev,
			Dir: fe.DirectionIngress, Proto: tcp, Src: "10.244.2.10", Dst: "10.244.1.11", DstPort: 8080,
			OrigDst: node1IP, OrigDstPort: 30080, SrcID: 258, DstID: 257})
}

// Item 8, clsact/cls_bpf fallback: the no-backend RST is delivered with
// bpf_redirect_peer from the legacy TC ingress hook as well.
func TestNoBackendRefusedAtOnceLegacyTC(t *testing.T) {
	l := newLabMode(t, AttachLegacyTC)
	a := l.pods["a"]
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.99"), Port: 80, Proto: maps.ProtoTCP}, maps.Service{ID: 9}, nil))
	start := time.Now()
	_, err := dial(a.ns, "tcp4", "10.96.0.99:80", "", 5*time.Second)
	require.True(t, errors.Is(err, syscall.ECONNREFUSED), "want ECONNREFUSED, got %v", err)
	require.Less(t, time.Since(start), 500*time.Millisecond, "refusal must be immediate")
}

// Item 3 across nodes: a TCP connection from a pod of another node (its packets arrive through the
// node device) is cut at the destination's to-container by a new ingress deny, as on one node.
func TestNewDenyCutsEstablishedTCPFromAnotherNode(t *testing.T) {
	l := newLab(t)
	a, c := l.pods["a"], l.pods["c"]
	serveTCP(t, c.ns, "c", ":8080")
	conn, err := dial(a.ns, "tcp4", "10.244.2.10:8080", "", 3*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	got, err := ask(conn, "one")
	require.NoError(t, err)
	require.Equal(t, "c 10.244.1.10 one", got)

	l.setFlags(c, maps.EndpointIngressEnforced)
	_, err = ask(conn, "two")
	assert.Error(t, err, "the open TCP connection from another node must be cut by the new deny")
}

// Item 3, the server side: after a new ingress deny has cut a TCP connection, the server's own
// retransmissions (data the client's dropped ACKs never acknowledged) must not open the flow again
// in the other direction: without the cut connection's tombstone, the server's next packet is a new
// egress flow of the server, its reply entry then lets the client's packets in as "replies".
func TestDeniedConnectionStaysCutWhenTheServerSendsAgain(t *testing.T) {
	l := newLab(t)
	a, c := l.pods["a"], l.pods["c"]
	var ln net.Listener
	require.NoError(t, inNS(c.ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", ":8090")
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	push := make(chan string, 4)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		r := bufio.NewReader(sc)
		go func() {
			for m := range push {
				_, _ = fmt.Fprintf(sc, "%s\n", m)
			}
		}()
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(sc, "echo %s", s)
		}
	}()
	t.Cleanup(func() { close(push) })

	conn, err := dial(a.ns, "tcp4", "10.244.2.10:8090", "", 3*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	got, err := ask(conn, "one")
	require.NoError(t, err)
	require.Equal(t, "echo one", got)

	l.setFlags(c, maps.EndpointIngressEnforced)
	// the server pushes: its data passes on the reply entry, the client's ACK is cut by the deny,
	// the server retransmits for as long as the test looks
	push <- "late"
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	late, err := r.ReadString('\n')
	require.NoError(t, err, "the server's data passes on the reply entry")
	require.Equal(t, "late\n", late)
	time.Sleep(1500 * time.Millisecond)
	_, err = ask(conn, "two")
	assert.Error(t, err, "the cut connection must stay cut after the server sent again")
	requireEvents(t, l.n2, func(e fe.Event) bool {
		return e.Type == fe.TypeDrop && e.ObsPoint == fe.ObsToContainer
	}, newEv(fe.ObsToContainer, tcp, "10.244.1.10", "10.244.2.10", 8090, 256, 258).drop(fe.DropPolicyDenied))

	// a later policy that allows the flow again brings the cut connection back (the client's
	// retransmission of "two" is looked up again)
	allowIngress(t, c, a.identity, maps.ProtoTCP, 8090, 49)
	l.setFlags(c, maps.EndpointIngressEnforced)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	back, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err, "the connection must work again once a policy allows it")
	require.Equal(t, "echo two\n", back)
}
