package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"

	"github.com/starlab-dev/starlab/charts"
	"github.com/starlab-dev/starlab/internal/helmrelease"
	"github.com/starlab-dev/starlab/manifests"
)

func TestKindConfig(t *testing.T) {
	base := ClusterConfig{Name: "lab", Workers: 2, NodeImage: "localhost/starlab/kind-node:v1.37.2-abc", KubernetesVersion: "v1.37.2", EtcdTag: "3.6.5-0", CoreDNSTag: "v1.12.1"}
	tests := []struct {
		name        string
		mutate      func(*ClusterConfig)
		wantPatches int
		wantFailV1  bool
		wantErr     string
	}{
		{name: "cgroup v2 host, 1.37: no failCgroupV1 patch", wantPatches: 1},
		{name: "cgroup v1 host, 1.37: failCgroupV1 false", mutate: func(c *ClusterConfig) { c.CgroupV1 = true }, wantPatches: 2, wantFailV1: true},
		{name: "cgroup v1 host, 1.35: failCgroupV1 false", mutate: func(c *ClusterConfig) { c.CgroupV1, c.KubernetesVersion = true, "v1.35.4" }, wantPatches: 2, wantFailV1: true},
		{name: "cgroup v1 host, 1.34: kubelet accepts v1", mutate: func(c *ClusterConfig) { c.CgroupV1, c.KubernetesVersion = true, "v1.34.4" }, wantPatches: 1},
		{name: "no tags: no ClusterConfiguration patch", mutate: func(c *ClusterConfig) { c.EtcdTag, c.CoreDNSTag = "", "" }, wantPatches: 0},
		{name: "zero workers", mutate: func(c *ClusterConfig) { c.Workers = 0 }, wantPatches: 1},
		{name: "bad name", mutate: func(c *ClusterConfig) { c.Name = "Lab_1" }, wantErr: `invalid lab name "Lab_1"`},
		{name: "too many workers", mutate: func(c *ClusterConfig) { c.Workers = 99 }, wantErr: "invalid --workers 99"},
		{name: "no image", mutate: func(c *ClusterConfig) { c.NodeImage = "" }, wantErr: "no node image"},
		{name: "bad version", mutate: func(c *ClusterConfig) { c.KubernetesVersion = "latest" }, wantErr: `invalid Kubernetes version "latest"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			cfg, err := KindConfig(c)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "none", string(cfg.Networking.KubeProxyMode))
			assert.True(t, cfg.Networking.DisableDefaultCNI)
			assert.Equal(t, "10.244.0.0/16", cfg.Networking.PodSubnet)
			assert.Equal(t, "10.96.0.0/16", cfg.Networking.ServiceSubnet)
			require.Len(t, cfg.Nodes, c.Workers+1)
			assert.Equal(t, v1alpha4.ControlPlaneRole, cfg.Nodes[0].Role)
			for _, n := range cfg.Nodes[1:] {
				assert.Equal(t, v1alpha4.WorkerRole, n.Role)
			}
			for _, n := range cfg.Nodes {
				assert.Equal(t, c.NodeImage, n.Image)
			}
			require.Len(t, cfg.KubeadmConfigPatches, tt.wantPatches)
			all := strings.Join(cfg.KubeadmConfigPatches, "---\n")
			assert.Equal(t, tt.wantFailV1, strings.Contains(all, "failCgroupV1: false"))
			if c.EtcdTag != "" {
				assert.Contains(t, all, "imageTag: \"3.6.5-0\"")
				assert.Contains(t, all, "imageTag: \"v1.12.1\"")
			}
		})
	}
}

func TestHostCgroupDetection(t *testing.T) {
	v1, err := HostCgroupV1()
	require.NoError(t, err)
	// /sys/fs/cgroup on this host: cgroup2fs means v2, anything else (tmpfs with v1 controllers) means v1.
	data, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	isV2 := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "/sys/fs/cgroup" && f[2] == "cgroup2" {
			isV2 = true
		}
	}
	assert.Equal(t, !isV2, v1)
	_, err = cgroupV1At("/does/not/exist")
	require.ErrorContains(t, err, "statfs /does/not/exist")
}

func TestRemoveCorefilePlugins(t *testing.T) {
	kind := `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
`
	want := `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    reload
    loadbalance
}
`
	tests := []struct{ name, in, want string }{
		{"kubeadm corefile", kind, want},
		{"already patched", want, want},
		{"one-line forward", ".:53 {\n    forward . 8.8.8.8\n    loop\n    cache 30\n}\n", ".:53 {\n    cache 30\n}\n"},
		{"inline block", ".:53 {\n    forward . 1.1.1.1 { max_concurrent 10 }\n    log\n}\n", ".:53 {\n    log\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, RemoveCorefilePlugins(tt.in, "forward", "loop"))
		})
	}
}

func TestSubstituteImages(t *testing.T) {
	refs := map[string]string{"demo": "localhost/starlab/demo:0123456789abcdef", "agent": "localhost/starlab/agent:aaaa"}
	tests := []struct{ in, want string }{
		{"image: localhost/starlab/demo:dev", "image: localhost/starlab/demo:0123456789abcdef"},
		{"image: localhost/starlab/demo", "image: localhost/starlab/demo:0123456789abcdef"},
		{`image: "localhost/starlab/demo:<tag>"`, `image: "localhost/starlab/demo:0123456789abcdef"`},
		{"image: localhost/starlab/demo:${TAG}", "image: localhost/starlab/demo:0123456789abcdef"},
		{"image: localhost/starlab/demo:TAG\n  x: localhost/starlab/agent:v1", "image: localhost/starlab/demo:0123456789abcdef\n  x: localhost/starlab/agent:aaaa"},
		{"image: localhost/starlab/other:1", "image: localhost/starlab/other:1"},
		{"image: localhost/starlab/starlab-demo:dev", "image: localhost/starlab/demo:0123456789abcdef"},
		{"image: registry.k8s.io/pause:3.10", "image: registry.k8s.io/pause:3.10"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, SubstituteImages(tt.in, refs), tt.in)
	}
}

func TestManifestFilesAndDecode(t *testing.T) {
	fsys := fstest.MapFS{
		"stars/10-backend.yaml":      {Data: []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: backend, namespace: stars}\n")},
		"stars/00-ns.yaml":           {Data: []byte("---\napiVersion: v1\nkind: Namespace\nmetadata: {name: stars}\n---\n\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: client}\n")},
		"stars/README.md":            {Data: []byte("# not yaml")},
		"apis/a.yml":                 {Data: []byte("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")},
		"stars/policies/1-deny.yaml": {Data: []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\n")},
		"embed.go":                   {Data: []byte("package manifests")},
	}
	files, err := ManifestFiles(fsys, "stars", "apis", "missing")
	require.NoError(t, err)
	assert.Equal(t, []string{"apis/a.yml", "stars/00-ns.yaml", "stars/10-backend.yaml"}, files)

	data, err := fsys.ReadFile("stars/00-ns.yaml")
	require.NoError(t, err)
	objs, err := DecodeManifests(data)
	require.NoError(t, err)
	require.Len(t, objs, 2)
	assert.Equal(t, "client", objs[1].GetName())

	_, err = DecodeManifests([]byte("metadata: {name: x}\n"))
	require.ErrorContains(t, err, "apiVersion, kind and metadata.name are required")
	_, err = DecodeManifests([]byte("kind: [\n"))
	require.Error(t, err)
}

func TestDecodeManifests(t *testing.T) {
	objs, err := DecodeManifests([]byte("# c\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n"))
	require.NoError(t, err)
	require.Len(t, objs, 2)
	assert.Equal(t, "b", objs[1].GetName())
	_, err = DecodeManifests([]byte("kind: Namespace\nmetadata:\n  name: a\n"))
	require.ErrorContains(t, err, "apiVersion, kind and metadata.name are required")
	_, err = DecodeManifests([]byte("apiVersion: v1\nkind: Namespace\n---\napiVersion: v1\nkind: Namespace\nmetadata: {}\n"))
	require.ErrorContains(t, err, "YAML document 1")
	_, err = DecodeManifests([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [\n"))
	require.ErrorContains(t, err, "YAML document 2")
}

func TestObjectID(t *testing.T) {
	objs, err := DecodeManifests([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\n"))
	require.NoError(t, err)
	assert.Equal(t, "Namespace a", ObjectID(objs[0]))
	assert.Equal(t, "Service a/s", ObjectID(objs[1]))
}

func TestParseInspectAndSummarize(t *testing.T) {
	data := []byte(`[
 {"Id":"b","Name":"/lab-worker","State":{"Status":"running"},"Config":{"Image":"img:1","Labels":{"io.x-k8s.kind.cluster":"lab","io.x-k8s.kind.role":"worker"}},"Mounts":[{"Type":"volume","Name":"v2"},{"Type":"bind","Name":""}]},
 {"Id":"a","Name":"/lab-control-plane","State":{"Status":"running"},"Config":{"Image":"img:1","Labels":{"io.x-k8s.kind.cluster":"lab","io.x-k8s.kind.role":"control-plane"}},"Mounts":[{"Type":"volume","Name":"v1"}]},
 {"Id":"c","Name":"/lab-worker2","State":{"Status":"exited"},"Config":{"Image":"img:1","Labels":{"io.x-k8s.kind.cluster":"lab","io.x-k8s.kind.role":"worker"}},"Mounts":[]}
]`)
	cs, err := parseInspect(data)
	require.NoError(t, err)
	require.Len(t, cs, 3)
	assert.Equal(t, "lab-control-plane", cs[0].Name)
	assert.Equal(t, []string{"v1"}, cs[0].Volumes)
	assert.Equal(t, "worker", cs[1].Role)

	ex := summarize(cs)
	assert.Equal(t, StateBroken, ex.State)
	assert.Equal(t, 3, ex.Nodes)
	assert.Equal(t, 2, ex.Workers)
	assert.Equal(t, []string{"lab-worker2 (exited)"}, ex.NotRunning)

	assert.Equal(t, StateAbsent, summarize(nil).State)
	_, err = parseInspect([]byte("{"))
	require.Error(t, err)
}

func TestCheckReusable(t *testing.T) {
	cfg := ClusterConfig{Name: "lab", Workers: 2, NodeImage: "localhost/starlab/kind-node:v1.37.2-bbb"}
	running := Existing{State: StateRunning, Nodes: 3, Workers: 2, Images: []string{"localhost/starlab/kind-node:v1.37.2-aaa"}}
	tests := []struct {
		name    string
		ex      Existing
		wantErr string
	}{
		{"same shape", running, ""},
		{"broken", Existing{State: StateBroken, Nodes: 3, Workers: 2, Images: running.Images, NotRunning: []string{"lab-worker (exited)"}}, "not running: lab-worker (exited)"},
		{"other worker count", Existing{State: StateRunning, Nodes: 2, Workers: 1, Images: running.Images}, "exists with 2 nodes (1 workers), requested 2 workers"},
		{"other Kubernetes version", Existing{State: StateRunning, Nodes: 3, Workers: 2, Images: []string{"localhost/starlab/kind-node:v1.34.4-aaa"}}, "runs node image localhost/starlab/kind-node:v1.34.4-aaa, requested localhost/starlab/kind-node:v1.37.2-bbb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ex.CheckReusable(cfg)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrNameTaken)
			require.ErrorContains(t, err, tt.wantErr)
			require.ErrorContains(t, err, "starlab down --name lab")
		})
	}
}

func TestControlPlanePodsMissing(t *testing.T) {
	pod := func(component string, phase corev1.PodPhase, ready bool) corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: component + "-lab-control-plane", Labels: map[string]string{"component": component}},
			Status:     corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
		}
	}
	all := []corev1.Pod{
		pod("etcd", corev1.PodRunning, true), pod("kube-apiserver", corev1.PodRunning, true),
		pod("kube-controller-manager", corev1.PodRunning, true), pod("kube-scheduler", corev1.PodRunning, true),
	}
	assert.Empty(t, controlPlanePodsMissing(all))
	assert.Contains(t, controlPlanePodsMissing(all[:3]), "kube-scheduler")
	notReady := append([]corev1.Pod{}, all...)
	notReady[0] = pod("etcd", corev1.PodRunning, false)
	assert.Equal(t, "control-plane pods not Running and Ready: etcd", controlPlanePodsMissing(notReady))
	pending := append([]corev1.Pod{}, all...)
	pending[1] = pod("kube-apiserver", corev1.PodPending, true)
	assert.Contains(t, controlPlanePodsMissing(pending), "kube-apiserver")
}

func TestCheckUpOptions(t *testing.T) {
	l, err := Open("lab", WithKubeconfigPath(filepath.Join(t.TempDir(), "kc")))
	require.NoError(t, err)
	build := func(context.Context, string) (NodeImage, error) { return NodeImage{}, nil }
	tests := []struct {
		name    string
		opts    UpOptions
		wantErr string
	}{
		{"ok", UpOptions{Workers: 2, KubernetesVersion: "v1.37.2", SupportedVersions: []string{"v1.34.4", "v1.37.2"}, BuildNodeImage: build}, ""},
		{"default version", UpOptions{Workers: 2, SupportedVersions: []string{"v1.37.2"}, BuildNodeImage: build}, ""},
		{"unknown version", UpOptions{Workers: 2, KubernetesVersion: "v1.30.0", SupportedVersions: []string{"v1.34.4", "v1.37.2"}, BuildNodeImage: build}, `unknown Kubernetes version "v1.30.0": supported versions are v1.34.4, v1.37.2`},
		{"malformed version", UpOptions{Workers: 2, KubernetesVersion: "1.37", BuildNodeImage: build}, "invalid Kubernetes version"},
		{"negative workers", UpOptions{Workers: -1, BuildNodeImage: build}, "invalid --workers -1"},
		{"no builder", UpOptions{Workers: 2}, "no node image builder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.checkUpOptions(tt.opts)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestOpenAndNames(t *testing.T) {
	for _, bad := range []string{"", "-lab", "lab-", "Lab", "a_b", strings.Repeat("a", 41)} {
		_, err := Open(bad)
		require.Error(t, err, bad)
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	l, err := Open("lab-1")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(home, ".kube", "starlab-lab-1.yaml"), l.KubeconfigPath())
	assert.Equal(t, "lab-1", l.Name())
}

func TestDiskEnough(t *testing.T) {
	require.NoError(t, diskEnough("/var/lib/docker", 10<<30, 3))
	err := diskEnough("/var/lib/docker", 1<<30, 3)
	require.ErrorContains(t, err, "too little disk for a 3-node lab: /var/lib/docker has 1.0 GiB free")
}

func TestMergeValues(t *testing.T) {
	dst := map[string]any{"agent": map[string]any{"image": "a", "apiServer": map[string]any{"host": "h", "port": 6443}}}
	mergeValues(dst, map[string]any{"agent": map[string]any{"logLevel": "debug", "apiServer": map[string]any{"port": 1}}, "x": 1})
	assert.Equal(t, map[string]any{
		"agent": map[string]any{"image": "a", "logLevel": "debug", "apiServer": map[string]any{"host": "h", "port": 1}},
		"x":     1,
	}, dst)
}

func TestKubeletNodeName(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "system:node:sl-lab-e2e-1-worker"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	// kubelet-client-current.pem holds the certificate and the key.
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	path := filepath.Join(dir, "kubelet-client-current.pem")
	require.NoError(t, os.WriteFile(path, pemData, 0o600))
	name, ok := kubeletNodeName(path)
	require.True(t, ok)
	assert.Equal(t, "sl-lab-e2e-1-worker", name)
	_, ok = kubeletNodeName(filepath.Join(dir, "missing.pem"))
	assert.False(t, ok)

	// A node's /var volume: a dated certificate and an absolute "current" symlink valid only in the node.
	mp := t.TempDir()
	pki := filepath.Join(mp, "lib", "kubelet", "pki")
	require.NoError(t, os.MkdirAll(pki, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(pki, "kubelet-client-2026-11-26-01-55-04.pem"), pemData, 0o600))
	require.NoError(t, os.Symlink("/var/lib/kubelet/pki/kubelet-client-2026-11-26-01-55-04.pem", filepath.Join(pki, "kubelet-client-current.pem")))
	name, ok = volumeNodeName(mp)
	require.True(t, ok)
	assert.Equal(t, "sl-lab-e2e-1-worker", name)
	_, ok = volumeNodeName(t.TempDir())
	assert.False(t, ok)
}

func TestCleanupStaleRefusesEmptyPrefix(t *testing.T) {
	_, err := CleanupStale(context.Background(), "")
	require.ErrorContains(t, err, "empty prefix would match every lab")
	_, err = CleanupStale(context.Background(), "Bad_")
	require.ErrorContains(t, err, "invalid lab name prefix")
}

// TestDemoManifestsDecode runs the demo step's file selection, image substitution and decoding over the
// real embedded demo manifests.
func TestDemoManifestsDecode(t *testing.T) {
	refs := map[string]string{"demo": "localhost/starlab/demo:0123456789abcdef"}
	files, err := ManifestFiles(manifests.FS, manifests.StarsDir, manifests.APIsDir)
	require.NoError(t, err)
	require.NotEmpty(t, files)
	kinds := map[string]int{}
	for _, f := range files {
		assert.NotContains(t, f, "/policies/", "policies are scenario steps, not part of the demo step")
		data, err := manifests.FS.ReadFile(f)
		require.NoError(t, err)
		out := SubstituteImages(string(data), refs)
		assert.NotContains(t, out, manifests.DemoImagePlaceholder, f)
		objs, err := DecodeManifests([]byte(out))
		require.NoError(t, err, f)
		for _, o := range objs {
			kinds[o.GetKind()]++
		}
	}
	assert.Positive(t, kinds["Namespace"])
	assert.Positive(t, kinds["Deployment"]+kinds["StatefulSet"]+kinds["Pod"])
	t.Logf("demo objects by kind: %v", kinds)
}

func TestRolloutsMissing(t *testing.T) {
	ctx := context.Background()
	three := int32(3)
	dep := func(ns, name string, gen, observed int64, updated, available, replicas int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: &three},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, AvailableReplicas: available, Replicas: replicas},
		}
	}
	ds := func(ns, name string, desired, updated, available int32) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1},
			Status:     appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: desired, UpdatedNumberScheduled: updated, NumberAvailable: available},
		}
	}
	tests := []struct {
		name       string
		objs       []runtime.Object
		namespaces []string
		want       string
	}{
		{"all rolled out", []runtime.Object{dep("shop", "db", 2, 2, 3, 3, 3), ds("starlab-system", "agent", 3, 3, 3)}, nil, ""},
		{"new generation not observed", []runtime.Object{dep("shop", "db", 3, 2, 3, 3, 3)}, nil, "not rolled out: deployment shop/db"},
		{"old pods still there", []runtime.Object{dep("shop", "db", 2, 2, 3, 3, 4)}, nil, "not rolled out: deployment shop/db"},
		{"daemonset updating", []runtime.Object{ds("starlab-system", "agent", 3, 2, 3)}, nil, "not rolled out: daemonset starlab-system/agent"},
		{"other namespace ignored", []runtime.Object{dep("mine", "x", 2, 1, 0, 0, 0)}, []string{"shop"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, rolloutsMissing(ctx, fake.NewClientset(tt.objs...), tt.namespaces))
		})
	}
}

// TestChartValuesRenderStarlabChart renders the embedded chart with the values the chart step passes.
func TestChartValuesRenderStarlabChart(t *testing.T) {
	refs := map[string]string{
		"agent":    "localhost/starlab/agent:aaaaaaaaaaaaaaaa",
		"observer": "localhost/starlab/observer:bbbbbbbbbbbbbbbb",
		"demo":     "localhost/starlab/demo:cccccccccccccccc",
	}
	values := upChartValues(refs, "172.18.0.2", APIServerPort, charts.Starlab, "starlab")
	out, err := helmrelease.Render(context.Background(), helmrelease.Options{Chart: charts.Starlab, ChartDir: "starlab", Values: values})
	require.NoError(t, err)
	assert.Contains(t, out, refs["agent"])
	assert.Contains(t, out, refs["observer"])
	assert.Contains(t, out, "172.18.0.2")
	assert.NotContains(t, out, "imagePullPolicy: Always")
}
