//go:build datapath

package loader

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
	fe "github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Issue 11, semantics: global DROP event limit, conntrack lifetimes, node
// traffic, NodePort state apart from pod flows; real packets through the lab.

// bootSecond is the current second of CLOCK_BOOTTIME (the datapath's
// bpf_ktime_get_boot_ns), the window of the node-wide DROP event budget.
func bootSecond(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts))
	return ts.Sec
}

// floodUDP sends one datagram from netns ns to ip on each port in
// [first, first+n), paced so that no queue on the way drops any.
func floodUDP(t *testing.T, ns, ip string, first, n int) {
	t.Helper()
	require.NoError(t, inNS(ns, func() error {
		pc, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer pc.Close()
		dst := net.ParseIP(ip)
		for i := 0; i < n; i++ {
			if _, err := pc.WriteTo([]byte("flood"), &net.UDPAddr{IP: dst, Port: first + i}); err != nil {
				return err
			}
			if i%50 == 49 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	}))
}

// A random-port flood (every packet its own flow, so the per-flow limit lets
// each through) is reported with at most sl_config's drop_events_per_sec
// DROP events per second on the node, while every dropped packet is counted
// by its reason and every event left out by the suppressed-events counter.
func TestDropEventsLimitedNodeWide(t *testing.T) {
	const limit, n = 100, 3000
	l := newLab(t)
	b := l.pods["b"]
	require.NoError(t, l.n1.dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{l.n1.ip}, NetdevIfindex: uint32(l.n1.eth0), DropEventsPerSec: limit}))
	l.setFlags(b, maps.EndpointIngressEnforced) // default deny, no allow
	nsRun(t, l.extNS, "ip", "route", "add", "10.244.1.0/24", "via", node1IP)
	before, err := l.n1.dp.Maps.ReadCounters()
	require.NoError(t, err)

	start := bootSecond(t)
	floodUDP(t, l.extNS, b.ip.String(), 20000, n)
	windows := bootSecond(t) - start + 1

	isFlood := func(e fe.Event) bool {
		return e.Type == fe.TypeDrop && e.Dst == b.ip && e.DstPort >= 20000 && e.DstPort < 20000+n
	}
	var c maps.Counters
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err = l.n1.dp.Maps.ReadCounters()
		require.NoError(t, err)
		dropped := c.Drops[uint8(fe.DropPolicyDenied)] - before.Drops[uint8(fe.DropPolicyDenied)]
		events := uint64(len(l.n1.distinct(isFlood)))
		if dropped == n && events+c.DropEventsSuppressed-before.DropEventsSuppressed == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the flood of %d packets: %d counted POLICY_DENIED, %d DROP events, %d events suppressed",
				n, dropped, events, c.DropEventsSuppressed-before.DropEventsSuppressed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	events := len(l.n1.distinct(isFlood))
	t.Logf("%d packets over %d second window(s): %d DROP events, %d suppressed", n, windows, events, c.DropEventsSuppressed-before.DropEventsSuppressed)
	require.LessOrEqual(t, events, limit*int(windows), "DROP events over the node-wide limit")
	require.GreaterOrEqual(t, events, limit, "the limit's worth of DROP events is still reported")
	require.Zero(t, c.RingbufReserveFailed-before.RingbufReserveFailed)
}

