//go:build datapath

package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/require"
)

// cgroup2Root is where this machine mounts the cgroup v2 hierarchy (hybrid: v1 controllers
// elsewhere, docs/ARCHITECTURE.md "Socket LB").
const cgroup2Root = "/sys/fs/cgroup/unified"

// testCgroup creates a cgroup v2 child for the test, moves this test process into it (cgroup v2
// moves whole processes) and moves it back to where it was when the test ends. Only this process
// is in it: the hooks attached there see nothing else of the machine.
func testCgroup(t testing.TB, name string) string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(t, err)
	var home string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			home = filepath.Join(cgroup2Root, p)
		}
	}
	require.NotEmpty(t, home, "no cgroup v2 entry in /proc/self/cgroup")
	dir := filepath.Join(cgroup2Root, name)
	require.NoError(t, os.Mkdir(dir, 0o755))
	pid := []byte(strconv.Itoa(os.Getpid()))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0o644))
	t.Cleanup(func() {
		require.NoError(t, os.WriteFile(filepath.Join(home, "cgroup.procs"), pid, 0o644))
		require.NoError(t, os.Remove(dir))
	})
	return dir
}

// enableSocketLB writes n's config with the socket LB's network namespace (the node's) and
// attaches the hooks to cg.
func enableSocketLB(t testing.TB, n *node, cg string) {
	t.Helper()
	var cookie uint64
	require.NoError(t, inNS(n.ns, func() error {
		var err error
		cookie, err = maps.NetnsCookie()
		return err
	}))
	require.NoError(t, n.dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{n.ip}, NetdevIfindex: uint32(n.eth0),
		PodCIDR: netip.MustParsePrefix(n.podCIDR), SockNetnsCookie: cookie}))
	s, err := n.dp.AttachSocketLB(cg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
}

// The node's own clients (processes in the node's network namespace: host, hostNetwork pods)
// reach ClusterIPs, their own NodePort and UDP services through the socket LB, and see the service
// address as their peer; a frontend without backends refuses at once; a process of the same cgroup
// in another network namespace is not translated.
func TestSocketLBHostClients(t *testing.T) {
	l := newLab(t)
	b, c := l.pods["b"], l.pods["c"]
	serveTCP(t, b.ns, "b", ":8080")
	serveTCP(t, c.ns, "c", ":8080")
	serveUDP(t, c.ns, "c", ":5353")
	m := l.n1.dp.Maps
	svc := func(vip string, port uint16, proto maps.Proto, scope maps.Scope, id uint32, bes ...maps.Backend) {
		require.NoError(t, m.UpsertService(maps.ServiceKey{VIP: netip.MustParseAddr(vip), Port: port, Proto: proto, Scope: scope},
			maps.Service{ID: id}, bes))
	}
	svc("10.96.0.80", 80, maps.ProtoTCP, maps.ScopeClusterIP, 80, maps.Backend{IP: c.ip, Port: 8080})
	svc("10.96.0.81", 80, maps.ProtoTCP, maps.ScopeClusterIP, 81, maps.Backend{IP: b.ip, Port: 8080})
	svc("10.96.0.82", 80, maps.ProtoTCP, maps.ScopeClusterIP, 82)
	svc("10.96.0.83", 53, maps.ProtoUDP, maps.ScopeClusterIP, 83, maps.Backend{IP: c.ip, Port: 5353})
	svc("0.0.0.0", 30090, maps.ProtoTCP, maps.ScopeNodePort, 84, maps.Backend{IP: b.ip, Port: 8080})

	// before the hooks: the node has no route to a ClusterIP
	_, err := dial(l.n1.ns, "tcp4", "10.96.0.80:80", "", time.Second)
	require.Error(t, err, "ClusterIP from the node without the socket LB")

	enableSocketLB(t, l.n1, testCgroup(t, l.prefix+"-socklb"))

	for _, tc := range []struct{ addr, want string }{
		{"10.96.0.80:80", "c " + node1IP + " hello"},    // remote backend
		{"10.96.0.81:80", "b " + node1IP + " hello"},    // local backend
		{node1IP + ":30090", "b " + node1IP + " hello"}, // the node's own NodePort
	} {
		reply, remote := tcpRoundTrip(t, l.n1.ns, tc.addr)
		require.Equal(t, tc.want, reply, tc.addr)
		require.Equal(t, tc.addr, remote, "getpeername gives the service address")
	}

	start := time.Now()
	_, err = dial(l.n1.ns, "tcp4", "10.96.0.82:80", "", 3*time.Second)
	require.True(t, errors.Is(err, syscall.ECONNREFUSED), "no backends: want ECONNREFUSED, got %v", err)
	require.Less(t, time.Since(start), 100*time.Millisecond)

	// UDP: connected (connect4), and unconnected (sendmsg4 / recvmsg4: the reply's source is the service)
	got, err := udpRoundTrip(l.n1.ns, "10.96.0.83:53", "q1")
	require.NoError(t, err)
	require.Equal(t, "c "+node1IP+" q1", got)
	require.NoError(t, inNS(l.n1.ns, func() error {
		pc, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer pc.Close()
		dst := &net.UDPAddr{IP: net.ParseIP("10.96.0.83"), Port: 53}
		if _, err := pc.WriteTo([]byte("q2"), dst); err != nil {
			return err
		}
		_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 256)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != "c "+node1IP+" q2" || from.String() != "10.96.0.83:53" {
			return fmt.Errorf("unconnected UDP: got %q from %s", buf[:n], from)
		}
		return nil
	}))

	// the same process in another network namespace (the external host): not the node's, untouched
	_, err = dial(l.extNS, "tcp4", "10.96.0.80:80", "", time.Second)
	require.True(t, errors.Is(err, syscall.ENETUNREACH), "another netns must not be translated: got %v", err)
	cnt, err := m.ReadCounters()
	require.NoError(t, err)
	require.GreaterOrEqual(t, cnt.SockTranslated, uint64(5))
}
