package nodeimage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/starlab-dev/starlab/internal/progress"
)

// crictlVersion is the cri-tools version required by modules/crictl.
const crictlVersion = "v1.34.0"

// k8sPackages are the Kubernetes commands the node image needs (kube-proxy is not: kubeProxyMode none).
var k8sPackages = []string{
	"k8s.io/kubernetes/cmd/kubeadm",
	"k8s.io/kubernetes/cmd/kubelet",
	"k8s.io/kubernetes/cmd/kube-apiserver",
	"k8s.io/kubernetes/cmd/kube-controller-manager",
	"k8s.io/kubernetes/cmd/kube-scheduler",
	"k8s.io/kubernetes/cmd/kubectl",
}

// k8sLDFlags stamps the version into component-base and client-go, as Kubernetes' own build does;
// kubeadm reads it to choose image tags.
func k8sLDFlags(version string) string {
	major, minor := "1", ""
	if parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	const cb = "k8s.io/component-base/version"
	return strings.Join([]string{
		"-s -w",
		"-X " + cb + ".gitVersion=" + version,
		"-X " + cb + ".gitMajor=" + major,
		"-X " + cb + ".gitMinor=" + minor,
		"-X " + cb + ".gitTreeState=clean",
		"-X " + cb + ".buildDate=2026-01-01T00:00:00Z",
		"-X k8s.io/client-go/pkg/version.gitVersion=" + version,
	}, " ")
}

// goBuild builds one module's binaries into a cache entry and returns the entry directory.
func (b *builder) goBuild(ctx context.Context, gb goBinary) (string, error) {
	key := b.keyFor(gb.step)
	title := fmt.Sprintf("build %s (%s)", gb.module, strings.Join(binaryNames(gb), ", "))
	s := b.progress.Start(title)
	dir, hit, err := b.cache.Build(ctx, gb.step, key, func(tmp string) error {
		src := filepath.Join(tmp, ".src")
		if err := writeModule(gb.module, src); err != nil {
			return err
		}
		out := tmp + string(filepath.Separator)
		if gb.out != "" {
			out = filepath.Join(tmp, gb.out)
		}
		if err := b.runGoBuild(ctx, s, gb, src, out); err != nil {
			return err
		}
		if err := os.RemoveAll(src); err != nil {
			return fmt.Errorf("remove build sources: %w", err)
		}
		return b.verifyBinaries(ctx, gb, tmp)
	})
	if err != nil {
		return "", s.Fail(err)
	}
	if hit {
		s.Logf("cached %s", key.Short())
	}
	s.Done()
	return dir, nil
}

// runGoBuild runs one `go build -v` and drives the step's bar: -v prints each package as it is compiled,
// and a concurrent `go list` counts the packages that are not in the Go build cache (the total).
func (b *builder) runGoBuild(ctx context.Context, s *progress.Step, gb goBinary, src, out string) error {
	env := append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	flags := []string{"-trimpath", "-ldflags", gb.ldflags}
	listCtx, stopList := context.WithCancel(ctx)
	defer stopList()
	go func() {
		list := exec.CommandContext(listCtx, b.goBin, append(append([]string{"list"}, flags...),
			append([]string{"-deps", "-f", "{{if and .Stale (ne .Name \"main\")}}x{{end}}"}, gb.pkgs...)...)...)
		list.Dir, list.Env = src, env
		if o, err := list.Output(); err == nil {
			s.SetTotal(int64(strings.Count(string(o), "x")))
		}
	}()

	args := append(append([]string{"build"}, flags...), append([]string{"-v", "-o", out}, gb.pkgs...)...)
	cmd := exec.CommandContext(ctx, b.goBin, args...)
	cmd.Dir, cmd.Env = src, env
	b.log.Debug("go build", "module", gb.module, "args", args)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("go build module %s: %w", gb.module, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("go build module %s: %w", gb.module, err)
	}
	var lines []string
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line != "" && !strings.ContainsAny(line, " \t") && !strings.HasPrefix(line, "#") {
			s.Add(1) // a package name: compiled
			continue
		}
		lines = append(lines, line)
		if len(lines) > 200 {
			lines = lines[len(lines)-100:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("go build module %s: %w: %s", gb.module, err, tail(strings.Join(lines, "\n"), 20))
	}
	return nil
}

func binaryNames(gb goBinary) []string {
	if gb.out != "" {
		return []string{gb.out}
	}
	names := make([]string, len(gb.pkgs))
	for i, p := range gb.pkgs {
		names[i] = filepath.Base(p)
	}
	return names
}

// verifyBinaries checks the binaries exist, and that kubeadm reports the version it was stamped with.
func (b *builder) verifyBinaries(ctx context.Context, gb goBinary, dir string) error {
	for _, n := range binaryNames(gb) {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("go build module %s: missing binary: %w", gb.module, err)
		}
	}
	if gb.step != stepK8s {
		return nil
	}
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "kubeadm"), "version", "-o", "short").CombinedOutput()
	if err != nil {
		return fmt.Errorf("run built kubeadm version: %w: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != b.rel.version {
		return fmt.Errorf("built kubeadm reports version %q, want %q (check the -X ldflags)", got, b.rel.version)
	}
	return nil
}

// tail returns the last n lines of command output for error messages.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
