package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

func observeFlows() []*flow.Flow {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mk := func(i int, ns, pod string, v flow.Verdict) *flow.Flow {
		f := &flow.Flow{Time: t0.Add(time.Duration(i) * time.Second), UUID: pod, Verdict: v, EventType: flow.EventNew,
			IP:          flow.IP{Source: "10.244.1.5", Destination: "10.244.2.7"},
			L4:          flow.L4{Protocol: flow.ProtoTCP, SourcePort: 40000, DestinationPort: 6379, Flags: &flow.TCPFlags{SYN: true}},
			Source:      flow.Endpoint{Identity: 256, Namespace: ns, PodName: pod},
			Destination: flow.Endpoint{Identity: 300, Namespace: "stars", PodName: "backend-1"},
			NodeName:    "w1", TrafficDirection: flow.DirectionIngress, TraceObservationPoint: flow.ObsToEndpoint}
		if v == flow.VerdictDropped {
			f.EventType, f.DropReasonDesc = flow.EventDrop, flow.DropPolicyDenied
			f.DeniedBy = []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}}
		}
		return f
	}
	return []*flow.Flow{
		mk(0, "client", "client-a", flow.VerdictDropped),
		mk(1, "stars", "frontend-a", flow.VerdictForwarded),
		mk(2, "client", "client-b", flow.VerdictDropped),
		mk(3, "stars", "frontend-b", flow.VerdictForwarded),
	}
}

func run(t *testing.T, args ...string) (string, error) {
	cmd := NewRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestObserveInputFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.ndjson")
	var buf bytes.Buffer
	enc := flow.NewEncoder(&buf)
	for _, f := range observeFlows() {
		require.NoError(t, enc.Encode(f))
	}
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))

	out, err := run(t, "observe", "--input-file", path, "--verdict", "DROPPED", "-o", "json")
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(out, "\n"))
	assert.Contains(t, out, `"uuid":"client-a"`)
	assert.Contains(t, out, `"uuid":"client-b"`)

	out, err = run(t, "observe", "--input-file", path, "--not", "--from-namespace", "client", "--last", "1")
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(out, "\n"))
	assert.Contains(t, out, "stars/frontend-b:40000 (ID:256) -> stars/backend-1:6379 (ID:300) to-endpoint FORWARDED (TCP Flags: SYN, NEW, ingress, node w1)")

	out, err = run(t, "observe", "--input-file", path, "--from-pod", "client/client-b", "-o", "table")
	require.NoError(t, err)
	assert.Contains(t, out, "TIMESTAMP")
	assert.Contains(t, out, "DROPPED POLICY_DENIED")
	assert.Contains(t, out, "denied by DefaultDeny")

	_, err = run(t, "observe", "--input-file", path, "-o", "yaml")
	require.ErrorContains(t, err, `invalid value "yaml" for -o/--output`)
	_, err = run(t, "observe", "--input-file", path, "--follow")
	require.ErrorContains(t, err, "--follow cannot be combined with --input-file")
	_, err = run(t, "observe", "--input-file", path, "--drop-reason", "BAD")
	require.ErrorContains(t, err, `"--drop-reason"`)
}

func TestObserveFromObserver(t *testing.T) {
	o, err := observer.New(observer.Config{})
	require.NoError(t, err)
	for _, f := range observeFlows() {
		o.Ingest(f)
	}
	srv := httptest.NewServer(o.Handler())
	defer srv.Close()
	out, err := run(t, "observe", "--observer-url", srv.URL, "--to-namespace", "stars", "--verdict", "DROPPED", "-o", "json")
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(out, "\n"))
	dec := flow.NewDecoder(strings.NewReader(out))
	f, err := dec.Decode()
	require.NoError(t, err)
	assert.Equal(t, "client-a", f.UUID)
	assert.Equal(t, flow.DirectionIngress, f.TrafficDirection)
	assert.Equal(t, []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}}, f.DeniedBy)
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestObserveFollow(t *testing.T) {
	o, err := observer.New(observer.Config{})
	require.NoError(t, err)
	srv := httptest.NewServer(o.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := NewRootCommand()
	var out syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"observe", "--observer-url", srv.URL, "-f", "--verdict", "DROPPED", "-o", "table"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	require.Eventually(t, func() bool { return o.Store().Subscribers() == 1 }, 5*time.Second, 5*time.Millisecond)
	for _, f := range observeFlows() {
		o.Ingest(f)
	}
	require.Eventually(t, func() bool { return strings.Count(out.String(), "DROPPED POLICY_DENIED") == 2 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done, "Ctrl-C ends a followed stream without error")
	assert.NotContains(t, out.String(), "FORWARDED")
	assert.True(t, strings.HasPrefix(out.String(), "TIMESTAMP"))
}
