package images

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// staticBinary is a real statically linked executable on every Go install.
func staticBinary(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "bin", "gofmt"))
	require.NoError(t, err)
	return data
}

func writeBin(t *testing.T, dir, name string, data []byte, mode os.FileMode) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, mode))
}

func TestCheckStaticBinary(t *testing.T) {
	dir := t.TempDir()
	writeBin(t, dir, "static", staticBinary(t), 0o755)
	writeBin(t, dir, "noexec", staticBinary(t), 0o644)
	writeBin(t, dir, "text", []byte("#!/bin/sh\n"), 0o755)
	dynamic, err := os.ReadFile("/bin/ls")
	require.NoError(t, err)
	writeBin(t, dir, "dynamic", dynamic, 0o755)
	tests := []struct {
		file    string
		wantErr string
	}{
		{"static", ""},
		{"missing", "run `make build`"},
		{"noexec", "not an executable"},
		{"text", "not a Linux ELF"},
		{"dynamic", "dynamically linked"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			err := checkStaticBinary(filepath.Join(dir, tt.file))
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestBuildTagFollowsContent(t *testing.T) {
	ctx := context.Background()
	bin := staticBinary(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	for _, d := range []string{dirA, dirB} {
		writeBin(t, d, "starlab-agent", bin, 0o755)
		writeBin(t, d, "starlab-cni", bin, 0o755)
	}
	spec := StarlabSpecs()[0]
	a, err := Build(ctx, dirA, spec)
	require.NoError(t, err)
	b, err := Build(ctx, dirB, spec)
	require.NoError(t, err)
	assert.Equal(t, a.Ref, b.Ref, "same binaries, same tag (reproducible layer)")
	assert.True(t, strings.HasPrefix(a.Ref, "localhost/starlab/agent:"), a.Ref)
	assert.Len(t, strings.TrimPrefix(a.Ref, "localhost/starlab/agent:"), tagLen)

	writeBin(t, dirB, "starlab-cni", append(append([]byte{}, bin...), 0), 0o755)
	c, err := Build(ctx, dirB, spec)
	require.NoError(t, err)
	assert.NotEqual(t, a.Ref, c.Ref, "a changed binary changes the tag")
}

func TestBuildMissingBinary(t *testing.T) {
	_, err := Build(context.Background(), t.TempDir(), StarlabSpecs()[1])
	require.ErrorContains(t, err, "starlab-observer not found: run `make build`")
}

func TestWriteArchiveRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bin := staticBinary(t)
	for _, n := range []string{"starlab-agent", "starlab-cni", "starlab-observer", "starlab-demo"} {
		writeBin(t, dir, n, bin, 0o755)
	}
	built, err := BuildAll(ctx, dir, StarlabSpecs())
	require.NoError(t, err)
	require.Len(t, built, 3)
	path := filepath.Join(t.TempDir(), "images.tar")
	require.NoError(t, WriteArchive(ctx, path, built))

	for _, b := range built {
		tag, err := name.NewTag(b.Ref)
		require.NoError(t, err)
		img, err := tarball.ImageFromPath(path, &tag)
		require.NoError(t, err, b.Ref)
		cf, err := img.ConfigFile()
		require.NoError(t, err)
		assert.Equal(t, []string{"/usr/local/bin/starlab-" + b.Name}, cf.Config.Entrypoint)
		assert.Equal(t, "linux", cf.OS)
		layers, err := img.Layers()
		require.NoError(t, err)
		require.Len(t, layers, 1)
		rc, err := layers[0].Uncompressed()
		require.NoError(t, err)
		files := map[string]int64{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			files[h.Name] = h.Size
		}
		require.NoError(t, rc.Close())
		assert.Equal(t, int64(len(bin)), files["usr/local/bin/starlab-"+b.Name])
		assert.Contains(t, files, "tmp/")
		if b.Name == Agent {
			assert.Equal(t, int64(len(bin)), files["usr/local/bin/starlab-cni"], "the agent image carries the CNI plugin")
		}
	}
	assert.Equal(t, map[string]string{Agent: built[0].Ref, Observer: built[1].Ref, Demo: built[2].Ref}, Refs(built))
}
