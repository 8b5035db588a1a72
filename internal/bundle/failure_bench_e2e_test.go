//go:build e2e

package bundle

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/manifests"
)

// BenchmarkFailureBundleOfStarsStep writes the bundle a failing stars reachability step writes on the
// lab named by $STARLAB_LAB: everything `starlab bundle` collects (15 minutes of flows and journals)
// plus the step's record (the 4x3 stars truth cells, the stars policy objects, the flows of the
// last 10 s as the step's flows, a feature file). Reports the bundle size (MiB/op) and its time.
// Goal: <= 10 MiB and <= 10 s (docs/BENCHMARKS.md).
func BenchmarkFailureBundleOfStarsStep(b *testing.B) {
	name := os.Getenv("STARLAB_LAB")
	if name == "" {
		b.Fatal("STARLAB_LAB is not set: name a running lab")
	}
	l, err := lab.Open(name)
	require.NoError(b, err)
	cfg, err := l.RESTConfig()
	require.NoError(b, err)
	ctx := context.Background()
	fw, err := observer.PortForward(ctx, cfg, observer.DefaultNamespace, 0)
	require.NoError(b, err)
	defer fw.Close()
	var flows []*flow.Flow
	require.NoError(b, (&observer.Client{Base: fw.URL()}).Flows(ctx, flow.Query{Since: time.Now().Add(-10 * time.Second)}, func(f *flow.Flow) error {
		flows = append(flows, f)
		return nil
	}))
	var cells []TruthCell
	for _, from := range []string{"management-ui", "client", "frontend", "backend"} {
		for _, to := range []string{"client", "frontend", "backend"} {
			cells = append(cells, TruthCell{From: from, To: to, Expected: CellNo, Probed: CellNo, Observed: CellNo})
		}
	}
	cells[0].Expected, cells[0].Wrong = CellYes, true
	var objs []AppliedObject
	for _, f := range manifests.StarsPolicySteps() {
		data, err := manifests.FS.ReadFile(f)
		require.NoError(b, err)
		us, err := lab.DecodeManifests(data)
		require.NoError(b, err)
		for _, u := range us {
			objs = append(objs, AppliedObject{Op: "apply", Object: u.UnstructuredContent()})
		}
	}
	dir := b.TempDir()
	var size int64
	for i := 0; b.Loop(); i++ {
		rec := &Record{
			Kind: RecordScenario, Scenario: &ScenarioRef{FeaturePath: "features/stars.feature", Name: "Policy by policy", Line: 16},
			Step:  StepRef{Text: "the stars reachability is:", Started: time.Now().Add(-10 * time.Second), Ended: time.Now()},
			Cells: cells, Objects: objs, Flows: flows, Tables: "expected | connections | flows\n", Feature: []byte("Feature: stars\n"),
		}
		res, err := Write(ctx, Options{Lab: name, Output: filepath.Join(dir, "b.tar.gz"), Since: DefaultSince, Record: rec})
		require.NoError(b, err)
		require.Empty(b, res.Failures)
		size = res.Size
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB/op")
	b.ReportMetric(float64(len(flows)), "stepflows")
}
