package bundle

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// readTarGz returns the entries of a tar.gz in order, name -> content.
func readTarGz(t *testing.T, path string) ([]string, map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	var order []string
	content := map[string][]byte{}
	headers := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		order = append(order, hdr.Name)
		content[hdr.Name] = b
		headers[hdr.Name] = hdr
	}
	return order, content, headers
}

func TestArchiveWritesFilesThenManifest(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "b.tar.gz")
	mod := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	a, err := CreateArchive(out, "b", mod)
	require.NoError(t, err)
	_, err = os.Stat(out)
	require.True(t, os.IsNotExist(err), "the bundle must not exist at its final path before Close")

	require.NoError(t, a.Add("status", "status.json", []byte(`{"state":"running"}`)))
	require.NoError(t, a.Add("nodes", "nodes/n1/ip-route.json", []byte("[]")))
	require.NoError(t, a.Add("nodes", "nodes/n1/empty.txt", nil))
	assert.Len(t, a.Files(), 3)

	m := &Manifest{Lab: "lab1", Since: "15m0s", Failures: []Failure{{Step: "agents", Item: "agents/n2", Error: "port-forward refused"}}}
	size, err := a.Close(m)
	require.NoError(t, err)

	st, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, st.Size(), size)
	_, err = os.Stat(out + ".partial")
	assert.True(t, os.IsNotExist(err), "the partial file is renamed away")

	order, content, headers := readTarGz(t, out)
	assert.Equal(t, []string{"b/status.json", "b/nodes/n1/ip-route.json", "b/nodes/n1/empty.txt", "b/MANIFEST.json"}, order)
	assert.Equal(t, `{"state":"running"}`, string(content["b/status.json"]))
	assert.Equal(t, int64(0o644), headers["b/status.json"].Mode)
	assert.True(t, headers["b/status.json"].ModTime.Equal(mod))

	var got Manifest
	require.NoError(t, json.Unmarshal(content["b/MANIFEST.json"], &got))
	assert.Equal(t, SchemaVersion, got.SchemaVersion)
	assert.Equal(t, "lab1", got.Lab)
	assert.Equal(t, []FileEntry{
		{Name: "status.json", Size: 19, Step: "status"},
		{Name: "nodes/n1/ip-route.json", Size: 2, Step: "nodes"},
		{Name: "nodes/n1/empty.txt", Size: 0, Step: "nodes"},
	}, got.Files)
	for _, f := range got.Files {
		assert.Len(t, content["b/"+f.Name], int(f.Size), "manifest size of %s matches the archive", f.Name)
	}
	assert.Equal(t, []Failure{{Step: "agents", Item: "agents/n2", Error: "port-forward refused"}}, got.Failures)
	assert.Equal(t, []StepRecord{}, got.Steps, "no steps is an empty list, not null")
}

