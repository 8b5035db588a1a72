package nodeimage

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAgnhostArchiveLayout: the image the suite's manifests run (`/bin/bash -c "/agnhost ..."`, and the
// client container with no command: upstream's entrypoint /agnhost with argument pause).
func TestAgnhostArchiveLayout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "agnhost")
	require.NoError(t, os.WriteFile(bin, []byte("agnhost-binary"), 0o755))
	out := filepath.Join(dir, "a.tar")
	require.NoError(t, writeAgnhostArchive(out, bin, []byte("bash-binary")))

	cf, got, _ := archiveImage(t, out, AgnhostImage)
	assert.Equal(t, []string{"/agnhost"}, cf.Config.Entrypoint)
	assert.Equal(t, []string{"pause"}, cf.Config.Cmd)
	assert.Equal(t, "agnhost-binary", got["agnhost"])
	assert.Equal(t, "bash-binary", got["bin/bash"])
	assert.Equal(t, "agnhost", got["agnhost-2"])
	assert.Equal(t, "bash", got["bin/sh"])
	assert.Contains(t, got, "tmp/")
}

func TestAgnhostModulePinsTheNodeKubernetes(t *testing.T) {
	assert.Contains(t, moduleFiles["modules/agnhost/go.mod"], "require k8s.io/kubernetes "+DefaultVersion)
	assert.Contains(t, moduleFiles["modules/agnhost/tools.go"], AgnhostPackage)
}

// archiveImage reads image ref of a docker-archive: its config, and its one layer's entries (name ->
// content, or link target) and modes.
func archiveImage(t *testing.T, archive, ref string) (*v1.ConfigFile, map[string]string, map[string]int64) {
	t.Helper()
	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	img, err := tarball.ImageFromPath(archive, &tag)
	require.NoError(t, err, "the archive holds %s", ref)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	files, modes := map[string]string{}, map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[h.Name], modes[h.Name] = string(data)+h.Linkname, h.Mode
	}
	return cf, files, modes
}
