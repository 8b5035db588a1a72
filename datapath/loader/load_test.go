//go:build datapath

package loader

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// testPinDir returns a unique pin directory under /sys/fs/bpf, removed at
// the end of the test.
func testPinDir(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-%s-%d", name, os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func TestLoadPinsAndReusesMaps(t *testing.T) {
	ctx := context.Background()
	dir := testPinDir(t, "load")
	dp, err := Load(ctx, Options{PinDir: dir})
	require.NoError(t, err)
	for _, p := range []string{"sl_ct", "sl_endpoints", "sl_events", "sl_policy", "sl_config"} {
		require.FileExists(t, filepath.Join(dir, p))
	}
	id1, err := dp.Maps.CT.Info()
	require.NoError(t, err)
	mid1, _ := id1.ID()
	require.NoError(t, dp.Close())

	dp2, err := Load(ctx, Options{PinDir: dir})
	require.NoError(t, err)
	defer dp2.Close()
	id2, err := dp2.Maps.CT.Info()
	require.NoError(t, err)
	mid2, _ := id2.ID()
	require.Equal(t, mid1, mid2, "second Load must reuse the pinned sl_ct")
}
