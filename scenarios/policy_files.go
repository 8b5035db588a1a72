package scenarios

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/manifests"
)

// manifestFile reads a manifest file of package manifests (a policy: no image to substitute).
func manifestFile(file string) ([]byte, error) {
	data, err := fs.ReadFile(manifests.FS, file)
	if err != nil {
		return nil, fmt.Errorf("read embedded manifest %s: %w", file, err)
	}
	return data, nil
}

// applyPolicyFile applies a manifest file of package manifests, waits until every node has programmed
// it and records that wait (RecordProgramLatency). It returns the resourceVersion waited for and the wait.
func (e *Env) applyPolicyFile(ctx context.Context, file string) (int64, time.Duration, error) {
	data, err := manifestFile(file)
	if err != nil {
		return 0, 0, err
	}
	rv, err := e.Apply(ctx, data)
	if err != nil {
		return 0, 0, err
	}
	waited, err := e.WaitProgrammed(ctx, rv)
	if err != nil {
		return rv, 0, fmt.Errorf("policy %s (resourceVersion %d) not programmed on every node: %w", file, rv, err)
	}
	e.RecordProgramLatency(waited)
	return rv, waited, nil
}

// deletePolicyFiles deletes the objects of manifest files of package manifests and, when any existed,
// waits until every node has programmed their deletion.
func (e *Env) deletePolicyFiles(ctx context.Context, files []string) error {
	var rv int64
	for _, f := range files {
		data, err := manifestFile(f)
		if err != nil {
			return err
		}
		r, err := e.Delete(ctx, data)
		if err != nil {
			return err
		}
		rv = max(rv, r)
	}
	if rv == 0 {
		return nil
	}
	_, err := e.WaitProgrammed(ctx, rv)
	return err
}

// policyStepFile returns the file of files named <n>-<name>.yaml: the policy step called name.
func policyStepFile(files []string, name string) (string, bool) {
	for _, f := range files {
		if _, step, ok := strings.Cut(strings.TrimSuffix(path.Base(f), ".yaml"), "-"); ok && step == name {
			return f, true
		}
	}
	return "", false
}
