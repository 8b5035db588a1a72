//go:build e2e

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/repobin"
)

// TestBenchServicesQuick runs `starlab bench services --counts 10,1000 --quick` against the lab in
// $STARLAB_LAB and a kube-proxy (iptables) reference lab it creates (and deletes), and checks that the
// numbers are present and sane: every point measured, latencies above zero, every connection successful.
// The numbers themselves are not asserted (docs/BENCHMARKS.md records a full run).
func TestBenchServicesQuick(t *testing.T) {
	name := os.Getenv("STARLAB_LAB")
	require.NotEmpty(t, name, "set STARLAB_LAB to a running Starlab lab (`make test-e2e` does)")
	bin, err := repobin.Find("starlab", "STARLAB_BIN", "build")
	require.NoError(t, err)
	ref := name + "-kp"
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		out, err := exec.Command(bin, "down", "--name", ref).CombinedOutput()
		if err != nil {
			t.Logf("starlab down --name %s: %v: %s", ref, err, out)
		}
	})
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "--name", name, "bench", "services", "--counts", "10,1000", "--quick",
		"--reference", ref, "--modes", "iptables", "--out-dir", t.TempDir(), "-o", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stderr:\n%s", stderr.String())
	t.Logf("starlab bench services --quick took %s (reference lab creation included)", time.Since(start).Round(time.Second))
	var rep ServicesReport
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	require.Equal(t, []int{10, 1000}, rep.Options.Counts)
	require.NoError(t, Validate(&rep, []string{Starlab, KubeProxyIPTables}))
	for _, p := range rep.Points {
		t.Logf("%s %d services: p50 %.0f µs, p99 %.0f µs, %.0f conn/s, first connection %.0f ms", p.Datapath, p.Services,
			p.Latency.P50Us, p.Latency.P99Us, p.Throughput.PerSecond, p.FirstConnectMs)
	}
}
