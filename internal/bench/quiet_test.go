package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseCPUTimes(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       cpuTimes
		err        string
	}{
		{name: "kernel 6", stat: "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n", want: cpuTimes{busy: 170, total: 990}},
		{name: "old kernel, four fields", stat: "cpu 10 0 10 80\n", want: cpuTimes{busy: 20, total: 100}},
		{name: "per-CPU line first", stat: "cpu0 1 2 3 4\n", err: "not the aggregate cpu line"},
		{name: "garbage field", stat: "cpu 1 x 3 4\n", err: `cpu field 2 "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCPUTimes(tc.stat)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestBusyBetween(t *testing.T) {
	require.InDelta(t, 0.25, busyBetween(cpuTimes{busy: 100, total: 1000}, cpuTimes{busy: 150, total: 1200}), 1e-9)
	require.Zero(t, busyBetween(cpuTimes{busy: 100, total: 1000}, cpuTimes{busy: 100, total: 1000}))
}

// The wait on this machine's real /proc/stat: a limit of 100% busy is met by every window, a limit
// no window can meet ends at the timeout with Reached false.
func TestWaitQuiet(t *testing.T) {
	ctx := context.Background()
	q, err := waitQuiet(ctx, QuietOptions{MaxBusy: 1, Windows: 2, Timeout: time.Minute})
	require.NoError(t, err)
	require.True(t, q.Reached)
	require.InDelta(t, 2, q.WaitSeconds, 1)
	q, err = waitQuiet(ctx, QuietOptions{MaxBusy: -1, Windows: 1, Timeout: 2 * time.Second})
	require.NoError(t, err)
	require.False(t, q.Reached)
	require.GreaterOrEqual(t, q.WaitSeconds, 2.0)
	q, err = waitQuiet(ctx, QuietOptions{})
	require.NoError(t, err)
	require.True(t, q.Reached, "no timeout: no wait")
}