// Node traffic: traffic from the pod's own node is always allowed, and only
// from the node's own addresses (sl_config); egress to the local node follows
// the same rule. A packet from the node's network with the node's address is
// forged (dropped at the node device, INVALID_SOURCE_IP), and an address the
// ipcache maps to the host that is not one of the node's addresses is world.
func TestHostIdentityOnlyForNodeOwnAddresses(t *testing.T) {
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	got := udpRecorder(t, b.ns, ":6010")
	l.setFlags(b, maps.EndpointIngressEnforced) // default deny, no allow
	l.setFlags(a, maps.EndpointEgressEnforced)  // default deny, no allow

	// from the node itself (its own address): allowed into the default-deny pod
	sendUDP(t, l.n1.ns, &net.UDPAddr{IP: net.ParseIP(node1IP)}, b.ip.String()+":6010", "from-node", 0)
	require.True(t, received(got, "from-node", 2*time.Second), "the node's own traffic is always allowed")

	// the node's address forged by a host on the node's network (on-link to node 1's device)
	nsRun(t, l.extNS, "ip", "addr", "add", node1IP+"/32", "dev", "lo")
	nsRun(t, l.extNS, "ip", "route", "add", "10.244.1.0/24", "dev", "eth0", "src", node1IP)
	nsRun(t, l.extNS, "ip", "neigh", "replace", b.ip.String(), "lladdr", macIn(t, l.n1.ns, "eth0"), "dev", "eth0", "nud", "permanent")
	sendUDP(t, l.extNS, &net.UDPAddr{IP: net.ParseIP(node1IP)}, b.ip.String()+":6010", "forged-node", 0)
	assert.False(t, received(got, "forged-node", time.Second), "the node's address from the node network is forged")

	// an address the ipcache calls host that is not one of the node's addresses (a node address
	// sl_config does not hold): world, default-denied
	require.NoError(t, l.n1.dp.Maps.UpsertIPCache(netip.MustParsePrefix("10.99.0.7/32"), maps.IdentityHost))
	nsRun(t, l.n1.ns, "ip", "addr", "add", "10.99.0.7/32", "dev", "lo")
	sendUDP(t, l.n1.ns, &net.UDPAddr{IP: net.ParseIP("10.99.0.7")}, b.ip.String()+":6010", "not-node", 0)
	assert.False(t, received(got, "not-node", time.Second), "a non-node address never gets the host identity")

	// egress from the default-deny pod a: to its own node allowed, to the other node denied
	nodeGot := udpRecorder(t, l.n1.ns, node1IP+":6011")
	otherGot := udpRecorder(t, l.n2.ns, node2IP+":6011")
	sendUDP(t, a.ns, nil, node1IP+":6011", "to-node", 0)
	assert.True(t, received(nodeGot, "to-node", 2*time.Second), "egress to the pod's own node is always allowed")
	sendUDP(t, a.ns, nil, node2IP+":6011", "to-other-node", 0)
	assert.False(t, received(otherGot, "to-other-node", time.Second), "egress to another node follows policy")

	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop },
		ev{Type: fe.TypeDrop, Verdict: fe.VerdictDropped, Reason: fe.DropInvalidSourceIP, Obs: fe.ObsFromNetdev,
			Dir: fe.DirectionIngress, Proto: udp, Src: node1IP, Dst: "10.244.1.11", DstPort: 6010,
			OrigDst: "10.244.1.11", OrigDstPort: 6010, SrcID: maps.IdentityHost, DstID: 257},
		newEv(fe.ObsToContainer, udp, "10.99.0.7", "10.244.1.11", 6010, maps.IdentityWorld, 257).drop(fe.DropPolicyDenied),
		newEv(fe.ObsFromContainer, udp, "10.244.1.10", node2IP, 6011, 256, maps.IdentityRemoteNode).drop(fe.DropPolicyDenied))
}

// ageCT moves the timestamps of every sl_ct entry of node n that involves
// port (as source or destination port) back by d, as if the flow had been
// idle that much longer.
func ageCT(t *testing.T, n *node, port uint16, d time.Duration) int {
	t.Helper()
	var k bpfobj.SlSlCtKey
	var v bpfobj.SlSlCtEntry
	aged := map[bpfobj.SlSlCtKey]bpfobj.SlSlCtEntry{}
	it := n.dp.Maps.CT.Iterate()
	for it.Next(&k, &v) {
		if maps.Ntohs(k.Sport) == port || maps.Ntohs(k.Dport) == port {
			v.LastSeenNs -= uint64(d)
			v.CreatedNs -= uint64(d)
			aged[k] = v
		}
	}
	require.NoError(t, it.Err())
	for k, v := range aged {
		require.NoError(t, n.dp.Maps.CT.Put(&k, &v))
	}
	return len(aged)
}

// ctEntriesWith counts node n's sl_ct entries involving port.
func ctEntriesWith(t *testing.T, n *node, port uint16) int {
	t.Helper()
	c := 0
	require.NoError(t, n.dp.Maps.IterateCT(func(k maps.CTKey, _ maps.CTEntry) bool {
		if k.SrcPort == port || k.DstPort == port {
			c++
		}
		return true
	}))
	return c
}

