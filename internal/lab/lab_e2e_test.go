//go:build e2e

package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/charts"
	"github.com/starlab-dev/starlab/internal/helmrelease"
	"github.com/starlab-dev/starlab/internal/hostprep"
	"github.com/starlab-dev/starlab/internal/images"
	"github.com/starlab-dev/starlab/internal/nodeimage"
)

// e2ePrefix names every lab these tests create; CleanupStale removes leftovers of earlier runs by it.
const e2ePrefix = "sl-lab-e2e-"

// e2eEnv makes the host real (docker answering, privileged containers) and removes leftovers of earlier runs.
func e2eEnv(t testing.TB, ctx context.Context) {
	t.Helper()
	require.Equal(t, 0, os.Geteuid(), "the lab e2e tests create kind clusters: run them as root")
	require.NoError(t, hostprep.Ensure(ctx, slog.Default()))
	removed, err := CleanupStale(ctx, e2ePrefix)
	require.NoError(t, err)
	if len(removed) > 0 {
		t.Logf("removed leftovers of earlier runs: %s", strings.Join(removed, ", "))
	}
}

// e2eNodeImage builds (cold: ~10+ min) or finds (warm: seconds) the node image.
func e2eNodeImage(ctx context.Context, version string) (NodeImage, error) {
	res, err := nodeimage.Build(ctx, nodeimage.Options{KubernetesVersion: version})
	if err != nil {
		return NodeImage{}, err
	}
	return NodeImage{Ref: res.Image, KubernetesVersion: res.KubernetesVersion, EtcdTag: res.EtcdTag, CoreDNSTag: res.CoreDNSTag}, nil
}

// e2eName returns a lab name unique to this run.
func e2eName(suffix string) string {
	return fmt.Sprintf("%s%s-%d", e2ePrefix, suffix, time.Now().UnixNano()%1_000_000)
}

// openE2E opens a lab with its kubeconfig in a test directory and deletes it when the test ends, even on failure.
func openE2E(t testing.TB, name string) *Lab {
	t.Helper()
	l, err := Open(name, WithKubeconfigPath(filepath.Join(t.TempDir(), name+".yaml")))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := l.Delete(ctx); err != nil {
			t.Errorf("cleanup: delete lab %s: %v", name, err)
		}
	})
	return l
}

