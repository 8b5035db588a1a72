//go:build e2e

package nodeimage

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/hostprep"
	"github.com/starlab-dev/starlab/internal/progress"
)

// TestBuildNodeImage builds the default node image for real (root, Docker, network to the Go module
// proxy and Debian mirror; the first run takes 10+ minutes, later runs use the cache), then checks the
// image from the inside: control-plane images preloaded in containerd, kubeadm's version, kind's files.
func TestBuildNodeImage(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "building node images needs root (debootstrap, chroot)")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	require.NoError(t, hostprep.Ensure(ctx, log))

	opts := Options{KubernetesVersion: DefaultVersion, Progress: progress.New(os.Stderr), Logger: log}
	res, err := Build(ctx, opts)
	require.NoError(t, err)
	t.Logf("first Build: %s from %s in %s", res.Image, res.Source, res.Duration)
	assert.True(t, strings.HasPrefix(res.Image, ImageRepository+":"+DefaultVersion+"-"), res.Image)
	assert.Equal(t, EtcdTag, res.EtcdTag)
	assert.Equal(t, CoreDNSTag, res.CoreDNSTag)
	assert.Equal(t, "3.10.2", res.PauseTag)
	require.Len(t, res.KubeadmConfigPatches, 2)

	container := "starlab-nodeimage-test"
	_, _ = docker(ctx, nil, "rm", "-f", "-v", container)
	t.Cleanup(func() { _, _ = docker(context.Background(), nil, "rm", "-f", "-v", container) })
	_, err = docker(ctx, nil, "run", "-d", "--name", container, "--network", "none", "--entrypoint=sleep", res.Image, "infinity")
	require.NoError(t, err)
	exec := func(args ...string) string {
		out, err := docker(ctx, nil, append([]string{"exec", container}, args...)...)
		require.NoError(t, err, out)
		return strings.TrimSpace(out)
	}
	assert.Equal(t, DefaultVersion, exec("kubeadm", "version", "-o", "short"))
	assert.Equal(t, DefaultVersion, exec("cat", "/kind/version"))
	exec("test", "-L", "/etc/systemd/system/multi-user.target.wants/starlab-bpffs.service")
	exec("test", "-L", "/etc/systemd/system/multi-user.target.wants/kubelet.service")
	exec("test", "!", "-e", "/kind/manifests/default-storage.yaml")
	assert.Contains(t, exec("cat", "/etc/containerd/config.toml"), `sandbox_image = "registry.k8s.io/pause:3.10.2"`)
	exec("bash", "-c", "nohup containerd >/tmp/c.log 2>&1 &")
	require.Eventually(t, func() bool {
		_, err := docker(ctx, nil, "exec", container, "ctr", "version")
		return err == nil
	}, time.Minute, 300*time.Millisecond)
	images := strings.Fields(exec("ctr", "-n", "k8s.io", "images", "ls", "-q"))
	for _, want := range res.PreloadedImages {
		assert.Contains(t, images, want)
	}
	for _, want := range res.PreloadedImages {
		assert.Contains(t, exec("ctr", "-n", "k8s.io", "images", "ls", "name=="+want), "io.cri-containerd.pinned=pinned", want)
	}
	assert.Equal(t, DefaultVersion, exec("ctr", "-n", "k8s.io", "images", "ls", "-q", "name==registry.k8s.io/kube-apiserver:"+DefaultVersion)[len("registry.k8s.io/kube-apiserver:"):])

	// Warm: the image is in docker, so Build only computes keys.
	warm, err := Build(ctx, opts)
	require.NoError(t, err)
	t.Logf("warm Build: %s from %s in %s", warm.Image, warm.Source, warm.Duration)
	assert.Equal(t, res.Image, warm.Image)
	assert.Equal(t, "docker", warm.Source)
	assert.Less(t, warm.Duration, 10*time.Second)
}

