package repobin

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFind(t *testing.T) {
	t.Setenv("STARLAB_BIN", "/opt/starlab")
	p, err := Find("starlab", "STARLAB_BIN", "build")
	require.NoError(t, err)
	assert.Equal(t, "/opt/starlab", p)

	t.Setenv("STARLAB_BIN", "")
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644))
	sub := filepath.Join(root, "scenarios")
	require.NoError(t, os.Mkdir(sub, 0o755))
	t.Chdir(sub)
	_, err = Find("starlab", "STARLAB_BIN", "build")
	assert.ErrorContains(t, err, "run `make build`")
	_, err = Find("hubble", "STARLAB_HUBBLE", "hubble")
	assert.ErrorContains(t, err, "run `make hubble` (or set STARLAB_HUBBLE)")

	bin := filepath.Join(root, "bin", "starlab")
	require.NoError(t, os.MkdirAll(filepath.Dir(bin), 0o755))
	require.NoError(t, os.WriteFile(bin, nil, 0o755))
	p, err = Find("starlab", "STARLAB_BIN", "build")
	require.NoError(t, err)
	assert.Equal(t, bin, p, "bin/starlab at the module root")
}
