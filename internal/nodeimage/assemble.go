package nodeimage

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const nodeEntrypoint = `ENTRYPOINT ["/usr/local/bin/entrypoint","/sbin/init"]`

// assemble builds the node image into docker and saves it as tmp/node.tar.gz (the node cache entry),
// following kind's buildImage: rootfs -> base image -> preload images with containerd -> commit.
func (b *builder) assemble(ctx context.Context, tmp, rootfsArchive string, dirs map[string]string) error {
	root := filepath.Join(tmp, "rootfs")
	logPath := filepath.Join(tmp, "assemble.log")
	var kindFiles string
	err := b.progress.Run("kind "+KindVersion+" base files", func() error {
		var err error
		kindFiles, err = b.kindBaseFiles(ctx)
		return err
	})
	if err != nil {
		return err
	}
	err = b.progress.Run("customise rootfs", func() error {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return fmt.Errorf("rootfs dir: %w", err)
		}
		if err := runLogged(ctx, logPath, nil, "tar", "--numeric-owner", "--xattrs", "-xpf", rootfsArchive, "-C", root); err != nil {
			return fmt.Errorf("extract rootfs: %w", err)
		}
		return b.customizeRootfs(ctx, root, kindFiles, dirs)
	})
	if err != nil {
		return err
	}

	images := filepath.Join(tmp, "control-plane-images.tar")
	if err := b.progress.Run("control-plane images", func() error {
		return writeImageArchive(images, b.controlPlaneImages(dirs))
	}); err != nil {
		return err
	}

	base := fmt.Sprintf("localhost/starlab/kind-base:%s-%s", b.rel.version, b.nodeKey.Short())
	if err := b.progress.Run("import base image", func() error { return importRootfs(ctx, root, base) }); err != nil {
		return err
	}
	defer func() { _, _ = docker(context.WithoutCancel(ctx), nil, "rmi", base) }()
	if err := os.RemoveAll(root); err != nil {
		return fmt.Errorf("remove rootfs work dir: %w", err)
	}

	container := "starlab-nodeimage-" + b.nodeKey.Short()
	_, _ = docker(ctx, nil, "rm", "-f", "-v", container)
	defer func() { _, _ = docker(context.WithoutCancel(ctx), nil, "rm", "-f", "-v", container) }()
	if err := b.progress.Run("preload control-plane images", func() error {
		return b.preload(ctx, container, base, images)
	}); err != nil {
		return err
	}
	if err := os.Remove(images); err != nil {
		return fmt.Errorf("remove image archive: %w", err)
	}
	if err := b.progress.Run("commit "+b.image, func() error {
		_, err := docker(ctx, nil, "commit", "--change", nodeEntrypoint, "--change", "ENV container=docker", container, b.image)
		return err
	}); err != nil {
		return err
	}
	return b.progress.Run("save node image archive", func() error {
		return saveImage(ctx, b.image, filepath.Join(tmp, nodeArchive))
	})
}

// importRootfs streams the rootfs as a tar into `docker import`.
func importRootfs(ctx context.Context, root, ref string) error {
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "-C", root, "-c", ".")
	var tarErr strings.Builder
	tarCmd.Stderr = &tarErr
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("tar rootfs: %w", err)
	}
	if err := tarCmd.Start(); err != nil {
		return fmt.Errorf("tar rootfs: %w", err)
	}
	_, importErr := docker(ctx, pipe, "import", "--change", "ENV container=docker", "--change", nodeEntrypoint, "-", ref)
	if importErr != nil {
		_, _ = io.Copy(io.Discard, pipe)
	}
	if err := tarCmd.Wait(); err != nil {
		return fmt.Errorf("tar rootfs: %w: %s", err, tarErr.String())
	}
	return importErr
}

