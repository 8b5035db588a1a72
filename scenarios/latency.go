package scenarios

import (
	"fmt"
	"slices"
	"time"
)

// LatencySummary summarizes policy-applied -> programmed-everywhere latencies.
type LatencySummary struct {
	N                  int
	Min, P50, P99, Max time.Duration
}

// SummarizeLatencies computes nearest-rank percentiles.
func SummarizeLatencies(d []time.Duration) LatencySummary {
	if len(d) == 0 {
		return LatencySummary{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return LatencySummary{N: len(s), Min: s[0], P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

func (l LatencySummary) String() string {
	return fmt.Sprintf("policy applied -> programmed on every node: n=%d min=%s p50=%s p99=%s max=%s",
		l.N, l.Min.Round(time.Millisecond), l.P50.Round(time.Millisecond), l.P99.Round(time.Millisecond), l.Max.Round(time.Millisecond))
}
