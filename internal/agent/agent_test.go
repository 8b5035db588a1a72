package agent

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/flow"
)

func TestConflistMatchesContract(t *testing.T) {
	b, err := Conflist(netip.MustParsePrefix("10.244.1.0/24"), "/var/run/starlab/agent.sock", "/var/lib/starlab/ipam")
	require.NoError(t, err)
	assert.JSONEq(t, `{"cniVersion":"1.0.0","name":"starlab","plugins":[{"type":"starlab-cni","podCIDR":"10.244.1.0/24","agentSocket":"/var/run/starlab/agent.sock","ipamDir":"/var/lib/starlab/ipam"}]}`, string(b))
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		err  string
	}{
		{"ok", func(c *Config) {}, ""},
		{"no node", func(c *Config) { c.NodeName = "" }, "node name is empty"},
		{"event level", func(c *Config) { c.EventLevel = 3 }, "event level 3"},
		{"external IPs", func(c *Config) { c.ExternalIPs = "maybe" }, `external IP policy "maybe": use allow or deny`},
		{"flow buffer", func(c *Config) { c.FlowBuffer = 1 }, "flow buffer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.NodeName = "n1"
			tc.mut(&c)
			err := c.Validate()
			if tc.err == "" {
				require.NoError(t, err)
				assert.Equal(t, "starlab-cni", filepath.Base(c.CNISource))
				return
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestInstallBinaryAndAtomicWrite(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	require.NoError(t, os.WriteFile(src, []byte("#!/bin/true\n"), 0o600))
	require.NoError(t, installBinary(src, filepath.Join(dir, "bin"), "starlab-cni"))
	st, err := os.Stat(filepath.Join(dir, "bin", "starlab-cni"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	require.ErrorContains(t, installBinary(filepath.Join(dir, "missing"), dir, "x"), "must ship starlab-cni")

	p := filepath.Join(dir, "net.d", "05-starlab.conflist")
	require.NoError(t, writeFileAtomic(p, []byte("{}"), 0o644))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "{}", string(b))
	ents, err := os.ReadDir(filepath.Dir(p))
	require.NoError(t, err)
	assert.Len(t, ents, 1, "no temporary file left behind")
}

func TestWorkloadAndLabels(t *testing.T) {
	yes := true
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want *flow.Workload
	}{
		{"deployment", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Labels:          map[string]string{"pod-template-hash": "5d8f7c", "app": "web"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d8f7c", Controller: &yes}},
		}}, &flow.Workload{Kind: "Deployment", Name: "web"}},
		{"daemonset", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: "agent", Controller: &yes}},
		}}, &flow.Workload{Kind: "DaemonSet", Name: "agent"}},
		{"bare", &corev1.Pod{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, workloadOf(tc.pod))
		})
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "stars", Labels: map[string]string{"role": "backend", "pod-template-hash": "x"}}}
	assert.Equal(t, []string{"k8s:io.kubernetes.pod.namespace=stars", "k8s:role=backend"}, podLabels(p))
}

func TestNodeHelpers(t *testing.T) {
	n := &corev1.Node{
		Spec: corev1.NodeSpec{PodCIDR: "10.244.2.0/24", PodCIDRs: []string{"10.244.2.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "w1"}, {Type: corev1.NodeInternalIP, Address: "172.18.0.3"},
		}},
	}
	ip, ok := nodeInternalIP(n)
	require.True(t, ok)
	assert.Equal(t, "172.18.0.3", ip.String())
	c, ok := nodePodCIDR(n)
	require.True(t, ok)
	assert.Equal(t, "10.244.2.0/24", c.String())
	_, ok = nodePodCIDR(&corev1.Node{})
	assert.False(t, ok)
}

func TestEndpointRecordRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	m := newEndpoints(cfg, slog.Default(), nil)
	ep := &Endpoint{Ifindex: 12}
	ep.ContainerID, ep.HostIfName, ep.IP, ep.MAC = "abc", "sl0123456789a", "10.244.1.5", "02:00:00:00:00:05"
	require.NoError(t, m.persist(ep))
	b, err := os.ReadFile(filepath.Join(cfg.EndpointsDir(), "abc.json"))
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, float64(12), got["ifindex"])
	assert.Equal(t, "10.244.1.5", got["ip"])
}

func TestStatusJSONContract(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "n1"
	a, err := New(cfg, nil)
	require.NoError(t, err)
	a.flows.early.Add(3)
	b, err := json.Marshal(a.status())
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, float64(3), got["lost_events"], "the observer reads lost_events (ARCHITECTURE.md Agent)")
	assert.Equal(t, "n1", got["node"])
	assert.Contains(t, got, "policy_revision")
	assert.Equal(t, map[string]any{"ringbuf_read": 0.0, "ringbuf_lost": 0.0, "queue_lost": 3.0, "stored": 0.0, "subscriber_lost": 0.0},
		got["flow_stages"], "events before the informers synced are lost in the agent's queue stage")
}