// preload starts containerd in a container of the base image and imports the images, pinned, into
// its k8s.io namespace (what the CRI uses), then stops containerd cleanly.
func (b *builder) preload(ctx context.Context, container, base, archive string) error {
	if _, err := docker(ctx, nil, "run", "-d", "--name", container, "--network", "none", "--entrypoint=sleep",
		"--security-opt", "seccomp=unconfined", base, "infinity"); err != nil {
		return err
	}
	if _, err := docker(ctx, nil, "exec", container, "bash", "-c",
		"nohup containerd >/tmp/containerd.log 2>&1 & echo $! >/tmp/containerd.pid"); err != nil {
		return err
	}
	var lastErr error
	for deadline := time.Now().Add(60 * time.Second); ; {
		if _, lastErr = docker(ctx, nil, "exec", container, "ctr", "version"); lastErr == nil {
			break // ctr 1.6 has no `ctr info`; `ctr version` needs the daemon
		}
		if time.Now().After(deadline) {
			out, _ := docker(ctx, nil, "exec", container, "cat", "/tmp/containerd.log")
			return fmt.Errorf("containerd in the build container did not answer within 60s: %w\n%s", lastErr, tail(out, 15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("open image archive: %w", err)
	}
	defer f.Close()
	if _, err := docker(ctx, f, "exec", "-i", container, "ctr", "--namespace=k8s.io", "images", "import",
		"--all-platforms", "--no-unpack", "--digests", "-"); err != nil {
		return err
	}
	// ctr 1.6 has no `import --label`: pin afterwards, as kind's importer does at import time.
	for _, ref := range b.rel.preloadedImages() {
		if _, err := docker(ctx, nil, "exec", container, "ctr", "--namespace=k8s.io", "images", "label", ref,
			"io.cri-containerd.pinned=pinned"); err != nil {
			return err
		}
	}
	out, err := docker(ctx, nil, "exec", container, "ctr", "--namespace=k8s.io", "images", "ls", "-q")
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, l := range strings.Fields(out) {
		have[l] = true
	}
	for _, want := range b.rel.preloadedImages() {
		if !have[want] {
			return fmt.Errorf("image %s missing from the node's containerd after import (have: %s)", want, strings.Join(strings.Fields(out), ", "))
		}
	}
	_, err = docker(ctx, nil, "exec", container, "bash", "-c",
		// containerd's parent is `sleep` (PID 1 here), which does not reap: an exited containerd stays a
		// zombie, so "gone" means no process or state Z.
		`pid=$(cat /tmp/containerd.pid); kill $pid; `+
			`alive() { [ -e /proc/$pid ] && ! grep -q '^State:[[:space:]]*Z' /proc/$pid/status 2>/dev/null; }; `+
			`for i in $(seq 100); do alive || break; sleep 0.1; done; `+
			`if alive; then echo "containerd (pid $pid) still running 10s after SIGTERM"; exit 1; fi; `+
			`rm -f /tmp/containerd.log /tmp/containerd.pid`)
	if err != nil {
		return fmt.Errorf("stop containerd in build container: %w", err)
	}
	return nil
}

// saveImage writes `docker save ref | gzip -1` to out.
func saveImage(ctx context.Context, ref, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	defer f.Close()
	zipper := "gzip"
	if _, err := exec.LookPath("pigz"); err == nil {
		zipper = "pigz"
	}
	save := exec.CommandContext(ctx, "docker", "save", ref)
	var saveErr, zipErr strings.Builder
	save.Stderr = &saveErr
	pipe, err := save.StdoutPipe()
	if err != nil {
		return fmt.Errorf("docker save: %w", err)
	}
	zip := exec.CommandContext(ctx, zipper, "-1", "-c")
	zip.Stdin, zip.Stdout, zip.Stderr = pipe, f, &zipErr
	if err := save.Start(); err != nil {
		return fmt.Errorf("docker save: %w", err)
	}
	if err := zip.Run(); err != nil {
		_ = save.Wait()
		return fmt.Errorf("%s: %w: %s", zipper, err, zipErr.String())
	}
	if err := save.Wait(); err != nil {
		return fmt.Errorf("docker save %s: %w: %s", ref, err, saveErr.String())
	}
	return f.Close()
}
