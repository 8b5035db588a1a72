package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

func testRecord() *Record {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	return &Record{
		Kind:     RecordScenario,
		Inputs:   Inputs{KubernetesVersion: "v1.37.2", NodeImage: "localhost/starlab/kind-node:v1.37.2-abc123", NodeImageKey: "abc123", Workers: 1, ChartValues: map[string]any{"agent": map[string]any{"logLevel": "debug"}}},
		Scenario: &ScenarioRef{FeaturePath: "/tmp/x/flipped.feature", Name: "A flipped cell", Line: 4},
		Step:     StepRef{Text: "the stars reachability is:", Started: t0, Ended: t0.Add(3 * time.Second)},
		Cells: []TruthCell{
			{From: "client", To: "frontend", Expected: CellNo, Probed: CellYes, Observed: CellYes, Wrong: true},
			{From: "client", To: "backend", Expected: CellYes, Probed: CellYes, Observed: CellYes},
		},
		Objects: []AppliedObject{
			{Op: "apply", Object: map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": map[string]any{"name": "default-deny", "namespace": "stars"}}},
			{Op: "delete", Object: map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": map[string]any{"name": "default-deny", "namespace": "stars"}}},
		},
		Tables:  "expected ...\n",
		Flows:   []*flow.Flow{{Time: t0.Add(time.Second), UUID: "u1", Verdict: flow.VerdictForwarded}, {Time: t0.Add(2 * time.Second), UUID: "u2", Verdict: flow.VerdictDropped}},
		Feature: []byte("Feature: x\n  Scenario: A flipped cell\n"),
	}
}

// writeTestBundle writes rec (and extra files) as a bundle through the same code Write uses.
func writeTestBundle(t *testing.T, path string, rec *Record, red *Redactor, extra map[string][]byte) Result {
	t.Helper()
	a, err := CreateArchive(path, archiveRoot(path), time.Now())
	require.NoError(t, err)
	a.SetRedactor(red)
	r := &run{archive: a, opts: Options{Lab: "repro-1", Record: rec}, redact: red}
	require.NoError(t, r.opts.defaults(time.Now()), "defaults")
	s := &stepCtx{r: r, name: "repro"}
	for name, data := range extra {
		s.add(name, data)
	}
	var idx *ReproIndex
	if rec != nil {
		idx, err = writeRecord(s, rec, red)
		require.NoError(t, err)
	}
	require.Empty(t, r.failures)
	size, err := a.Close(&Manifest{Lab: "repro-1", Repro: idx, StarlabVersion: "(devel) abc"})
	require.NoError(t, err)
	return Result{Path: path, Size: size}
}

func TestRecordRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	rec := testRecord()
	writeTestBundle(t, p, rec, nil, nil)

	b, err := Open(p)
	require.NoError(t, err)
	assert.Equal(t, SchemaVersion, b.Manifest.SchemaVersion)
	require.NotNil(t, b.Manifest.Repro)
	assert.Equal(t, 1, b.Manifest.Repro.Wrong)
	assert.Equal(t, "repro/feature/flipped.feature", b.Manifest.Repro.Feature)
	assert.Contains(t, b.Names(), ReproRecordFile)

	got, err := b.Record()
	require.NoError(t, err)
	assert.Equal(t, rec.Cells, got.Cells)
	assert.Equal(t, rec.Objects, got.Objects)
	assert.Equal(t, rec.Feature, got.Feature)
	assert.Equal(t, rec.Tables, got.Tables)
	assert.Equal(t, rec.Inputs, got.Inputs)
	require.Len(t, got.Flows, 2)
	assert.Equal(t, "u2", got.Flows[1].UUID)
	assert.Equal(t, []TruthCell{rec.Cells[0]}, got.WrongCells())
	assert.Equal(t, "client -> frontend", got.WrongCells()[0].Key())
}

func TestOpenTruncatedArchive(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "b.tar.gz")
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i * 7919 >> 3) // little to compress
	}
	writeTestBundle(t, p, testRecord(), nil, map[string][]byte{"observer/flows.ndjson": big})
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	cut := filepath.Join(dir, "cut.tar.gz")
	require.NoError(t, os.WriteFile(cut, data[:len(data)/2], 0o644))
	_, err = Open(cut)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "truncated")
	assert.Contains(t, err.Error(), "copy it again")
}

