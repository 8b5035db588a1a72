//go:build datapath

package cni_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"

	"github.com/starlab-dev/starlab/internal/cni"
)

// fakeFreeAgent is a real HTTP server on a unix socket that records endpoint calls.
type agentServer struct {
	mu      sync.Mutex
	adds    []cni.EndpointRequest
	dels    []string
	failAdd bool
}

func (a *agentServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == cni.PathEndpoints:
		var req cni.EndpointRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := req.Validate(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if a.failAdd {
			http.Error(w, "datapath not loaded", http.StatusServiceUnavailable)
			return
		}
		a.adds = append(a.adds, req)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, cni.PathEndpoint):
		a.dels = append(a.dels, strings.TrimPrefix(r.URL.Path, cni.PathEndpoint))
	case r.Method == http.MethodGet && r.URL.Path == cni.PathHealth:
	default:
		http.NotFound(w, r)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
	return string(out)
}

func netnsAdd(t *testing.T, name string) string {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", name).Run()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/var/run/netns/" + name
}

type pluginRunner struct {
	bin, nodeNS, conf string
}

func (p pluginRunner) call(command, containerID, podNS string) (string, error) {
	cmd := exec.Command("ip", "netns", "exec", p.nodeNS, p.bin)
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+podNS, "CNI_IFNAME=eth0",
		"CNI_PATH=/opt/cni/bin", "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod-"+containerID)
	cmd.Stdin = strings.NewReader(p.conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: stdout %s stderr %s", command, containerID, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// inNetns runs fn on a locked OS thread switched into the netns at path.
func inNetns(t *testing.T, path string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromPath(path)
		if !assert.NoError(t, err) {
			return
		}
		defer h.Close()
		if !assert.NoError(t, netns.Set(h)) {
			return
		}
		fn()
	}()
	<-done
}

