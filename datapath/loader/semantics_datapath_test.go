//go:build datapath

package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
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

// Issue 11, "Semantics to fix": ICMP errors of tracked flows, IPv4
// fragments, SCTP. Real programs on veths in netns, real packets.

const sctp = fe.Proto(132)

// rawSocket opens a raw IPv4 socket of proto in netns ns (closed at test end).
func rawSocket(t *testing.T, ns string, proto int) int {
	t.Helper()
	var fd int
	require.NoError(t, inNS(ns, func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, proto)
		return err
	}))
	t.Cleanup(func() { syscall.Close(fd) })
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	require.NoError(t, syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv))
	return fd
}

// rawRecv returns the IPv4 packets (IP header included) a raw socket gets within d that match.
func rawRecv(fd int, d time.Duration, match func(pkt []byte) bool) [][]byte {
	var out [][]byte
	buf := make([]byte, 65536)
	for end := time.Now().Add(d); time.Now().Before(end); {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		if n >= 20 && match(buf[:n]) {
			out = append(out, append([]byte(nil), buf[:n]...))
		}
	}
	return out
}

// csum16 is the Internet checksum of b: 0 when b holds a valid checksum.
func csum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func ip4(b []byte) string { return netip.AddrFrom4([4]byte(b[:4])).String() }

// icmpErr is a parsed ICMP error: outer source, type/code, the quoted tuple, checksum checks.
type icmpErr struct {
	src, innerSrc, innerDst string
	typ, code               uint8
	innerSport, innerDport  uint16
	icmpCsumOK, innerCsumOK bool
	innerProto              uint8
}

func parseICMPErr(pkt []byte) (icmpErr, bool) {
	ihl := int(pkt[0]&0xf) * 4
	if pkt[9] != 1 || len(pkt) < ihl+8+20+4 {
		return icmpErr{}, false
	}
	ic := pkt[ihl:]
	in := ic[8:]
	iihl := int(in[0]&0xf) * 4
	if len(in) < iihl+4 {
		return icmpErr{}, false
	}
	return icmpErr{
		src: ip4(pkt[12:16]), typ: ic[0], code: ic[1],
		innerSrc: ip4(in[12:16]), innerDst: ip4(in[16:20]), innerProto: in[9],
		innerSport: binary.BigEndian.Uint16(in[iihl:]), innerDport: binary.BigEndian.Uint16(in[iihl+2:]),
		icmpCsumOK: csum16(ic) == 0, innerCsumOK: csum16(in[:iihl]) == 0,
	}, true
}

