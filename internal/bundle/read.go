package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/starlab-dev/starlab/internal/flow"
)

// maxReadBytes bounds what Open reads of one bundle (uncompressed), so a hostile archive cannot
// exhaust memory.
const maxReadBytes = 2 << 30

// Opened is a bundle read back: its manifest and files.
type Opened struct {
	Path     string
	Root     string
	Manifest Manifest
	files    map[string][]byte
}

// Open reads the bundle at p and checks it is whole and of a schema this Starlab reads.
func Open(p string) (*Opened, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open bundle %s: %w (pass the .tar.gz named in the failure output)", p, err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("bundle %s is not a gzipped tar (%v): pass the .tar.gz that `starlab test`, `starlab conformance` or `starlab bundle` wrote", p, err)
	}
	defer gz.Close()
	tr := tar.NewReader(io.LimitReader(gz, maxReadBytes))
	b := &Opened{Path: p, files: map[string][]byte{}}
	var manifest []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, damaged(p, len(b.files), err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		root, name, ok := strings.Cut(hdr.Name, "/")
		if !ok || checkName(name) != nil && name != ManifestName {
			return nil, fmt.Errorf("bundle %s: entry %q is not <root>/<file>: this is not a Starlab bundle", p, hdr.Name)
		}
		if b.Root == "" {
			b.Root = root
		} else if root != b.Root {
			return nil, fmt.Errorf("bundle %s: entries under %q and %q: this is not a Starlab bundle", p, b.Root, root)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, damaged(p, len(b.files), err)
		}
		if name == ManifestName {
			manifest = data
			continue
		}
		b.files[name] = data
	}
	if manifest == nil {
		return nil, fmt.Errorf("bundle %s has no %s (it is the last entry, so the archive is truncated): copy the bundle again from where it was written, or write a new one", p, ManifestName)
	}
	if err := json.Unmarshal(manifest, &b.Manifest); err != nil {
		return nil, fmt.Errorf("bundle %s: %s: %w (the bundle is damaged: write a new one)", p, ManifestName, err)
	}
	m := &b.Manifest
	if m.SchemaVersion == 0 {
		m.SchemaVersion = m.Format
	}
	if m.SchemaVersion > SchemaVersion {
		return nil, fmt.Errorf("bundle %s has schema version %d, newer than this Starlab reads (%d): it was written by Starlab %s; use that Starlab or a newer one (build it from its commit with `make build`)", p, m.SchemaVersion, SchemaVersion, m.StarlabVersion)
	}
	if m.SchemaVersion < 1 {
		return nil, fmt.Errorf("bundle %s: %s has no schema version: this is not a Starlab bundle", p, ManifestName)
	}
	for _, fe := range m.Files {
		data, ok := b.files[fe.Name]
		if !ok {
			return nil, fmt.Errorf("bundle %s: %s lists %s but the archive lacks it: the bundle is damaged, write a new one", p, ManifestName, fe.Name)
		}
		if int64(len(data)) != fe.Size {
			return nil, fmt.Errorf("bundle %s: %s is %d bytes, %s says %d: the bundle is damaged, write a new one", p, fe.Name, len(data), ManifestName, fe.Size)
		}
	}
	return b, nil
}

func damaged(p string, files int, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("bundle %s is truncated (the archive ends after %d complete files): copy it again from where it was written (its size is in the failure output and `starlab bundle -o json`), or write a new one", p, files)
	}
	return fmt.Errorf("bundle %s is damaged after %d files (%v): copy it again or write a new one", p, files, err)
}

// File returns one file of the bundle (name relative to its root).
func (b *Opened) File(name string) ([]byte, bool) {
	data, ok := b.files[name]
	return data, ok
}

// Names lists the files of the bundle, in manifest order.
func (b *Opened) Names() []string {
	out := make([]string, 0, len(b.Manifest.Files))
	for _, f := range b.Manifest.Files {
		out = append(out, f.Name)
	}
	return out
}

// Record returns the failing test's record, objects, tables, flows and feature file included.
func (b *Opened) Record() (*Record, error) {
	idx := b.Manifest.Repro
	if idx == nil {
		return nil, fmt.Errorf("bundle %s holds no failing test (it was written by `starlab bundle`, schema %d): pass a bundle that a failing `starlab test` or `starlab conformance` wrote", b.Path, b.Manifest.SchemaVersion)
	}
	var rec Record
	if err := b.decodeJSON(idx.Record, &rec); err != nil {
		return nil, err
	}
	if err := b.decodeJSON(idx.Objects, &rec.Objects); err != nil {
		return nil, err
	}
	tables, _ := b.File(idx.Tables)
	rec.Tables = string(tables)
	flows, err := b.Flows()
	if err != nil {
		return nil, err
	}
	rec.Flows = flows
	if idx.Feature != "" {
		data, ok := b.File(idx.Feature)
		if !ok {
			return nil, fmt.Errorf("bundle %s lacks its feature file %s: write a new bundle", b.Path, idx.Feature)
		}
		rec.Feature = data
	}
	if err := rec.check(); err != nil {
		return nil, fmt.Errorf("bundle %s: %s: %w", b.Path, idx.Record, err)
	}
	return &rec, nil
}

// Flows returns the failing step's flows (repro/flows.ndjson), or, in a bundle without a failing
// test, the observer's merged flows.
func (b *Opened) Flows() ([]*flow.Flow, error) {
	name := "observer/flows.ndjson"
	if b.Manifest.Repro != nil {
		name = b.Manifest.Repro.Flows
	}
	data, ok := b.File(name)
	if !ok {
		return nil, fmt.Errorf("bundle %s has no flows (%s): the observer was not reachable when it was written (see its %s failures)", b.Path, name, ManifestName)
	}
	dec := flow.NewDecoder(bytes.NewReader(data))
	var out []*flow.Flow
	for {
		f, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %s: %w", b.Path, name, err)
		}
		out = append(out, f)
	}
}

func (b *Opened) decodeJSON(name string, v any) error {
	data, ok := b.File(name)
	if !ok {
		return fmt.Errorf("bundle %s lacks %s: write a new bundle", b.Path, name)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("bundle %s: %s: %w", b.Path, name, err)
	}
	return nil
}
