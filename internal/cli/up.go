package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/strvals"

	"github.com/starlab-dev/starlab/charts"
	"github.com/starlab-dev/starlab/internal/hostprep"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/nodeimage"
	"github.com/starlab-dev/starlab/internal/progress"
	"github.com/starlab-dev/starlab/manifests"
)

// newUpCommand returns `starlab up`.
func newUpCommand(g *globalOptions) *cobra.Command {
	var (
		workers                   int
		version, binDir, cacheDir string
		output                    string
		clusterOnly, skipHostPrep bool
		noDemo, testImages        bool
		sets                      []string
		cpTimeout, readyTimeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create (or upgrade) the lab: offline kind cluster, Starlab datapath and observer, demo apps",
		Long: "Runs the steps host -> node image -> cluster -> post-create -> images [-> test images] -> chart -> demo -> wait.\n" +
			"On an existing lab of the same shape the cluster is kept and the later steps run again as an upgrade.\n" +
			"The kubeconfig is written to $HOME/.kube/starlab-<name>.yaml.\n" +
			"Supported Kubernetes versions: " + strings.Join(nodeimage.SupportedVersions(), ", ") + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output, "text", "json"); err != nil {
				return err
			}
			l, err := lab.Open(g.clusterName)
			if err != nil {
				return err
			}
			p := progress.New(progressOut(cmd, output))
			opts := starlabUpOptions(workers, version, binDir, cacheDir, p)
			opts.ClusterOnly = clusterOnly
			opts.ControlPlaneTimeout, opts.ReadyTimeout = cpTimeout, readyTimeout
			if !skipHostPrep {
				opts.PrepareHost = func(ctx context.Context) error { return hostprep.Ensure(ctx, slog.Default()) }
			}
			if noDemo {
				opts.Manifests = nil
			}
			if len(sets) > 0 {
				opts.ChartValues = map[string]any{}
				for _, kv := range sets {
					if err := strvals.ParseInto(kv, opts.ChartValues); err != nil {
						return fmt.Errorf("--set %q: %w (want key.path=value, e.g. clusterNetworkPolicy.experimental=true)", kv, err)
					}
				}
			}
			if testImages {
				opts.TestImages = func(ctx context.Context) (string, []string, error) {
					res, err := nodeimage.BuildAgnhost(ctx, nodeimage.Options{CacheDir: cacheDir, Progress: p, Logger: slog.Default()})
					if err != nil {
						return "", nil, err
					}
					return res.Archive, []string{res.Image}, nil
				}
			}
			res, err := l.Up(cmd.Context(), opts)
			if err != nil {
				return err
			}
			out := stdout(cmd)
			if output == "json" {
				return writeJSON(out, res)
			}
			verb := "reused and upgraded"
			if res.Created {
				verb = "created"
			}
			fmt.Fprintf(out, "lab %q %s (Kubernetes %s, %d workers)\n", res.Name, verb, res.NodeImage.KubernetesVersion, workers)
			fmt.Fprintf(out, "API server: %s (control-plane node)\n", res.APIServer)
			fmt.Fprintf(out, "export KUBECONFIG=%s\n", res.Kubeconfig)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&workers, "workers", lab.DefaultWorkers, "number of worker nodes (plus one control-plane)")
	f.StringVar(&version, "kubernetes-version", nodeimage.DefaultVersion, "Kubernetes version ("+strings.Join(nodeimage.SupportedVersions(), ", ")+")")
	f.StringVar(&binDir, "bin-dir", "", "directory holding starlab-agent, starlab-cni, starlab-observer, starlab-demo (default: next to this executable)")
	f.StringVar(&cacheDir, "cache-dir", os.Getenv("STARLAB_CACHE"), "build cache directory (default $STARLAB_CACHE or /var/cache/starlab)")
	f.BoolVar(&clusterOnly, "cluster-only", false, "stop after the cluster and its post-create step (no images, chart, demo)")
	f.BoolVar(&noDemo, "no-demo", false, "do not deploy the demo apps")
	f.StringArrayVar(&sets, "set", nil, "a chart value over the ones up computes, helm style key.path=value (repeatable), e.g. clusterNetworkPolicy.experimental=true")
	f.BoolVar(&testImages, "test-images", false, "also build (cached) and load "+nodeimage.AgnhostImage+", the upstream network-policy-api conformance suite's image (make test-e2e does)")
	f.BoolVar(&skipHostPrep, "skip-host-prep", false, "do not check/prepare docker first")
	f.DurationVar(&cpTimeout, "control-plane-timeout", 3*time.Minute, "how long to wait for the control plane")
	f.DurationVar(&readyTimeout, "timeout", 5*time.Minute, "how long to wait for the chart and for every node and pod to be Ready")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// starlabUpOptions are the options of `starlab up`: the chart and the demo apps on the node image.
func starlabUpOptions(workers int, version, binDir, cacheDir string, p *progress.Reporter) lab.UpOptions {
	return lab.UpOptions{
		Workers:           workers,
		KubernetesVersion: version,
		SupportedVersions: nodeimage.SupportedVersions(),
		BinDir:            binDir,
		Chart:             charts.Starlab,
		ChartDir:          "starlab",
		Manifests:         manifests.FS,
		ManifestDirs:      []string{manifests.StarsDir, manifests.APIsDir},
		Progress:          p,
		BuildNodeImage: func(ctx context.Context, v string) (lab.NodeImage, error) {
			return buildNodeImage(ctx, v, cacheDir, p)
		},
	}
}

// buildNodeImage runs internal/nodeimage and keeps what the cluster config needs.
func buildNodeImage(ctx context.Context, version, cacheDir string, p *progress.Reporter) (lab.NodeImage, error) {
	res, err := nodeimage.Build(ctx, nodeimage.Options{KubernetesVersion: version, CacheDir: cacheDir, Progress: p, Logger: slog.Default()})
	if err != nil {
		return lab.NodeImage{}, err
	}
	return lab.NodeImage{Ref: res.Image, KubernetesVersion: res.KubernetesVersion, EtcdTag: res.EtcdTag, CoreDNSTag: res.CoreDNSTag}, nil
}