// echo listens on addr inside serverNS and dials it from clientNS, checking the bytes come back.
func echo(t *testing.T, serverNS, addr, clientNS string) {
	t.Helper()
	var ln net.Listener
	inNetns(t, serverNS, func() {
		var err error
		ln, err = net.Listen("tcp4", addr)
		assert.NoError(t, err)
	})
	require.NotNil(t, ln)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	inNetns(t, clientNS, func() {
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if !assert.NoError(t, err, "dial %s from %s", addr, clientNS) {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Write([]byte("hello"))
		assert.NoError(t, err)
		buf := make([]byte, 5)
		_, err = io.ReadFull(c, buf)
		assert.NoError(t, err)
		assert.Equal(t, "hello", string(buf))
	})
}

func requireRoot(t *testing.T) {
	t.Helper()
	require.Equal(t, 0, os.Geteuid(), "this test creates network namespaces: run it as root")
}

// TestPluginInNetns runs the real plugin binary in a node netns against real pod netns and a real
// agent socket, then checks interfaces, routes, neighbours and pod-to-pod and node-to-pod traffic.
func TestPluginInNetns(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "starlab-cni")
	build := exec.Command("go", "build", "-o", bin, "github.com/starlab-dev/starlab/cmd/starlab-cni")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	agent := &agentServer{}
	srv := &http.Server{Handler: agent}
	go srv.Serve(ln) //nolint:errcheck // closed below
	t.Cleanup(func() { srv.Close() })

	pfx := fmt.Sprintf("slt%d", os.Getpid()%100000)
	node := pfx + "-node"
	netnsAdd(t, node)
	podA := netnsAdd(t, pfx+"-a")
	podB := netnsAdd(t, pfx+"-b")
	podC := netnsAdd(t, pfx+"-c")
	run(t, "ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(t, "ip", "-n", node, "link", "set", "lo", "up")
	run(t, "ip", "-n", node, "addr", "add", "10.99.0.1/32", "dev", "lo")

	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"starlab","type":"starlab-cni","podCIDR":"10.244.77.0/24","agentSocket":%q,"ipamDir":%q}`,
		sock, filepath.Join(dir, "ipam"))
	p := pluginRunner{bin: bin, nodeNS: node, conf: conf}

	// ADD pod A and pod B.
	outA, err := p.call("ADD", "ctr-a", podA)
	require.NoError(t, err)
	resA, err := current.NewResult([]byte(outA))
	require.NoError(t, err)
	ra := resA.(*current.Result)
	require.Len(t, ra.IPs, 1)
	assert.Equal(t, "10.244.77.2/32", ra.IPs[0].Address.String())
	assert.Equal(t, cni.GatewayIP, ra.IPs[0].Gateway.String())
	require.Len(t, ra.Interfaces, 2)
	assert.Equal(t, cni.HostIfName("ctr-a"), ra.Interfaces[0].Name)
	assert.Equal(t, podA, ra.Interfaces[1].Sandbox)
	_, err = p.call("ADD", "ctr-b", podB)
	require.NoError(t, err)

	agent.mu.Lock()
	require.Len(t, agent.adds, 2)
	assert.Equal(t, "ctr-a", agent.adds[0].ContainerID)
	assert.Equal(t, "pod-ctr-a", agent.adds[0].PodName)
	assert.Equal(t, "demo", agent.adds[0].PodNamespace)
	assert.Equal(t, ra.Interfaces[0].Mac, agent.adds[0].HostMAC)
	assert.Equal(t, ra.Interfaces[1].Mac, agent.adds[0].MAC)
	agent.mu.Unlock()

	// Pod side: /32, link route, default route, permanent neighbour to the host veth MAC.
	assert.Contains(t, run(t, "ip", "-n", pfx+"-a", "-4", "addr", "show", "eth0"), "10.244.77.2/32")
	routes := run(t, "ip", "-n", pfx+"-a", "route")
	assert.Contains(t, routes, "default via 169.254.1.1 dev eth0")
	assert.Contains(t, routes, "169.254.1.1 dev eth0 scope link")
	neigh := run(t, "ip", "-n", pfx+"-a", "neigh", "show", "169.254.1.1")
	assert.Contains(t, neigh, strings.ToLower(ra.Interfaces[0].Mac))
	assert.Contains(t, neigh, "PERMANENT")
	// Host side: route and rp_filter.
	hostA := cni.HostIfName("ctr-a")
	assert.Contains(t, run(t, "ip", "-n", node, "route", "show", "10.244.77.2"), "dev "+hostA+" scope link")
	assert.Equal(t, "0", strings.TrimSpace(run(t, "ip", "netns", "exec", node, "cat", "/proc/sys/net/ipv4/conf/"+hostA+"/rp_filter")))

	// Real traffic: node -> pod, pod -> pod through the node.
	echo(t, podA, "10.244.77.2:8080", "/var/run/netns/"+node)
	echo(t, podB, "10.244.77.3:8080", podA)

	// CHECK passes, and fails when the pod route is removed.
	_, err = p.call("CHECK", "ctr-a", podA)
	require.NoError(t, err)
	run(t, "ip", "-n", pfx+"-a", "route", "del", "default")
	_, err = p.call("CHECK", "ctr-a", podA)
	require.ErrorContains(t, err, "default route")

	// ADD refused by the agent: fails closed, frees the IP and removes the veth.
	agent.mu.Lock()
	agent.failAdd = true
	agent.mu.Unlock()
	_, err = p.call("ADD", "ctr-c", podC)
	require.ErrorContains(t, err, "503")
	assert.Error(t, exec.Command("ip", "-n", node, "link", "show", cni.HostIfName("ctr-c")).Run(), "veth removed")
	_, err = os.Stat(filepath.Join(dir, "ipam", "10.244.77.4"))
	assert.True(t, os.IsNotExist(err), "IP released")
	agent.mu.Lock()
	agent.failAdd = false
	agent.mu.Unlock()

	// DEL is idempotent, also without an agent.
	_, err = p.call("DEL", "ctr-a", podA)
	require.NoError(t, err)
	_, err = p.call("DEL", "ctr-a", podA)
	require.NoError(t, err)
	assert.Error(t, exec.Command("ip", "-n", node, "link", "show", hostA).Run(), "host veth gone")
	srv.Close()
	_, err = p.call("DEL", "ctr-b", "")
	require.NoError(t, err, "DEL without agent and without netns succeeds")
	agent.mu.Lock()
	assert.Equal(t, []string{"ctr-a", "ctr-a"}, agent.dels)
	agent.mu.Unlock()
	ents, err := os.ReadDir(filepath.Join(dir, "ipam"))
	require.NoError(t, err)
	for _, e := range ents {
		assert.NotRegexp(t, `^10\.`, e.Name(), "no IP left allocated")
	}

	// ADD without an agent fails closed.
	_, err = p.call("ADD", "ctr-d", podC)
	require.ErrorContains(t, err, "agent unreachable")

	// GC (CNI 1.1): attachments the runtime no longer lists lose their IP and host veth.
	agent.mu.Lock()
	agent.failAdd = false
	agent.mu.Unlock()
	ln2, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv2 := &http.Server{Handler: agent}
	go srv2.Serve(ln2) //nolint:errcheck // closed below
	defer srv2.Close()
	_, err = p.call("ADD", "ctr-keep", podA)
	require.NoError(t, err)
	_, err = p.call("ADD", "ctr-gone", podB)
	require.NoError(t, err)
	gc := pluginRunner{bin: bin, nodeNS: node, conf: fmt.Sprintf(`{"cniVersion":"1.1.0","name":"starlab","type":"starlab-cni","podCIDR":"10.244.77.0/24","agentSocket":%q,"ipamDir":%q,"cni.dev/valid-attachments":[{"containerID":"ctr-keep","ifname":"eth0"}]}`,
		sock, filepath.Join(dir, "ipam"))}
	_, err = gc.call("GC", "", "")
	require.NoError(t, err)
	assert.Error(t, exec.Command("ip", "-n", node, "link", "show", cni.HostIfName("ctr-gone")).Run(), "GC removed the stale veth")
	assert.NoError(t, exec.Command("ip", "-n", node, "link", "show", cni.HostIfName("ctr-keep")).Run(), "GC kept the live veth")
	_, err = gc.call("STATUS", "", "")
	require.NoError(t, err, "STATUS with the agent answering")
	srv2.Close()
	_, err = gc.call("STATUS", "", "")
	require.Error(t, err, "STATUS without the agent")
	_, err = p.call("DEL", "ctr-keep", podA)
	require.NoError(t, err)

	// VERSION.
	vout, err := p.call("VERSION", "", "")
	require.NoError(t, err)
	assert.Contains(t, vout, "1.0.0")
}
