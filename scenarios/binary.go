package scenarios

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// starlabBinary finds the starlab CLI: $STARLAB_BIN, this executable when it is starlab (`starlab
// test`), or bin/starlab at the module root (`make test-e2e` builds it first).
func starlabBinary() (string, error) {
	if p := os.Getenv("STARLAB_BIN"); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil && filepath.Base(exe) == "starlab" {
		return exe, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the starlab binary: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "starlab")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("starlab binary %s missing: run `make build` (or set STARLAB_BIN)", p)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("starlab binary not found: set STARLAB_BIN or run from the repository after `make build`")
		}
		dir = parent
	}
}
