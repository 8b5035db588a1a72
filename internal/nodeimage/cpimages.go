package nodeimage

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// cpImage is one single-binary control-plane image.
type cpImage struct {
	ref string // exact name kubeadm uses
	src string // binary on disk
	dst string // path in the image, also the entrypoint
}

func (b *builder) controlPlaneImages(dirs map[string]string) []cpImage {
	v := b.rel.version
	bin := func(step, n string) string { return filepath.Join(dirs[step], n) }
	return []cpImage{
		{"registry.k8s.io/kube-apiserver:" + v, bin(stepK8s, "kube-apiserver"), "/usr/local/bin/kube-apiserver"},
		{"registry.k8s.io/kube-controller-manager:" + v, bin(stepK8s, "kube-controller-manager"), "/usr/local/bin/kube-controller-manager"},
		{"registry.k8s.io/kube-scheduler:" + v, bin(stepK8s, "kube-scheduler"), "/usr/local/bin/kube-scheduler"},
		{"registry.k8s.io/etcd:" + EtcdTag, bin(stepEtcd, "etcd"), "/usr/local/bin/etcd"},
		{"registry.k8s.io/coredns/coredns:" + CoreDNSTag, bin(stepCoreDNS, "coredns"), "/coredns"},
		{"registry.k8s.io/pause:" + b.rel.pauseTag, bin(stepEtcd, "pause"), "/pause"},
	}
}

// writeImageArchive writes the images as one docker-archive (docker save format) at out.
func writeImageArchive(out string, images []cpImage) error {
	refs := make(map[name.Reference]v1.Image, len(images))
	for _, im := range images {
		tag, err := name.NewTag(im.ref)
		if err != nil {
			return fmt.Errorf("image name %q: %w", im.ref, err)
		}
		src, dst := im.src, im.dst
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("image %s: %w", im.ref, err)
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return binaryLayer(src, dst), nil },
			tarball.WithCompressionLevel(gzip.BestSpeed))
		if err != nil {
			return fmt.Errorf("image %s layer: %w", im.ref, err)
		}
		img, err := mutate.AppendLayers(empty.Image, layer)
		if err != nil {
			return fmt.Errorf("image %s: %w", im.ref, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return fmt.Errorf("image %s config: %w", im.ref, err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", runtime.GOARCH
		cf.Config.Entrypoint = []string{dst}
		cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return fmt.Errorf("image %s config: %w", im.ref, err)
		}
		refs[tag] = img
	}
	if err := tarball.MultiRefWriteToFile(out, refs); err != nil {
		return fmt.Errorf("write image archive %s: %w", out, err)
	}
	return nil
}

// binaryLayer streams a layer tar holding the binary at dst, /etc/passwd, /etc/group and /tmp.
func binaryLayer(src, dst string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeBinaryLayer(pw, src, dst)) }()
	return pr
}

func writeBinaryLayer(w io.Writer, src, dst string) error {
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	dirs := map[string]bool{}
	addDir := func(d string, mode int64) error {
		if d == "." || d == "/" || d == "" || dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: mtime})
	}
	addParents := func(p string) error {
		parts := strings.Split(strings.Trim(path.Dir(p), "/"), "/")
		for i := range parts {
			if err := addDir(strings.Join(parts[:i+1], "/"), 0o755); err != nil {
				return err
			}
		}
		return nil
	}
	addFile := func(p string, mode int64, data []byte) error {
		if err := addParents(p); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(data)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := addFile("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n")); err != nil {
		return err
	}
	if err := addFile("/etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")); err != nil {
		return err
	}
	if err := addDir("tmp", 0o1777); err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := addParents(dst); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: 0o755, Size: fi.Size(), ModTime: mtime}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("layer %s: %w", src, err)
	}
	return tw.Close()
}
