package nodeimage

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

func TestEmbeddedModulesMatchTree(t *testing.T) {
	onDisk := map[string]string{}
	err := filepath.WalkDir("modules", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		onDisk[filepath.ToSlash(p)] = string(data)
		return err
	})
	require.NoError(t, err)
	require.Equal(t, len(onDisk), len(moduleFiles), "modules_gen.go is stale: run go generate ./internal/nodeimage")
	for p, content := range onDisk {
		assert.Equal(t, content, moduleFiles[p], "modules_gen.go is stale for %s: run go generate ./internal/nodeimage", p)
	}
	for _, v := range SupportedVersions() {
		assert.Contains(t, moduleFiles, "modules/k8s-"+v+"/go.sum", "supported version %s has no wrapper module", v)
	}
}

func TestWriteModule(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, writeModule("etcd", dir))
	assert.FileExists(t, filepath.Join(dir, "go.mod"))
	assert.FileExists(t, filepath.Join(dir, "cmd", "pause", "main.go"))
	require.ErrorContains(t, writeModule("nope", dir), `"nope"`)
}

func TestKindVersionMatchesGoMod(t *testing.T) {
	data, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^\s*sigs\.k8s\.io/kind (\S+)`).FindSubmatch(data)
	if assert.NotNil(t, m, "go.mod requires sigs.k8s.io/kind") {
		assert.Equal(t, KindVersion, string(m[1]), "nodeimage.KindVersion must match go.mod")
	}
}

func TestLookupRelease(t *testing.T) {
	tests := []struct {
		version string
		pause   string
		err     string
	}{
		{"v1.37.2", "3.10.2", ""},
		{"v1.34.4", "3.10.1", ""},
		{"1.37.2", "", "v1.34.4, v1.37.2"},
		{"v1.99.0", "", `"v1.99.0" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			r, err := lookupRelease(tt.version)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.pause, r.pauseTag)
		})
	}
	assert.Contains(t, SupportedVersions(), DefaultVersion)
}

func TestK8sLDFlags(t *testing.T) {
	// Must stay identical to the flags the Go build cache was warmed with (same flags = cache hits).
	assert.Equal(t, "-s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 "+
		"-X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean "+
		"-X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=v1.37.2",
		k8sLDFlags("v1.37.2"))
}

func TestKubeadmConfigPatches(t *testing.T) {
	for _, tt := range []struct {
		version string
		n       int
	}{{"v1.34.4", 1}, {"v1.37.2", 2}} {
		r, err := lookupRelease(tt.version)
		require.NoError(t, err)
		patches := r.kubeadmConfigPatches()
		require.Len(t, patches, tt.n)
		var cc struct {
			Kind string
			Etcd struct{ Local struct{ ImageTag string } }
			DNS  struct{ ImageTag string }
		}
		require.NoError(t, yaml.Unmarshal([]byte(patches[0]), &cc))
		assert.Equal(t, "ClusterConfiguration", cc.Kind)
		assert.Equal(t, EtcdTag, cc.Etcd.Local.ImageTag)
		assert.Equal(t, CoreDNSTag, cc.DNS.ImageTag)
		if tt.n == 2 {
			var kc map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(patches[1]), &kc))
			assert.Equal(t, map[string]any{"kind": "KubeletConfiguration", "failCgroupV1": false}, kc)
		}
	}
}

const kindContainerdConfig = `version = 2

[proxy_plugins]
# fuse-overlayfs is used for rootless
[proxy_plugins."fuse-overlayfs"]
  type = "snapshot"
  address = "/run/containerd-fuse-overlayfs.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = false
`

func TestContainerdConfig(t *testing.T) {
	got, err := containerdConfig(kindContainerdConfig, "3.10.2")
	require.NoError(t, err)
	assert.Equal(t, "version = 2\n\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10.2\"\n  restrict_oom_score_adj = true\n", got)

	_, err = containerdConfig(strings.Replace(kindContainerdConfig, "pause:3.10", "pause:3.11", 1), "3.10.2")
	require.ErrorContains(t, err, "sandbox_image")
}

func TestCRIBaseSpec(t *testing.T) {
	out, err := criBaseSpec([]byte(`{"ociVersion":"1.0.2","process":{"args":["sh"],"rlimits":[{"type":"RLIMIT_NOFILE"}]},"hooks":{"createContainer":[{"path":"/x"}]}}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"ociVersion":"1.0.2","process":{"args":["sh"]},"hooks":{"createContainer":[{"path":"/x"},{"path":"/kind/bin/mount-product-files.sh"}]}}`, string(out))
	out, err = criBaseSpec([]byte(`{"process":{}}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"process":{},"hooks":{"createContainer":[{"path":"/kind/bin/mount-product-files.sh"}]}}`, string(out))
	_, err = criBaseSpec([]byte(`nope`))
	require.Error(t, err)
}

func TestWriteImageArchive(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "etcd")
	require.NoError(t, os.WriteFile(bin, []byte("fake etcd binary"), 0o755))
	pause := filepath.Join(dir, "pause")
	require.NoError(t, os.WriteFile(pause, []byte("fake pause"), 0o755))
	out := filepath.Join(dir, "images.tar")
	require.NoError(t, writeImageArchive(out, []cpImage{
		{"registry.k8s.io/etcd:" + EtcdTag, bin, "/usr/local/bin/etcd"},
		{"registry.k8s.io/pause:3.10.2", pause, "/pause"},
	}))

	cf, files, modes := archiveImage(t, out, "registry.k8s.io/etcd:"+EtcdTag)
	assert.Equal(t, []string{"/usr/local/bin/etcd"}, cf.Config.Entrypoint)
	assert.Equal(t, "linux", cf.OS)
	assert.Equal(t, int64(0o1777), modes["tmp/"])
	assert.Equal(t, "fake etcd binary", files["usr/local/bin/etcd"])
	assert.Contains(t, files["etc/passwd"], "root:x:0:0")
	assert.Contains(t, files, "tmp/")

	_, err := name.NewTag("registry.k8s.io/pause:3.10.2")
	require.NoError(t, err)
	require.ErrorContains(t, writeImageArchive(out, []cpImage{{"registry.k8s.io/x:1", filepath.Join(dir, "missing"), "/x"}}), "missing")
}