func TestArchiveRejectsBadNames(t *testing.T) {
	a, err := CreateArchive(filepath.Join(t.TempDir(), "b.tar.gz"), "b", time.Now())
	require.NoError(t, err)
	defer a.Abort()
	tests := []struct {
		name string
		want string
	}{
		{"", "empty"},
		{"/etc/passwd", "relative"},
		{`a\b`, "relative"},
		{"../x", "clean path"},
		{"..", "clean path"},
		{"a/../b", "clean path"},
		{"./a", "clean path"},
		{"a//b", "clean path"},
		{"a/", "clean path"},
		{ManifestName, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.Add("s", tt.name, []byte("x"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	require.NoError(t, a.Add("s", "ok/name.txt", nil))
	err = a.Add("s", "ok/name.txt", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already in it")
	assert.Len(t, a.Files(), 1)
}

func TestArchiveAbortAndClosedErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "b.tar.gz")
	a, err := CreateArchive(out, "b", time.Now())
	require.NoError(t, err)
	require.NoError(t, a.Add("s", "x", []byte("1")))
	a.Abort()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "abort leaves nothing behind")
	assert.ErrorContains(t, a.Add("s", "y", nil), "closed")
	_, err = a.Close(&Manifest{})
	assert.ErrorContains(t, err, "already closed")
}

func TestCreateArchiveBadInput(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, path, root, want string
	}{
		{"missing dir", filepath.Join(dir, "nope", "b.tar.gz"), "b", "does not exist"},
		{"empty path", "", "b", "empty"},
		{"root with slash", filepath.Join(dir, "b.tar.gz"), "a/b", "single"},
		{"empty root", filepath.Join(dir, "b.tar.gz"), "", "single"},
		{"dot root", filepath.Join(dir, "b.tar.gz"), "..", "single"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CreateArchive(tt.path, tt.root, time.Now())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestArchiveConcurrentAdds(t *testing.T) {
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	a, err := CreateArchive(out, "b", time.Now())
	require.NoError(t, err)
	done := make(chan error)
	for i := range 8 {
		go func() {
			var err error
			for j := range 50 {
				if e := a.Add("s", fmt.Sprintf("w%d/f%d", i, j), []byte(strings.Repeat("x", j))); e != nil {
					err = e
				}
			}
			done <- err
		}()
	}
	for range 8 {
		require.NoError(t, <-done)
	}
	_, err = a.Close(&Manifest{})
	require.NoError(t, err)
	order, content, _ := readTarGz(t, out)
	assert.Len(t, order, 401)
	var m Manifest
	require.NoError(t, json.Unmarshal(content["b/MANIFEST.json"], &m))
	require.Len(t, m.Files, 400)
	for _, f := range m.Files {
		assert.Len(t, content["b/"+f.Name], int(f.Size))
	}
}

// newTestRun is a run over a real archive with no lab (for the step runner).
func newTestRun(t *testing.T, timeout time.Duration) (*run, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	a, err := CreateArchive(out, "b", time.Now())
	require.NoError(t, err)
	opts := Options{Lab: "unit", StepTimeout: timeout}
	require.NoError(t, opts.defaults(time.Now()))
	return &run{opts: opts, archive: a, start: time.Now()}, out
}

func TestStepFailuresAreRecordedAndTheBundleGoesOn(t *testing.T) {
	r, out := newTestRun(t, 200*time.Millisecond)
	ctx := context.Background()
	r.step(ctx, "whole step fails", func(context.Context, *stepCtx) error { return errors.New("api server down") })
	r.step(ctx, "partly fails", func(_ context.Context, s *stepCtx) error {
		s.add("a/ok.txt", []byte("ok"))
		s.fail("a/bad.txt", errors.New("node gone"))
		s.add("../escape", []byte("x")) // a bad name is a recorded failure too
		return nil
	})
	r.step(ctx, "times out", func(ctx context.Context, _ *stepCtx) error {
		<-ctx.Done()
		return nil
	})
	r.step(ctx, "succeeds", func(_ context.Context, s *stepCtx) error {
		s.addJSON("b.json", map[string]int{"n": 1})
		return nil
	})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	r.step(cancelled, "not run", func(context.Context, *stepCtx) error {
		t.Error("a step must not run after the context ended")
		return nil
	})

	assert.Equal(t, []string{"whole step fails", "partly fails", "times out", "succeeds", "not run"}, stepNames(r.steps))
	assert.Equal(t, []int{0, 1, 0, 1, 0}, stepFiles(r.steps))
	assert.Equal(t, []int{1, 2, 1, 0, 1}, stepFails(r.steps))
	require.Len(t, r.failures, 5)
	assert.Equal(t, Failure{Step: "whole step fails", Error: "api server down"}, r.failures[0])
	assert.Equal(t, Failure{Step: "partly fails", Item: "a/bad.txt", Error: "node gone"}, r.failures[1])
	assert.Equal(t, "../escape", r.failures[2].Item)
	assert.Contains(t, r.failures[3].Error, "timed out after 200ms")
	assert.Contains(t, r.failures[4].Error, "not run")

	m := &Manifest{Steps: r.steps, Failures: r.failures}
	_, err := r.archive.Close(m)
	require.NoError(t, err)
	_, content, _ := readTarGz(t, out)
	assert.Equal(t, "ok", string(content["b/a/ok.txt"]))
	assert.JSONEq(t, `{"n":1}`, string(content["b/b.json"]))
	var got Manifest
	require.NoError(t, json.Unmarshal(content["b/MANIFEST.json"], &got))
	assert.Len(t, got.Failures, 5)
	assert.Len(t, got.Files, 2)
}

func stepNames(s []StepRecord) (out []string) {
	for _, r := range s {
		out = append(out, r.Name)
	}
	return out
}

func stepFiles(s []StepRecord) (out []int) {
	for _, r := range s {
		out = append(out, r.Files)
	}
	return out
}

func stepFails(s []StepRecord) (out []int) {
	for _, r := range s {
		out = append(out, r.Failures)
	}
	return out
}

func TestStepsWithoutClientFailClearly(t *testing.T) {
	r, _ := newTestRun(t, time.Second)
	defer r.archive.Abort()
	for name, fn := range map[string]func(context.Context, *stepCtx) error{
		"objects": r.collectObjects, "logs": r.collectLogs, "agents": r.collectAgents, "observer": r.collectObserver,
	} {
		r.step(context.Background(), name, fn)
	}
	require.Len(t, r.failures, 4)
	for _, f := range r.failures {
		assert.Contains(t, f.Error, `no Kubernetes client for lab "unit"`, f.Step)
	}
}

func TestOptionsDefaults(t *testing.T) {
	now := time.Date(2026, 11, 26, 2, 3, 4, 0, time.UTC)
	o := Options{Lab: "x"}
	require.NoError(t, o.defaults(now))
	assert.Equal(t, "starlab-bundle-x-20261126-020304.tar.gz", o.Output)
	assert.Equal(t, DefaultSince, o.Since)
	assert.Equal(t, DefaultNamespace, o.Namespace)
	assert.Equal(t, int64(DefaultLogTailLines), o.LogTailLines)

	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no lab", Options{}, "no lab name"},
		{"negative since", Options{Lab: "x", Since: -time.Minute}, "negative"},
		{"not a tar.gz", Options{Lab: "x", Output: "bundle.zip"}, "*.tar.gz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.defaults(now)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestArchiveRoot(t *testing.T) {
	tests := map[string]string{
		"/tmp/x/lab.tar.gz": "lab",
		"b.tgz":             "b",
		".tar.gz":           "starlab-bundle",
		"starlab-bundle-starlab-20261126-020304.tar.gz": "starlab-bundle-starlab-20261126-020304",
	}
	for in, want := range tests {
		assert.Equal(t, want, archiveRoot(in), in)
	}
}

func TestRenderListIsKubectlShaped(t *testing.T) {
	b, err := RenderList([]any{map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p"}}})
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, yaml.Unmarshal(b, &got))
	assert.Equal(t, "List", got["kind"])
	assert.Equal(t, "v1", got["apiVersion"])
	require.Len(t, got["items"], 1)
	assert.Equal(t, "Pod", got["items"].([]any)[0].(map[string]any)["kind"])

	b, err = RenderList(nil)
	require.NoError(t, err)
	assert.Contains(t, string(b), "items: []")
}

func TestCountKubeSvc(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"empty", "", 0},
		{"no kube-proxy", "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", 0},
		{"kube-proxy", ":KUBE-SERVICES - [0:0]\n:KUBE-SVC-ABC - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-ABC\n-A KUBE-SVC-ABC -j KUBE-SEP-1", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, CountKubeSvc([]byte(tt.in)))
		})
	}
}

func TestVersionString(t *testing.T) {
	assert.Equal(t, "(devel)", Version{Version: "(devel)"}.String())
	assert.Equal(t, "v1.0.0 0123456789ab+dirty", Version{Version: "v1.0.0", Revision: "0123456789abcdef", Modified: true}.String())
	assert.NotEmpty(t, StarlabVersion().Go)
}
