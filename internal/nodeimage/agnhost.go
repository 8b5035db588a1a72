package nodeimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/starlab-dev/starlab/internal/cache"
)

// AgnhostImage is the exact name the upstream network-policy-api conformance suite's workloads use
// (conformance/base/manifests.yaml at v0.3.0). BuildAgnhost builds it here, so nothing pulls.
const AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.45"

// AgnhostPackage is the agnhost command in the Kubernetes module (modules/agnhost pins the same
// Kubernetes release as modules/k8s-<DefaultVersion>; its agnhost reports VERSION 2.66.1 and keeps the
// subcommands and flags the suite runs: pause, connect, serve-hostname, porter).
const AgnhostPackage = "k8s.io/kubernetes/test/images/agnhost"

// BashStatic is the statically linked bash of Debian's bash-static package: the suite's containers run
// `/bin/bash -c "/agnhost ..."`, so the image needs a bash that works without libc.
const BashStatic = "/bin/bash-static"

const (
	stepAgnhost      = "agnhost-bin"
	stepAgnhostImage = "agnhost-image"
	agnhostArchive   = "agnhost.tar"
)

// AgnhostResult is a built (or cached) agnhost image archive.
type AgnhostResult struct {
	Image    string        `json:"image"`
	Archive  string        `json:"archive"` // docker-archive in the cache, ready for `ctr images import`
	Key      string        `json:"key"`
	Source   string        `json:"source"` // "cache" or "built"
	Duration time.Duration `json:"durationNs"`
}

// BuildAgnhost builds agnhost from the Kubernetes module with one `go build` of modules/agnhost, and the
// image AgnhostImage from it and BashStatic (entrypoint /agnhost, default argument pause, as upstream's
// Dockerfile has), both content-keyed in the cache. Only opts.CacheDir, Progress and Logger are used.
func BuildAgnhost(ctx context.Context, opts Options) (AgnhostResult, error) {
	start := time.Now()
	c, err := cache.Open(opts.CacheDir)
	if err != nil {
		return AgnhostResult{}, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &builder{cache: c, progress: opts.Progress, log: log}
	if err := b.useGo(ctx); err != nil {
		return AgnhostResult{}, err
	}
	bash, err := os.ReadFile(BashStatic)
	if err != nil {
		return AgnhostResult{}, fmt.Errorf("the agnhost image needs a static bash: %w (install Debian's bash-static: `apt-get install bash-static`, or `make deps`)", err)
	}
	gb := goBinary{step: stepAgnhost, module: "agnhost", pkgs: []string{AgnhostPackage}, out: "agnhost", ldflags: "-s -w"}
	binKey, err := addModule(b.binaryKey(gb), gb.module).Sum()
	if err != nil {
		return AgnhostResult{}, err
	}
	imgKey, err := cache.NewKey().String("step", stepAgnhostImage).String("image", AgnhostImage).Key("agnhost", binKey).
		String("bash", string(bash)).String("layout", agnhostLayout).Sum()
	if err != nil {
		return AgnhostResult{}, err
	}
	res := AgnhostResult{Image: AgnhostImage, Key: string(imgKey), Source: "cache",
		Archive: filepath.Join(c.Path(stepAgnhostImage, imgKey), agnhostArchive)}
	if c.Has(stepAgnhostImage, imgKey) {
		res.Duration = time.Since(start)
		return res, nil
	}
	res.Source = "built"
	b.agnhostKey = binKey
	binDir, err := b.goBuild(ctx, gb)
	if err != nil {
		return AgnhostResult{}, err
	}
	_, _, err = c.Build(ctx, stepAgnhostImage, imgKey, func(tmp string) error {
		return writeAgnhostArchive(filepath.Join(tmp, agnhostArchive), filepath.Join(binDir, "agnhost"), bash)
	})
	if err != nil {
		return AgnhostResult{}, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// agnhostLayout names the image's layout; change it when writeAgnhostArchive changes what it writes.
const agnhostLayout = "v1: /agnhost, /agnhost-2, /bin/bash, /bin/sh, /tmp, /uploads; entrypoint /agnhost; cmd pause"

// writeAgnhostArchive writes the agnhost image as a docker-archive: one layer with the binary as
// /agnhost (and the link /agnhost-2 upstream has), bash as /bin/bash and /bin/sh, /tmp and /uploads.
func writeAgnhostArchive(out, agnhost string, bash []byte) error {
	bin, err := os.ReadFile(agnhost)
	if err != nil {
		return fmt.Errorf("agnhost image: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	entries := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755},
		{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777},
		{Typeflag: tar.TypeDir, Name: "uploads/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: "agnhost", Mode: 0o755, Size: int64(len(bin))},
		{Typeflag: tar.TypeSymlink, Name: "agnhost-2", Linkname: "agnhost", Mode: 0o777},
		{Typeflag: tar.TypeReg, Name: "bin/bash", Mode: 0o755, Size: int64(len(bash))},
		{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "bash", Mode: 0o777},
	}
	for _, h := range entries {
		h.ModTime = epoch
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("agnhost image layer %s: %w", h.Name, err)
		}
		var data []byte
		switch h.Name {
		case "agnhost":
			data = bin
		case "bin/bash":
			data = bash
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("agnhost image layer %s: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("agnhost image layer: %w", err)
	}
	layerTar := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return fmt.Errorf("agnhost image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("agnhost image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("agnhost image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/agnhost"}
	cf.Config.Cmd = []string{"pause"}
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("agnhost image config: %w", err)
	}
	tag, err := name.NewTag(AgnhostImage)
	if err != nil {
		return fmt.Errorf("image name %q: %w", AgnhostImage, err)
	}
	if err := tarball.MultiRefWriteToFile(out, map[name.Reference]v1.Image{tag: img}); err != nil {
		return fmt.Errorf("write agnhost image archive %s: %w", out, err)
	}
	return nil
}