func TestOpenNewerSchema(t *testing.T) {
	p := filepath.Join(t.TempDir(), "new.tar.gz")
	writeRaw(t, p, map[string]any{"schemaVersion": SchemaVersion + 1, "starlabVersion": "v9.0.0 feedbeef", "files": []any{}})
	_, err := Open(p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "newer than this Starlab reads")
	assert.Contains(t, err.Error(), "v9.0.0 feedbeef")
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.tar.gz")
	require.NoError(t, os.WriteFile(p, []byte("not a bundle"), 0o644))
	_, err := Open(p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a gzipped tar")

	_, err = Open(filepath.Join(t.TempDir(), "absent.tar.gz"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "absent.tar.gz")

	plain := filepath.Join(t.TempDir(), "plain.tar.gz")
	writeTestBundle(t, plain, nil, nil, map[string][]byte{"status.json": []byte("{}")})
	b, err := Open(plain)
	require.NoError(t, err)
	_, err = b.Record()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "holds no failing test")
}

// writeRaw writes a bundle with only the given manifest.
func writeRaw(t *testing.T, p string, manifest map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	data, err := json.Marshal(manifest)
	require.NoError(t, err)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "b/" + ManifestName, Mode: 0o644, Size: int64(len(data))}))
	_, err = tw.Write(data)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
}

func TestRedactorLeavesNoSecretValue(t *testing.T) {
	const secret, apiKey, short = "s3cr3t-Pa55word", "tok-123456789", "ab"
	red := &Redactor{keys: []string{"API_TOKEN"}}
	red.collectValues(map[string]any{"kind": "Secret", "data": map[string]any{
		"password": base64.StdEncoding.EncodeToString([]byte(secret)),
		"pin":      base64.StdEncoding.EncodeToString([]byte(short)),
	}})
	pod := map[string]any{"kind": "Pod", "spec": map[string]any{"containers": []any{map[string]any{
		"env": []any{map[string]any{"name": "API_TOKEN", "value": apiKey}, map[string]any{"name": "MODE", "value": "debug"}},
	}}}}
	red.collectValues(pod)
	red.build()

	rec := testRecord()
	rec.Objects = append(rec.Objects, AppliedObject{Op: "apply", Object: pod},
		AppliedObject{Op: "apply", Object: map[string]any{"kind": "Secret", "metadata": map[string]any{"name": "db"}, "data": map[string]any{"pin": base64.StdEncoding.EncodeToString([]byte(short))}}})
	rec.Tables += "a log line with " + secret + " in it\n"
	p := filepath.Join(t.TempDir(), "r.tar.gz")
	writeTestBundle(t, p, rec, red, map[string][]byte{
		"logs/agent.log":  []byte("connecting with password=" + secret + " token " + apiKey + "\n"),
		"k8s/secret.json": []byte(`{"password":"` + base64.StdEncoding.EncodeToString([]byte(secret)) + `"}`),
	})

	b, err := Open(p)
	require.NoError(t, err)
	seen := 0
	for _, name := range append(b.Names(), ManifestName) {
		data, _ := b.File(name)
		for _, v := range []string{secret, apiKey, base64.StdEncoding.EncodeToString([]byte(secret)), base64.StdEncoding.EncodeToString([]byte(short))} {
			assert.NotContains(t, string(data), v, "%s holds a secret value", name)
		}
		seen += strings.Count(string(data), Redacted)
	}
	assert.Positive(t, seen, "the values were replaced, not dropped")
	got, err := b.Record()
	require.NoError(t, err)
	env := got.Objects[2].Object["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"].([]any)
	assert.Equal(t, Redacted, env[0].(map[string]any)["value"])
	assert.Equal(t, "debug", env[1].(map[string]any)["value"], "other values stay")
	assert.Equal(t, Redacted, got.Objects[3].Object["data"].(map[string]any)["pin"], "short Secret data is replaced where it is named")
}

func TestNodeImageKey(t *testing.T) {
	assert.Equal(t, "0a1b2c3d4e5f", NodeImageKey("localhost/starlab/kind-node:v1.37.2-0a1b2c3d4e5f"))
	assert.Equal(t, "", NodeImageKey("noimage"))
}