// TestICMPErrorOfServiceFlowIsRelatedAndReverseNATed: a UDP client asks a
// Service whose backend port is closed (same-node and cross-node backend);
// the backend's port unreachable reaches the client (default deny ingress:
// it passes as related to the client's flow) naming the VIP:port, with valid
// checksums, so the connected socket fails with ECONNREFUSED. An ICMP error
// about no tracked flow stays under policy: dropped, POLICY_DENIED.
func TestICMPErrorOfServiceFlowIsRelatedAndReverseNATed(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	for _, n := range []*node{l.n1, l.n2} {
		require.NoError(t, n.dp.Maps.UpsertService(
			maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.77"), Port: 53, Proto: maps.ProtoUDP},
			maps.Service{ID: 77}, []maps.Backend{{IP: b.ip, Port: 5399}}))
		require.NoError(t, n.dp.Maps.UpsertService(
			maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.78"), Port: 53, Proto: maps.ProtoUDP},
			maps.Service{ID: 78}, []maps.Backend{{IP: c.ip, Port: 5399}}))
	}
	l.setFlags(a, maps.EndpointIngressEnforced) // default deny into the client
	capture := rawSocket(t, a.ns, syscall.IPPROTO_ICMP)

	for _, vip := range []string{"10.96.0.77", "10.96.0.78"} {
		conn, err := dial(a.ns, "udp4", vip+":53", "", time.Second)
		require.NoError(t, err)
		laddr := conn.LocalAddr().(*net.UDPAddr)
		_, err = conn.Write([]byte("q"))
		require.NoError(t, err)
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 64))
		conn.Close()
		require.Error(t, err, "via %s", vip)
		require.True(t, errors.Is(err, syscall.ECONNREFUSED), "via %s: want ECONNREFUSED from the backend's port unreachable, got %v", vip, err)

		got := rawRecv(capture, 300*time.Millisecond, func(p []byte) bool {
			e, ok := parseICMPErr(p)
			return ok && e.innerSport == uint16(laddr.Port)
		})
		require.NotEmpty(t, got, "via %s: the client captured no ICMP error", vip)
		e, _ := parseICMPErr(got[0])
		assert.Equal(t, icmpErr{src: vip, typ: 3, code: 3, innerSrc: a.ip.String(), innerDst: vip, innerProto: 17,
			innerSport: uint16(laddr.Port), innerDport: 53, icmpCsumOK: true, innerCsumOK: true}, e, "via %s", vip)
	}

	// an ICMP error about a flow nobody tracks: policy as for any new ICMP flow (denied here)
	forged := rawSocket(t, c.ns, syscall.IPPROTO_ICMP)
	inner := ipv4Header(a.ip, netip.MustParseAddr("10.96.0.99"), 17, 0, 0, 28)
	inner = append(inner, 0x9c, 0x40, 0x00, 0x35, 0, 8, 0, 0) // udp 40000 -> 53
	msg := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, inner...)
	binary.BigEndian.PutUint16(msg[2:], csum16(msg))
	require.NoError(t, syscall.Sendto(forged, msg, 0, &syscall.SockaddrInet4{Addr: a.ip.As4()}))
	assert.Empty(t, rawRecv(capture, 500*time.Millisecond, func(p []byte) bool {
		e, ok := parseICMPErr(p)
		return ok && e.innerDst == "10.96.0.99"
	}), "an ICMP error of no tracked flow must not reach a default-deny pod")
	icmp := fe.Proto(1)
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Proto == icmp && e.Type == fe.TypeDrop },
		ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropPolicyDenied, Obs: fe.ObsToContainer,
			Dir: fe.DirectionIngress, Proto: icmp, Src: c.ip.String(), Dst: a.ip.String(), OrigDst: a.ip.String(),
			SrcID: 258, DstID: 256})
}

// ipv4Header builds a 20-byte IPv4 header with a valid checksum.
func ipv4Header(src, dst netip.Addr, proto uint8, id, fragOff uint16, totalLen int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(totalLen))
	binary.BigEndian.PutUint16(h[4:], id)
	binary.BigEndian.PutUint16(h[6:], fragOff)
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], csum16(h))
	return h
}

// serveUDPEcho answers every datagram with itself (any size).
func serveUDPEcho(t *testing.T, ns, addr string) {
	t.Helper()
	pc := listenUDPIn(t, ns, addr)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// TestFragmentedUDPThroughServiceAndPortPolicy: a 4000-byte UDP datagram
// (three fragments at MTU 1500) through a ClusterIP to a backend whose
// ingress policy allows only UDP 5353 from the client, and the 4000-byte
// answer back, arrive whole: every fragment gets its datagram's ports, so
// policy, conntrack and DNAT / reverse NAT apply to all of them.
func TestFragmentedUDPThroughServiceAndPortPolicy(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	serveUDPEcho(t, b.ns, ":5353")
	serveUDPEcho(t, c.ns, ":5353")
	for _, n := range []*node{l.n1, l.n2} {
		require.NoError(t, n.dp.Maps.UpsertService(
			maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.53"), Port: 53, Proto: maps.ProtoUDP},
			maps.Service{ID: 53}, []maps.Backend{{IP: b.ip, Port: 5353}}))
		require.NoError(t, n.dp.Maps.UpsertService(
			maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.54"), Port: 53, Proto: maps.ProtoUDP},
			maps.Service{ID: 54}, []maps.Backend{{IP: c.ip, Port: 5353}}))
	}
	for _, be := range []*pod{b, c} {
		require.NoError(t, be.node.dp.Maps.UpsertPolicy(
			maps.PolicyKey{EpID: uint32(be.ifindex), PeerID: a.identity, Dir: maps.Ingress, Proto: maps.ProtoUDP, Port: 5353, PortPrefixLen: 16},
			maps.PolicyValue{Action: maps.ActionAllow, PolicyID: 61}))
		l.setFlags(be, maps.EndpointIngressEnforced)
	}

	payload := bytes.Repeat([]byte("0123456789abcdef"), 250) // 4000 bytes
	for _, vip := range []string{"10.96.0.53", "10.96.0.54"} {
		conn, err := dial(a.ns, "udp4", vip+":53", "", time.Second)
		require.NoError(t, err)
		var got []byte
		for try := 0; try < 3 && got == nil; try++ {
			_, err = conn.Write(payload)
			require.NoError(t, err)
			_ = conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
			buf := make([]byte, 65536)
			n, rerr := conn.Read(buf)
			if rerr == nil {
				got = buf[:n]
			}
		}
		conn.Close()
		require.Equal(t, len(payload), len(got), "via %s: the 4000-byte datagram and its answer must arrive whole", vip)
		require.Equal(t, payload, got, "via %s", vip)
	}
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop }) // no fragment dropped
	requireEvents(t, l.n2, func(e fe.Event) bool { return e.Type == fe.TypeDrop })
}

