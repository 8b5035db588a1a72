package bundle

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ManifestName is the name of the manifest file at the root of every bundle.
const ManifestName = "MANIFEST.json"

// SchemaVersion is the version of the bundle layout (MANIFEST.json's schemaVersion): 1 had no repro
// section; 2 adds it (Manifest.Repro, the repro/ files). A reader refuses a newer schema.
const SchemaVersion = 2

// Manifest is MANIFEST.json: what the bundle holds and which collection steps failed.
type Manifest struct {
	SchemaVersion     int          `json:"schemaVersion"`
	Format            int          `json:"format,omitempty"` // schema 1's name of SchemaVersion (read only)
	Lab               string       `json:"lab"`
	CreatedAt         time.Time    `json:"createdAt"`
	Since             string       `json:"since"` // the window of flows and journals, e.g. "15m0s"
	StarlabVersion    string       `json:"starlabVersion"`
	KubernetesVersion string       `json:"kubernetesVersion,omitempty"`
	Duration          string       `json:"duration"`
	Files             []FileEntry  `json:"files"`    // every file but MANIFEST.json itself, in archive order
	Steps             []StepRecord `json:"steps"`    // every collection step, in run order
	Failures          []Failure    `json:"failures"` // every failed step (or item of a step) with its error
	// Redacted says Secret data and the values of the named keys were replaced before anything was written.
	Redacted   bool     `json:"redacted,omitempty"`
	RedactKeys []string `json:"redactKeys,omitempty"`
	// Repro indexes the failing test's record (bundles written by a failing `starlab test` or
	// `starlab conformance`); nil for a plain `starlab bundle`.
	Repro *ReproIndex `json:"repro,omitempty"`
}

// FileEntry is one file of the bundle (name relative to the bundle's root directory).
type FileEntry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Step string `json:"step"`
}

// StepRecord is one collection step: how long it took, how many files it wrote, whether anything failed.
type StepRecord struct {
	Name     string `json:"name"`
	Duration string `json:"duration"`
	Files    int    `json:"files"`
	Failures int    `json:"failures"`
}

// Failure is a collection step (or one item of it, e.g. one node) that failed; the bundle went on without it.
type Failure struct {
	Step  string `json:"step"`
	Item  string `json:"item,omitempty"`
	Error string `json:"error"`
}

// Archive writes a tar.gz whose entries all live under one root directory, remembers every file it
// wrote, and ends with MANIFEST.json. It writes to "<path>.partial" and renames on Close, so a bundle at
// path is always complete. Safe for concurrent use.
type Archive struct {
	mu      sync.Mutex
	path    string
	tmp     string
	root    string
	modTime time.Time
	f       *os.File
	gz      *gzip.Writer
	tw      *tar.Writer
	files   []FileEntry
	names   map[string]bool
	closed  bool
	redact  *Redactor
}

// SetRedactor makes every later Add (and the manifest) pass through r before it is written.
func (a *Archive) SetRedactor(r *Redactor) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.redact = r
}

