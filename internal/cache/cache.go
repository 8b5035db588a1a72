// Package cache is a content-keyed build cache on disk.
//
// The directory is $STARLAB_CACHE, or /var/cache/starlab. An entry is a directory named
// "<step>-<key>", where the key is a sha256 over named inputs (versions, go.sum contents, package lists,
// the builder's own source). Entries are published atomically: Build fills a temporary directory and
// renames it into place, so an entry either exists complete or not at all, and an interrupted build
// resumes at the first step whose entry is missing. Builds of the same entry from several processes are
// serialised with a lock file.
//
//	c, _ := cache.Open("")
//	key := cache.NewKey().String("kubernetes", "v1.37.2").File("go.sum", sumPath).Sum()
//	dir, err := c.Build(ctx, "k8s-bin", key, func(tmp string) error { /* write files into tmp */ })
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// EnvDir names the environment variable that overrides the cache directory.
const EnvDir = "STARLAB_CACHE"

// DefaultDir is the cache directory when $STARLAB_CACHE is not set.
const DefaultDir = "/var/cache/starlab"

var stepName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)

// Cache is a cache directory.
type Cache struct {
	dir string
}

// Dir returns the cache directory an empty Open argument resolves to.
func Dir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	return DefaultDir
}

// Open creates (if needed) and returns the cache at dir; "" means Dir().
func Open(dir string) (*Cache, error) {
	if dir == "" {
		dir = Dir()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cache dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create cache dir %s (set $%s to a writable directory): %w", abs, EnvDir, err)
	}
	return &Cache{dir: abs}, nil
}

// Root returns the cache directory.
func (c *Cache) Root() string { return c.dir }

// Path returns where the entry for step and key lives (whether or not it exists).
func (c *Cache) Path(step string, key Key) string {
	return filepath.Join(c.dir, step+"-"+string(key))
}

// Has reports whether the entry for step and key is complete.
func (c *Cache) Has(step string, key Key) bool {
	fi, err := os.Stat(c.Path(step, key))
	return err == nil && fi.IsDir()
}

// Build returns the entry for step and key, calling fill to create it when missing. fill writes the
// entry's files into tmp; the directory is published only when fill returns nil. hit reports whether the
// entry already existed.
func (c *Cache) Build(ctx context.Context, step string, key Key, fill func(tmp string) error) (dir string, hit bool, err error) {
	if !stepName.MatchString(step) {
		return "", false, fmt.Errorf("cache step name %q: use lower-case letters, digits, '.' and '-'", step)
	}
	if err := key.valid(); err != nil {
		return "", false, err
	}
	final := c.Path(step, key)
	if c.Has(step, key) {
		return final, true, nil
	}
	unlock, err := c.lock(ctx, step, key)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if c.Has(step, key) { // another process built it while we waited
		return final, true, nil
	}
	// Leftovers of interrupted builds of this entry: we hold the lock, so nobody uses them.
	stale, _ := filepath.Glob(filepath.Join(c.dir, ".tmp-"+step+"-"+string(key)+"-*"))
	for _, s := range stale {
		_ = os.RemoveAll(s)
	}
	tmp, err := os.MkdirTemp(c.dir, ".tmp-"+step+"-"+string(key)+"-")
	if err != nil {
		return "", false, fmt.Errorf("cache %s: %w", step, err)
	}
	if err := fill(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		_ = os.RemoveAll(tmp)
		return "", false, fmt.Errorf("cache %s: %w", step, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return "", false, fmt.Errorf("cache %s: %w", step, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.RemoveAll(tmp)
		return "", false, fmt.Errorf("publish cache entry %s: %w", final, err)
	}
	return final, false, nil
}

// Remove deletes an entry (e.g. when it turned out to be unusable).
func (c *Cache) Remove(step string, key Key) error {
	if err := os.RemoveAll(c.Path(step, key)); err != nil {
		return fmt.Errorf("remove cache entry %s: %w", c.Path(step, key), err)
	}
	return nil
}

// lock takes an exclusive flock on the entry's lock file, polling so ctx can cancel the wait.
func (c *Cache) lock(ctx context.Context, step string, key Key) (func(), error) {
	path := filepath.Join(c.dir, ".lock-"+step+"-"+string(key))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open cache lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for cache lock %s (another starlab build holds it): %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Key is a hex sha256 naming one cache entry.
type Key string

// Short returns the first 12 hex digits, for image tags and messages.
func (k Key) Short() string {
	if len(k) < 12 {
		return string(k)
	}
	return string(k[:12])
}

func (k Key) valid() error {
	if len(k) != 64 {
		return fmt.Errorf("cache key %q is not a sha256 hex digest: make it with cache.NewKey()...Sum()", string(k))
	}
	if _, err := hex.DecodeString(string(k)); err != nil {
		return fmt.Errorf("cache key %q: %w", string(k), err)
	}
	return nil
}

// KeyBuilder hashes named inputs in the order they are added. Each input is framed by its name and
// length, so ("ab","c") and ("a","bc") differ.
type KeyBuilder struct {
	h   hash.Hash
	err error
}

// NewKey starts a key.
func NewKey() *KeyBuilder { return &KeyBuilder{h: sha256.New()} }

func (b *KeyBuilder) frame(name string, size int64) {
	io.WriteString(b.h, name)
	b.h.Write([]byte{0})
	io.WriteString(b.h, strconv.FormatInt(size, 10))
	b.h.Write([]byte{0})
}

// String adds a named value.
func (b *KeyBuilder) String(name, value string) *KeyBuilder {
	b.frame(name, int64(len(value)))
	io.WriteString(b.h, value)
	return b
}

// Strings adds a named list (order matters).
func (b *KeyBuilder) Strings(name string, values []string) *KeyBuilder {
	b.String(name+"#", strconv.Itoa(len(values)))
	for i, v := range values {
		b.String(name+"["+strconv.Itoa(i)+"]", v)
	}
	return b
}

// Bytes adds named content.
func (b *KeyBuilder) Bytes(name string, data []byte) *KeyBuilder {
	b.frame(name, int64(len(data)))
	b.h.Write(data)
	return b
}

// Key adds another key (e.g. the key of an input step).
func (b *KeyBuilder) Key(name string, k Key) *KeyBuilder { return b.String(name, string(k)) }

// File adds the content of a file; a read error is reported by Sum.
func (b *KeyBuilder) File(name, path string) *KeyBuilder {
	data, err := os.ReadFile(path)
	if err != nil {
		b.err = errors.Join(b.err, fmt.Errorf("cache key input %s: %w", name, err))
		return b
	}
	return b.Bytes(name, data)
}

// FS adds every regular file of fsys under root (names and contents, in lexical order).
func (b *KeyBuilder) FS(name string, fsys fs.FS, root string) *KeyBuilder {
	var paths []string
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		b.err = errors.Join(b.err, fmt.Errorf("cache key input %s: %w", name, err))
		return b
	}
	sort.Strings(paths)
	for _, p := range paths {
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			b.err = errors.Join(b.err, fmt.Errorf("cache key input %s: %w", name, err))
			return b
		}
		b.Bytes(name+":"+p, data)
	}
	return b
}

// Sum returns the key, or the first input error.
func (b *KeyBuilder) Sum() (Key, error) {
	if b.err != nil {
		return "", b.err
	}
	return Key(hex.EncodeToString(b.h.Sum(nil))), nil
}
