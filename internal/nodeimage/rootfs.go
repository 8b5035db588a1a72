package nodeimage

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Debian rootfs inputs (part of the rootfs cache key).
const (
	debianSuite  = "bookworm"
	debianMirror = "http://deb.debian.org/debian"
	rootfsTar    = "rootfs.tar"
)

// rootfsPackages are installed by debootstrap: systemd as init, Debian's containerd 1.6 and runc, CNI
// plugins, and the tools kind's entrypoint and kubeadm use.
var rootfsPackages = []string{
	"systemd", "systemd-sysv", "dbus", "containerd", "runc", "conntrack", "iptables", "nftables", "iproute2",
	"ethtool", "util-linux", "mount", "kmod", "libseccomp2", "pigz", "ca-certificates", "curl", "jq", "procps",
	"e2fsprogs", "containernetworking-plugins", "socat", "ebtables",
}

// unitFiles are systemd units starlab adds to kind's.
//
//go:embed units
var unitFiles embed.FS

// debootstrap creates (or finds) the cached Debian rootfs tarball and returns its entry directory.
func (b *builder) debootstrap(ctx context.Context) (string, error) {
	s := b.progress.Start("debian " + debianSuite + " rootfs (debootstrap)")
	dir, hit, err := b.cache.Build(ctx, stepRootfs, b.rootfsKey, func(tmp string) error {
		if _, err := exec.LookPath("debootstrap"); err != nil {
			return fmt.Errorf("debootstrap is needed to build the node rootfs: apt-get install debootstrap (hostprep.Ensure does it): %w", err)
		}
		root := filepath.Join(tmp, "rootfs")
		args := []string{"--variant=minbase", "--include=" + strings.Join(rootfsPackages, ","), debianSuite, root, debianMirror}
		logPath := filepath.Join(tmp, "debootstrap.log")
		if err := runLogged(ctx, logPath, nil, "debootstrap", args...); err != nil {
			return fmt.Errorf("debootstrap %s: %w", debianSuite, err)
		}
		if err := runLogged(ctx, logPath, nil, "tar", "--numeric-owner", "--xattrs", "-C", root, "-cf", filepath.Join(tmp, rootfsTar), "."); err != nil {
			return fmt.Errorf("archive rootfs: %w", err)
		}
		return os.RemoveAll(root)
	})
	if err != nil {
		return "", s.Fail(err)
	}
	if hit {
		s.Logf("cached %s", b.rootfsKey.Short())
	}
	s.Done()
	return dir, nil
}

// kindBaseFiles returns kind's images/base/files directory from the module cache (downloading the
// module through the Go module proxy if needed).
func (b *builder) kindBaseFiles(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, b.goBin, "mod", "download", "-json", "sigs.k8s.io/kind@"+KindVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download sigs.k8s.io/kind@%s: %w: %s", KindVersion, err, out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", fmt.Errorf("parse go mod download output: %w", err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return "", fmt.Errorf("go mod download sigs.k8s.io/kind@%s: %s", KindVersion, mod.Error)
	}
	files := filepath.Join(mod.Dir, "images", "base", "files")
	if _, err := os.Stat(files); err != nil {
		return "", fmt.Errorf("kind %s has no images/base/files: %w", KindVersion, err)
	}
	return files, nil
}