// TestLabLifecycle creates a real 3-node lab (cluster step only), checks it, reruns up, and deletes it.
func TestLabLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	e2eEnv(t, ctx)

	name := e2eName("life")
	l := openE2E(t, name)
	opts := UpOptions{Workers: 2, ClusterOnly: true, BuildNodeImage: e2eNodeImage, SupportedVersions: nodeimage.SupportedVersions()}
	res, err := l.Up(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Created)
	for _, s := range res.Steps {
		t.Logf("step %-12s %s", s.Name, s.Duration.Round(time.Millisecond))
	}
	cs, err := l.Clientset()
	require.NoError(t, err)

	t.Run("every node registered", func(t *testing.T) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, nodes.Items, 3)
		roles := map[string]int{}
		for _, n := range nodes.Items {
			if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
				roles["control-plane"]++
			} else {
				roles["worker"]++
			}
			assert.Equal(t, res.NodeImage.KubernetesVersion, n.Status.NodeInfo.KubeletVersion, n.Name)
		}
		assert.Equal(t, map[string]int{"control-plane": 1, "worker": 2}, roles)
	})

	t.Run("control-plane pods Running and readyz ok", func(t *testing.T) {
		pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "tier=control-plane"})
		require.NoError(t, err)
		assert.Empty(t, controlPlanePodsMissing(pods.Items))
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		require.NoError(t, err)
		assert.Equal(t, "ok", string(body))
	})

	t.Run("no kube-proxy, no kindnet", func(t *testing.T) {
		pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		require.NotEmpty(t, pods.Items)
		for _, p := range pods.Items {
			assert.False(t, isProxyOrKindnet(p.Name), p.Name)
		}
		dss, err := cs.AppsV1().DaemonSets("kube-system").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, ds := range dss.Items {
			assert.False(t, isProxyOrKindnet(ds.Name), ds.Name)
		}
		require.NoError(t, l.VerifyNoKubeProxy(ctx))
	})

	t.Run("nothing pulled", func(t *testing.T) {
		ns, err := l.Nodes(ctx)
		require.NoError(t, err)
		require.Len(t, ns, 3)
		for _, n := range ns {
			journal, err := nodeOutput(ctx, n, "journalctl", "-u", "containerd", "--no-pager", "-o", "cat")
			require.NoError(t, err, n.String())
			// The journal is real (containerd booted; on the control-plane it ran the static pods' sandboxes;
			// workers run no pod before a CNI exists), and not one image was pulled.
			require.Contains(t, journal, "containerd successfully booted", n.String())
			if role, err := n.Role(); err == nil && role == "control-plane" {
				require.Contains(t, journal, "RunPodSandbox", n.String())
			}
			assert.Equal(t, 0, strings.Count(journal, "PullImage"), "PullImage in containerd's journal of %s", n.String())
		}
	})

	t.Run("post-create: bpffs and CoreDNS without forwarder", func(t *testing.T) {
		ns, err := l.Nodes(ctx)
		require.NoError(t, err)
		for _, n := range ns {
			ok, err := bpffsMounted(ctx, n)
			require.NoError(t, err)
			assert.True(t, ok, "bpffs at /sys/fs/bpf in %s", n.String())
		}
		cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		require.NoError(t, err)
		corefile := cm.Data["Corefile"]
		assert.Contains(t, corefile, "kubernetes cluster.local")
		for _, line := range strings.Split(corefile, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 {
				assert.NotEqual(t, "forward", f[0])
				assert.NotEqual(t, "loop", f[0])
			}
		}
	})

	t.Run("status JSON", func(t *testing.T) {
		st, err := l.Status(ctx)
		require.NoError(t, err)
		data, err := json.Marshal(st)
		require.NoError(t, err)
		var got Status
		require.NoError(t, json.Unmarshal(data, &got))
		assert.Equal(t, StateRunning, got.State)
		assert.Equal(t, res.NodeImage.KubernetesVersion, got.ServerVersion)
		assert.Equal(t, res.APIServer, got.APIServer)
		assert.Empty(t, got.Error)
		require.Len(t, got.Nodes, 3)
		_, pods, err := net.ParseCIDR(PodSubnet)
		require.NoError(t, err)
		for _, n := range got.Nodes {
			assert.Equal(t, "running", n.Container, n.Name)
			assert.NotNil(t, net.ParseIP(n.InternalIP), n.Name)
			ip, _, err := net.ParseCIDR(n.PodCIDR)
			require.NoError(t, err, n.Name)
			assert.True(t, pods.Contains(ip), "%s podCIDR %s in %s", n.Name, n.PodCIDR, PodSubnet)
			assert.False(t, n.Ready, "%s: no CNI yet, so NotReady", n.Name)
		}
		assert.NotEmpty(t, got.Pods)
		t.Logf("status: %s", data)
	})

	t.Run("memory", func(t *testing.T) {
		mem := dockerMemory(t, ctx, name)
		var total float64
		for node, mib := range mem {
			t.Logf("memory %s: %.0f MiB", node, mib)
			total += mib
		}
		require.Len(t, mem, 3)
		t.Logf("memory of the 3-node lab: %.0f MiB", total)
	})

	t.Run("images load into every node, once", func(t *testing.T) {
		binDir := buildBinaries(t, ctx)
		ns, err := l.Nodes(ctx)
		require.NoError(t, err)
		archive := filepath.Join(t.TempDir(), "images.tar")
		refs, err := images.Ensure(ctx, binDir, archive, images.StarlabSpecs(), ns)
		require.NoError(t, err)
		require.Len(t, refs, 3)
		for _, n := range ns {
			out, err := nodeOutput(ctx, n, "crictl", "images", "-o", "json")
			require.NoError(t, err)
			for _, ref := range refs {
				assert.Contains(t, out, ref, "image %s in %s", ref, n.String())
			}
		}
		missing, err := images.MissingOn(ctx, ns, []string{refs[images.Agent], refs[images.Observer], refs[images.Demo]})
		require.NoError(t, err)
		assert.Empty(t, missing)
		require.NoError(t, os.Remove(archive))
		again, err := images.Ensure(ctx, binDir, archive, images.StarlabSpecs(), ns)
		require.NoError(t, err)
		assert.Equal(t, refs, again)
		_, err = os.Stat(archive)
		assert.ErrorIs(t, err, os.ErrNotExist, "nothing to load: no archive written")

		t.Run("chart install, upgrade, uninstall", func(t *testing.T) {
			host, port, err := l.APIServerAddress(ctx)
			require.NoError(t, err)
			hopts := helmrelease.Options{
				Kubeconfig: l.KubeconfigPath(), Chart: charts.Starlab, ChartDir: "starlab",
				Values: upChartValues(refs, host, port, charts.Starlab, "starlab"), Wait: true, Timeout: 3 * time.Minute,
			}
			res, err := helmrelease.InstallOrUpgrade(ctx, hopts)
			require.NoError(t, err)
			assert.Equal(t, helmrelease.Result{Action: "install", Revision: 1, Status: "deployed"}, res)
			res, err = helmrelease.InstallOrUpgrade(ctx, hopts)
			require.NoError(t, err)
			assert.Equal(t, helmrelease.Result{Action: "upgrade", Revision: 2, Status: "deployed"}, res)
			ds, err := cs.AppsV1().DaemonSets(helmrelease.DefaultNamespace).List(ctx, metav1.ListOptions{})
			require.NoError(t, err)
			require.NotEmpty(t, ds.Items)
			assert.Equal(t, int32(3), ds.Items[0].Status.NumberReady, "an agent on every node")
			hopts.Timeout = time.Minute
			require.NoError(t, helmrelease.Uninstall(ctx, hopts))
			require.NoError(t, helmrelease.Uninstall(ctx, hopts), "uninstalling a missing release is fine")
		})
	})

	t.Run("up again reuses the lab", func(t *testing.T) {
		before, err := kindContainers(ctx, name)
		require.NoError(t, err)
		again, err := l.Up(ctx, opts)
		require.NoError(t, err)
		assert.False(t, again.Created)
		after, err := kindContainers(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, before, after, "same containers, nothing duplicated")
	})

	t.Run("name taken by a lab of another shape", func(t *testing.T) {
		other := opts
		other.Workers = 1
		_, err := l.Up(ctx, other)
		require.ErrorIs(t, err, ErrNameTaken)
		require.ErrorContains(t, err, "requested 1 workers")
	})

	t.Run("unknown version", func(t *testing.T) {
		bad := opts
		bad.KubernetesVersion = "v1.20.0"
		_, err := l.Up(ctx, bad)
		require.ErrorContains(t, err, `unknown Kubernetes version "v1.20.0": supported versions are `+strings.Join(nodeimage.SupportedVersions(), ", "))
	})

	t.Run("down removes containers, volumes and kubeconfig only", func(t *testing.T) {
		cs, err := kindContainers(ctx, name)
		require.NoError(t, err)
		require.Len(t, cs, 3)
		var volumes []string
		for _, c := range cs {
			volumes = append(volumes, c.Volumes...)
		}
		require.NotEmpty(t, volumes, "kind nodes keep /var in a volume")
		start := time.Now()
		require.NoError(t, l.Delete(ctx))
		t.Logf("down took %s", time.Since(start).Round(time.Millisecond))
		left, err := kindContainers(ctx, name)
		require.NoError(t, err)
		assert.Empty(t, left)
		for _, v := range volumes {
			_, err := docker(ctx, "volume", "inspect", v)
			assert.Error(t, err, "volume %s still exists", v)
		}
		_, err = os.Stat(l.KubeconfigPath())
		assert.ErrorIs(t, err, os.ErrNotExist)
		_, err = docker(ctx, "network", "inspect", "kind")
		assert.NoError(t, err, "the shared kind network stays")
		st, err := l.Status(ctx)
		require.NoError(t, err)
		assert.Equal(t, StateAbsent, st.State)
	})
}

