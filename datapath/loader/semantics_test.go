//go:build datapath

package loader

import (
	"net"
	"net/netip"
	"testing"
	"time"

	fe "github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
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
