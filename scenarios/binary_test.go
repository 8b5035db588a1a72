package scenarios

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStarlabBinary(t *testing.T) {
	t.Setenv("STARLAB_BIN", "/opt/starlab")
	p, err := starlabBinary()
	require.NoError(t, err)
	assert.Equal(t, "/opt/starlab", p)

	t.Setenv("STARLAB_BIN", "")
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644))
	sub := filepath.Join(root, "scenarios")
	require.NoError(t, os.Mkdir(sub, 0o755))
	t.Chdir(sub)
	_, err = starlabBinary()
	assert.ErrorContains(t, err, "run `make build`")

	bin := filepath.Join(root, "bin", "starlab")
	require.NoError(t, os.MkdirAll(filepath.Dir(bin), 0o755))
	require.NoError(t, os.WriteFile(bin, nil, 0o755))
	p, err = starlabBinary()
	require.NoError(t, err)
	assert.Equal(t, bin, p, "bin/starlab at the module root")
}

func TestRunChromiumMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := chromiumDOM(context.Background(), "http://127.0.0.1:1/")
	assert.ErrorContains(t, err, "chromium not found")
}
