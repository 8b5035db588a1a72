package nodeimage

//go:generate go run gen_modules.go

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/starlab-dev/starlab/internal/cache"
)

// writeModule writes the embedded wrapper module modules/<name> into dir.
func writeModule(name, dir string) error {
	prefix := "modules/" + name + "/"
	n := 0
	for path, content := range moduleFiles {
		rel, ok := strings.CutPrefix(path, prefix)
		if !ok {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("write module %s: %w", name, err)
		}
		if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write module %s: %w", name, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no embedded module %q (run go generate ./internal/nodeimage)", name)
	}
	return nil
}

// addModule adds the names and contents of the module's files to a cache key.
func addModule(b *cache.KeyBuilder, name string) *cache.KeyBuilder {
	prefix := "modules/" + name + "/"
	var paths []string
	for p := range moduleFiles {
		if strings.HasPrefix(p, prefix) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	b.Strings("module "+name, paths)
	for _, p := range paths {
		b.String(p, moduleFiles[p])
	}
	return b
}
