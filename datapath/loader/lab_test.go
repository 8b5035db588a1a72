//go:build datapath

package loader

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
)

// The lab: a "lan" netns with a bridge (the kind docker network), two node
// netns (their eth0 on the bridge), an external host on the bridge, and pod
// netns wired exactly as docs/ARCHITECTURE.md (eth0 /32, 169.254.1.1
// gateway with a permanent neighbour, host veth with a /32 route). Pod
// traffic never touches the root netns.

var labSeq atomic.Uint32

const (
	lanPrefix = "192.168.77."
	ext       = "192.168.77.100"
	node1IP   = "192.168.77.1"
	node2IP   = "192.168.77.2"
)

type pod struct {
	name     string
	ns       string
	ip       netip.Addr
	hostIf   string
	ifindex  int
	identity uint32
	node     *node
}

type node struct {
	name    string
	ns      string
	ip      netip.Addr
	eth0    int
	dp      *Datapath
	reader  *flowevent.Reader
	mu      sync.Mutex
	events  []flowevent.Event
	podCIDR string
}

type lab struct {
	t      testing.TB
	mode   AttachMode
	prefix string
	lanNS  string
	extNS  string
	n1, n2 *node
	pods   map[string]*pod
}

func run(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
}

func nsRun(t testing.TB, ns string, args ...string) {
	t.Helper()
	run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// inNS runs fn on an OS thread switched into netns name.
func inNS(name string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("cannot return to the original netns: %v", err))
		}
	}()
	return fn()
}

func ifindexIn(t testing.TB, ns, ifname string) int {
	t.Helper()
	var idx int
	require.NoError(t, inNS(ns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("interface %s in %s: %w", ifname, ns, err)
		}
		idx = ifc.Index
		return nil
	}))
	return idx
}

func macIn(t testing.TB, ns, ifname string) string {
	t.Helper()
	var mac string
	require.NoError(t, inNS(ns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifc.HardwareAddr.String()
		return nil
	}))
	return mac
}

func newLab(t testing.TB) *lab { return newLabMode(t, AttachAuto) }

// newLabMode builds the lab attaching programs in the given mode.
func newLabMode(t testing.TB, mode AttachMode) *lab {
	t.Helper()
	p := fmt.Sprintf("sl%d%d", os.Getpid()%10000, labSeq.Add(1))
	l := &lab{t: t, mode: mode, prefix: p, lanNS: p + "-lan", extNS: p + "-ext", pods: map[string]*pod{}}
	var created []string
	t.Cleanup(func() {
		for _, n := range []*node{l.n1, l.n2} {
			if n != nil && n.dp != nil {
				if n.reader != nil {
					n.reader.Close()
				}
				n.dp.Close()
				n.dp.Unpin()
			}
		}
		for i := len(created) - 1; i >= 0; i-- {
			_ = exec.Command("ip", "netns", "del", created[i]).Run()
		}
	})
	addNS := func(name string) {
		run(t, "ip", "netns", "add", name)
		created = append(created, name)
		nsRun(t, name, "ip", "link", "set", "lo", "up")
	}
	addNS(l.lanNS)
	nsRun(t, l.lanNS, "ip", "link", "add", "br0", "type", "bridge")
	nsRun(t, l.lanNS, "ip", "link", "set", "br0", "up")

	plug := func(ns, short, ip string) {
		lanIf := p + short
		nsRun(t, l.lanNS, "ip", "link", "add", lanIf, "type", "veth", "peer", "name", "eth0", "netns", ns)
		nsRun(t, l.lanNS, "ip", "link", "set", lanIf, "master", "br0", "up")
		nsRun(t, ns, "ip", "addr", "add", ip+"/24", "dev", "eth0")
		nsRun(t, ns, "ip", "link", "set", "eth0", "up")
	}
	addNS(l.extNS)
	plug(l.extNS, "x", ext)

	mkNode := func(name, ip, cidr string) *node {
		n := &node{name: name, ns: p + "-" + name, ip: netip.MustParseAddr(ip), podCIDR: cidr}
		addNS(n.ns)
		plug(n.ns, name, ip)
		for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"} {
			nsRun(t, n.ns, "sysctl", "-qw", s)
		}
		n.eth0 = ifindexIn(t, n.ns, "eth0")
		return n
	}
	l.n1 = mkNode("n1", node1IP, "10.244.1.0/24")
	l.n2 = mkNode("n2", node2IP, "10.244.2.0/24")
	nsRun(t, l.n1.ns, "ip", "route", "replace", l.n2.podCIDR, "via", node2IP)
	nsRun(t, l.n2.ns, "ip", "route", "replace", l.n1.podCIDR, "via", node1IP)

	for _, n := range []*node{l.n1, l.n2} {
		l.loadDatapath(n)
	}
	l.addPod(l.n1, "a", "10.244.1.10", 256)
	l.addPod(l.n1, "b", "10.244.1.11", 257)
	l.addPod(l.n2, "c", "10.244.2.10", 258)
	return l
}

