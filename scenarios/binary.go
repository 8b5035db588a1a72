package scenarios

import "github.com/starlab-dev/starlab/internal/repobin"

// starlabBinary finds the starlab CLI: $STARLAB_BIN, this executable when it is starlab (`starlab
// test`), or bin/starlab at the module root (`make test-e2e` builds it first).
func starlabBinary() (string, error) { return repobin.Find("starlab", "STARLAB_BIN", "build") }
