//go:build e2e

package hostprep

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEnsureRealHost runs Ensure twice on this host (root, Debian) and then checks that a privileged
// container really starts. The second call must find everything in place.
func TestEnsureRealHost(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "this test prepares the real host: run it as root")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	require.NoError(t, Ensure(ctx, log))
	start := time.Now()
	require.NoError(t, Ensure(ctx, log))
	t.Logf("second Ensure took %s", time.Since(start))

	out, err := runProbe(ctx, true)
	require.NoError(t, err, out)
	v, err := dockerServerVersion(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, strings.TrimSpace(v))
	require.DirExists(t, modulesDir)
	for _, sc := range sysctlMinimums {
		raw, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(sc.key, ".", "/"))
		require.NoError(t, err)
		v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		require.NoError(t, err)
		require.GreaterOrEqual(t, v, sc.min, sc.key)
	}
}