// TestFragmentWithoutFirstDropped: a non-first fragment whose first fragment
// was never seen has no ports to decide on: dropped, FRAG_NOT_FOUND.
func TestFragmentWithoutFirstDropped(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveUDPEcho(t, b.ns, ":5353")
	fd := rawSocket(t, a.ns, syscall.IPPROTO_RAW)
	body := bytes.Repeat([]byte{0xab}, 64)
	pkt := append(ipv4Header(a.ip, b.ip, 17, 0x4242, 185, 20+len(body)), body...) // offset 185*8 = 1480
	require.NoError(t, syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: b.ip.As4()}))
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop },
		ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropFragNotFound, Obs: fe.ObsFromContainer,
			Dir: fe.DirectionEgress, Proto: udp, Src: a.ip.String(), Dst: b.ip.String(), OrigDst: b.ip.String(),
			SrcID: 256})
}

// sctpPacket is an SCTP common header (CRC32c checksum) and one INIT-like chunk.
func sctpPacket(sport, dport uint16) []byte {
	p := make([]byte, 12+20)
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	p[12] = 1 // INIT
	binary.BigEndian.PutUint16(p[14:], 20)
	binary.LittleEndian.PutUint32(p[8:], crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)))
	return p
}

// sctpArrived reports whether the raw SCTP socket got a packet to dport from src within d.
func sctpArrived(fd int, src string, dport uint16, d time.Duration) bool {
	return len(rawRecv(fd, d, func(p []byte) bool {
		ihl := int(p[0]&0xf) * 4
		return p[9] == 132 && len(p) >= ihl+4 && ip4(p[12:16]) == src &&
			binary.BigEndian.Uint16(p[ihl+2:]) == dport
	})) > 0
}

