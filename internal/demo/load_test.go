package demo

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func echoTarget(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	require.NoError(t, ListenTCPEcho(t.Context(), "127.0.0.1", port))
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func TestRunLoadKinds(t *testing.T) {
	target := echoTarget(t)
	for _, kind := range []string{LoadConnect, LoadRR} {
		r, err := RunLoad(t.Context(), LoadRequest{Kind: kind, Targets: []string{target}, Duration: "200ms", Concurrency: 2})
		require.NoError(t, err, kind)
		assert.Zero(t, r.Failures, "%s: %v", kind, r.Errors)
		assert.Positive(t, r.Successes, kind)
		assert.Equal(t, r.Attempts, r.Successes, kind)
		assert.Positive(t, r.P50Us, kind)
		assert.GreaterOrEqual(t, r.P99Us, r.P50Us, kind)
		assert.GreaterOrEqual(t, r.MaxUs, r.P99Us, kind)
		assert.Positive(t, r.PerSecond, kind)
	}
	r, err := RunLoad(t.Context(), LoadRequest{Kind: LoadStream, Targets: []string{target}, Duration: "200ms"})
	require.NoError(t, err)
	assert.Zero(t, r.Failures)
	assert.Positive(t, r.BitsPerSecond)
}

func TestRunLoadRefusedCounts(t *testing.T) {
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))) // nothing listens: every connect is refused
	r, err := RunLoad(t.Context(), LoadRequest{Kind: LoadConnect, Targets: []string{target}, Duration: "100ms"})
	require.NoError(t, err)
	assert.Zero(t, r.Successes)
	assert.Positive(t, r.Failures)
	assert.NotEmpty(t, r.Errors)
}

func TestRunLoadInvalid(t *testing.T) {
	for name, req := range map[string]LoadRequest{
		"kind":        {Kind: "x", Targets: []string{"a:1"}, Duration: "1s"},
		"no targets":  {Kind: LoadConnect, Duration: "1s"},
		"target":      {Kind: LoadConnect, Targets: []string{"a"}, Duration: "1s"},
		"duration":    {Kind: LoadConnect, Targets: []string{"a:1"}, Duration: "1h"},
		"concurrency": {Kind: LoadConnect, Targets: []string{"a:1"}, Duration: "1s", Concurrency: 100},
	} {
		_, err := RunLoad(t.Context(), req)
		assert.Error(t, err, name)
	}
}

func TestRunLoadFirst(t *testing.T) {
	target := echoTarget(t)
	before := time.Now().UnixNano()
	r, err := RunLoad(t.Context(), LoadRequest{Kind: LoadFirst, Targets: []string{target}, Duration: "2s"})
	require.NoError(t, err)
	assert.Equal(t, int64(1), r.Successes)
	assert.GreaterOrEqual(t, r.FirstSuccessUnixNano, before)
	assert.Less(t, r.DurationMs, 1000.0) // it stops at the first success
}
