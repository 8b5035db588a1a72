// Package nodeimage builds a kind node image fully offline: nothing is pulled from any registry.
//
// Build assembles localhost/starlab/kind-node:<k8s version>-<key12> from parts it builds here:
//   - Kubernetes binaries (kubeadm, kubelet, kubectl, kube-apiserver, kube-controller-manager,
//     kube-scheduler) with one `go build` of the committed wrapper module modules/k8s-<version>;
//   - etcd and pause (modules/etcd), a trimmed CoreDNS (modules/coredns), crictl (modules/crictl);
//   - a Debian bookworm rootfs from debootstrap, customised with kind's base-image files taken from the
//     kind module (containerd from Debian, bpffs mounted at boot by a starlab-bpffs.service unit);
//   - the control-plane images, written with go-containerregistry under the exact names kubeadm uses,
//     and preloaded into the node's containerd (pinned), so kind never pulls.
//
// Every step is cached in the content-keyed cache (internal/cache): a step whose inputs did not change
// is skipped, an interrupted build resumes at the first missing step, and a warm Build returns as soon
// as the image is found in docker (or loaded from the cached archive).
//
// The kind cluster using the image must pin the etcd and CoreDNS tags that were built (Result.EtcdTag,
// Result.CoreDNSTag) and, on cgroup v1 hosts, allow cgroup v1: Result.KubeadmConfigPatches holds those
// patches ready for kind's `kubeadmConfigPatches`.
package nodeimage

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/internal/cache"
	"github.com/starlab-dev/starlab/internal/progress"
)

// DefaultVersion is the Kubernetes version built when Options.KubernetesVersion is empty.
const DefaultVersion = "v1.37.2"

// KindVersion is the kind module whose base-image files the node uses; it must match go.mod.
const KindVersion = "v0.33.0"

// ImageRepository is where node images are tagged (loopback only: an accidental pull cannot leave the host).
const ImageRepository = "localhost/starlab/kind-node"

// Tags of the images built from modules/etcd and modules/coredns, for every Kubernetes version.
const (
	EtcdTag    = "3.6.5-0"
	CoreDNSTag = "v1.12.1"
)

// release describes one supported Kubernetes version.
type release struct {
	version  string
	pauseTag string // kubeadm's pause tag for this version; containerd's sandbox_image uses it too
	// cgroupV1Patch: kubelet >= 1.35 refuses cgroup v1 unless failCgroupV1 is false.
	cgroupV1Patch bool
}

var releases = []release{
	{version: "v1.34.4", pauseTag: "3.10.1"},
	{version: "v1.37.2", pauseTag: "3.10.2", cgroupV1Patch: true},
}

// SupportedVersions lists the Kubernetes versions Build can build, oldest first.
func SupportedVersions() []string {
	out := make([]string, len(releases))
	for i, r := range releases {
		out[i] = r.version
	}
	return out
}

// ValidateVersion returns an error naming the supported versions when version cannot be built.
func ValidateVersion(version string) error {
	_, err := lookupRelease(version)
	return err
}

func lookupRelease(version string) (release, error) {
	for _, r := range releases {
		if r.version == version {
			return r, nil
		}
	}
	return release{}, fmt.Errorf("kubernetes version %q is not supported: use one of %s", version, strings.Join(SupportedVersions(), ", "))
}

// Options configure Build.
type Options struct {
	// KubernetesVersion to build, e.g. "v1.37.2"; "" means DefaultVersion.
	KubernetesVersion string
	// CacheDir is the build cache; "" means $STARLAB_CACHE or /var/cache/starlab.
	CacheDir string
	// Progress receives one step per build stage; nil prints nothing.
	Progress *progress.Reporter
	// Logger receives details (commands, cache keys); nil means slog.Default().
	Logger *slog.Logger
}

// Result describes a built (or found) node image.
type Result struct {
	// Image is the docker image reference for kind's node image field.
	Image             string `json:"image"`
	KubernetesVersion string `json:"kubernetesVersion"`
	// EtcdTag, CoreDNSTag and PauseTag are the registry.k8s.io tags preloaded in the image.
	EtcdTag    string `json:"etcdTag"`
	CoreDNSTag string `json:"coreDNSTag"`
	PauseTag   string `json:"pauseTag"`
	// PreloadedImages are the full names preloaded into the node's containerd (namespace k8s.io).
	PreloadedImages []string `json:"preloadedImages"`
	// KubeadmConfigPatches must be added to the kind cluster's kubeadmConfigPatches.
	KubeadmConfigPatches []string `json:"kubeadmConfigPatches"`
	// Key is the cache key of the image (its inputs' sha256).
	Key string `json:"key"`
	// Source says how the image was obtained: "docker" (already present), "archive" (loaded from the
	// cached archive) or "built".
	Source   string        `json:"source"`
	Duration time.Duration `json:"durationNs"`
}

// KubeadmConfigPatches returns the kind kubeadmConfigPatches a cluster of this release needs.
func (r release) kubeadmConfigPatches() []string {
	patches := []string{fmt.Sprintf("kind: ClusterConfiguration\netcd:\n  local:\n    imageTag: %s\ndns:\n  imageTag: %s\n", EtcdTag, CoreDNSTag)}
	if r.cgroupV1Patch {
		patches = append(patches, "kind: KubeletConfiguration\nfailCgroupV1: false\n")
	}
	return patches
}

// preloadedImages lists the image names kubeadm uses for this release (kube-proxy excluded: kind skips
// it with kubeProxyMode none).
func (r release) preloadedImages() []string {
	return []string{
		"registry.k8s.io/kube-apiserver:" + r.version,
		"registry.k8s.io/kube-controller-manager:" + r.version,
		"registry.k8s.io/kube-scheduler:" + r.version,
		"registry.k8s.io/etcd:" + EtcdTag,
		"registry.k8s.io/coredns/coredns:" + CoreDNSTag,
		"registry.k8s.io/pause:" + r.pauseTag,
	}
}

// Build builds (or finds in docker or the cache) the node image for opts.KubernetesVersion.
func Build(ctx context.Context, opts Options) (Result, error) {
	start := time.Now()
	version := opts.KubernetesVersion
	if version == "" {
		version = DefaultVersion
	}
	rel, err := lookupRelease(version)
	if err != nil {
		return Result{}, err
	}
	c, err := cache.Open(opts.CacheDir)
	if err != nil {
		return Result{}, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &builder{rel: rel, cache: c, progress: opts.Progress, log: log}
	src, err := b.run(ctx)
	if err != nil {
		return Result{}, err
	}
	return Result{
		Image:                b.image,
		KubernetesVersion:    rel.version,
		EtcdTag:              EtcdTag,
		CoreDNSTag:           CoreDNSTag,
		PauseTag:             rel.pauseTag,
		PreloadedImages:      slices.Clone(rel.preloadedImages()),
		KubeadmConfigPatches: rel.kubeadmConfigPatches(),
		Key:                  string(b.nodeKey),
		Source:               src,
		Duration:             time.Since(start),
	}, nil
}
