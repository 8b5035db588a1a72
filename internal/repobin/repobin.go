// Package repobin finds the binaries `make` builds into bin/ at the module root, for the tests and
// steps that run them (the starlab CLI, the hubble CLI).
package repobin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Find returns the binary called name: $env when set, this executable when it is name (`starlab
// test` running the scenarios), or bin/<name> at the module root above the working directory. The
// error says which make target builds it.
func Find(name, env, makeTarget string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil && filepath.Base(exe) == name {
		return exe, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the %s binary: %w", name, err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", name)
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%s binary %s missing: run `make %s` (or set %s)", name, p, makeTarget, env)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New(name + " binary not found: set " + env + " or run from the repository after `make " + makeTarget + "`")
		}
		dir = parent
	}
}
