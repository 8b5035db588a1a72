package nodeimage

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/starlab-dev/starlab/internal/cache"
	"github.com/starlab-dev/starlab/internal/progress"
)

// builderSource is the code that shapes the node image's content; it is part of the node image's cache
// key, so changing how the image is assembled rebuilds it (but not the Go binaries, keyed on their own
// inputs). Orchestration code (builder.go, gobuild.go, docker.go) is left out on purpose.
//
//go:embed nodeimage.go rootfs.go cpimages.go assemble.go
var builderSource embed.FS

// Cache step names (entries are <step>-<key> in the cache directory).
const (
	stepK8s     = "k8s-bin"
	stepEtcd    = "etcd-bin"
	stepCoreDNS = "coredns-bin"
	stepCrictl  = "crictl-bin"
	stepRootfs  = "rootfs"
	stepNode    = "node"
)

// nodeArchive is the file holding `docker save <image> | gzip` inside a node cache entry.
const nodeArchive = "node.tar.gz"

const gib = 1 << 30

type builder struct {
	rel      release
	cache    *cache.Cache
	progress *progress.Reporter
	log      *slog.Logger

	goBin     string
	goVersion string

	k8sKey, etcdKey, corednsKey, crictlKey, rootfsKey, nodeKey cache.Key
	agnhostKey                                                 cache.Key // BuildAgnhost only

	image string
}

// goBinary is how the Go binaries of one module are built.
type goBinary struct {
	step    string
	module  string   // directory under modules/
	pkgs    []string // packages to build
	out     string   // -o value relative to the entry: "" = the entry dir (several packages), or a file name
	ldflags string
}

func (b *builder) binaries() []goBinary {
	return []goBinary{
		{step: stepK8s, module: "k8s-" + b.rel.version, pkgs: k8sPackages, ldflags: k8sLDFlags(b.rel.version)},
		{step: stepEtcd, module: "etcd", pkgs: []string{"./cmd/etcd", "./cmd/pause"}, ldflags: "-s -w"},
		{step: stepCoreDNS, module: "coredns", pkgs: []string{"."}, out: "coredns", ldflags: "-s -w"},
		{step: stepCrictl, module: "crictl", pkgs: []string{"sigs.k8s.io/cri-tools/cmd/crictl"}, out: "crictl",
			ldflags: "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=" + crictlVersion},
	}
}

func (b *builder) keyFor(step string) cache.Key {
	switch step {
	case stepK8s:
		return b.k8sKey
	case stepEtcd:
		return b.etcdKey
	case stepCoreDNS:
		return b.corednsKey
	case stepCrictl:
		return b.crictlKey
	case stepAgnhost:
		return b.agnhostKey
	}
	panic("nodeimage: no key for step " + step)
}

// useGo finds the go command and its version (part of every binary's cache key).
func (b *builder) useGo(ctx context.Context) error {
	goBin, err := findGo()
	if err != nil {
		return err
	}
	b.goBin = goBin
	out, err := exec.CommandContext(ctx, goBin, "env", "GOVERSION").Output()
	if err != nil {
		return fmt.Errorf("go env GOVERSION: %w", err)
	}
	b.goVersion = strings.TrimSpace(string(out))
	return nil
}

// binaryKey starts the cache key of the Go binaries gb builds (useGo first); the caller adds what
// else they depend on, then the module (addModule).
func (b *builder) binaryKey(gb goBinary) *cache.KeyBuilder {
	return cache.NewKey().String("step", gb.step).String("go", b.goVersion).String("goarch", runtime.GOARCH).
		Strings("packages", gb.pkgs).String("out", gb.out).String("ldflags", gb.ldflags)
}

// computeKeys derives every cache key from the inputs alone, before anything is built.
func (b *builder) computeKeys(ctx context.Context) error {
	if err := b.useGo(ctx); err != nil {
		return err
	}

	keys := map[string]*cache.Key{stepK8s: &b.k8sKey, stepEtcd: &b.etcdKey, stepCoreDNS: &b.corednsKey, stepCrictl: &b.crictlKey}
	for _, gb := range b.binaries() {
		k, err := addModule(b.binaryKey(gb), gb.module).Sum()
		if err != nil {
			return err
		}
		*keys[gb.step] = k
	}
	var err error
	b.rootfsKey, err = cache.NewKey().String("step", stepRootfs).String("suite", debianSuite).String("mirror", debianMirror).
		String("variant", "minbase").String("arch", runtime.GOARCH).Strings("packages", rootfsPackages).Sum()
	if err != nil {
		return err
	}
	b.nodeKey, err = cache.NewKey().String("step", stepNode).String("kubernetes", b.rel.version).
		String("pause", b.rel.pauseTag).String("kind", KindVersion).
		Key("k8s", b.k8sKey).Key("etcd", b.etcdKey).Key("coredns", b.corednsKey).Key("crictl", b.crictlKey).
		Key("rootfs", b.rootfsKey).FS("builder", builderSource, ".").FS("units", unitFiles, ".").Sum()
	if err != nil {
		return err
	}
	b.image = fmt.Sprintf("%s:%s-%s", ImageRepository, b.rel.version, b.nodeKey.Short())
	return nil
}

