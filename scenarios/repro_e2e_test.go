//go:build e2e

package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/lab"
)

// flippedFeature is the stars demo after default-deny with one cell flipped: management-ui ->
// client says yes where the policy denies it.
const flippedFeature = `@stars
Feature: A flipped cell (temporary, written by TestFailureBundleReproAndReplay)

  Background:
    Given the stars demo is running without policies

  Scenario: Default deny with the management UI to client cell flipped
    When I apply the stars policy "default-deny"
    Then the stars reachability is:
      | from \ to     | client  | frontend | backend |
      | management-ui | yes     | no       | no      |
      | client        | ignored | no       | no      |
      | frontend      | no      | ignored  | no      |
      | backend       | no      | no       | ignored |
`

// failingStepFeature fails at a step that checks no truth table: after default-deny, frontend
// cannot reach backend, yet the step says it can.
const failingStepFeature = `@stars
Feature: A failing step without a truth table (temporary, written by TestFailureBundleReproAndReplay)

  Background:
    Given the stars demo is running without policies

  Scenario: Default deny, and a port check that says frontend still reaches backend
    When I apply the stars policy "default-deny"
    Then "frontend" can reach the "backend" pod on TCP 6379
`

// flippedCell is the wrong cell the feature above produces.
const flippedCell = "management-ui -> client: expected yes, probed no, observed no"