// Conntrack lifetimes: real flows (an open TCP connection, a closed one, a
// SYN nobody answers, a UDP exchange) leave real entries; aged by rewriting
// their timestamps, the agent's GC keeps or removes each by its lifetime
// (maps.DefaultCTLifetimes: TCP established 6 h, SYN 60 s, closing 10 s,
// non-TCP 60 s), and the open connection still works after 2 minutes idle.
func TestConntrackLifetimesByProtocolAndState(t *testing.T) {
	l := newLab(t)
	a := l.pods["a"]
	serveTCP(t, l.pods["b"].ns, "b", ":8080")
	serveUDP(t, l.pods["b"].ns, "b", ":5353")
	lifetimes := maps.DefaultCTLifetimes()
	gc := func() {
		_, err := l.n1.dp.Maps.GCConntrack(t.Context(), lifetimes)
		require.NoError(t, err)
	}

	open, err := dial(a.ns, "tcp4", "10.244.1.11:8080", "", 3*time.Second)
	require.NoError(t, err)
	defer open.Close()
	_, err = ask(open, "one")
	require.NoError(t, err)
	openPort := uint16(open.LocalAddr().(*net.TCPAddr).Port)

	closed, err := dial(a.ns, "tcp4", "10.244.1.11:8080", "", 3*time.Second)
	require.NoError(t, err)
	_, err = ask(closed, "one")
	require.NoError(t, err)
	closedPort := uint16(closed.LocalAddr().(*net.TCPAddr).Port)
	require.NoError(t, closed.Close()) // FIN from a, then the server's FIN
	time.Sleep(200 * time.Millisecond)

	// a SYN that nobody answers (no pod at that address on node 2)
	_, err = dial(a.ns, "tcp4", "10.244.2.99:8081", "", 300*time.Millisecond)
	require.Error(t, err)

	_, err = udpRoundTrip(a.ns, "10.244.1.11:5353", "u")
	require.NoError(t, err)

	for _, p := range []uint16{openPort, closedPort, 8081, 5353} {
		require.NotZero(t, ctEntriesWith(t, l.n1, p), "entries of port %d", p)
	}

	// 15 s idle: only the closed connection is over its lifetime
	for _, p := range []uint16{openPort, closedPort, 8081, 5353} {
		ageCT(t, l.n1, p, 15*time.Second)
	}
	gc()
	assert.Zero(t, ctEntriesWith(t, l.n1, closedPort), "a closed TCP connection lives 10 s idle")
	assert.NotZero(t, ctEntriesWith(t, l.n1, 8081), "a SYN-only TCP flow lives 60 s idle")
	assert.NotZero(t, ctEntriesWith(t, l.n1, 5353), "a UDP flow lives 60 s idle")

	// 2 min idle: the SYN-only flow and the UDP flow go, the open connection stays and works
	for _, p := range []uint16{openPort, 8081, 5353} {
		ageCT(t, l.n1, p, 2*time.Minute)
	}
	gc()
	assert.Zero(t, ctEntriesWith(t, l.n1, 8081), "a SYN-only TCP flow lives 60 s idle")
	assert.Zero(t, ctEntriesWith(t, l.n1, 5353), "a UDP flow lives 60 s idle")
	assert.Equal(t, 4, ctEntriesWith(t, l.n1, openPort), "an established TCP connection lives 6 h idle")
	got, err := ask(open, "two")
	require.NoError(t, err)
	assert.Equal(t, "b 10.244.1.10 two", got)

	// idle past its lifetime (6 h 1 min; on a machine up for less than that, boot-time stamps
	// cannot go back so far, and the lifetime is set to 5 min instead): the connection's entries go
	age := 6*time.Hour + time.Minute
	if now, err := maps.BootTimeNs(); err == nil && now < uint64(age+time.Minute) {
		lifetimes.TCPEstablished, age = 5*time.Minute, 6*time.Minute
	}
	ageCT(t, l.n1, openPort, age)
	gc()
	assert.Zero(t, ctEntriesWith(t, l.n1, openPort), "an established TCP connection idle past its lifetime (%s) is removed", lifetimes.TCPEstablished)
}

