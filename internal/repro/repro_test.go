package repro

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/lab"
)

func cells(wrong ...string) []bundle.TruthCell {
	all := []bundle.TruthCell{
		{From: "management-ui", To: "client", Expected: "yes", Probed: "no", Observed: "no"},
		{From: "client", To: "frontend", Expected: "no", Probed: "no", Observed: "no"},
		{From: "frontend", To: "backend", Expected: "no", Probed: "yes", Observed: "yes"},
	}
	for i := range all {
		for _, w := range wrong {
			if all[i].From == w {
				all[i].Wrong = true
			}
		}
	}
	return all
}

func failed(c []bundle.TruthCell) *bundle.Record {
	return &bundle.Record{Kind: bundle.RecordScenario, Step: bundle.StepRef{Text: "the stars reachability is:"}, Cells: c}
}

func TestCompare(t *testing.T) {
	c := Compare(failed(cells("management-ui")), failed(cells("management-ui")))
	assert.Equal(t, Reproduced, c.Outcome)
	assert.Equal(t, []string{"management-ui -> client: expected yes, probed no, observed no"}, c.Same)

	c = Compare(failed(cells("management-ui")), failed(cells("frontend")))
	assert.Equal(t, Different, c.Outcome)
	assert.Len(t, c.Gone, 1)
	assert.Len(t, c.New, 1)

	c = Compare(failed(cells("management-ui")), nil)
	assert.Equal(t, NotReproduced, c.Outcome)
	assert.Len(t, c.Recorded, 1)

	// the same cell wrong another way is a different failure
	other := cells("management-ui")
	other[0].Observed = "yes"
	assert.Equal(t, Different, Compare(failed(cells("management-ui")), failed(other)).Outcome)

	// the same step failing with wrong cells is not the same failure as the step failing with an error
	errored := &bundle.Record{Kind: bundle.RecordScenario, Step: bundle.StepRef{Text: "the stars reachability is:"}, Error: "probe: timeout"}
	c = Compare(failed(cells("management-ui")), errored)
	assert.Equal(t, Different, c.Outcome)
	assert.Equal(t, []string{`step "the stars reachability is:" failed`}, c.New)
}

// A step that failed without a truth table reproduces when the rerun fails at the same step.
func TestCompareStepFailures(t *testing.T) {
	rec := func(step string) *bundle.Record {
		return &bundle.Record{Kind: bundle.RecordScenario, Step: bundle.StepRef{Text: step}, Error: "Error Trace: ..."}
	}
	c := Compare(rec(`"client" connecting to "frontend" is DROPPED`), rec(`"client" connecting to "frontend" is DROPPED`))
	assert.Equal(t, Reproduced, c.Outcome)
	assert.Equal(t, []string{`step "\"client\" connecting to \"frontend\" is DROPPED" failed`}, c.Same)

	c = Compare(rec("I apply the stars policy \"allow-ui\""), rec("the stars reachability is:"))
	assert.Equal(t, Different, c.Outcome)

	assert.Equal(t, NotReproduced, Compare(rec("x"), nil).Outcome)
}

// caseFailure reads the rerun's failing step of the recorded case (the first failing one).
func TestCaseFailure(t *testing.T) {
	recorded := &bundle.Record{Kind: bundle.RecordConformance, Case: &bundle.CaseRef{Name: "deny-all-ingress"}, Step: bundle.StepRef{Text: "step 1"}}
	wrong := conformance.Cell{Mode: conformance.ModePodIP, From: "x/a", To: "x/b", Protocol: "TCP", Port: 80, Expected: false, Probe: &conformance.Probe{Reachable: true}, Wrong: true}
	report := &conformance.Report{Cases: []conformance.CaseResult{{
		Name: "deny-all-ingress", Passed: false,
		Steps: []conformance.StepResult{{Name: "step 0"}, {Name: "step 1", Cells: []conformance.Cell{wrong}, Wrong: 1}},
	}}}
	got, err := caseFailure(recorded, report)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, "step 1", got.Step.Text)
	require.Len(t, got.WrongCells(), 1)
	assert.Equal(t, "pod-ip x/a -> x/b TCP/80", got.WrongCells()[0].Key())

	report.Cases[0].Passed = true
	got, err = caseFailure(recorded, report)
	require.NoError(t, err)
	assert.Nil(t, got, "a passing rerun")

	report.Cases = nil
	_, err = caseFailure(recorded, report)
	require.Error(t, err)
}

