//go:build e2e

package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/progress"
)

// runningLab returns the lab named by STARLAB_LAB (the Makefile's e2e layer brings it up) and its status.
func runningLab(t *testing.T) (string, *lab.Status) {
	t.Helper()
	name := os.Getenv("STARLAB_LAB")
	if name == "" {
		t.Fatal("STARLAB_LAB is not set: name a running lab (e.g. STARLAB_LAB=starlab go test -tags e2e ./internal/bundle/), " +
			"or run `make test-e2e`, which brings one up and sets STARLAB_LAB")
	}
	l, err := lab.Open(name)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := l.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, lab.StateRunning, st.State, "STARLAB_LAB=%s is not running (%s): bring it up with `starlab up --name %s`", name, st.State, name)
	return name, st
}

// waitObserverConnected waits until the lab's observer streams from every node, so the bundle sees a
// settled lab (right after `starlab up` the observer may still be dialing agents).
func waitObserverConnected(t *testing.T, name string, nodes int) {
	t.Helper()
	l, err := lab.Open(name)
	require.NoError(t, err)
	cfg, err := l.RESTConfig()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fw, err := observer.PortForward(ctx, cfg, observer.DefaultNamespace, 0)
	require.NoError(t, err)
	defer fw.Close()
	_, err = (&observer.Client{Base: fw.URL()}).WaitConnected(ctx, nodes)
	require.NoError(t, err)
}

// unpack reads a bundle: entries by name relative to the bundle root (which must be the same for all).
func unpack(t *testing.T, path string) map[string][]byte {
	t.Helper()
	order, content, _ := readTarGz(t, path)
	require.NotEmpty(t, order)
	root := strings.SplitN(order[0], "/", 2)[0]
	assert.Equal(t, root+"/"+ManifestName, order[len(order)-1], "the manifest is the last entry")
	files := map[string][]byte{}
	for _, name := range order {
		rel, ok := strings.CutPrefix(name, root+"/")
		require.True(t, ok, "entry %s is outside the bundle root %s", name, root)
		files[rel] = content[name]
	}
	return files
}