// floodNodePortUDP sends n UDP datagrams with checksum 0 from netns ns to
// dst:port through a raw socket, each from its own (source address, source
// port) in 10.200.0.0/16, paced a little.
func floodNodePortUDP(t *testing.T, ns, dst string, port uint16, n int) {
	t.Helper()
	d := netip.MustParseAddr(dst).As4()
	require.NoError(t, inNS(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: d}
		pkt := make([]byte, 20+8+4)
		for i := 0; i < n; i++ {
			src := [4]byte{10, 200, byte(i >> 14), byte(i >> 6)}
			sport := uint16(1024 + i%64*512 + i%512) // distinct per i within its address
			ip := pkt[:20]
			ip[0], ip[1] = 0x45, 0
			ip[2], ip[3] = byte(len(pkt)>>8), byte(len(pkt))
			ip[4], ip[5], ip[6], ip[7] = 0, 0, 0x40, 0 // DF
			ip[8], ip[9] = 64, byte(unix.IPPROTO_UDP)
			ip[10], ip[11] = 0, 0 // the kernel fills the checksum
			copy(ip[12:16], src[:])
			copy(ip[16:20], d[:])
			udp := pkt[20:28]
			udp[0], udp[1] = byte(sport>>8), byte(sport)
			udp[2], udp[3] = byte(port>>8), byte(port)
			udp[4], udp[5] = 0, 12
			udp[6], udp[7] = 0, 0 // no checksum
			copy(pkt[28:], "syn!")
			if err := unix.Sendto(fd, pkt, 0, to); err != nil {
				return err
			}
			if i%200 == 199 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	}))
}

// NodePort state does not evict pod flows: a flood of distinct tuples
// towards a NodePort (local backend, allowed by its policy: three conntrack
// entries per datagram, more than sl_ct holds) fills only sl_ct_nodeport; the
// established pod-to-pod connection keeps its entries in sl_ct, and its
// replies, which only those entries let out of the egress-isolated server,
// still pass.
func TestNodePortFloodDoesNotEvictPodFlows(t *testing.T) {
	const n = 200000
	l := newLab(t)
	a, b := l.pods["a"], l.pods["b"]
	serveTCP(t, b.ns, "b", ":8080")
	require.NoError(t, l.n1.dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{l.n1.ip}, NetdevIfindex: uint32(l.n1.eth0), EventLevel: maps.EventsNone}))
	require.NoError(t, l.n1.dp.Maps.UpsertService(maps.ServiceKey{Port: 30053, Proto: maps.ProtoUDP, Scope: maps.ScopeNodePort},
		maps.Service{ID: 21}, []maps.Backend{{IP: b.ip, Port: 5353}}))
	allowIngress(t, b, a.identity, maps.ProtoTCP, 8080, 51)
	allowIngress(t, b, maps.IdentityWorld, maps.ProtoUDP, 5353, 52)
	l.setFlags(b, maps.EndpointIngressEnforced|maps.EndpointEgressEnforced) // b answers only through conntrack

	conn, err := dial(a.ns, "tcp4", b.ip.String()+":8080", "", 3*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	got, err := ask(conn, "before")
	require.NoError(t, err)
	require.Equal(t, "b 10.244.1.10 before", got)
	cport := uint16(conn.LocalAddr().(*net.TCPAddr).Port)
	podFlow := []maps.CTKey{
		{Src: a.ip, Dst: b.ip, SrcPort: cport, DstPort: 8080, Proto: maps.ProtoTCP, Scope: maps.CTEgress},
		{Src: b.ip, Dst: a.ip, SrcPort: 8080, DstPort: cport, Proto: maps.ProtoTCP, Scope: maps.CTIngress},
		{Src: a.ip, Dst: b.ip, SrcPort: cport, DstPort: 8080, Proto: maps.ProtoTCP, Scope: maps.CTIngress},
		{Src: b.ip, Dst: a.ip, SrcPort: 8080, DstPort: cport, Proto: maps.ProtoTCP, Scope: maps.CTEgress},
	}
	for _, k := range podFlow {
		_, err := l.n1.dp.Maps.LookupCT(k)
		require.NoError(t, err, "the pod flow's entry %+v", k)
	}
	before, err := l.n1.dp.Maps.ReadCounters()
	require.NoError(t, err)

	floodNodePortUDP(t, l.extNS, node1IP, 30053, n)

	after, err := l.n1.dp.Maps.ReadCounters()
	require.NoError(t, err)
	created := after.CTNew - before.CTNew
	t.Logf("%d NodePort datagrams sent: %d conntrack flows created", n, created)
	require.Greater(t, created, uint64(262144/3), "the flood must create more state than sl_ct holds")
	for _, k := range podFlow {
		_, err := l.n1.dp.Maps.LookupCT(k)
		assert.NoError(t, err, "the established pod flow's entry %+v survives the NodePort flood", k)
	}
	got, err = ask(conn, "after")
	require.NoError(t, err, "the established pod flow still passes")
	require.Equal(t, "b 10.244.1.10 after", got)
}