// customizeRootfs applies the steps of kind's images/base Dockerfile to an extracted Debian rootfs,
// adapted to Debian's containerd 1.6, and installs the node binaries.
func (b *builder) customizeRootfs(ctx context.Context, root, kindFiles string, dirs map[string]string) error {
	inst := func(src, dst string, mode os.FileMode) error {
		return copyFile(filepath.Join(kindFiles, src), filepath.Join(root, dst), mode)
	}
	for _, d := range []string{"kind/bin", "etc/containerd", "etc/default", "etc/sysctl.d",
		"etc/systemd/system/kubelet.service.d", "LICENSES", "opt/cni/bin", "etc/cni/net.d", "etc/kubernetes/manifests"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	copies := []struct {
		src, dst string
		mode     os.FileMode
	}{
		{"usr/local/bin/entrypoint", "usr/local/bin/entrypoint", 0o755},
		{"usr/local/bin/clean-install", "usr/local/bin/clean-install", 0o755},
		{"kind/README.txt", "kind/README.txt", 0o644},
		{"LICENSES/README.txt", "LICENSES/README.txt", 0o644},
		{"etc/crictl.yaml", "etc/crictl.yaml", 0o644},
		{"etc/default/kubelet", "etc/default/kubelet", 0o644},
		{"etc/systemd/system/containerd.service", "etc/systemd/system/containerd.service", 0o644},
		{"etc/systemd/system/kubelet.service", "etc/systemd/system/kubelet.service", 0o644},
		{"etc/systemd/system/undo-mount-hacks.service", "etc/systemd/system/undo-mount-hacks.service", 0o644},
		{"etc/systemd/system/kubelet.slice", "etc/systemd/system/kubelet.slice", 0o644},
	}
	for _, c := range copies {
		if err := inst(c.src, c.dst, c.mode); err != nil {
			return err
		}
	}
	for _, glob := range []struct {
		dir  string
		mode os.FileMode
	}{{"kind/bin", 0o755}, {"etc/sysctl.d", 0o644}, {"etc/systemd/system/kubelet.service.d", 0o644}} {
		entries, err := os.ReadDir(filepath.Join(kindFiles, glob.dir))
		if err != nil {
			return fmt.Errorf("kind base files: %w", err)
		}
		for _, e := range entries {
			if err := inst(filepath.Join(glob.dir, e.Name()), filepath.Join(glob.dir, e.Name()), glob.mode); err != nil {
				return err
			}
		}
	}
	if err := os.Chmod(filepath.Join(root, "kind"), 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}

	// containerd: Debian's binary lives in /usr/bin; kind's unit runs /usr/local/bin/containerd.
	if err := symlink("/usr/bin/containerd", filepath.Join(root, "usr/local/bin/containerd")); err != nil {
		return err
	}
	cfg, err := os.ReadFile(filepath.Join(kindFiles, "etc/containerd/config.toml"))
	if err != nil {
		return fmt.Errorf("kind containerd config: %w", err)
	}
	edited, err := containerdConfig(string(cfg), b.rel.pauseTag)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/containerd/config.toml"), []byte(edited), 0o644); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	for _, p := range []string{"host-local", "loopback", "ptp", "portmap", "bridge"} {
		if err := symlink("/usr/lib/cni/"+p, filepath.Join(root, "opt/cni/bin", p)); err != nil {
			return err
		}
	}
	spec, err := exec.CommandContext(ctx, "chroot", root, "ctr", "oci", "spec").Output()
	if err != nil {
		return fmt.Errorf("chroot %s ctr oci spec: %w", root, err)
	}
	criBase, err := criBaseSpec(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/containerd/cri-base.json"), criBase, 0o644); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}

	// systemd, as kind's Dockerfile trims it.
	for _, g := range []string{
		"lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
		"lib/systemd/system/local-fs.target.wants/*", "lib/systemd/system/sockets.target.wants/*udev*",
		"lib/systemd/system/sockets.target.wants/*initctl*", "lib/systemd/system/basic.target.wants/*",
	} {
		matches, _ := filepath.Glob(filepath.Join(root, g))
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				return fmt.Errorf("rootfs: %w", err)
			}
		}
	}
	if err := appendFile(filepath.Join(root, "etc/systemd/journald.conf"), "ReadKMsg=no\n"); err != nil {
		return err
	}
	if err := symlink("/usr/lib/systemd/systemd", filepath.Join(root, "sbin/init")); err != nil {
		return err
	}
	units, err := unitFiles.ReadDir("units")
	if err != nil {
		return fmt.Errorf("embedded units: %w", err)
	}
	enable := []string{"enable", "kubelet.service", "containerd.service", "undo-mount-hacks.service"}
	for _, u := range units {
		data, err := unitFiles.ReadFile("units/" + u.Name())
		if err != nil {
			return fmt.Errorf("embedded unit %s: %w", u.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/systemd/system", u.Name()), data, 0o644); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		enable = append(enable, u.Name())
	}
	if out, err := exec.CommandContext(ctx, "chroot", append([]string{root, "systemctl"}, enable...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("chroot systemctl %s: %w: %s", strings.Join(enable, " "), err, out)
	}
	if out, err := exec.CommandContext(ctx, "chroot", root, "systemctl", "mask", "systemd-binfmt.service").CombinedOutput(); err != nil {
		return fmt.Errorf("chroot systemctl mask systemd-binfmt.service: %w: %s", err, out)
	}

	// Node binaries where kind expects them.
	for _, n := range []string{"kubeadm", "kubelet", "kubectl"} {
		if err := copyFile(filepath.Join(dirs[stepK8s], n), filepath.Join(root, "usr/bin", n), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(filepath.Join(dirs[stepCrictl], "crictl"), filepath.Join(root, "usr/local/bin/crictl"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "kind/version"), []byte(b.rel.version), 0o644); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}

	// Trim, and leave machine-id for systemd to generate per node.
	for _, g := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*"} {
		matches, _ := filepath.Glob(filepath.Join(root, g))
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return fmt.Errorf("rootfs trim: %w", err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte("\n"), 0o444); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := os.Remove(filepath.Join(root, "var/lib/dbus/machine-id")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rootfs: %w", err)
	}
	return nil
}

// containerdConfig adapts kind's containerd config (written for kind's containerd 2.x build) to Debian's
// containerd 1.6 on hosts whose capability bounding set may lack CAP_SYS_RESOURCE.
func containerdConfig(cfg, pauseTag string) (string, error) {
	edits := []struct{ why, old, new string }{
		{"sandbox image must be the preloaded pause", `sandbox_image = "registry.k8s.io/pause:3.10"`, `sandbox_image = "registry.k8s.io/pause:` + pauseTag + `"`},
		{"fuse-overlayfs snapshotter is not installed", "[proxy_plugins]\n# fuse-overlayfs is used for rootless\n[proxy_plugins.\"fuse-overlayfs\"]\n  type = \"snapshot\"\n  address = \"/run/containerd-fuse-overlayfs.sock\"\n", ""},
		{"pods cannot lower oom_score_adj without CAP_SYS_RESOURCE", "restrict_oom_score_adj = false", "restrict_oom_score_adj = true"},
	}
	for _, e := range edits {
		if n := strings.Count(cfg, e.old); n != 1 {
			return "", fmt.Errorf("kind %s containerd config: expected %q once (%s), found it %d times: update nodeimage.containerdConfig", KindVersion, e.old, e.why, n)
		}
		cfg = strings.Replace(cfg, e.old, e.new, 1)
	}
	return cfg, nil
}

// criBaseSpec turns `ctr oci spec` output into kind's cri-base.json: kind's createContainer hook that
// mounts product files, and no rlimits.
func criBaseSpec(spec []byte) ([]byte, error) {
	var s map[string]any
	if err := json.Unmarshal(spec, &s); err != nil {
		return nil, fmt.Errorf("parse ctr oci spec output: %w", err)
	}
	hooks, _ := s["hooks"].(map[string]any)
	if hooks == nil {
		hooks = map[string]any{}
	}
	cc, _ := hooks["createContainer"].([]any)
	hooks["createContainer"] = append(cc, map[string]any{"path": "/kind/bin/mount-product-files.sh"})
	s["hooks"] = hooks
	if p, ok := s["process"].(map[string]any); ok {
		delete(p, "rlimits")
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode cri-base.json: %w", err)
	}
	return append(out, '\n'), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	_ = os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return os.Chmod(dst, mode)
}

func symlink(target, link string) error {
	_ = os.Remove(link)
	if err := os.Symlink(target, link); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", link, target, err)
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	return f.Close()
}

// runLogged runs a command with its output appended to logPath; on failure the error holds the log's tail.
func runLogged(ctx context.Context, logPath string, stdin io.Reader, name string, args ...string) error {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log %s: %w", logPath, err)
	}
	defer logf.Close()
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	cmd.Stdout = io.MultiWriter(logf, &buf)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, tail(buf.String(), 15))
	}
	return nil
}