// TestCleanupStaleAfterMachineStop leaves what a machine stop leaves (exited node containers, a dangling
// /var volume, a kubeconfig file) and checks CleanupStale removes exactly that.
func TestCleanupStaleAfterMachineStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	e2eEnv(t, ctx)

	name := e2eName("stale")
	l := openE2E(t, name)
	opts := UpOptions{Workers: 1, ClusterOnly: true, BuildNodeImage: e2eNodeImage}
	_, err := l.Up(ctx, opts)
	require.NoError(t, err)
	// CleanupStale removes $HOME/.kube/starlab-<prefix>*.yaml. HOME changes only now: the node image build
	// above runs `go build`, whose module and build caches live under HOME.
	home := t.TempDir()
	t.Setenv("HOME", home)
	kubeconfig := filepath.Join(home, ".kube", "starlab-"+name+".yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(kubeconfig), 0o700))
	require.NoError(t, os.WriteFile(kubeconfig, []byte("stale"), 0o600))

	cs, err := kindContainers(ctx, name)
	require.NoError(t, err)
	require.Len(t, cs, 2)
	var ids, volumes []string
	for _, c := range cs {
		ids = append(ids, c.ID)
		volumes = append(volumes, c.Volumes...)
	}
	_, err = docker(ctx, append([]string{"stop", "-t", "1"}, ids...)...)
	require.NoError(t, err)
	// The worker's container is gone but its volume stays: only the kubelet certificate inside tells whose it is.
	worker := cs[1]
	require.Equal(t, "worker", worker.Role)
	_, err = docker(ctx, "rm", worker.ID)
	require.NoError(t, err)
	out, err := docker(ctx, "volume", "ls", "-q", "--filter", "dangling=true")
	require.NoError(t, err)
	require.Contains(t, strings.Fields(string(out)), worker.Volumes[0])

	ex, err := l.Inspect(ctx)
	require.NoError(t, err)
	require.Equal(t, StateBroken, ex.State)
	_, err = l.Up(ctx, opts)
	require.ErrorIs(t, err, ErrNameTaken, "up refuses a lab whose nodes are not running")

	removed, err := CleanupStale(ctx, e2ePrefix)
	require.NoError(t, err)
	t.Logf("removed: %s", strings.Join(removed, ", "))
	assert.Contains(t, removed, "container "+cs[0].Name)
	assert.Contains(t, removed, "volume "+worker.Volumes[0])
	assert.Contains(t, removed, "kubeconfig "+kubeconfig)
	left, err := kindContainers(ctx, name)
	require.NoError(t, err)
	assert.Empty(t, left)
	for _, v := range volumes {
		_, err := docker(ctx, "volume", "inspect", v)
		assert.Error(t, err, "volume %s still exists", v)
	}
	_, err = os.Stat(kubeconfig)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// dockerMemory returns the memory of each node container of a lab in MiB (docker stats, without page cache).
func dockerMemory(t testing.TB, ctx context.Context, name string) map[string]float64 {
	t.Helper()
	cs, err := kindContainers(ctx, name)
	require.NoError(t, err)
	args := []string{"stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"}
	for _, c := range cs {
		args = append(args, c.Name)
	}
	out, err := docker(ctx, args...)
	require.NoError(t, err)
	mem := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line) // name 359.2MiB / 23.4GiB
		require.GreaterOrEqual(t, len(f), 2, line)
		mib, err := parseMiB(f[1])
		require.NoError(t, err, line)
		mem[f[0]] = mib
	}
	return mem
}

func parseMiB(s string) (float64, error) {
	units := []struct {
		suffix string
		factor float64
	}{{"GiB", 1024}, {"MiB", 1}, {"KiB", 1.0 / 1024}, {"B", 1.0 / (1 << 20)}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f * u.factor, err
		}
	}
	return 0, fmt.Errorf("unknown memory size %q", s)
}

// buildBinaries builds the binaries the images carry (static, as `make build` does) into a test directory.
func buildBinaries(t *testing.T, ctx context.Context) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dir+"/",
		"../../cmd/starlab-agent", "../../cmd/starlab-cni", "../../cmd/starlab-observer", "../../cmd/starlab-demo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return dir
}