func (l *lab) loadDatapath(n *node) {
	t := l.t
	dp, err := Load(context.Background(), Options{PinDir: "/sys/fs/bpf/" + n.ns, Mode: l.mode, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	n.dp = dp
	require.NoError(t, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{n.ip}, NetdevIfindex: uint32(n.eth0)}))
	other := l.n2
	if n == l.n2 {
		other = l.n1
	}
	require.NoError(t, dp.Maps.UpsertIPCacheEntries([]maps.IPCacheEntry{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Identity: maps.IdentityWorld},
		{Prefix: netip.PrefixFrom(n.ip, 32), Identity: maps.IdentityHost},
		{Prefix: netip.PrefixFrom(other.ip, 32), Identity: maps.IdentityRemoteNode},
	}))
	require.NoError(t, inNS(n.ns, func() error { return dp.AttachNetdev(n.eth0) }))
	r, err := flowevent.NewReader(dp.Maps.Events, flowevent.ReaderOptions{Counters: dp.Maps.Counters})
	require.NoError(t, err)
	n.reader = r
	go func() {
		_ = r.Run(context.Background(), func(e *flowevent.Event) {
			n.mu.Lock()
			n.events = append(n.events, *e)
			n.mu.Unlock()
		})
	}()
}

func (l *lab) addPod(n *node, name, ip string, identity uint32) *pod {
	t := l.t
	p := &pod{name: name, ns: l.prefix + "-p" + name, ip: netip.MustParseAddr(ip), hostIf: l.prefix + "h" + name,
		identity: identity, node: n}
	run(t, "ip", "netns", "add", p.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.ns).Run() })
	nsRun(t, p.ns, "ip", "link", "set", "lo", "up")
	nsRun(t, n.ns, "ip", "link", "add", p.hostIf, "type", "veth", "peer", "name", "eth0", "netns", p.ns)
	nsRun(t, n.ns, "ip", "link", "set", p.hostIf, "up")
	nsRun(t, n.ns, "sysctl", "-qw", "net.ipv4.conf."+p.hostIf+".rp_filter=0")
	nsRun(t, p.ns, "ip", "addr", "add", ip+"/32", "dev", "eth0")
	nsRun(t, p.ns, "ip", "link", "set", "eth0", "up")
	nsRun(t, p.ns, "ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	nsRun(t, p.ns, "ip", "route", "add", "default", "via", "169.254.1.1")
	nsRun(t, p.ns, "ip", "neigh", "replace", "169.254.1.1", "lladdr", macIn(t, n.ns, p.hostIf), "dev", "eth0", "nud", "permanent")
	nsRun(t, n.ns, "ip", "route", "replace", ip+"/32", "dev", p.hostIf, "scope", "link")
	p.ifindex = ifindexIn(t, n.ns, p.hostIf)

	require.NoError(t, n.dp.Maps.UpsertEndpoint(uint32(p.ifindex), maps.Endpoint{IP: p.ip, Identity: identity}))
	require.NoError(t, inNS(n.ns, func() error { return n.dp.AttachEndpoint(p.ifindex) }))
	for _, nn := range []*node{l.n1, l.n2} {
		require.NoError(t, nn.dp.Maps.UpsertIPCache(netip.PrefixFrom(p.ip, 32), identity))
	}
	l.pods[name] = p
	return p
}

// setFlags rewrites a pod's endpoint flags and, as the agent does on every
// policy change of an endpoint, bumps its policy revision.
func (l *lab) setFlags(p *pod, f maps.EndpointFlags) {
	cur, err := p.node.dp.Maps.LookupEndpoint(uint32(p.ifindex))
	require.NoError(l.t, err)
	require.NoError(l.t, p.node.dp.Maps.UpsertEndpoint(uint32(p.ifindex),
		maps.Endpoint{IP: p.ip, Identity: p.identity, Flags: f, PolicyRevision: cur.PolicyRevision + 1}))
}

// ---- servers and clients --------------------------------------------------

// serveTCP runs a line server in netns ns: for each line it answers
// "<name> <remote ip> <line>". Stopped at test end.
func serveTCP(t *testing.T, ns, name, addr string) {
	t.Helper()
	var ln net.Listener
	require.NoError(t, inNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				raddr := c.RemoteAddr().(*net.TCPAddr).IP.String()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintf(c, "%s %s %s\n", name, raddr, sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// listenUDPIn opens a UDP socket on addr inside the network namespace ns, closed when the test ends.
func listenUDPIn(t *testing.T, ns, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	require.NoError(t, inNS(ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}))
	t.Cleanup(func() { pc.Close() })
	return pc
}

// serveUDP answers each datagram with "<name> <remote ip> <payload>".
func serveUDP(t *testing.T, ns, name, addr string) {
	t.Helper()
	pc := listenUDPIn(t, ns, addr)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ua := from.(*net.UDPAddr)
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s %s", name, ua.IP, buf[:n])), from)
		}
	}()
}

