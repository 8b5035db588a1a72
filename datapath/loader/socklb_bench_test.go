//go:build datapath

package loader

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// BenchmarkSocketLBConnect measures the socket LB's cgroup/connect4 hook (bpf/sock.c) per connect:
// bpf-ns/connect is the program's own run time from the kernel's BPF stats (run_time / run_cnt over
// the benchmark's connects), ns/op one TCP connect + close from the node's network namespace to a
// pod on the node. Cases: a ClusterIP translated by the hook; the pod's address (looked up, not a
// service: passed on); a socket of another network namespace in the same cgroup (scope check only).
func BenchmarkSocketLBConnect(b *testing.B) {
	l := newLab(b)
	bpod := l.pods["b"]
	var srv net.Listener
	require.NoError(b, inNS(bpod.ns, func() error {
		var err error
		srv, err = net.Listen("tcp4", ":8080")
		return err
	}))
	b.Cleanup(func() { srv.Close() })
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	require.NoError(b, l.n1.dp.Maps.UpsertService(maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.90"), Port: 80, Proto: maps.ProtoTCP},
		maps.Service{ID: 90}, []maps.Backend{{IP: bpod.ip, Port: 8080}}))
	enableSocketLB(b, l.n1, testCgroup(b, l.prefix+"-socklb-bench"))
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	require.NoError(b, err)
	b.Cleanup(func() { stats.Close() })
	// another netns on a route to the pod: the external host via node1
	nsRun(b, l.extNS, "ip", "route", "replace", "10.244.1.0/24", "via", node1IP)

	for _, bc := range []struct{ name, ns, addr string }{
		{"clusterip-translated", l.n1.ns, "10.96.0.90:80"},
		{"not-a-service", l.n1.ns, bpod.ip.String() + ":8080"},
		{"other-netns", l.extNS, bpod.ip.String() + ":8080"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			prog := l.n1.dp.SockConnect4()
			before, err := prog.Stats()
			require.NoError(b, err)
			b.ResetTimer()
			require.NoError(b, inNS(bc.ns, func() error {
				d := net.Dialer{Timeout: 2 * time.Second}
				for i := 0; i < b.N; i++ {
					c, err := d.Dial("tcp4", bc.addr)
					if err != nil {
						return err
					}
					c.(*net.TCPConn).SetLinger(0) // RST on close: no TIME_WAIT pile-up over b.N connects
					c.Close()
				}
				return nil
			}))
			b.StopTimer()
			after, err := prog.Stats()
			require.NoError(b, err)
			runs := after.RunCount - before.RunCount
			require.GreaterOrEqual(b, runs, uint64(b.N), "the hook ran on every connect")
			b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/float64(runs), "bpf-ns/connect")
		})
	}
}