func TestBundleOfRunningLab(t *testing.T) {
	name, st := runningLab(t)
	waitObserverConnected(t, name, len(st.Nodes))
	out := filepath.Join(t.TempDir(), "lab.tar.gz")
	var progressOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	res, err := Write(ctx, Options{Lab: name, Output: out, Since: 15 * time.Minute, Progress: progress.New(&progressOut)})
	require.NoError(t, err)
	t.Logf("bundle of %s: %d files, %d bytes, %s; progress:\n%s", name, res.Files, res.Size, res.DurationText, progressOut.String())
	require.Empty(t, res.Failures, "a healthy lab bundles without failures")
	assert.Equal(t, out, res.Path)
	fi, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, fi.Size(), res.Size)
	assert.Equal(t, st.ServerVersion, res.KubernetesVersion)
	for _, step := range []string{"versions", "lab status", "kubernetes objects", "pod logs", "agents", "observer", "nodes"} {
		assert.Contains(t, progressOut.String(), step, "progress names every step")
	}

	files := unpack(t, out)
	var m Manifest
	require.NoError(t, json.Unmarshal(files[ManifestName], &m))
	assert.Equal(t, name, m.Lab)
	assert.Len(t, m.Files, res.Files)
	assert.Len(t, files, res.Files+1)
	assert.Len(t, m.Steps, 7)
	assert.Empty(t, m.Failures)
	for _, f := range m.Files {
		require.Contains(t, files, f.Name)
		assert.Len(t, files[f.Name], int(f.Size), "manifest size of %s", f.Name)
	}

	// status.json is `starlab status -o json`
	var bst lab.Status
	require.NoError(t, json.Unmarshal(files["status.json"], &bst))
	assert.Equal(t, lab.StateRunning, bst.State)
	assert.Len(t, bst.Nodes, len(st.Nodes))

	var ver struct {
		Starlab    Version `json:"starlab"`
		Kubernetes struct {
			GitVersion string `json:"gitVersion"`
		} `json:"kubernetes"`
	}
	require.NoError(t, json.Unmarshal(files["version.json"], &ver))
	assert.Equal(t, st.ServerVersion, ver.Kubernetes.GitVersion)
	assert.NotEmpty(t, ver.Starlab.Go)

	// kubectl-style object dumps
	kinds := map[string]string{
		"k8s/nodes.yaml": "Node", "k8s/namespaces.yaml": "Namespace", "k8s/pods.yaml": "Pod",
		"k8s/services.yaml": "Service", "k8s/endpointslices.yaml": "EndpointSlice", "k8s/events.yaml": "Event",
		"k8s/starlab-system/daemonsets.yaml": "DaemonSet", "k8s/starlab-system/deployments.yaml": "Deployment",
	}
	names := map[string][]string{}
	for file, kind := range kinds {
		var list struct {
			Kind  string `json:"kind"`
			Items []struct {
				Kind     string         `json:"kind"`
				Metadata map[string]any `json:"metadata"`
			} `json:"items"`
		}
		require.NoError(t, yaml.Unmarshal(files[file], &list), file)
		assert.Equal(t, "List", list.Kind, file)
		require.NotEmpty(t, list.Items, file)
		for _, it := range list.Items {
			assert.Equal(t, kind, it.Kind, file)
			assert.NotContains(t, it.Metadata, "managedFields", file)
			names[file] = append(names[file], it.Metadata["name"].(string))
		}
	}
	assert.Contains(t, files, "k8s/networkpolicies.yaml")
	assert.Len(t, names["k8s/nodes.yaml"], len(st.Nodes))
	assert.Contains(t, names["k8s/starlab-system/daemonsets.yaml"], "starlab-agent")
	assert.Contains(t, names["k8s/starlab-system/deployments.yaml"], "starlab-observer")

	// logs of every agent and observer pod
	var agentLogs, observerLogs int
	for f := range files {
		if strings.HasPrefix(f, "logs/starlab-system/starlab-agent-") && strings.HasSuffix(f, ".log") {
			agentLogs++
		}
		if strings.HasPrefix(f, "logs/starlab-system/starlab-observer-") && strings.HasSuffix(f, ".log") {
			observerLogs++
		}
	}
	assert.GreaterOrEqual(t, agentLogs, len(st.Nodes), "one agent log per node at least")
	assert.GreaterOrEqual(t, observerLogs, 1)

	// every node: agent status + flows, node commands
	totalFlows := 0
	for _, n := range st.Nodes {
		var as struct {
			Node  string `json:"node"`
			Ready bool   `json:"ready"`
		}
		require.NoError(t, json.Unmarshal(files["agents/"+n.Name+"/status.json"], &as), n.Name)
		assert.Equal(t, n.Name, as.Node)
		assert.True(t, as.Ready, "agent on %s ready", n.Name)
		assert.Contains(t, string(files["agents/"+n.Name+"/metrics.txt"]), "starlab_")

		require.Contains(t, files, "agents/"+n.Name+"/flows.ndjson")
		for _, f := range decodeFlows(t, files["agents/"+n.Name+"/flows.ndjson"]) {
			require.Equal(t, n.Name, f.NodeName)
			require.False(t, f.Time.Before(m.CreatedAt.Add(-15*time.Minute-time.Minute)), "flow older than --since")
			totalFlows++
		}

		dir := "nodes/" + n.Name + "/"
		var routes, addrs []map[string]any
		require.NoError(t, json.Unmarshal(files[dir+"ip-route.json"], &routes), n.Name)
		require.NoError(t, json.Unmarshal(files[dir+"ip-addr.json"], &addrs), n.Name)
		assert.NotEmpty(t, routes)
		assert.NotEmpty(t, addrs)
		assert.Equal(t, "0\n", string(files[dir+"kube-svc-rules.txt"]), "no kube-proxy rules on %s", n.Name)
		assert.Contains(t, string(files[dir+"bpffs-starlab.txt"]), agentapi.PinDir)
		assert.Contains(t, string(files[dir+"containerd.journal.txt"]), "containerd")
		assert.Contains(t, files, dir+"kubelet.journal.txt")
	}
	assert.Positive(t, totalFlows, "the agents saw flows in the last 15 minutes (kubelet probes at least)")

	var ost struct {
		Connected int `json:"connected"`
	}
	require.NoError(t, json.Unmarshal(files["observer/status.json"], &ost))
	assert.Equal(t, len(st.Nodes), ost.Connected)
	var graph map[string]any
	require.NoError(t, json.Unmarshal(files["observer/graph.json"], &graph))
	merged := decodeFlows(t, files["observer/flows.ndjson"])
	assert.NotEmpty(t, merged, "the observer's merged flows")
	// The bundle keeps the observer's answer as served (its order is evidence too): only check the nodes.
	known := map[string]bool{}
	for _, n := range st.Nodes {
		known[n.Name] = true
	}
	for _, f := range merged {
		require.True(t, known[f.NodeName], "merged flow from unknown node %q", f.NodeName)
	}
}

func decodeFlows(t *testing.T, data []byte) []*flow.Flow {
	t.Helper()
	var out []*flow.Flow
	dec := flow.NewDecoder(bytes.NewReader(data))
	for {
		f, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, f)
	}
}

func TestBundleRecordsFailedStepsAndGoesOn(t *testing.T) {
	name, st := runningLab(t)
	out := filepath.Join(t.TempDir(), "broken.tar.gz")
	// A namespace without the starlab pods: logs, agents and observer steps fail; the rest is collected.
	res, err := Write(context.Background(), Options{Lab: name, Output: out, Namespace: "starlab-bundle-e2e-absent"})
	require.NoError(t, err)
	failed := map[string]string{}
	for _, f := range res.Failures {
		failed[f.Step] = f.Error
	}
	assert.Contains(t, failed["starlab pod logs"], "no starlab pods")
	assert.Contains(t, failed["agents: status, flows, metrics"], "no agent pods")
	assert.Contains(t, failed["observer: status, graph, metrics, merged flows"], "observer")
	assert.Len(t, failed, 3, "only the steps that need the starlab pods fail: %v", failed)

	files := unpack(t, out)
	var m Manifest
	require.NoError(t, json.Unmarshal(files[ManifestName], &m))
	assert.Len(t, m.Failures, 3)
	assert.Contains(t, files, "k8s/pods.yaml")
	assert.Contains(t, files, "status.json")
	for _, n := range st.Nodes {
		assert.Contains(t, files, "nodes/"+n.Name+"/ip-route.json")
	}
}

func TestBundleOfAbsentLab(t *testing.T) {
	runningLab(t) // docker must answer; the lab below does not exist
	out := filepath.Join(t.TempDir(), "absent.tar.gz")
	_, err := Write(context.Background(), Options{Lab: "starlab-bundle-no-such-lab", Output: out})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `lab "starlab-bundle-no-such-lab" does not exist`)
	_, statErr := os.Stat(out)
	assert.True(t, os.IsNotExist(statErr), "no bundle is written for an absent lab")
}
