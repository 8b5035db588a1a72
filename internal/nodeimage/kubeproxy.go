package nodeimage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/starlab-dev/starlab/internal/cache"
)

// kube-proxy is not part of the node image (kubeProxyMode none): the benchmark's reference lab loads it as
// an image of its own. It is built from the same wrapper module as the control-plane binaries, with the
// same ldflags, in a cache entry keyed on its own inputs, so building it never changes the node image's
// key. This file is orchestration and is not part of builderSource.

// stepKubeProxy is the cache step of the kube-proxy binary.
const stepKubeProxy = "kube-proxy-bin"

// kubeProxyPackage is the command built.
const kubeProxyPackage = "k8s.io/kubernetes/cmd/kube-proxy"

// kubeProxySums are the go.sum lines the wrapper module lacks for kube-proxy's own dependencies (its
// nftables and IPVS proxiers), per Kubernetes version. The module's go.mod already selects these versions
// (`go list -mod=mod -deps k8s.io/kubernetes/cmd/kube-proxy` leaves it unchanged); only the hashes are added,
// to a copy of the module, and `go build` verifies them.
var kubeProxySums = map[string][]string{
	"v1.37.2": {
		"github.com/google/nftables v0.3.0 h1:bkyZ0cbpVeMHXOrtlFc8ISmfVqq5gPJukoYieyVmITg=",
		"github.com/google/nftables v0.3.0/go.mod h1:BCp9FsrbF1Fn/Yu6CLUc9GGZFw/+hsxfluNXXmxBfRM=",
		"github.com/mdlayher/netlink v1.11.2 h1:HKh2jqe+omdSWcQ88nrT7INE61B0NXfiSPFdgL4YbNI=",
		"github.com/mdlayher/netlink v1.11.2/go.mod h1:uT2Yc/QLaZubzDpZIBi9d4GoeLwtp3x1AMeqSRrK2sA=",
		"github.com/mdlayher/socket v0.6.1 h1:M7uj2NtuujUY4mYr1C57NmfNiRHbkKpnBxO856lsc3A=",
		"github.com/mdlayher/socket v0.6.1/go.mod h1:+/SGtqc9V+5dAuRgQsU0fGBI+oRDiW7O2Obx10OIWfg=",
		"github.com/moby/ipvs v1.1.0 h1:ONN4pGaZQgAx+1Scz5RvWV4Q7Gb+mvfRh3NsPS+1XQQ=",
		"github.com/moby/ipvs v1.1.0/go.mod h1:4VJMWuf098bsUMmZEiD4Tjk/O7mOn3l1PTD3s4OoYAs=",
		"github.com/vishvananda/netlink v1.3.1 h1:3AEMt62VKqz90r0tmNhog0r/PpWKmrEShJU0wJW6bV0=",
		"github.com/vishvananda/netlink v1.3.1/go.mod h1:ARtKouGSTGchR8aMwmkzC0qiNPrrWO5JS/XMVl45+b4=",
		"github.com/vishvananda/netns v0.0.5 h1:DfiHV+j8bA32MFM7bfEunvT8IAqQ/NzSJHtcmW5zdEY=",
		"github.com/vishvananda/netns v0.0.5/go.mod h1:SpkAiCQRtJ6TvvxPnOSyH3BMl6unz3xZlaprSwhNNJM=",
		"sigs.k8s.io/knftables v0.0.22 h1:RMbBSxQb4t730I6m492NDzWTOaActPpF9OCACQmF9bE=",
		"sigs.k8s.io/knftables v0.0.22/go.mod h1:tig4GDnk1aG8sNsKW/iqid/PGgVLxJLEZkuUlO5C44Y=",
	},
}

// KubeProxyResult is a built (or cached) kube-proxy binary.
type KubeProxyResult struct {
	// Binary is the path of the static kube-proxy executable in the cache entry.
	Binary            string `json:"binary"`
	KubernetesVersion string `json:"kubernetesVersion"`
	Key               string `json:"key"`
	Cached            bool   `json:"cached"`
}

// BuildKubeProxy builds kube-proxy for opts.KubernetesVersion (or returns the cached build). With the
// node image's Kubernetes binaries already built, the Go build cache holds almost every package and this
// takes a minute or two.
func BuildKubeProxy(ctx context.Context, opts Options) (KubeProxyResult, error) {
	version := opts.KubernetesVersion
	if version == "" {
		version = DefaultVersion
	}
	rel, err := lookupRelease(version)
	if err != nil {
		return KubeProxyResult{}, err
	}
	sums, ok := kubeProxySums[version]
	if !ok {
		return KubeProxyResult{}, fmt.Errorf("kube-proxy for Kubernetes %s: no pinned go.sum lines for its dependencies (add them to kubeProxySums, from `go list -mod=mod -deps %s` in modules/k8s-%s)", version, kubeProxyPackage, version)
	}
	c, err := cache.Open(opts.CacheDir)
	if err != nil {
		return KubeProxyResult{}, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &builder{rel: rel, cache: c, progress: opts.Progress, log: log}
	if err := b.useGo(ctx); err != nil {
		return KubeProxyResult{}, err
	}
	gb := goBinary{step: stepKubeProxy, module: "k8s-" + version, pkgs: []string{kubeProxyPackage}, out: "kube-proxy", ldflags: k8sLDFlags(version)}
	key, err := addModule(b.binaryKey(gb).Strings("extra go.sum", sums), gb.module).Sum()
	if err != nil {
		return KubeProxyResult{}, err
	}
	s := b.progress.Start("build kube-proxy " + version)
	dir, hit, err := c.Build(ctx, gb.step, key, func(tmp string) error {
		src := filepath.Join(tmp, ".src")
		if err := writeModule(gb.module, src); err != nil {
			return err
		}
		if err := appendLines(filepath.Join(src, "go.sum"), sums); err != nil {
			return err
		}
		if err := b.runGoBuild(ctx, s, gb, src, filepath.Join(tmp, gb.out)); err != nil {
			return err
		}
		if err := os.RemoveAll(src); err != nil {
			return fmt.Errorf("remove build sources: %w", err)
		}
		out, err := exec.CommandContext(ctx, filepath.Join(tmp, gb.out), "--version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("run built kube-proxy --version: %w: %s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "Kubernetes "+version {
			return fmt.Errorf("built kube-proxy reports %q, want %q (check the -X ldflags)", got, "Kubernetes "+version)
		}
		return nil
	})
	if err != nil {
		return KubeProxyResult{}, s.Fail(err)
	}
	if hit {
		s.Logf("cached %s", key.Short())
	}
	s.Done()
	return KubeProxyResult{Binary: filepath.Join(dir, gb.out), KubernetesVersion: version, Key: string(key), Cached: hit}, nil
}

// appendLines appends lines to the file at path.
func appendLines(path string, lines []string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("extend %s: %w", path, err)
	}
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		_ = f.Close()
		return fmt.Errorf("extend %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("extend %s: %w", path, err)
	}
	return nil
}
