package scenarios

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKprAddressFromEnd(t *testing.T) {
	for _, tt := range []struct {
		prefix string
		n      int
		want   string
	}{
		{"172.18.0.0/16", 0, "172.18.255.245"},
		{"172.18.0.0/16", 1, "172.18.255.244"},
		{"172.18.3.7/16", 0, "172.18.255.245"}, // not masked
		{"10.1.2.0/24", 2, "10.1.2.243"},
	} {
		got, err := kprAddressFromEnd(netip.MustParsePrefix(tt.prefix), tt.n)
		require.NoError(t, err, tt.prefix)
		assert.Equal(t, tt.want, got.String(), "%s #%d", tt.prefix, tt.n)
	}
	for _, bad := range []string{"10.1.2.0/25", "fc00:f853:ccd:e793::/64"} {
		_, err := kprAddressFromEnd(netip.MustParsePrefix(bad), 0)
		assert.ErrorContains(t, err, "want an IPv4 subnet of /24 or larger", bad)
	}
}

// kprAffinityConnects: within the timeout 8 connections back to back (a slow one is an error, not
// a pass); after it, connections spaced by more than the timeout until two backends differ.
func TestKprAffinityConnects(t *testing.T) {
	ctx := context.Background()
	const timeout = 40 * time.Millisecond
	seq := func(backends ...string) (func(context.Context) (string, error), *[]time.Time) {
		var at []time.Time
		i := 0
		return func(context.Context) (string, error) {
			at = append(at, time.Now())
			b := backends[min(i, len(backends)-1)]
			i++
			return b, nil
		}, &at
	}
	same := func(_ context.Context, keys []string) ([]string, error) { return keys, nil }

	connect, _ := seq("a")
	got, err := kprAffinityConnects(ctx, "within", timeout, connect, same)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "a", "a", "a", "a", "a", "a", "a"}, got)

	slow := func(context.Context) (string, error) { time.Sleep(timeout); return "a", nil }
	_, err = kprAffinityConnects(ctx, "within", timeout, slow, same)
	assert.ErrorContains(t, err, "not within the affinity timeout")

	connect, at := seq("a", "a", "b", "c")
	got, err = kprAffinityConnects(ctx, "each after", timeout, connect, same)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "a", "b"}, got, "stops at the first new backend")
	for i := 1; i < len(*at); i++ {
		assert.Greater(t, (*at)[i].Sub((*at)[i-1]), timeout, "connection %d after the timeout", i+1)
	}

	connect, _ = seq("a")
	got, err = kprAffinityConnects(ctx, "each after", time.Millisecond, connect, same)
	require.NoError(t, err)
	assert.Len(t, got, 12, "gives up after 12 connections")
	assert.Equal(t, []string{"a"}, distinct(got))
}