// Egress to the pod's own node under ClusterNetworkPolicy: NetworkPolicy always allows the own
// node, but the Admin and Baseline tiers decide it like any other peer (the upstream
// CNP{Admin,Baseline}TierEgressNodePeers tests deny egress to a hostNetwork pod on the pod's own
// node). Ingress from the node stays allowed: ClusterNetworkPolicy has no ingress node peer.
func TestTiersDecideEgressToTheOwnNode(t *testing.T) {
	l := newLab(t)
	a := l.pods["a"]
	toNode := udpRecorder(t, l.n1.ns, node1IP+":6012")
	nodeCIDR := func(h maps.TierHit, baseline bool) {
		v := maps.PolicyValue{Admin: h}
		if baseline {
			v = maps.PolicyValue{Baseline: h}
		}
		require.NoError(t, l.n1.dp.Maps.UpsertCIDRPolicies([]maps.CIDRPolicyEntry{{
			Key:   maps.CIDRPolicyKey{EpID: uint32(a.ifindex), Dir: maps.Egress, Prefix: netip.MustParsePrefix(node1IP + "/32")},
			Value: v,
		}}))
	}
	send := func(payload string) bool {
		sendUDP(t, a.ns, nil, node1IP+":6012", payload, 0)
		return received(toNode, payload, 2*time.Second)
	}

	// Admin Deny to the node: final, even though a NetworkPolicy selects the pod
	l.setFlags(a, maps.EndpointEgressEnforced|maps.EndpointEgressTiers)
	nodeCIDR(maps.TierHit{Prec: 5, PolicyID: 70, Action: maps.CNPDeny}, false)
	assert.False(t, send("admin-deny"), "an Admin Deny of the own node is final")

	// Admin Pass: the NetworkPolicy tier allows the own node, as without tiers
	nodeCIDR(maps.TierHit{Prec: 5, PolicyID: 71, Action: maps.CNPPass}, false)
	assert.True(t, send("admin-pass"), "after a Pass, NetworkPolicy allows the own node")

	// Baseline Deny while a NetworkPolicy selects the pod: the baseline is not consulted
	nodeCIDR(maps.TierHit{Prec: 5, PolicyID: 72, Action: maps.CNPDeny}, true)
	assert.True(t, send("baseline-np"), "the Baseline is not consulted where a NetworkPolicy selects the pod")

	// Baseline Deny where no NetworkPolicy selects the pod: denied
	l.setFlags(a, maps.EndpointEgressTiers)
	assert.False(t, send("baseline-deny"), "a Baseline Deny of the own node applies where no NetworkPolicy selects")

	// from the node into the pod: allowed whatever the tiers say
	got := udpRecorder(t, a.ns, ":6013")
	l.setFlags(a, maps.EndpointIngressEnforced|maps.EndpointIngressTiers|maps.EndpointEgressTiers)
	sendUDP(t, l.n1.ns, &net.UDPAddr{IP: net.ParseIP(node1IP)}, a.ip.String()+":6013", "from-node", 0)
	assert.True(t, received(got, "from-node", 2*time.Second), "the node's own traffic into the pod is always allowed")

	requireEvents(t, l.n1, func(e fe.Event) bool { return e.Type == fe.TypeDrop && e.DstPort == 6012 },
		newEv(fe.ObsFromContainer, udp, "10.244.1.10", node1IP, 6012, 256, maps.IdentityHost).drop(fe.DropPolicyDenied).policy(70),
		newEv(fe.ObsFromContainer, udp, "10.244.1.10", node1IP, 6012, 256, maps.IdentityHost).drop(fe.DropPolicyDenied).policy(72))
}