// CreateArchive starts a bundle at path whose entries live under root/ (a single path element).
func CreateArchive(path, root string, modTime time.Time) (*Archive, error) {
	if root == "" || strings.ContainsAny(root, `/\`) || root == "." || root == ".." {
		return nil, fmt.Errorf("bundle root directory %q: use a single non-empty name without slashes", root)
	}
	if path == "" {
		return nil, fmt.Errorf("bundle output path is empty: give a file name such as bundle.tar.gz")
	}
	if dir := filepath.Dir(path); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("bundle output %s: directory %s does not exist: create it or choose another --output", path, dir)
		}
	}
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create bundle %s: %w", tmp, err)
	}
	gz := gzip.NewWriter(f)
	return &Archive{
		path: path, tmp: tmp, root: root, modTime: modTime.UTC(),
		f: f, gz: gz, tw: tar.NewWriter(gz), names: map[string]bool{},
	}, nil
}

// checkName validates a file name inside the bundle: relative, clean, no "..", not the manifest.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("bundle file name is empty")
	case strings.HasPrefix(name, "/") || strings.Contains(name, `\`):
		return fmt.Errorf("bundle file name %q: use a relative slash-separated path", name)
	case path.Clean(name) != name || name == "." || strings.HasPrefix(name, "../") || name == "..":
		return fmt.Errorf("bundle file name %q: use a clean path without . or .. elements", name)
	case name == ManifestName:
		return fmt.Errorf("bundle file name %q is reserved for the manifest", name)
	}
	return nil
}

// Add writes one file (name relative to the bundle root) produced by step.
func (a *Archive) Add(step, name string, data []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("add %s to bundle %s: archive already closed", name, a.path)
	}
	if a.names[name] {
		return fmt.Errorf("add %s to bundle %s: a file of that name is already in it", name, a.path)
	}
	data = a.redact.Bytes(data)
	if err := a.writeLocked(name, data); err != nil {
		return err
	}
	a.names[name] = true
	a.files = append(a.files, FileEntry{Name: name, Size: int64(len(data)), Step: step})
	return nil
}

func (a *Archive) writeLocked(name string, data []byte) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     a.root + "/" + name,
		Mode:     0o644,
		Size:     int64(len(data)),
		ModTime:  a.modTime,
		Format:   tar.FormatPAX,
	}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s header to bundle %s: %w", name, a.tmp, err)
	}
	if _, err := a.tw.Write(data); err != nil {
		return fmt.Errorf("write %s to bundle %s: %w", name, a.tmp, err)
	}
	return nil
}

// Files returns the files written so far.
func (a *Archive) Files() []FileEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]FileEntry(nil), a.files...)
}

// Close fills m.Files, writes MANIFEST.json as the last entry, flushes, and renames the archive into
// place. It returns the size of the finished bundle.
func (a *Archive) Close(m *Manifest) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return 0, fmt.Errorf("close bundle %s: already closed", a.path)
	}
	a.closed = true
	m.SchemaVersion, m.Format = SchemaVersion, 0
	m.Files = append([]FileEntry(nil), a.files...)
	if m.Steps == nil {
		m.Steps = []StepRecord{}
	}
	if m.Failures == nil {
		m.Failures = []Failure{}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		a.abortLocked()
		return 0, fmt.Errorf("encode bundle manifest: %w", err)
	}
	if err := a.writeLocked(ManifestName, append(a.redact.Bytes(data), '\n')); err != nil {
		a.abortLocked()
		return 0, err
	}
	if err := a.tw.Close(); err != nil {
		a.abortLocked()
		return 0, fmt.Errorf("finish tar of bundle %s: %w", a.tmp, err)
	}
	if err := a.gz.Close(); err != nil {
		a.abortLocked()
		return 0, fmt.Errorf("finish gzip of bundle %s: %w", a.tmp, err)
	}
	if err := a.f.Sync(); err != nil {
		a.abortLocked()
		return 0, fmt.Errorf("sync bundle %s: %w", a.tmp, err)
	}
	st, err := a.f.Stat()
	if err != nil {
		a.abortLocked()
		return 0, fmt.Errorf("stat bundle %s: %w", a.tmp, err)
	}
	if err := a.f.Close(); err != nil {
		_ = os.Remove(a.tmp)
		return 0, fmt.Errorf("close bundle %s: %w", a.tmp, err)
	}
	if err := os.Chmod(a.tmp, 0o644); err != nil {
		_ = os.Remove(a.tmp)
		return 0, fmt.Errorf("chmod bundle %s: %w", a.tmp, err)
	}
	if err := os.Rename(a.tmp, a.path); err != nil {
		_ = os.Remove(a.tmp)
		return 0, fmt.Errorf("move bundle into place at %s: %w", a.path, err)
	}
	return st.Size(), nil
}

// Abort discards the unfinished archive.
func (a *Archive) Abort() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		a.closed = true
		a.abortLocked()
	}
}

func (a *Archive) abortLocked() {
	_ = a.f.Close()
	_ = os.Remove(a.tmp)
}