// TestSCTPPortPolicyServiceAndConntrack: the kernel here has no sctp module
// (CONFIG_IP_SCTP unset), so SCTP packets are crafted and received on raw
// IPPROTO_SCTP sockets; they cross the real programs. A port-specific SCTP
// allow admits port 3868 and denies 3869 (POLICY_DENIED); the answer to the
// allowed flow reaches the default-deny client through conntrack; a
// ClusterIP with port = targetPort reaches a backend on the other node.
func TestSCTPPortPolicyServiceAndConntrack(t *testing.T) {
	l := newLab(t)
	a, b, c := l.pods["a"], l.pods["b"], l.pods["c"]
	require.NoError(t, l.n1.dp.Maps.UpsertPolicy(
		maps.PolicyKey{EpID: uint32(b.ifindex), PeerID: a.identity, Dir: maps.Ingress, Proto: maps.ProtoSCTP, Port: 3868, PortPrefixLen: 16},
		maps.PolicyValue{Action: maps.ActionAllow, PolicyID: 71}))
	l.setFlags(b, maps.EndpointIngressEnforced)
	l.setFlags(a, maps.EndpointIngressEnforced)
	sa, sb, sc := rawSocket(t, a.ns, 132), rawSocket(t, b.ns, 132), rawSocket(t, c.ns, 132)
	send := func(fd int, to netip.Addr, sport, dport uint16) {
		require.NoError(t, syscall.Sendto(fd, sctpPacket(sport, dport), 0, &syscall.SockaddrInet4{Addr: to.As4()}))
	}

	send(sa, b.ip, 40001, 3868)
	require.True(t, sctpArrived(sb, a.ip.String(), 3868, time.Second), "SCTP to the allowed port 3868 must arrive")
	send(sb, a.ip, 3868, 40001) // the answer: conntrack, into a default-deny client
	require.True(t, sctpArrived(sa, b.ip.String(), 40001, time.Second), "the answer of the allowed SCTP flow must arrive")
	send(sa, b.ip, 40001, 3869)
	require.False(t, sctpArrived(sb, a.ip.String(), 3869, time.Second), "SCTP to port 3869 must be denied")
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.68"), Port: 3868, Proto: maps.ProtoSCTP},
		maps.Service{ID: 68}, []maps.Backend{{IP: c.ip, Port: 3868}}))
	send(sa, netip.MustParseAddr("10.96.0.68"), 40002, 3868)
	require.True(t, sctpArrived(sc, a.ip.String(), 3868, time.Second), "SCTP through the ClusterIP must reach c")

	ne := func(dst string, dport uint16, obs fe.ObsPoint, dstID uint32) ev {
		return newEv(obs, sctp, a.ip.String(), dst, dport, 256, dstID)
	}
	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Proto == sctp && e.Src == a.ip },
		ne(b.ip.String(), 3868, fe.ObsFromContainer, 257), ne(b.ip.String(), 3868, fe.ObsToContainer, 257).policy(71),
		ne(b.ip.String(), 3869, fe.ObsFromContainer, 257), ne(b.ip.String(), 3869, fe.ObsToContainer, 257).drop(fe.DropPolicyDenied),
		ne(c.ip.String(), 3868, fe.ObsFromContainer, 258).orig("10.96.0.68", 3868))
}

// TestPMTUOfServiceFlowReachesClient: the path to a Service's backend on the
// other node narrows (MTU 1000 on the backend's veth); node n2 answers a
// 1400-byte DF datagram with fragmentation needed, from its own address. The
// error reaches the default-deny client as related to its flow, quoting the
// VIP, so the client's kernel lowers the path MTU of its connected socket.
func TestPMTUOfServiceFlowReachesClient(t *testing.T) {
	l := newLab(t)
	a, c := l.pods["a"], l.pods["c"]
	serveUDPEcho(t, c.ns, ":5353")
	require.NoError(t, l.n1.dp.Maps.UpsertService(
		maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.79"), Port: 53, Proto: maps.ProtoUDP},
		maps.Service{ID: 79}, []maps.Backend{{IP: c.ip, Port: 5353}}))
	nsRun(t, c.node.ns, "ip", "link", "set", c.hostIf, "mtu", "1000")
	nsRun(t, c.ns, "ip", "link", "set", "eth0", "mtu", "1000")
	l.setFlags(a, maps.EndpointIngressEnforced)

	conn, err := dial(a.ns, "udp4", "10.96.0.79:53", "", time.Second)
	require.NoError(t, err)
	defer conn.Close()
	raw, err := conn.(*net.UDPConn).SyscallConn()
	require.NoError(t, err)
	mtu := func() int {
		v := 0
		require.NoError(t, raw.Control(func(fd uintptr) {
			v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU)
		}))
		require.NoError(t, err)
		return v
	}
	require.NoError(t, raw.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO)
	}))
	require.NoError(t, err)
	require.Equal(t, 1500, mtu())
	_, err = conn.Write(make([]byte, 1400))
	require.NoError(t, err)
	deadline := time.Now().Add(2 * time.Second)
	for mtu() == 1500 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, 1000, mtu(), "the fragmentation needed of the narrowed path must reach the client's socket")
}