// dial connects from netns ns (optionally from local address laddr).
func dial(ns, network, addr, laddr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNS(ns, func() error {
		d := net.Dialer{Timeout: timeout}
		if laddr != "" {
			ip := net.ParseIP(laddr)
			if network == "udp4" {
				d.LocalAddr = &net.UDPAddr{IP: ip}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: ip}
			}
		}
		var err error
		c, err = d.Dial(network, addr)
		return err
	})
	return c, err
}

// ask sends one line and returns the answer line.
func ask(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	s, err := r.ReadString('\n')
	return strings.TrimSpace(s), err
}

// tcpRoundTrip dials, asks one line and closes (client closes first).
func tcpRoundTrip(t *testing.T, ns, addr string) (reply string, remote string) {
	t.Helper()
	c, err := dial(ns, "tcp4", addr, "", 3*time.Second)
	require.NoError(t, err, "dial %s from %s", addr, ns)
	reply, err = ask(c, "hello")
	require.NoError(t, err, "round trip to %s from %s", addr, ns)
	remote = c.RemoteAddr().String()
	require.NoError(t, c.Close())
	return reply, remote
}

// requireBlocked asserts a TCP dial times out (packets dropped).
func requireBlocked(t *testing.T, ns, addr string) {
	t.Helper()
	c, err := dial(ns, "tcp4", addr, "", 1500*time.Millisecond)
	if err == nil {
		c.Close()
	}
	require.Error(t, err, "dial %s from %s must fail", addr, ns)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "dial %s from %s must time out (dropped), got %v", addr, ns, err)
}

func udpRoundTrip(ns, addr, payload string) (string, error) {
	c, err := dial(ns, "udp4", addr, "", time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for try := 0; try < 3; try++ {
		if _, err := c.Write([]byte(payload)); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return "", err
		}
	}
	return "", fmt.Errorf("udp %s: no answer", addr)
}

// ---- flow event assertions ------------------------------------------------

// ev is the part of a flow event a test pins down (ephemeral ports, times
// and counters vary).
type ev struct {
	Type        flowevent.Type
	Verdict     flowevent.Verdict
	Reason      flowevent.DropReason
	Obs         flowevent.ObsPoint
	Dir         flowevent.Direction
	Proto       flowevent.Proto
	Src, Dst    string
	DstPort     uint16
	OrigDst     string
	OrigDstPort uint16
	Reply       bool
	SrcID       uint32
	DstID       uint32
	PolicyID    uint32
}

func project(e flowevent.Event) ev {
	return ev{
		Type: e.Type, Verdict: e.Verdict, Reason: e.DropReason, Obs: e.ObsPoint, Dir: e.Direction, Proto: e.Proto,
		Src: e.Src.String(), Dst: e.Dst.String(), DstPort: e.DstPort, OrigDst: e.OrigDst.String(),
		OrigDstPort: e.OrigDstPort, Reply: e.IsReply, SrcID: e.SrcIdentity, DstID: e.DstIdentity, PolicyID: e.PolicyID,
	}
}

func (n *node) distinct(filter func(flowevent.Event) bool) map[ev]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[ev]int{}
	for _, e := range n.events {
		if e.Type != flowevent.TypeTrace && filter(e) {
			out[project(e)]++
		}
	}
	return out
}

func (n *node) dump(filter func(flowevent.Event) bool) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var sb strings.Builder
	for _, e := range n.events {
		if filter(e) {
			sb.WriteString("  " + e.String() + "\n")
		}
	}
	return sb.String()
}

// requireEvents waits until the node's distinct events passing filter are
// exactly want (as a set).
func requireEvents(t *testing.T, n *node, filter func(flowevent.Event) bool, want ...ev) {
	t.Helper()
	wantSet := map[ev]bool{}
	for _, w := range want {
		wantSet[w] = true
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := n.distinct(filter)
		ok := len(got) == len(wantSet)
		for w := range wantSet {
			if got[w] == 0 {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var gotList []string
			for g := range got {
				gotList = append(gotList, fmt.Sprintf("%+v", g))
			}
			var wantList []string
			for w := range wantSet {
				wantList = append(wantList, fmt.Sprintf("%+v", w))
			}
			t.Fatalf("node %s flow events mismatch\nwant:\n  %s\ngot:\n  %s\nall events:\n%s", n.name,
				strings.Join(wantList, "\n  "), strings.Join(gotList, "\n  "), n.dump(filter))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// port selects events of one (original or translated) destination port.
func port(ports ...uint16) func(flowevent.Event) bool {
	return func(e flowevent.Event) bool {
		for _, p := range ports {
			if e.DstPort == p || e.OrigDstPort == p {
				return true
			}
		}
		return false
	}
}

var _ = io.EOF
