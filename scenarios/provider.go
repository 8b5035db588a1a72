package scenarios

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/e2e-framework/klient"
	"sigs.k8s.io/e2e-framework/support"

	"github.com/starlab-dev/starlab/charts"
	"github.com/starlab-dev/starlab/internal/hostprep"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/nodeimage"
	"github.com/starlab-dev/starlab/internal/progress"
	"github.com/starlab-dev/starlab/manifests"
)

// LabProvider is an e2e-framework cluster provider backed by internal/lab: it creates (or reuses and
// upgrades) a Starlab lab with the same pipeline as `starlab up` (cluster, images, chart, demo), and
// destroys it only when it created it. e2e-framework's own kind provider cannot be used: it waits for
// kindnet and kube-proxy pods, which a Starlab lab does not run.
type LabProvider struct {
	name, version, binDir string
	workers               int
	log                   *slog.Logger
	out                   io.Writer
	lab                   *lab.Lab
	created               bool
	kubeconfig            string
	asIs                  bool
}

var _ support.E2EClusterProvider = (*LabProvider)(nil)

// NewLabProvider returns a provider that prints progress to out (nil: nowhere).
func NewLabProvider(log *slog.Logger, out io.Writer) *LabProvider {
	if log == nil {
		log = slog.Default()
	}
	return &LabProvider{log: log, out: out, workers: lab.DefaultWorkers}
}

// RandomLabName returns starlab-e2e-<6 hex digits>.
func RandomLabName() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "starlab-e2e-" + hex.EncodeToString(b)
}

// WithName sets the lab name.
func (p *LabProvider) WithName(name string) support.E2EClusterProvider { p.name = name; return p }

// WithVersion sets the Kubernetes version ("" = the node image builder's default).
func (p *LabProvider) WithVersion(v string) support.E2EClusterProvider { p.version = v; return p }

// WithPath sets the directory holding the Starlab binaries (starlab-agent, -cni, -observer, -demo).
func (p *LabProvider) WithPath(dir string) support.E2EClusterProvider { p.binDir = dir; return p }

// WithOpts is accepted for the interface; a lab takes no free-form options.
func (p *LabProvider) WithOpts(...support.ClusterOpts) support.E2EClusterProvider { return p }

// WithAsIs makes Create use a running lab exactly as it is (no Up: no image, chart or demo upgrade).
func (p *LabProvider) WithAsIs(asIs bool) *LabProvider { p.asIs = asIs; return p }

// WithWorkers sets the number of worker nodes.
func (p *LabProvider) WithWorkers(n int) *LabProvider { p.workers = n; return p }

// SetDefaults names the lab starlab-e2e-<random> unless a name was set.
func (p *LabProvider) SetDefaults() support.E2EClusterProvider {
	if p.name == "" {
		p.name = RandomLabName()
	}
	return p
}

// UpOptions are the options `starlab up` uses, for this provider's settings.
func (p *LabProvider) UpOptions() lab.UpOptions {
	pr := progress.New(p.out)
	return lab.UpOptions{
		Workers:           p.workers,
		KubernetesVersion: p.version,
		SupportedVersions: nodeimage.SupportedVersions(),
		BinDir:            p.binDir,
		Chart:             charts.Starlab,
		ChartDir:          "starlab",
		Manifests:         manifests.FS,
		ManifestDirs:      []string{manifests.StarsDir, manifests.APIsDir},
		Progress:          pr,
		PrepareHost:       func(ctx context.Context) error { return hostprep.Ensure(ctx, p.log) },
		BuildNodeImage: func(ctx context.Context, v string) (lab.NodeImage, error) {
			res, err := nodeimage.Build(ctx, nodeimage.Options{KubernetesVersion: v, CacheDir: os.Getenv("STARLAB_CACHE"), Progress: pr, Logger: p.log})
			if err != nil {
				return lab.NodeImage{}, err
			}
			return lab.NodeImage{Ref: res.Image, KubernetesVersion: res.KubernetesVersion, EtcdTag: res.EtcdTag, CoreDNSTag: res.CoreDNSTag}, nil
		},
	}
}