// run returns how the image was obtained: "docker", "archive" or "built".
func (b *builder) run(ctx context.Context) (string, error) {
	if err := b.computeKeys(ctx); err != nil {
		return "", err
	}
	b.log.Debug("node image", "image", b.image, "key", b.nodeKey)
	if imageExists(ctx, b.image) {
		s := b.progress.Start("node image " + b.image)
		s.Logf("present in docker")
		s.Done()
		b.pruneOlder(ctx)
		return "docker", nil
	}
	if b.cache.Has(stepNode, b.nodeKey) {
		archive := filepath.Join(b.cache.Path(stepNode, b.nodeKey), nodeArchive)
		err := b.progress.Run("load cached node image "+b.image, func() error { return dockerLoad(ctx, archive, b.image) })
		if err == nil {
			b.pruneOlder(ctx)
			return "archive", nil
		}
		b.log.Warn("cached node image archive unusable: rebuilding", "archive", archive, "err", err)
		if err := b.cache.Remove(stepNode, b.nodeKey); err != nil {
			return "", err
		}
	}
	if err := b.progress.Run("check free disk", func() error { return b.checkDisk(ctx) }); err != nil {
		return "", err
	}
	// debootstrap is bound by the network, the Go builds by the CPU: run them side by side.
	type rootfsResult struct {
		dir string
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rootfsDone := make(chan rootfsResult, 1)
	go func() {
		dir, err := b.debootstrap(ctx)
		rootfsDone <- rootfsResult{dir, err}
	}()
	dirs := map[string]string{}
	for _, gb := range b.binaries() {
		dir, err := b.goBuild(ctx, gb)
		if err != nil {
			cancel()
			<-rootfsDone
			return "", err
		}
		dirs[gb.step] = dir
	}
	rootfs := <-rootfsDone
	if rootfs.err != nil {
		return "", rootfs.err
	}
	_, _, err := b.cache.Build(ctx, stepNode, b.nodeKey, func(tmp string) error {
		if err := b.assemble(ctx, tmp, filepath.Join(rootfs.dir, rootfsTar), dirs); err != nil {
			return err
		}
		return writeNodeMeta(tmp, nodeMeta{Image: b.image, KubernetesVersion: b.rel.version})
	})
	if err != nil {
		return "", err
	}
	b.pruneOlder(ctx)
	return "built", nil
}

// nodeMeta is stored beside the node image archive, so older entries can be found and pruned.
type nodeMeta struct {
	Image             string `json:"image"`
	KubernetesVersion string `json:"kubernetesVersion"`
}

const nodeMetaFile = "meta.json"

func writeNodeMeta(dir string, m nodeMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode node meta: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, nodeMetaFile), data, 0o644); err != nil {
		return fmt.Errorf("write node meta: %w", err)
	}
	return nil
}

// pruneOlder removes node images (docker and cache archive) of the same Kubernetes version built from
// other inputs, so rebuilding after a change does not fill the disk. Images in use by a container stay.
func (b *builder) pruneOlder(ctx context.Context) {
	entries, _ := filepath.Glob(filepath.Join(b.cache.Root(), stepNode+"-*"))
	for _, e := range entries {
		if filepath.Base(e) == stepNode+"-"+string(b.nodeKey) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(e, nodeMetaFile))
		if err != nil {
			continue
		}
		var m nodeMeta
		if json.Unmarshal(data, &m) != nil || m.KubernetesVersion != b.rel.version || m.Image == b.image {
			continue
		}
		if imageExists(ctx, m.Image) {
			if _, err := docker(ctx, nil, "rmi", m.Image); err != nil {
				b.log.Debug("keep older node image (in use?)", "image", m.Image, "err", err)
				continue
			}
		}
		if err := os.RemoveAll(e); err != nil {
			b.log.Warn("prune older node image archive", "dir", e, "err", err)
			continue
		}
		b.log.Info("pruned older node image", "image", m.Image)
	}
}

// checkDisk fails early when the build would run out of space, saying how much it needs where.
func (b *builder) checkDisk(ctx context.Context) error {
	need := map[string]uint64{b.cache.Root(): 3 * gib}
	if !b.cache.Has(stepK8s, b.k8sKey) {
		goCache, err := exec.CommandContext(ctx, b.goBin, "env", "GOCACHE").Output()
		if err == nil && strings.TrimSpace(string(goCache)) != "" {
			need[strings.TrimSpace(string(goCache))] = 5 * gib // one Kubernetes version in the Go build cache
		}
	}
	if root, err := dockerRootDir(ctx); err == nil {
		need[root] = 3 * gib
	}
	var errs []error
	for path, n := range need {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(path, &st); err != nil {
			return fmt.Errorf("statfs %s: %w", path, err)
		}
		if free := st.Bavail * uint64(st.Bsize); free < n {
			errs = append(errs, fmt.Errorf("%s has %.1f GiB free, the node image build needs %.1f GiB there", path, float64(free)/gib, float64(n)/gib))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("not enough disk (free some space, or set $%s elsewhere): %w", cache.EnvDir, errors.Join(errs...))
	}
	return nil
}

func findGo() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", errors.New("the node image build needs the Go toolchain (go1.26+): install it from https://go.dev/dl/ and put `go` in PATH")
}

// Lookup is the node image this Starlab builds for opts.KubernetesVersion and whether it is at
// hand, in docker or in the cache, so that a lab can run it offline. It builds nothing. (It lives
// here, with the orchestration, so it is not part of builderSource and of the node image's key.)
func Lookup(ctx context.Context, opts Options) (image, key string, present bool, err error) {
	version := opts.KubernetesVersion
	if version == "" {
		version = DefaultVersion
	}
	rel, err := lookupRelease(version)
	if err != nil {
		return "", "", false, err
	}
	c, err := cache.Open(opts.CacheDir)
	if err != nil {
		return "", "", false, err
	}
	b := &builder{rel: rel, cache: c, progress: opts.Progress, log: slog.Default()}
	if err := b.computeKeys(ctx); err != nil {
		return "", "", false, err
	}
	present = imageExists(ctx, b.image) || b.cache.Has(stepNode, b.nodeKey)
	return b.image, string(b.nodeKey), present, nil
}