func here(ref string, present bool) Here {
	return Here{
		Starlab:   bundle.Version{Version: "(devel)", Revision: "aaaa"},
		Supported: []string{"v1.34.4", "v1.37.2"},
		NodeImage: func(context.Context, string) (string, bool, error) { return ref, present, nil },
	}
}

func TestCheck(t *testing.T) {
	rec := &bundle.Record{Inputs: bundle.Inputs{
		Starlab: bundle.Version{Version: "(devel)", Revision: "aaaa"}, KubernetesVersion: "v1.37.2",
		NodeImage: "localhost/starlab/kind-node:v1.37.2-k1",
	}}
	d, err := Check(context.Background(), rec, here("localhost/starlab/kind-node:v1.37.2-k1", true))
	require.NoError(t, err)
	assert.Empty(t, d, "same build, same node image at hand")

	d, err = Check(context.Background(), rec, here("localhost/starlab/kind-node:v1.37.2-k1", false))
	require.NoError(t, err)
	require.Len(t, Blocking(d), 1)
	assert.Contains(t, d[0].String(), "starlab image build --kubernetes-version v1.37.2")

	rec.Inputs.Starlab.Revision = "bbbb"
	d, err = Check(context.Background(), rec, here("localhost/starlab/kind-node:v1.37.2-k2", true))
	require.NoError(t, err)
	assert.Empty(t, Blocking(d), "another build or node image is said, not refused")
	require.Len(t, d, 2)
	assert.Equal(t, "starlab build", d[0].What)
	assert.Equal(t, "node image", d[1].What)

	rec.Inputs.KubernetesVersion = "v1.20.0"
	d, err = Check(context.Background(), rec, here("", true))
	require.NoError(t, err)
	require.Len(t, Blocking(d), 1)
	assert.Equal(t, "kubernetes version", Blocking(d)[0].What)
}

func TestUserChartValues(t *testing.T) {
	got := userChartValues(map[string]any{
		"agent":    map[string]any{"image": "localhost/starlab/agent:x", "apiServer": map[string]any{"host": "172.18.0.2"}, "logLevel": "debug"},
		"observer": map[string]any{"image": "localhost/starlab/observer:x"},
		"tls":      map[string]any{"enabled": true},
	})
	assert.Equal(t, map[string]any{"agent": map[string]any{"logLevel": "debug"}, "tls": map[string]any{"enabled": true}}, got)
}

// writeBundle writes a bundle whose manifest and files are given (the layout bundle.Write produces).
func writeBundle(t *testing.T, path string, manifest map[string]any, files map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	var entries []any
	add := func(name string, data []byte) {
		require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "b/" + name, Mode: 0o644, Size: int64(len(data))}))
		_, err := tw.Write(data)
		require.NoError(t, err)
	}
	for name, data := range files {
		add(name, data)
		entries = append(entries, map[string]any{"name": name, "size": len(data), "step": "repro"})
	}
	manifest["files"] = entries
	m, err := json.Marshal(manifest)
	require.NoError(t, err)
	add(bundle.ManifestName, m)
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

func scenarioBundle(t *testing.T, path, kubeVersion string, flows []*flow.Flow) {
	t.Helper()
	rec := map[string]any{
		"kind":     "scenario",
		"inputs":   map[string]any{"kubernetesVersion": kubeVersion, "nodeImage": "localhost/starlab/kind-node:" + kubeVersion + "-0123456789ab", "workers": 1},
		"scenario": map[string]any{"featurePath": "x.feature", "featureFile": "repro/feature/x.feature", "name": "S", "line": 2},
		"step":     map[string]any{"text": "the stars reachability is:"},
		"cells":    cells("management-ui"),
	}
	recJSON, err := json.Marshal(rec)
	require.NoError(t, err)
	var nd bytes.Buffer
	enc := flow.NewEncoder(&nd)
	for _, f := range flows {
		require.NoError(t, enc.Encode(f))
	}
	writeBundle(t, path, map[string]any{
		"schemaVersion": bundle.SchemaVersion, "starlabVersion": "(devel) aaaa",
		"repro": map[string]any{"kind": "scenario", "record": bundle.ReproRecordFile, "objects": bundle.ReproObjectsFile, "tables": bundle.ReproTablesFile, "flows": bundle.ReproFlowsFile, "feature": "repro/feature/x.feature"},
	}, map[string][]byte{
		bundle.ReproRecordFile: recJSON, bundle.ReproObjectsFile: []byte("[]"), bundle.ReproTablesFile: []byte("tables\n"),
		bundle.ReproFlowsFile: nd.Bytes(), "repro/feature/x.feature": []byte("Feature: x\n  Scenario: S\n"),
	})
}

