package bundle

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

// flowsNDJSON encodes n varied flows as the agents serve them.
func flowsNDJSON(b *testing.B, n int) []byte {
	b.Helper()
	var buf bytes.Buffer
	enc := flow.NewEncoder(&buf)
	t0 := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	for i := range n {
		f := &flow.Flow{
			Time: t0.Add(time.Duration(i) * time.Millisecond), UUID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i*7919),
			Verdict: flow.VerdictForwarded, EventType: flow.EventNew,
			IP:          flow.IP{Source: fmt.Sprintf("10.244.%d.%d", i%3, i%250+2), Destination: "10.244.2.7"},
			L4:          flow.L4{Protocol: flow.ProtoTCP, SourcePort: uint16(30000 + i%30000), DestinationPort: 6379, Flags: &flow.TCPFlags{SYN: true}},
			Source:      flow.Endpoint{Identity: uint32(256 + i%20), Namespace: "client", PodName: fmt.Sprintf("client-%d", i%20), Labels: []string{"k8s:role=client"}},
			Destination: flow.Endpoint{Identity: 300, Namespace: "stars", PodName: "backend-1", Labels: []string{"k8s:role=backend"}},
			NodeName:    "starlab-worker", TrafficDirection: flow.DirectionIngress, TraceObservationPoint: flow.ObsToEndpoint,
		}
		require.NoError(b, enc.Encode(f))
	}
	return buf.Bytes()
}

// BenchmarkArchiveFlows writes one agent's flows (10k flows, as in a busy 15-minute window) into a bundle
// and closes it: the tar+gzip cost of the largest part of a real bundle.
func BenchmarkArchiveFlows(b *testing.B) {
	data := flowsNDJSON(b, 10000)
	dir := b.TempDir()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var size int64
	for i := 0; b.Loop(); i++ {
		a, err := CreateArchive(filepath.Join(dir, fmt.Sprintf("b%d.tar.gz", i%2)), "b", time.Now())
		require.NoError(b, err)
		require.NoError(b, a.Add("agents", "agents/n1/flows.ndjson", data))
		size, err = a.Close(&Manifest{})
		require.NoError(b, err)
	}
	b.ReportMetric(float64(len(data))/float64(size), "ratio")
}