// TestNodeBoots runs the node image the way kind does and checks systemd, containerd, bpffs and the
// preloaded images from the CRI's point of view.
func TestNodeBoots(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "building node images needs root")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	require.NoError(t, hostprep.Ensure(ctx, slog.Default())) // inotify limits, privileged containers
	res, err := Build(ctx, Options{Progress: progress.New(os.Stderr)})
	require.NoError(t, err)
	container := "starlab-nodeimage-boot-test"
	_, _ = docker(ctx, nil, "rm", "-f", "-v", container)
	t.Cleanup(func() { _, _ = docker(context.Background(), nil, "rm", "-f", "-v", container) })
	_, err = docker(ctx, nil, "run", "-d", "--name", container, "--hostname", container, "--privileged",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined", "--tmpfs", "/tmp", "--tmpfs", "/run",
		"--volume", "/var", "--volume", "/lib/modules:/lib/modules:ro", "--cgroupns=private", "-e", "container=docker",
		"--network", "none", res.Image)
	require.NoError(t, err)
	var state string
	require.Eventually(t, func() bool {
		out, _ := docker(ctx, nil, "exec", container, "systemctl", "is-system-running")
		state = strings.TrimSpace(out)
		return state == "running" || state == "degraded"
	}, 2*time.Minute, time.Second)
	failed, err := docker(ctx, nil, "exec", container, "systemctl", "--failed", "--no-legend", "--plain")
	require.NoError(t, err)
	assert.Equal(t, "running", state, "failed units: %s", failed)
	mounts, err := docker(ctx, nil, "exec", container, "findmnt", "-n", "-o", "FSTYPE,PROPAGATION", "/sys/fs/bpf")
	require.NoError(t, err, mounts)
	assert.Equal(t, "bpf shared", strings.Join(strings.Fields(mounts), " "))
	active, err := docker(ctx, nil, "exec", container, "systemctl", "is-active", "containerd", "starlab-bpffs")
	require.NoError(t, err, active)
	images, err := docker(ctx, nil, "exec", container, "crictl", "images", "-o", "json")
	require.NoError(t, err)
	for _, want := range res.PreloadedImages {
		assert.Contains(t, images, `"`+want+`"`)
	}
}

// TestBuildRestoresFromArchive removes the node image from docker (when no container uses it) and
// checks that Build loads it back from the cached archive instead of rebuilding.
func TestBuildRestoresFromArchive(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "building node images needs root")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	opts := Options{Progress: progress.New(os.Stderr)}
	res, err := Build(ctx, opts)
	require.NoError(t, err)
	users, err := docker(ctx, nil, "ps", "-a", "-q", "--filter", "ancestor="+res.Image)
	require.NoError(t, err)
	if strings.TrimSpace(users) != "" {
		// A lab is running on this image: check the archive directly instead of removing the image.
		c, err := Build(ctx, opts)
		require.NoError(t, err)
		require.NoError(t, dockerLoad(ctx, cachedArchive(t, c), res.Image))
		return
	}
	_, err = docker(ctx, nil, "rmi", res.Image)
	require.NoError(t, err)
	again, err := Build(ctx, opts)
	require.NoError(t, err)
	t.Logf("restore: %s from %s in %s", again.Image, again.Source, again.Duration)
	assert.Equal(t, "archive", again.Source)
	assert.True(t, imageExists(ctx, res.Image))
}

func cachedArchive(t *testing.T, res Result) string {
	t.Helper()
	dir := os.Getenv("STARLAB_CACHE")
	if dir == "" {
		dir = "/var/cache/starlab"
	}
	p := dir + "/node-" + res.Key + "/" + nodeArchive
	require.FileExists(t, p)
	return p
}

// BenchmarkBuildWarm measures Build when the node image is already in docker (the `starlab up` fast
// path): cache keys over the embedded modules and builder source, plus one `docker image inspect`.
func BenchmarkBuildWarm(b *testing.B) {
	ctx := context.Background()
	opts := Options{}
	if _, err := Build(ctx, opts); err != nil {
		b.Fatalf("build node image first: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := Build(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		if res.Source != "docker" {
			b.Fatalf("warm Build came from %s, want docker", res.Source)
		}
	}
}