// Each bundle Run cannot use is refused before any lab or report exists, saying what to do.
func TestRunRefusesBeforeCreatingAnything(t *testing.T) {
	dir := t.TempDir()
	newer := filepath.Join(dir, "newer.tar.gz")
	writeBundle(t, newer, map[string]any{"schemaVersion": bundle.SchemaVersion + 1, "starlabVersion": "v9.9.9 cafe"}, nil)
	good := filepath.Join(dir, "good.tar.gz")
	// v1.34.4 is supported but its node image was never built into this empty cache.
	scenarioBundle(t, good, "v1.34.4", nil)
	data, err := os.ReadFile(good)
	require.NoError(t, err)
	truncated := filepath.Join(dir, "truncated.tar.gz")
	require.NoError(t, os.WriteFile(truncated, data[:len(data)-40], 0o644))

	// Temporary files go to tmp, and the default report directory (out/repro/<time>) would be made
	// under work: both must stay empty. The lab's kubeconfig must not appear.
	tmp, work := t.TempDir(), t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Chdir(work)
	kubeconfig, err := lab.DefaultKubeconfigPath("repro-unit")
	require.NoError(t, err)

	for _, tc := range []struct {
		bundle string
		want   []string
	}{
		{newer, []string{"schema version 3, newer than this Starlab reads", "v9.9.9 cafe", "use that Starlab or a newer one"}},
		{truncated, []string{"truncated", "copy it again"}},
		{good, []string{"node image in the cache", "starlab image build --kubernetes-version v1.34.4", "then run starlab repro again", "nothing was created"}},
	} {
		t.Run(filepath.Base(tc.bundle), func(t *testing.T) {
			res, err := Run(context.Background(), Options{Bundle: tc.bundle, Name: "repro-unit", CacheDir: filepath.Join(dir, "cache")})
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			if res != nil {
				assert.Empty(t, res.Lab, "no lab was made")
				assert.Empty(t, res.ReportDir, "no report directory was chosen")
			}
			for _, d := range []string{tmp, work} {
				left, err := os.ReadDir(d)
				require.NoError(t, err)
				assert.Empty(t, left, "nothing left in %s", d)
			}
			_, statErr := os.Stat(kubeconfig)
			assert.True(t, os.IsNotExist(statErr), "no kubeconfig of the lab was written")
		})
	}
}

func TestReplayServesTheFlows(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	var flows []*flow.Flow
	for i := range 5 {
		flows = append(flows, &flow.Flow{
			Time: t0.Add(time.Duration(4-i) * 100 * time.Millisecond), UUID: fmt.Sprintf("u%d", i), Verdict: flow.VerdictDropped,
			Source:      flow.Endpoint{Namespace: "management-ui", PodName: "management-ui-1"},
			Destination: flow.Endpoint{Namespace: "client", PodName: "client-1"},
			L4:          flow.L4{Protocol: flow.ProtoTCP, DestinationPort: 9000}, TrafficDirection: flow.DirectionIngress,
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls := make(chan string, 1)
	done := make(chan int, 1)
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		errc <- Replay(ctx, flows, ReplayOptions{Listen: "127.0.0.1:0", Speed: 4, Ready: func(u string) { urls <- u }, Done: func(n int) { done <- n }})
	}()
	base := <-urls
	assert.Equal(t, 5, <-done)
	assert.GreaterOrEqual(t, time.Since(start), 90*time.Millisecond, "400ms of flows at speed 4 take 100ms")

	resp, err := http.Get(base + "/api/v1/flows")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	dec := flow.NewDecoder(bytes.NewReader(body))
	var got []string
	for {
		f, err := dec.Decode()
		if err != nil {
			break
		}
		got = append(got, f.UUID)
	}
	assert.Equal(t, []string{"u4", "u3", "u2", "u1", "u0"}, got, "every flow, in time order")

	resp, err = http.Get(base + "/api/v1/graph")
	require.NoError(t, err)
	var g struct {
		Edges []map[string]any `json:"edges"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&g))
	resp.Body.Close()
	assert.NotEmpty(t, g.Edges, "the graph of the replayed flows")
	cancel()
	require.NoError(t, <-errc)
}
