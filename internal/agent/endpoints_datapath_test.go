//go:build datapath

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/cni"
)

func newTestAgent(t *testing.T, stateDir, pinDir string) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = "test-node"
	cfg.StateDir = stateDir
	cfg.Socket = filepath.Join(stateDir, "agent.sock")
	cfg.CNISource = "/nonexistent"
	a, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: pinDir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	a.useDatapath(dp)
	a.endpoints.podCIDR = netip.MustParsePrefix("10.244.88.0/24")
	return a
}

// TestEndpointLifecycleWithRealDatapath drives the agent's endpoint API with the real CNI binary and
// the real BPF datapath: ADD attaches programs and writes a fail-closed endpoint entry, a restarted
// agent restores it from its record, an endpoint whose veth vanished is cleaned up, DEL removes it.
func TestEndpointLifecycleWithRealDatapath(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root: network namespaces and BPF")
	ctx := t.Context()
	state := t.TempDir()
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-agent-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })

	bin := filepath.Join(t.TempDir(), "starlab-cni")
	bout, err := exec.Command("go", "build", "-o", bin, "github.com/starlab-dev/starlab/cmd/starlab-cni").CombinedOutput()
	require.NoError(t, err, string(bout))

	a := newTestAgent(t, state, pinDir)
	srv, err := serveUnix(ctx, a.cfg.Socket, a.endpoints.handler(), a.log)
	require.NoError(t, err)
	defer srv.Close()
	a.ready.Store(true)

	ns := fmt.Sprintf("slagt%d", os.Getpid()%100000)
	_ = exec.Command("ip", "netns", "del", ns).Run()
	require.NoError(t, exec.Command("ip", "netns", "add", ns).Run())
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })

	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"starlab","type":"starlab-cni","podCIDR":"10.244.88.0/24","agentSocket":%q,"ipamDir":%q}`,
		a.cfg.Socket, a.cfg.IPAMDir())
	callCNI := func(command, id string) (string, error) {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+id, "CNI_NETNS=/var/run/netns/"+ns,
			"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin", "CNI_ARGS=K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web-1;IgnoreUnknown=1")
		cmd.Stdin = strings.NewReader(conf)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	id := fmt.Sprintf("agenttest%d", os.Getpid())
	out, err := callCNI("ADD", id)
	require.NoError(t, err, out)
	t.Cleanup(func() { _, _ = callCNI("DEL", id) })

	ep, ok := a.endpoints.get(id)
	require.True(t, ok, "agent registered the endpoint")
	assert.Equal(t, "10.244.88.2", ep.IP)
	assert.Equal(t, cni.HostIfName(id), ep.HostIfName)
	st, err := a.dp.Maps.LookupEndpoint(uint32(ep.Ifindex))
	require.NoError(t, err)
	assert.Equal(t, "10.244.88.2", st.IP.String())
	assert.Equal(t, maps.EndpointPolicyError, st.Flags&maps.EndpointPolicyError, "no policy compiled yet: deny-all (fail closed)")
	links, err := os.ReadDir(filepath.Join(pinDir, "links"))
	require.NoError(t, err)
	var names []string
	for _, l := range links {
		names = append(names, l.Name())
	}
	assert.Contains(t, names, fmt.Sprintf("%d-from-container", ep.Ifindex))
	assert.Contains(t, names, fmt.Sprintf("%d-to-container", ep.Ifindex))
	require.FileExists(t, a.endpoints.path(id))

	// Agent restart: a new agent over the same state and pins restores the endpoint.
	srv.Close()
	a.dp.Close()
	b := newTestAgent(t, state, pinDir)
	require.NoError(t, b.endpoints.reconcile(ctx))
	_, ok = b.endpoints.get(id)
	require.True(t, ok, "restarted agent restored the endpoint from its record")
	_, err = b.dp.Maps.LookupEndpoint(uint32(ep.Ifindex))
	require.NoError(t, err)

	// DEL through the restarted agent.
	srv2, err := serveUnix(ctx, b.cfg.Socket, b.endpoints.handler(), b.log)
	require.NoError(t, err)
	defer srv2.Close()
	out, err = callCNI("DEL", id)
	require.NoError(t, err, out)
	_, err = b.dp.Maps.LookupEndpoint(uint32(ep.Ifindex))
	assert.Error(t, err, "endpoint entry removed")
	assert.NoFileExists(t, b.endpoints.path(id))
	assert.NoFileExists(t, filepath.Join(pinDir, "links", fmt.Sprintf("%d-from-container", ep.Ifindex)))

	// An endpoint whose veth vanished while the agent was down is cleaned up on restart.
	id2 := id + "b"
	out, err = callCNI("ADD", id2)
	require.NoError(t, err, out)
	require.NoError(t, exec.Command("ip", "link", "del", cni.HostIfName(id2)).Run())
	srv2.Close()
	c := newTestAgent(t, state, pinDir)
	require.NoError(t, c.endpoints.reconcile(ctx))
	assert.Zero(t, c.endpoints.count())
	assert.NoFileExists(t, c.endpoints.path(id2))
	alloc, err := c.endpoints.ipamAllocator()
	require.NoError(t, err)
	owned, err := alloc.Lookup(ctx, id2)
	require.NoError(t, err)
	assert.Empty(t, owned, "IP of the vanished pod released")
}
