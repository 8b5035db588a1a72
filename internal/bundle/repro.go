package bundle

import (
	"context"
	"fmt"

	"github.com/starlab-dev/starlab/internal/helmrelease"
)

// collectRecord completes the failing test's inputs from the lab (Starlab build, Kubernetes version,
// node image, workers, chart values) and writes the repro/ files.
func (r *run) collectRecord(ctx context.Context, s *stepCtx) error {
	rec := r.opts.Record
	in := &rec.Inputs
	in.Starlab = r.version
	r.mu.Lock()
	if kv := r.kubeVersion; kv != "" {
		in.KubernetesVersion = kv
	}
	r.mu.Unlock()
	if len(r.existing.Images) > 0 {
		in.NodeImage = r.existing.Images[0]
		in.NodeImageKey = NodeImageKey(in.NodeImage)
	}
	in.Workers = r.existing.Workers
	if in.ChartValues == nil {
		vals, err := helmrelease.Values(helmrelease.Options{Kubeconfig: r.lab.KubeconfigPath(), Namespace: r.opts.Namespace, Logger: r.opts.Logger})
		if err != nil {
			s.fail("chart values", err)
		} else {
			r.redact.Object(vals)
			in.ChartValues = vals
		}
	}
	idx, err := writeRecord(s, rec, r.redact)
	if err != nil {
		return fmt.Errorf("failing test record: %w", err)
	}
	r.mu.Lock()
	r.repro = idx
	r.mu.Unlock()
	return ctx.Err()
}