// TestFailureBundleReproAndReplay makes a scenario fail on purpose (a flipped cell in a temporary
// feature file) on the shared lab: the run writes a failure bundle naming that cell; `starlab replay`
// serves the step's flows (API and UI in headless Chromium) and `starlab observe --input-file`
// prints the same ones; `starlab repro` on a fresh lab reproduces the same wrong cell and deletes
// the lab afterwards.
func TestFailureBundleReproAndReplay(t *testing.T) {
	if e2e.env == nil {
		t.Fatal("the lab was not set up (see TestMain's log)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	bin, err := starlabBinary()
	require.NoError(t, err)

	// 1. The failing run writes a bundle and names it.
	dir := t.TempDir()
	feature := filepath.Join(dir, "flipped.feature")
	require.NoError(t, os.WriteFile(feature, []byte(flippedFeature), 0o644))
	before := e2e.env.Bundles()
	var out bytes.Buffer
	started := time.Now()
	status, err := RunSuite(ctx, e2e.env, SuiteOptions{Paths: []string{feature}, Output: &out})
	require.NoError(t, err)
	require.NotZero(t, status, "the flipped cell must fail the scenario:\n%s", out.String())
	bundles := slices.DeleteFunc(e2e.env.Bundles(), func(b string) bool { return slices.Contains(before, b) })
	require.Len(t, bundles, 1, "one failing step, one bundle:\n%s", out.String())
	path := bundles[0]
	assert.Contains(t, out.String(), "failure bundle: "+path, "the failure output names the bundle")
	st, err := os.Stat(path)
	require.NoError(t, err)
	t.Logf("failing run %s, bundle %s: %d bytes", time.Since(started).Round(time.Second), path, st.Size())
	assert.LessOrEqual(t, st.Size(), int64(10<<20), "a failing stars step's bundle stays under 10 MiB")

	b, err := bundle.Open(path)
	require.NoError(t, err)
	rec, err := b.Record()
	require.NoError(t, err)
	assert.Equal(t, bundle.RecordScenario, rec.Kind)
	assert.Equal(t, "Default deny with the management UI to client cell flipped", rec.Scenario.Name)
	assert.Equal(t, 7, rec.Scenario.Line)
	assert.Equal(t, "the stars reachability is:", rec.Step.Text)
	assert.Equal(t, flippedFeature, string(rec.Feature))
	var wrong []string
	for _, c := range rec.WrongCells() {
		wrong = append(wrong, c.String())
	}
	assert.Equal(t, []string{flippedCell}, wrong)
	assert.NotEmpty(t, rec.Inputs.KubernetesVersion)
	assert.NotEmpty(t, rec.Inputs.NodeImageKey)
	assert.NotEmpty(t, rec.Inputs.ChartValues)
	assert.NotEmpty(t, rec.Inputs.Starlab.Version)
	var applied []string
	for _, o := range rec.Objects {
		md, _ := o.Object["metadata"].(map[string]any)
		applied = append(applied, fmt.Sprintf("%s %v %v/%v", o.Op, o.Object["kind"], md["namespace"], md["name"]))
		assert.NotContains(t, md, "resourceVersion", "server-set fields are stripped")
		assert.NotContains(t, md, "uid")
	}
	assert.Contains(t, applied, "apply NetworkPolicy stars/default-deny")
	assert.Contains(t, applied, "apply NetworkPolicy client/default-deny")
	require.NotEmpty(t, rec.Flows, "the step's flows")
	for _, f := range []string{"k8s/networkpolicies.yaml", "observer/graph.json", "status.json"} {
		_, ok := b.File(f)
		assert.True(t, ok, "the bundle still holds %s", f)
	}

	// 1b. A step that fails without a truth table writes a bundle too (the step hook), named in the
	// failure, with the step's error and the objects applied.
	stepFeature := filepath.Join(dir, "failing-step.feature")
	require.NoError(t, os.WriteFile(stepFeature, []byte(failingStepFeature), 0o644))
	before = e2e.env.Bundles()
	out.Reset()
	status, err = RunSuite(ctx, e2e.env, SuiteOptions{Paths: []string{stepFeature}, Output: &out})
	require.NoError(t, err)
	require.NotZero(t, status, "the port check must fail:\n%s", out.String())
	stepBundles := slices.DeleteFunc(e2e.env.Bundles(), func(b string) bool { return slices.Contains(before, b) })
	require.Len(t, stepBundles, 1, "one failing step, one bundle:\n%s", out.String())
	assert.Contains(t, out.String(), "failure bundle: "+stepBundles[0], "the failure output names the bundle")
	sb, err := bundle.Open(stepBundles[0])
	require.NoError(t, err)
	srec, err := sb.Record()
	require.NoError(t, err)
	assert.Equal(t, `"frontend" can reach the "backend" pod on TCP 6379`, srec.Step.Text)
	assert.Empty(t, srec.Cells)
	assert.NotEmpty(t, srec.Error, "the step's error")
	assert.Equal(t, []string{`step "\"frontend\" can reach the \"backend\" pod on TCP 6379" failed`}, srec.Failure())
	var stepApplied []string
	for _, o := range srec.Objects {
		md, _ := o.Object["metadata"].(map[string]any)
		stepApplied = append(stepApplied, fmt.Sprintf("%s %v %v/%v", o.Op, o.Object["kind"], md["namespace"], md["name"]))
	}
	assert.Contains(t, stepApplied, "apply NetworkPolicy stars/default-deny")

	// 2. starlab replay serves the same flows (API, UI) and observe --input-file prints them.
	recorded := flowIDs(rec.Flows)
	replayURL, stopReplay := startReplay(t, ctx, bin, path)
	defer stopReplay()
	served := fetchFlows(t, replayURL+"/api/v1/flows")
	assert.Equal(t, recorded, flowIDs(served), "replay serves the step's flows")
	observed := observeInputFile(t, ctx, bin, path)
	assert.Equal(t, recorded, flowIDs(observed), "observe --input-file prints the same flows")
	var graph struct {
		Edges []struct {
			ID string `json:"id"`
		} `json:"edges"`
	}
	getJSON(t, replayURL+"/api/v1/graph", &graph)
	require.NotEmpty(t, graph.Edges)
	dom, err := chromiumPolledPage(ctx, replayURL+"/", filepath.Join(e2e.env.ReportDir, "replay-ui.png"))
	require.NoError(t, err)
	for _, e := range graph.Edges {
		assert.Contains(t, dom, `data-id="`+strings.ReplaceAll(e.ID, ">", "&gt;")+`"`, "the replayed UI draws edge %s", e.ID)
	}
	assert.Contains(t, dom, `data-namespace="client"`, "the UI draws the namespace of the flipped cell")

	// 3. starlab repro on a fresh lab reproduces the same wrong cell and deletes the lab.
	// The name belongs to this test: a lab left by an earlier, interrupted run of it (a killed CI job) is
	// deleted first, and this run's lab is deleted even when an assertion below fails.
	name := "starlab-e2e-repro"
	deleteReproLab := func() {
		l, err := lab.Open(name)
		require.NoError(t, err)
		require.NoError(t, l.Delete(context.WithoutCancel(ctx)), "delete lab %s left by the repro test", name)
	}
	deleteReproLab()
	t.Cleanup(deleteReproLab)
	reproStart := time.Now()
	cmd := exec.CommandContext(ctx, bin, "repro", path, "--lab", name, "-o", "json", "--report-dir", filepath.Join(e2e.env.ReportDir, "repro"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Logf("starlab repro took %s; its progress:\n%s", time.Since(reproStart).Round(time.Second), tail(stderr.String(), 40))
	require.NoError(t, runErr, "starlab repro: %s\n%s", stdout.String(), stderr.String())
	var res struct {
		Outcome       string   `json:"outcome"`
		Same          []string `json:"same"`
		Lab           string   `json:"lab"`
		Kept          bool     `json:"kept"`
		LabDurationNs int64    `json:"labDurationNs"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
	assert.Equal(t, "reproduced", res.Outcome)
	assert.Equal(t, []string{flippedCell}, res.Same)
	assert.Equal(t, name, res.Lab)
	assert.False(t, res.Kept)
	t.Logf("fresh lab for the repro: %s", time.Duration(res.LabDurationNs).Round(time.Second))
	l, err := lab.Open(name)
	require.NoError(t, err)
	ex, err := l.Inspect(ctx)
	require.NoError(t, err)
	assert.Equal(t, lab.StateAbsent, ex.State, "the repro lab is deleted without --keep")
}

func flowIDs(fs []*flow.Flow) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.UUID)
	}
	slices.Sort(out)
	return out
}

// startReplay runs `starlab replay` on a free port and returns its URL.
func startReplay(t *testing.T, ctx context.Context, bin, path string) (string, func()) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, "replay", path, "--listen", "127.0.0.1:0", "--speed", "0")
	pr, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	urlRE := regexp.MustCompile(`serving \d+ flows .* on (http://\S+) `)
	lines := bufio.NewScanner(pr)
	var url string
	var seen []string
	for lines.Scan() {
		seen = append(seen, lines.Text())
		if m := urlRE.FindStringSubmatch(lines.Text()); m != nil {
			url = m[1]
			break
		}
	}
	if url == "" {
		stop()
		t.Fatalf("starlab replay printed no URL:\n%s", strings.Join(seen, "\n"))
	}
	assert.Contains(t, strings.Join(seen, "\n"), "WRONG "+flippedCell, "replay prints the truth tables and the wrong cell")
	// Wait until every flow is in: replay prints "replayed N flows" once the last one is ingested
	// (--speed 0: at once, but the server answers before that).
	doneRE := regexp.MustCompile(`^replayed (\d+) flows`)
	done := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if m := doneRE.FindStringSubmatch(lines.Text()); m != nil {
				done <- m[1]
				break
			}
		}
		close(done)
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case n, ok := <-done:
		if !ok {
			stop()
			t.Fatalf("starlab replay ended before it said it replayed every flow")
		}
		t.Logf("starlab replay: %s flows replayed", n)
	case <-time.After(time.Minute):
		stop()
		t.Fatalf("starlab replay did not finish replaying within a minute")
	}
	return url, stop
}

func fetchFlows(t *testing.T, url string) []*flow.Flow {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	return decodeFlows(t, resp.Body)
}

func decodeFlows(t *testing.T, r io.Reader) []*flow.Flow {
	t.Helper()
	dec := flow.NewDecoder(r)
	var out []*flow.Flow
	for {
		f, err := dec.Decode()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out = append(out, f)
	}
}

func observeInputFile(t *testing.T, ctx context.Context, bin, path string) []*flow.Flow {
	t.Helper()
	out, err := exec.CommandContext(ctx, bin, "observe", "--input-file", path, "--last", "1000000", "-o", "json").Output()
	require.NoError(t, err)
	return decodeFlows(t, bytes.NewReader(out))
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}
