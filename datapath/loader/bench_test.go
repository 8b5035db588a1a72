//go:build datapath

package loader

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	fe "github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/require"
)

// Per-packet cost is measured with BPF_PROG_TEST_RUN (prog.Benchmark): the
// kernel runs sl_from_container b.N times on one crafted packet. In test
// runs skb->ifindex is the loopback device (1), so the endpoint is keyed 1.

var (
	benchSrc = netip.MustParseAddr("10.244.1.10")
	benchDst = netip.MustParseAddr("10.244.1.11")
	benchVIP = netip.MustParseAddr("10.96.0.10")
)

// tcpPacket builds Ethernet+IPv4+TCP with the given flags.
func tcpPacket(src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
	pkt := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(pkt[12:], 0x0800)
	ip := pkt[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8] = 64
	ip[9] = 6
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	th := ip[20:]
	binary.BigEndian.PutUint16(th[0:], sport)
	binary.BigEndian.PutUint16(th[2:], dport)
	th[12] = 5 << 4
	th[13] = flags
	return pkt
}

func benchDatapath(b *testing.B) *Datapath {
	b.Helper()
	dir := fmt.Sprintf("/sys/fs/bpf/slbench-%d", os.Getpid())
	_ = os.RemoveAll(dir)
	dp, err := Load(context.Background(), Options{PinDir: dir, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	b.Cleanup(func() { dp.Close(); dp.Unpin() })
	require.NoError(b, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.77.1")}, EventLevel: maps.EventsNone}))
	require.NoError(b, dp.Maps.UpsertIPCacheEntries([]maps.IPCacheEntry{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Identity: maps.IdentityWorld},
		{Prefix: netip.PrefixFrom(benchSrc, 32), Identity: 256},
		{Prefix: netip.PrefixFrom(benchDst, 32), Identity: 257},
	}))
	return dp
}

// addEndpoints writes n endpoints; the benchmarked one is ifindex 1.
func addEndpoints(b *testing.B, dp *Datapath, n int, flags maps.EndpointFlags) {
	b.Helper()
	require.NoError(b, dp.Maps.UpsertEndpoint(1, maps.Endpoint{IP: benchSrc, Identity: 256, Flags: flags}))
	for i := 1; i < n; i++ {
		ip := netip.AddrFrom4([4]byte{10, 244, byte(2 + i/250), byte(1 + i%250)})
		require.NoError(b, dp.Maps.UpsertEndpoint(uint32(1000+i), maps.Endpoint{IP: ip, Identity: uint32(300 + i)}))
	}
}

func runBench(b *testing.B, prog *ebpf.Program, pkt []byte, wantRet uint32) {
	b.Helper()
	ret, per, err := prog.Benchmark(pkt, b.N, b.ResetTimer)
	require.NoError(b, err)
	require.Equal(b, wantRet, ret, "program verdict")
	b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
}

const (
	actOK   = 0
	actShot = 2
)

// BenchmarkPolicyNewFlow: every run is a new flow evaluated against egress
// policy (4 identity LPM lookups + 3 CIDR LPM lookups, then the drop path),
// with 10 vs 1,000 entries in sl_policy.
func BenchmarkPolicyNewFlow(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			dp := benchDatapath(b)
			addEndpoints(b, dp, 1, maps.EndpointEgressEnforced)
			var entries []maps.PolicyEntry
			for i := 0; i < n; i++ {
				entries = append(entries, maps.PolicyEntry{
					Key: maps.PolicyKey{EpID: uint32(1 + i%50), PeerID: uint32(256 + i), Dir: maps.Egress, Proto: maps.ProtoTCP,
						Port: uint16(1000 + i), PortPrefixLen: 16},
					Value: maps.PolicyValue{Action: maps.ActionAllow, PolicyID: uint32(i + 1)},
				})
			}
			require.NoError(b, dp.Maps.UpsertPolicies(entries))
			runBench(b, dp.FromContainer(), tcpPacket(benchSrc, benchDst, 40000, 9999, 0x02), actShot)
		})
	}
}

// BenchmarkPolicyNewFlowTiers: BenchmarkPolicyNewFlow for an endpoint with ClusterNetworkPolicy
// rules (SL_EP_EGRESS_TIERS): every sl_policy and sl_cidr_policy lookup is taken and folded, the
// Admin hit (a Pass on the peer) hands on to NetworkPolicy, which denies (no allow for the port).
func BenchmarkPolicyNewFlowTiers(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			dp := benchDatapath(b)
			addEndpoints(b, dp, 1, maps.EndpointEgressEnforced|maps.EndpointEgressTiers)
			var entries []maps.PolicyEntry
			for i := 0; i < n; i++ {
				entries = append(entries, maps.PolicyEntry{
					Key: maps.PolicyKey{EpID: uint32(1 + i%50), PeerID: uint32(256 + i), Dir: maps.Egress, Proto: maps.ProtoTCP,
						Port: uint16(1000 + i), PortPrefixLen: 16},
					Value: maps.PolicyValue{Action: maps.ActionAllow, PolicyID: uint32(i + 1),
						Admin: maps.TierHit{Prec: uint32(10 + i), PolicyID: uint32(5000 + i), Action: maps.CNPAccept}},
				})
			}
			entries = append(entries, maps.PolicyEntry{
				Key:   maps.PolicyKey{EpID: 1, PeerID: 257, Dir: maps.Egress},
				Value: maps.PolicyValue{Admin: maps.TierHit{Prec: 3, PolicyID: 9000, Action: maps.CNPPass}},
			})
			require.NoError(b, dp.Maps.UpsertPolicies(entries))
			runBench(b, dp.FromContainer(), tcpPacket(benchSrc, benchDst, 40000, 9999, 0x02), actShot)
		})
	}
}

