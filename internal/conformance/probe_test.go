package conformance

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/demo"
)

// fakeProber answers from a function of (source, target); unit tests only.
type fakeProber struct {
	mu      sync.Mutex
	batches map[string]int
	answer  func(from string, t demo.BatchTarget, call int) bool
}

func (f *fakeProber) Batch(_ context.Context, from string, targets []demo.BatchTarget, _ time.Duration) ([]demo.ProbeResult, error) {
	f.mu.Lock()
	f.batches[from]++
	call := f.batches[from]
	f.mu.Unlock()
	out := make([]demo.ProbeResult, len(targets))
	for i, t := range targets {
		out[i] = demo.ProbeResult{Target: t.Target, Protocol: t.Protocol, Reachable: f.answer(from, t, call), LocalAddr: "0.0.0.0:1234"}
	}
	return out, nil
}

func TestRunProbesAndReconfirm(t *testing.T) {
	u := NewUniverse()
	target := u.IPs["x/a"].String() + ":80"
	fp := &fakeProber{batches: map[string]int{}, answer: func(from string, tg demo.BatchTarget, call int) bool {
		// y/b's first TCP connection to x/a:80 is lost; the second one works.
		return !(from == "y/b" && tg.Target == target && tg.Protocol == "tcp" && call == 1)
	}}
	probes := MatrixProbes(u, AllModes())
	require.Len(t, probes, 2*72*4)
	_, err := RunProbes(context.Background(), fp, u, probes, time.Second)
	require.NoError(t, err)
	assert.Len(t, fp.batches, 9, "one batch per source pod")
	o, err := u.Oracle(u.StateOf(Step{}))
	require.NoError(t, err)
	n, err := Reconfirm(context.Background(), fp, probes, o, time.Second)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	for _, p := range probes {
		assert.True(t, p.Reachable, "%s -> %s %s/%d", p.From, p.To, p.Protocol, p.Port)
		if p.Mode == ModePodIP && p.From == "y/b" && p.To == "x/a" && p.Port == 80 && p.Protocol == "TCP" {
			assert.True(t, p.Reconfirmed)
			assert.Equal(t, u.IPs["y/b"].String(), p.SrcIP)
		}
	}
}
