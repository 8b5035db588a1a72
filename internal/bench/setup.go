package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/starlab-dev/starlab/internal/images"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/reflab"
)

// SetupOptions say which labs a run uses and how to make the missing ones.
type SetupOptions struct {
	// Starlab is the lab with Starlab's datapath; UpStarlab creates (or upgrades) it when it is absent.
	Starlab   *lab.Lab
	UpStarlab func(ctx context.Context) error
	// Reference is the kube-proxy lab; UpReference creates its bare cluster when it is absent (lab.Up with
	// ClusterOnly on the same node image).
	Reference   *lab.Lab
	UpReference func(ctx context.Context) error
	// Modes are the kube-proxy modes measured, in order (reflab.ModeIPTables, reflab.ModeNFTables); none
	// measures Starlab alone.
	Modes []string
	// KubeProxyBinary is kube-proxy built by nodeimage.BuildKubeProxy (required with Modes).
	KubeProxyBinary string
	// BinDir holds starlab-cni and starlab-demo (`make build`).
	BinDir string
}

// Setup readies the labs (creating the missing ones, installing the reference lab's network, loading the
// demo image where missing) and returns the datapaths to measure: Starlab, then kube-proxy in each mode.
func Setup(ctx context.Context, o SetupOptions) ([]Datapath, error) {
	for _, m := range o.Modes {
		if err := reflab.ValidMode(m); err != nil {
			return nil, err
		}
	}
	if err := ensureLab(ctx, o.Starlab, o.UpStarlab); err != nil {
		return nil, err
	}
	demo, err := ensureDemoImage(ctx, o.Starlab, o.BinDir)
	if err != nil {
		return nil, err
	}
	dps := []Datapath{{Name: Starlab, Lab: o.Starlab, Process: "starlab-agent", DemoImage: demo}}
	if len(o.Modes) == 0 {
		return dps, nil
	}
	if o.Reference == nil || o.KubeProxyBinary == "" {
		return nil, fmt.Errorf("kube-proxy modes %v need a reference lab and a kube-proxy binary", o.Modes)
	}
	if err := ensureLab(ctx, o.Reference, o.UpReference); err != nil {
		return nil, err
	}
	if err := reflab.InstallNetwork(ctx, o.Reference, o.BinDir); err != nil {
		return nil, err
	}
	refDemo, err := ensureDemoImage(ctx, o.Reference, o.BinDir)
	if err != nil {
		return nil, err
	}
	for _, m := range o.Modes {
		name := map[string]string{reflab.ModeIPTables: KubeProxyIPTables, reflab.ModeNFTables: KubeProxyNFTables}[m]
		dps = append(dps, Datapath{Name: name, Lab: o.Reference, Process: "kube-proxy", DemoImage: refDemo,
			Prepare: func(ctx context.Context) error {
				_, err := reflab.InstallKubeProxy(ctx, o.Reference, o.KubeProxyBinary, m, 3*time.Minute)
				return err
			}})
	}
	return dps, nil
}

func ensureLab(ctx context.Context, l *lab.Lab, up func(context.Context) error) error {
	ex, err := l.Inspect(ctx)
	if err != nil {
		return err
	}
	if ex.State == lab.StateAbsent {
		if up == nil {
			return fmt.Errorf("lab %q does not exist: create it with `starlab up --name %s`", l.Name(), l.Name())
		}
		return up(ctx)
	}
	_, err = l.WriteKubeconfig(ctx)
	return err
}

// ensureDemoImage loads the demo image (the load generator and echo servers) where a node lacks it.
func ensureDemoImage(ctx context.Context, l *lab.Lab, binDir string) (string, error) {
	ns, err := l.Nodes(ctx)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "starlab-bench-")
	if err != nil {
		return "", fmt.Errorf("temporary directory for the demo image: %w", err)
	}
	defer os.RemoveAll(tmp)
	var spec []images.Spec
	for _, s := range images.StarlabSpecs() {
		if s.Name == images.Demo {
			spec = append(spec, s)
		}
	}
	refs, err := images.Ensure(ctx, binDir, filepath.Join(tmp, "demo.tar"), spec, ns)
	if err != nil {
		return "", fmt.Errorf("demo image into lab %q: %w", l.Name(), err)
	}
	return refs[images.Demo], nil
}
