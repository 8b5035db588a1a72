package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustKey(t *testing.T, b *KeyBuilder) Key {
	t.Helper()
	k, err := b.Sum()
	require.NoError(t, err)
	return k
}

func TestKeyFraming(t *testing.T) {
	a := mustKey(t, NewKey().String("x", "ab").String("y", "c"))
	b := mustKey(t, NewKey().String("x", "a").String("y", "bc"))
	c := mustKey(t, NewKey().String("x", "ab").String("y", "c"))
	assert.NotEqual(t, a, b)
	assert.Equal(t, a, c)
	assert.Len(t, string(a), 64)
	assert.Equal(t, string(a[:12]), a.Short())

	l1 := mustKey(t, NewKey().Strings("pkgs", []string{"a,b"}))
	l2 := mustKey(t, NewKey().Strings("pkgs", []string{"a", "b"}))
	assert.NotEqual(t, l1, l2)
}

func TestKeyInputs(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "go.sum")
	require.NoError(t, os.WriteFile(f, []byte("one"), 0o644))
	k1 := mustKey(t, NewKey().File("go.sum", f))
	require.NoError(t, os.WriteFile(f, []byte("two"), 0o644))
	k2 := mustKey(t, NewKey().File("go.sum", f))
	assert.NotEqual(t, k1, k2)

	_, err := NewKey().File("missing", filepath.Join(dir, "nope")).Sum()
	require.ErrorContains(t, err, "missing")

	fs1 := fstest.MapFS{"m/a.go": {Data: []byte("a")}, "m/b.go": {Data: []byte("b")}}
	fs2 := fstest.MapFS{"m/a.go": {Data: []byte("a")}, "m/b.go": {Data: []byte("B")}}
	assert.NotEqual(t, mustKey(t, NewKey().FS("src", fs1, "m")), mustKey(t, NewKey().FS("src", fs2, "m")))
	assert.Equal(t, mustKey(t, NewKey().FS("src", fs1, "m")), mustKey(t, NewKey().FS("src", fs1, "m")))
}

func TestBuildPublishesAtomicallyAndResumes(t *testing.T) {
	c, err := Open(t.TempDir())
	require.NoError(t, err)
	ctx := context.Background()
	key := mustKey(t, NewKey().String("v", "1"))

	// An interrupted build leaves no entry...
	_, _, err = c.Build(ctx, "step", key, func(tmp string) error {
		require.NoError(t, os.WriteFile(filepath.Join(tmp, "half"), []byte("x"), 0o644))
		return errors.New("interrupted")
	})
	require.EqualError(t, err, "interrupted")
	assert.False(t, c.Has("step", key))
	leftovers, _ := filepath.Glob(filepath.Join(c.Root(), ".tmp-*"))
	assert.Empty(t, leftovers)

	// ...so the rerun builds it, and the next one hits.
	calls := 0
	fill := func(tmp string) error {
		calls++
		return os.WriteFile(filepath.Join(tmp, "out"), []byte("done"), 0o644)
	}
	dir, hit, err := c.Build(ctx, "step", key, fill)
	require.NoError(t, err)
	assert.False(t, hit)
	assert.Equal(t, c.Path("step", key), dir)
	data, err := os.ReadFile(filepath.Join(dir, "out"))
	require.NoError(t, err)
	assert.Equal(t, "done", string(data))
	_, hit, err = c.Build(ctx, "step", key, fill)
	require.NoError(t, err)
	assert.True(t, hit)
	assert.Equal(t, 1, calls)

	require.NoError(t, c.Remove("step", key))
	assert.False(t, c.Has("step", key))
}

func TestBuildConcurrentBuildsOnce(t *testing.T) {
	c, err := Open(t.TempDir())
	require.NoError(t, err)
	key := mustKey(t, NewKey().String("v", "2"))
	var calls atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := c.Build(context.Background(), "conc", key, func(tmp string) error {
				calls.Add(1)
				return os.WriteFile(filepath.Join(tmp, "f"), nil, 0o644)
			})
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(1), calls.Load())
}

func TestBuildRejectsBadInput(t *testing.T) {
	c, err := Open(t.TempDir())
	require.NoError(t, err)
	key := mustKey(t, NewKey())
	_, _, err = c.Build(context.Background(), "Bad/Name", key, func(string) error { return nil })
	require.ErrorContains(t, err, "Bad/Name")
	_, _, err = c.Build(context.Background(), "ok", Key("abc"), func(string) error { return nil })
	require.ErrorContains(t, err, "abc")
}

func TestDirFromEnv(t *testing.T) {
	t.Setenv(EnvDir, "/tmp/x-starlab")
	assert.Equal(t, "/tmp/x-starlab", Dir())
	t.Setenv(EnvDir, "")
	assert.Equal(t, DefaultDir, Dir())
}
