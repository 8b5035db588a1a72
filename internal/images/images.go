// Package images builds Starlab's OCI images from local static binaries with go-containerregistry (no docker
// build, no registry), writes them as one docker-archive, and loads that archive into every node of a kind
// cluster in-process (kind's nodeutils.LoadImageArchive, i.e. `ctr images import` in each node).
//
// Every image is one layer with the binaries under /usr/local/bin, tagged
// localhost/starlab/<name>:<content hash>, so a changed binary gives a new tag and an unchanged one is not
// loaded twice. Pods use them with imagePullPolicy: Never.
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Repository is the prefix of every Starlab image name.
const Repository = "localhost/starlab/"

// binDirInImage is where the binaries go inside an image.
const binDirInImage = "/usr/local/bin"

// tagLen is how many hex digits of the image config digest form the tag.
const tagLen = 16

// Spec is one image to build.
type Spec struct {
	// Name is the image name under localhost/starlab/ (agent, observer, demo).
	Name string
	// Binaries are file names found in the bin directory, copied to /usr/local/bin.
	Binaries []string
	// Entrypoint is the image's entrypoint (absolute paths inside the image).
	Entrypoint []string
	// Dir is where the binaries go inside the image; "" is /usr/local/bin. (The kube-proxy image mounts the
	// node's /usr for iptables and nft, so its binary lives elsewhere.)
	Dir string
}

// Image names of Starlab's images.
const (
	Agent    = "agent"
	Observer = "observer"
	Demo     = "demo"
)

// StarlabSpecs are the images `starlab up` builds: the agent (with the CNI plugin it installs on the node),
// the observer and the demo workloads.
func StarlabSpecs() []Spec {
	return []Spec{
		{Name: Agent, Binaries: []string{"starlab-agent", "starlab-cni"}, Entrypoint: []string{binDirInImage + "/starlab-agent"}},
		{Name: Observer, Binaries: []string{"starlab-observer"}, Entrypoint: []string{binDirInImage + "/starlab-observer"}},
		{Name: Demo, Binaries: []string{"starlab-demo"}, Entrypoint: []string{binDirInImage + "/starlab-demo"}},
	}
}

// Built is a built image and its reference.
type Built struct {
	Name  string
	Ref   string // localhost/starlab/<name>:<hash>
	Image v1.Image
}

// DefaultBinDir is the directory of the running executable: `make build` puts every binary in bin/.
func DefaultBinDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the starlab executable (pass --bin-dir): %w", err)
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		return "", fmt.Errorf("resolve the starlab executable (pass --bin-dir): %w", err)
	}
	return filepath.Dir(exe), nil
}

// Build builds the image of spec from the binaries in binDir.
func Build(ctx context.Context, binDir string, spec Spec) (Built, error) {
	if len(spec.Binaries) == 0 || len(spec.Entrypoint) == 0 || spec.Name == "" {
		return Built{}, fmt.Errorf("image spec %q: name, binaries and entrypoint are required", spec.Name)
	}
	dir := spec.Dir
	if dir == "" {
		dir = binDirInImage
	}
	var files []layerFile
	for _, b := range spec.Binaries {
		if err := ctx.Err(); err != nil {
			return Built{}, err
		}
		src := filepath.Join(binDir, b)
		if err := checkStaticBinary(src); err != nil {
			return Built{}, fmt.Errorf("image %s: %w", spec.Name, err)
		}
		files = append(files, layerFile{src: src, dest: dir + "/" + b})
	}
	layerTar, err := buildLayerTar(files)
	if err != nil {
		return Built{}, fmt.Errorf("image %s: %w", spec.Name, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return Built{}, fmt.Errorf("image %s: layer: %w", spec.Name, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return Built{}, fmt.Errorf("image %s: append layer: %w", spec.Name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Built{}, fmt.Errorf("image %s: config: %w", spec.Name, err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Env = []string{"PATH=" + binDirInImage + ":/usr/bin:/bin"}
	if dir != binDirInImage {
		cf.Config.Env = []string{"PATH=" + dir + ":/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cf.Config.Labels = map[string]string{"dev.starlab.image": spec.Name}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return Built{}, fmt.Errorf("image %s: set config: %w", spec.Name, err)
	}
	digest, err := img.ConfigName()
	if err != nil {
		return Built{}, fmt.Errorf("image %s: config digest: %w", spec.Name, err)
	}
	return Built{Name: spec.Name, Ref: Repository + spec.Name + ":" + digest.Hex[:tagLen], Image: img}, nil
}

// BuildAll builds every spec.
func BuildAll(ctx context.Context, binDir string, specs []Spec) ([]Built, error) {
	out := make([]Built, 0, len(specs))
	for _, s := range specs {
		b, err := Build(ctx, binDir, s)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Refs maps image name (agent, observer, demo) to reference.
func Refs(built []Built) map[string]string {
	refs := make(map[string]string, len(built))
	for _, b := range built {
		refs[b.Name] = b.Ref
	}
	return refs
}

// WriteArchive writes the images as one docker-archive (docker save format) at path, atomically.
func WriteArchive(ctx context.Context, path string, built []Built) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	refToImage := make(map[name.Reference]v1.Image, len(built))
	for _, b := range built {
		tag, err := name.NewTag(b.Ref, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", b.Ref, err)
		}
		refToImage[tag] = b.Image
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory of %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refToImage); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write image archive %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("publish image archive %s: %w", path, err)
	}
	return nil
}

// layerFile is one file of the image layer.
type layerFile struct{ src, dest string }

// buildLayerTar returns a reproducible tar (fixed times, root owner) of the files and their directories,
// plus a world-writable /tmp.
func buildLayerTar(files []layerFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	dirs := map[string]bool{}
	var dirList []string
	for _, f := range files {
		for d := filepath.Dir(f.dest); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			dirList = append(dirList, d)
		}
	}
	sort.Strings(dirList)
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("layer dir %s: %w", d, err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: epoch}); err != nil {
		return nil, fmt.Errorf("layer dir /tmp: %w", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.src, err)
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.dest, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", f.dest, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", f.dest, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

// checkStaticBinary fails with the fix when path is missing, not executable, or dynamically linked (the
// images have no libc).
func checkStaticBinary(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("binary %s not found: run `make build` (or pass --bin-dir with the directory holding it)", path)
	}
	if err != nil {
		return fmt.Errorf("binary %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("binary %s is not an executable file: run `make build`", path)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("binary %s is not a Linux ELF executable (%v): run `make build`", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("binary %s is dynamically linked; the images have no libc: build it with CGO_ENABLED=0 (`make build`)", path)
		}
	}
	return nil
}