// BenchmarkEstablished: conntrack-hit path with 10 vs 1,000 endpoints.
func BenchmarkEstablished(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			dp := benchDatapath(b)
			addEndpoints(b, dp, n, 0)
			pkt := tcpPacket(benchSrc, benchDst, 40000, 8080, 0x10)
			_, err := dp.FromContainer().Run(&ebpf.RunOptions{Data: pkt}) // creates the CT entries
			require.NoError(b, err)
			runBench(b, dp.FromContainer(), pkt, actOK)
		})
	}
}

// BenchmarkServiceNewFlow: every run is a new flow to a ClusterIP: service
// lookup, backend choice, egress policy (denied, so no CT entry is kept),
// with 10 vs 10,000 services.
func BenchmarkServiceNewFlow(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			dp := benchDatapath(b)
			addEndpoints(b, dp, 1, maps.EndpointEgressEnforced)
			for i := 0; i < n; i++ {
				vip := netip.AddrFrom4([4]byte{10, 96, byte(i / 250), byte(10 + i%250)})
				if i == 0 {
					vip = benchVIP
				}
				require.NoError(b, dp.Maps.UpsertService(maps.ServiceKey{VIP: vip, Port: 80, Proto: maps.ProtoTCP},
					maps.Service{ID: uint32(i + 1)}, []maps.Backend{{IP: benchDst, Port: 8080}, {IP: benchDst, Port: 8081}}))
			}
			runBench(b, dp.FromContainer(), tcpPacket(benchSrc, benchVIP, 40000, 80, 0x02), actShot)
		})
	}
}

// BenchmarkRingbufDrain: sl_from_container emits one TRACE event per run
// (event level "all", established flow); one flowevent.Reader decodes them.
// ns/op is the end-to-end time per delivered event.
func BenchmarkRingbufDrain(b *testing.B) {
	dp := benchDatapath(b)
	addEndpoints(b, dp, 1, 0)
	require.NoError(b, dp.Maps.SetConfig(maps.Config{EventLevel: maps.EventsAll}))
	pkt := tcpPacket(benchSrc, benchDst, 40000, 8080, 0x10)
	prog := dp.FromContainer()
	_, err := prog.Run(&ebpf.RunOptions{Data: pkt})
	require.NoError(b, err)

	r, err := fe.NewReader(dp.Maps.Events, fe.ReaderOptions{Counters: dp.Maps.Counters})
	require.NoError(b, err)
	defer r.Close()
	var got atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx, func(e *fe.Event) { got.Add(1) })
	}()
	for got.Load() < 1 { // the NEW/TRACE of the warm-up run
		time.Sleep(time.Millisecond)
	}
	base := got.Load()
	base0 := r.Stats().ReserveFailed

	b.ResetTimer()
	start := time.Now()
	for left := b.N; left > 0; {
		n := min(left, 10000)
		_, err := prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: uint32(n)})
		require.NoError(b, err)
		left -= n
	}
	deadline := time.Now().Add(10 * time.Second)
	for got.Load()-base+r.Stats().ReserveFailed-base0 < uint64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	read := got.Load() - base
	b.ReportMetric(float64(read)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(r.Stats().ReserveFailed-base0), "reserve-failed")
	cancel()
	<-done
}

// ---- real traffic through the netns path -----------------------------------

// iperf3 runs a TCP throughput test from pod a to pod b (same node) and
// returns Gbit/s.
func iperf3(b *testing.B, l *lab, secs int) float64 {
	b.Helper()
	a, pb := l.pods["a"], l.pods["b"]
	srv := exec.Command("ip", "netns", "exec", pb.ns, "iperf3", "-s", "-1", "-p", "5201")
	require.NoError(b, srv.Start())
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var out []byte
	var err error
	for try := 0; try < 20; try++ {
		time.Sleep(100 * time.Millisecond)
		out, err = exec.Command("ip", "netns", "exec", a.ns, "iperf3", "-c", pb.ip.String(), "-p", "5201",
			"-t", fmt.Sprint(secs), "-J").Output()
		if err == nil {
			break
		}
	}
	require.NoError(b, err, "iperf3: %s", out)
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	require.NoError(b, json.NewDecoder(bytes.NewReader(out)).Decode(&res))
	return res.End.SumReceived.BitsPerSecond / 1e9
}

// BenchmarkNetnsPath: pod a -> pod b through the node netns, with our
// programs attached (CT, policy lookup, events) and without.
func BenchmarkNetnsPath(b *testing.B) {
	for _, mode := range []string{"bpf", "nobpf"} {
		b.Run(mode, func(b *testing.B) {
			l := newLab(b)
			a, pb := l.pods["a"], l.pods["b"]
			if mode == "nobpf" {
				for _, p := range []*pod{a, pb} {
					require.NoError(b, inNS(l.n1.ns, func() error { return l.n1.dp.DetachEndpoint(p.ifindex) }))
				}
			}
			// latency: 1-byte ping-pong over one connection
			ln := listenEcho(b, pb.ns)
			defer ln.Close()
			c, err := dial(a.ns, "tcp4", pb.ip.String()+":7000", "", 3*time.Second)
			require.NoError(b, err)
			defer c.Close()
			buf := make([]byte, 1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/roundtrip")
			if b.N > 1000 {
				b.ReportMetric(iperf3(b, l, 3), "Gbit/s")
			}
		})
	}
}

func listenEcho(b *testing.B, ns string) net.Listener {
	var ln net.Listener
	require.NoError(b, inNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", ":7000")
		return err
	}))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln
}
