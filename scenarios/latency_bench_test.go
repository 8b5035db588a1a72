//go:build e2e

package scenarios

import (
	"testing"
	"time"

	"github.com/starlab-dev/starlab/manifests"
)

// BenchmarkPolicyProgramLatency measures policy applied (the API server accepted it) -> programmed on
// every node (every node's
// starlab.dev/policy-revision >= the policy's resourceVersion, observer connected to all) on the lab
// TestMain set up, by applying and deleting the stars default-deny policy b.N times. It reports the
// nearest-rank p50 and p99 of all applies and deletes.
//
//	STARLAB_LAB=starlab go test -tags e2e -run '^$' -bench PolicyProgramLatency -benchtime 50x ./scenarios
func BenchmarkPolicyProgramLatency(b *testing.B) {
	if e2e.env == nil {
		b.Fatal("the lab was not set up (see TestMain's log)")
	}
	e := e2e.env
	ctx := b.Context()
	data, err := manifestFile(manifests.StarsPolicySteps()[0])
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		rv, err := e.Apply(ctx, data)
		if err != nil {
			b.Fatal(err)
		}
		waited, err := e.WaitProgrammed(ctx, rv)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, waited)
		rv, err = e.Delete(ctx, data)
		if err != nil {
			b.Fatal(err)
		}
		if waited, err = e.WaitProgrammed(ctx, rv); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, waited)
	}
	b.StopTimer()
	s := SummarizeLatencies(lat)
	b.ReportMetric(float64(s.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(s.P99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(s.Max.Microseconds())/1000, "max-ms")
	b.Log(s)
}
