package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
)

// LoadArchive imports the docker-archive at path into containerd (namespace k8s.io) of every node, all
// nodes at once. Nothing is pulled.
func LoadArchive(ctx context.Context, ns []nodes.Node, path string) error {
	if len(ns) == 0 {
		return fmt.Errorf("load %s: no nodes", path)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("load image archive: %w", err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loadInto(ctx, n, path); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func loadInto(ctx context.Context, n nodes.Node, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open image archive: %w", err)
	}
	defer f.Close()
	// kind's LoadImageArchive runs `ctr images import` in the node and takes no context.
	if err := nodeutils.LoadImageArchive(n, f); err != nil {
		return fmt.Errorf("load %s into node %s: %w", path, n.String(), err)
	}
	return nil
}

// MissingOn returns the nodes that lack at least one of refs (so a rerun loads nothing when all are there).
func MissingOn(ctx context.Context, ns []nodes.Node, refs []string) ([]nodes.Node, error) {
	var missing []nodes.Node
	for _, n := range ns {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, ref := range refs {
			if id, err := nodeutils.ImageID(n, ref); err != nil || id == "" {
				missing = append(missing, n)
				break
			}
		}
	}
	return missing, nil
}

// Ensure builds the images of specs from binDir, and when some node lacks one of them, writes the archive at
// archivePath and loads it into those nodes. It returns the refs by image name.
func Ensure(ctx context.Context, binDir, archivePath string, specs []Spec, ns []nodes.Node) (map[string]string, error) {
	built, err := BuildAll(ctx, binDir, specs)
	if err != nil {
		return nil, err
	}
	refs := Refs(built)
	all := make([]string, 0, len(built))
	for _, b := range built {
		all = append(all, b.Ref)
	}
	missing, err := MissingOn(ctx, ns, all)
	if err != nil {
		return nil, err
	}
	if len(missing) == 0 {
		return refs, nil
	}
	if err := WriteArchive(ctx, archivePath, built); err != nil {
		return nil, err
	}
	if err := LoadArchive(ctx, missing, archivePath); err != nil {
		return nil, err
	}
	return refs, nil
}
