//go:build e2e

package lab

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkUpControlPlane measures a warm `up` (node image present) of a 3-node lab, cluster step only:
// from no cluster to the control plane ready (/readyz ok, control-plane pods Running and Ready) with the
// post-create step done. It reports the lab's memory (docker stats) once ready. Deleting is not timed.
// Run: go test -tags e2e -run '^$' -bench UpControlPlane -benchtime 1x ./internal/lab
func BenchmarkUpControlPlane(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	e2eEnv(b, ctx)
	// Warm the node image outside the timed loop.
	img, err := e2eNodeImage(ctx, "")
	require.NoError(b, err)
	build := func(context.Context, string) (NodeImage, error) { return img, nil }
	var memMiB float64
	for range b.N {
		b.StopTimer()
		l := openE2E(b, e2eName("bench"))
		b.StartTimer()
		_, err := l.Up(ctx, UpOptions{Workers: 2, ClusterOnly: true, BuildNodeImage: build})
		require.NoError(b, err)
		b.StopTimer()
		memMiB = 0
		for _, m := range dockerMemory(b, ctx, l.Name()) {
			memMiB += m
		}
		require.NoError(b, l.Delete(ctx))
		b.StartTimer()
	}
	b.ReportMetric(memMiB, "MiB-lab-memory")
}

// BenchmarkDown measures `down` of a 3-node lab (containers, volumes, kubeconfig); creating is not timed.
// Run: go test -tags e2e -run '^$' -bench Down -benchtime 1x ./internal/lab
func BenchmarkDown(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	e2eEnv(b, ctx)
	img, err := e2eNodeImage(ctx, "")
	require.NoError(b, err)
	build := func(context.Context, string) (NodeImage, error) { return img, nil }
	for range b.N {
		b.StopTimer()
		l := openE2E(b, e2eName("bench"))
		_, err := l.Up(ctx, UpOptions{Workers: 2, ClusterOnly: true, BuildNodeImage: build})
		require.NoError(b, err)
		b.StartTimer()
		require.NoError(b, l.Delete(ctx))
	}
}
