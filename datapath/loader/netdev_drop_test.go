//go:build datapath

package loader

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	fe "github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestNetdevFIBFailureIsAReportedDrop: a NodePort packet to a remote backend
// that sl_from_netdev cannot route is dropped through the program's drop exit
// (reason FIB_LOOKUP_FAILED counted, FIB failure counted), not silently. The
// program runs with BPF_PROG_TEST_RUN in a fresh network namespace (no routes).
func TestNetdevFIBFailureIsAReportedDrop(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root (BPF, network namespaces)")
	dir := fmt.Sprintf("/sys/fs/bpf/sltest-fib-%d", os.Getpid())
	_ = os.RemoveAll(dir)
	dp, err := Load(context.Background(), Options{PinDir: dir, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close(); dp.Unpin() })

	node := netip.MustParseAddr("192.168.77.1")
	require.NoError(t, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{node}}))
	require.NoError(t, dp.Maps.UpsertService(maps.ServiceKey{Port: 30080, Proto: maps.ProtoTCP, Scope: maps.ScopeNodePort},
		maps.Service{ID: 1}, []maps.Backend{{IP: netip.MustParseAddr("10.244.9.9"), Port: 8080}}))
	pkt := tcpPacket(netip.MustParseAddr("192.168.77.50"), node, 40000, 30080, 0x02)

	type result struct {
		ret uint32
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread stays in the new namespace and exits with the goroutine (never unlocked).
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("unshare network namespace: %w", err)}
			return
		}
		ret, err := dp.FromNetdev().Run(&ebpf.RunOptions{Data: pkt})
		done <- result{ret, err}
	}()
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, uint32(actShot), r.ret, "program verdict")

	c, err := dp.Maps.ReadCounters()
	require.NoError(t, err)
	require.Equal(t, uint64(1), c.Drops[uint8(fe.DropFIBLookupFailed)], "drops by reason: %v", c.Drops)
	require.Equal(t, uint64(1), c.FIBFailed)
}
