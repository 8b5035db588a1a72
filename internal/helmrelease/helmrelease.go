// Package helmrelease installs or upgrades a Helm chart in-process with helm.sh/helm/v3 (no helm binary):
// the chart comes from an fs.FS (Starlab's chart is embedded, see package charts), the cluster from a
// kubeconfig file.
package helmrelease

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Defaults for Starlab's own release.
const (
	DefaultRelease   = "starlab"
	DefaultNamespace = "starlab-system"
	DefaultTimeout   = 5 * time.Minute
)

// Options says which chart goes where.
type Options struct {
	// Kubeconfig is the path of the cluster's kubeconfig file.
	Kubeconfig string
	// Release and Namespace name the release ("" means DefaultRelease / DefaultNamespace). The namespace is
	// created when missing.
	Release   string
	Namespace string
	// Chart holds the chart files under ChartDir (e.g. charts.Starlab and "starlab").
	Chart    fs.FS
	ChartDir string
	// Values override the chart's values.yaml.
	Values map[string]any
	// Wait waits until the release's workloads are ready, for at most Timeout (0 means DefaultTimeout).
	Wait    bool
	Timeout time.Duration
	// Logger receives helm's debug lines; nil means slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Release == "" {
		o.Release = DefaultRelease
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Result says what InstallOrUpgrade did.
type Result struct {
	Action   string // "install" or "upgrade"
	Revision int
	Status   string
}

// LoadChart loads the chart stored under dir in fsys.
func LoadChart(fsys fs.FS, dir string) (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		rel := p
		if dir != "." {
			rel = p[len(path.Clean(dir))+1:]
		}
		files = append(files, &loader.BufferedFile{Name: rel, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read chart %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read chart %s: no files", dir)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	return c, nil
}

// actionConfig returns helm's action configuration for the kubeconfig and namespace (releases stored as Secrets).
func actionConfig(o Options) (*action.Configuration, error) {
	kubeconfig, namespace := o.Kubeconfig, o.Namespace
	getter := &genericclioptions.ConfigFlags{KubeConfig: &kubeconfig, Namespace: &namespace}
	cfg := new(action.Configuration)
	logf := func(format string, v ...any) { o.Logger.Debug(fmt.Sprintf(format, v...), "from", "helm") }
	if err := cfg.Init(getter, namespace, "secret", logf); err != nil {
		return nil, fmt.Errorf("helm configuration for %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// InstallOrUpgrade installs the chart as a new release, or upgrades the release when it exists. A release
// left without any deployed revision (a failed first install) is uninstalled and installed again.
func InstallOrUpgrade(ctx context.Context, opts Options) (Result, error) {
	o := opts.withDefaults()
	if o.Kubeconfig == "" || o.Chart == nil {
		return Result{}, errors.New("helm release: kubeconfig and chart are required")
	}
	ch, err := LoadChart(o.Chart, o.ChartDir)
	if err != nil {
		return Result{}, err
	}
	cfg, err := actionConfig(o)
	if err != nil {
		return Result{}, err
	}
	deployed, err := hasDeployed(cfg, o.Release)
	if err != nil {
		return Result{}, err
	}
	if !deployed.exists {
		return install(ctx, cfg, ch, o)
	}
	if !deployed.deployed {
		if deployed.pending {
			o.Logger.Warn("helm release left in a pending state by an interrupted run; reinstalling", "release", o.Release)
		}
		if err := uninstall(cfg, o); err != nil {
			return Result{}, err
		}
		return install(ctx, cfg, ch, o)
	}
	up := action.NewUpgrade(cfg)
	up.Namespace = o.Namespace
	up.Wait = o.Wait
	up.Timeout = o.Timeout
	up.MaxHistory = 5
	rel, err := up.RunWithContext(ctx, o.Release, ch, o.Values)
	if err != nil {
		return Result{}, fmt.Errorf("helm upgrade %s in %s: %w", o.Release, o.Namespace, err)
	}
	return result("upgrade", rel), nil
}

func install(ctx context.Context, cfg *action.Configuration, ch *chart.Chart, o Options) (Result, error) {
	in := action.NewInstall(cfg)
	in.ReleaseName = o.Release
	in.Namespace = o.Namespace
	in.CreateNamespace = true
	in.Wait = o.Wait
	in.Timeout = o.Timeout
	rel, err := in.RunWithContext(ctx, ch, o.Values)
	if err != nil {
		return Result{}, fmt.Errorf("helm install %s in %s: %w", o.Release, o.Namespace, err)
	}
	return result("install", rel), nil
}

func result(act string, rel *release.Release) Result {
	r := Result{Action: act, Revision: rel.Version}
	if rel.Info != nil {
		r.Status = rel.Info.Status.String()
	}
	return r
}

type history struct{ exists, deployed, pending bool }

// hasDeployed looks at the release history.
func hasDeployed(cfg *action.Configuration, name string) (history, error) {
	rels, err := action.NewHistory(cfg).Run(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return history{}, nil
	}
	if err != nil {
		return history{}, fmt.Errorf("helm history %s: %w", name, err)
	}
	h := history{exists: len(rels) > 0}
	for _, r := range rels {
		if r.Info == nil {
			continue
		}
		switch {
		case r.Info.Status == release.StatusDeployed:
			h.deployed = true
		case r.Info.Status.IsPending():
			h.pending = true
		}
	}
	// An upgrade interrupted mid-way leaves a pending latest revision even though an older one is deployed.
	if h.pending {
		h.deployed = false
	}
	return h, nil
}

// Uninstall removes the release (waiting up to Timeout when Wait is set). A missing release is not an error.
func Uninstall(ctx context.Context, opts Options) error {
	o := opts.withDefaults()
	if err := ctx.Err(); err != nil {
		return err
	}
	cfg, err := actionConfig(o)
	if err != nil {
		return err
	}
	return uninstall(cfg, o)
}

func uninstall(cfg *action.Configuration, o Options) error {
	un := action.NewUninstall(cfg)
	un.Wait = o.Wait
	un.Timeout = o.Timeout
	if _, err := un.Run(o.Release); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("helm uninstall %s in %s: %w", o.Release, o.Namespace, err)
	}
	return nil
}

// Render renders the chart with the values without a cluster (helm install --dry-run --client-only) and
// returns the manifests; it validates the values against the chart's schema like a real install.
func Render(ctx context.Context, opts Options) (string, error) {
	o := opts.withDefaults()
	ch, err := LoadChart(o.Chart, o.ChartDir)
	if err != nil {
		return "", err
	}
	in := action.NewInstall(new(action.Configuration))
	in.ReleaseName = o.Release
	in.Namespace = o.Namespace
	in.DryRun = true
	in.ClientOnly = true
	in.Replace = true
	rel, err := in.RunWithContext(ctx, ch, o.Values)
	if err != nil {
		return "", fmt.Errorf("render chart %s: %w", o.ChartDir, err)
	}
	return rel.Manifest, nil
}

// Values returns the values the deployed release was installed or upgraded with (the user-supplied
// ones, not the chart's defaults): what a fresh install needs to be the same release.
func Values(opts Options) (map[string]any, error) {
	o := opts.withDefaults()
	if o.Kubeconfig == "" {
		return nil, errors.New("helm release values: kubeconfig is required")
	}
	cfg, err := actionConfig(o)
	if err != nil {
		return nil, err
	}
	get := action.NewGetValues(cfg)
	vals, err := get.Run(o.Release)
	if err != nil {
		return nil, fmt.Errorf("helm get values %s in %s: %w", o.Release, o.Namespace, err)
	}
	if vals == nil {
		vals = map[string]any{}
	}
	return vals, nil
}