// Create brings the lab up (creating it, or upgrading a running one of that name) and returns the
// kubeconfig path.
func (p *LabProvider) Create(ctx context.Context, _ ...string) (string, error) {
	p.SetDefaults()
	l, err := lab.Open(p.name, lab.WithLogger(p.log))
	if err != nil {
		return "", err
	}
	p.lab = l
	if p.asIs {
		if p.kubeconfig, err = l.WriteKubeconfig(ctx); err != nil {
			return "", fmt.Errorf("use lab %q as it is: is it running? %w", p.name, err)
		}
		return p.kubeconfig, nil
	}
	res, err := l.Up(ctx, p.UpOptions())
	if res != nil && res.Created {
		p.created = true
	}
	if err != nil {
		return "", fmt.Errorf("bring up lab %q: %w", p.name, err)
	}
	p.kubeconfig = res.Kubeconfig
	return p.kubeconfig, nil
}

// CreateWithConfig is not supported: a lab's configuration comes from internal/lab.
func (p *LabProvider) CreateWithConfig(context.Context, string) (string, error) {
	return "", errors.New("a Starlab lab takes no kind config file: use Create (internal/lab writes the config)")
}

// GetKubeconfig returns the kubeconfig path of the lab.
func (p *LabProvider) GetKubeconfig() string { return p.kubeconfig }

// GenerateKubeconfig rewrites the kubeconfig from the running cluster.
func (p *LabProvider) GenerateKubeconfig(...string) (string, error) {
	if p.lab == nil {
		return "", errors.New("lab not created yet")
	}
	path, err := p.lab.WriteKubeconfig(context.Background())
	if err == nil {
		p.kubeconfig = path
	}
	return path, err
}

// GetKubectlContext is kind's context name for the lab.
func (p *LabProvider) GetKubectlContext() string { return "kind-" + p.name }

// ExportLogs writes the logs of every pod in kube-system and of every Starlab pod to dest.
func (p *LabProvider) ExportLogs(ctx context.Context, dest string) error {
	cfg := p.KubernetesRestConfig()
	if cfg == nil {
		return errors.New("export logs: no kubeconfig for the lab")
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("export logs: client: %w", err)
	}
	return exportPodLogs(ctx, cs, dest)
}

func exportPodLogs(ctx context.Context, cs kubernetes.Interface, dest string) error {
	pods, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("export logs: list pods: %w", err)
	}
	var errs []error
	for _, pod := range pods.Items {
		for _, c := range pod.Spec.Containers {
			data, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: c.Name}).DoRaw(ctx)
			if err != nil {
				data = []byte("get logs: " + err.Error() + "\n")
			}
			path := filepath.Join(dest, pod.Namespace, pod.Name+"_"+c.Name+".log")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Destroy deletes the lab if this provider created it; a reused lab is left running.
func (p *LabProvider) Destroy(ctx context.Context) error {
	if p.lab == nil || !p.created {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	if err := p.lab.Delete(ctx); err != nil {
		return fmt.Errorf("destroy lab %q: %w", p.name, err)
	}
	return nil
}

// Created reports whether Create made a new lab (so Destroy will delete it).
func (p *LabProvider) Created() bool { return p.created }

// Name is the lab name.
func (p *LabProvider) Name() string { return p.name }

// WaitForControlPlane waits until every node and pod of the lab is Ready (Up already did; this is cheap).
func (p *LabProvider) WaitForControlPlane(ctx context.Context, _ klient.Client) error {
	if p.lab == nil {
		return errors.New("lab not created yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return p.lab.WaitReady(ctx, p.workers+1)
}

// KubernetesRestConfig loads the lab's kubeconfig (nil when there is none yet).
func (p *LabProvider) KubernetesRestConfig() *rest.Config {
	if p.lab == nil {
		return nil
	}
	cfg, err := p.lab.RESTConfig()
	if err != nil {
		p.log.Warn("lab rest config", "err", err)
		return nil
	}
	return cfg
}
