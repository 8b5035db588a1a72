package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gherkin "github.com/cucumber/gherkin/go/v42"
	"github.com/cucumber/godog"
	messages "github.com/cucumber/messages/go/v34"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

// appliedLog is the ordered list of objects the running scenario applied and deleted (what a
// failure bundle records as the scenario's inputs).
type appliedLog struct {
	mu   sync.Mutex
	objs []bundle.AppliedObject
}

func (l *appliedLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.objs = nil
}

// add records objs as applied (op "apply") or deleted (op "delete"), server-set fields stripped.
func (l *appliedLog) add(op string, objs []*unstructured.Unstructured) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range objs {
		l.objs = append(l.objs, bundle.AppliedObject{Op: op, Object: StripServerFields(u)})
	}
}

func (l *appliedLog) list() []bundle.AppliedObject {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.objs)
}

// StripServerFields returns a copy of u without the fields the API server sets (status, uid,
// resourceVersion, generation, creationTimestamp, managedFields, deletion fields).
func StripServerFields(u *unstructured.Unstructured) map[string]any {
	obj := u.DeepCopy().UnstructuredContent()
	delete(obj, "status")
	for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"} {
		unstructured.RemoveNestedField(obj, "metadata", f)
	}
	return obj
}

// AppliedObjects are the objects the running scenario applied and deleted so far, in order.
func (e *Env) AppliedObjects() []bundle.AppliedObject { return e.applied.list() }

// failingStep is what a failing step hands to the bundle: the truth tables of a step that found
// wrong cells, or the error of any other failing step.
type failingStep struct {
	cells  []bundle.TruthCell
	tables string
	err    error
}

// maxFailureText bounds the step error a bundle records (an assertion can print whole dumps).
const maxFailureText = 64 << 10

// writeFailureBundle writes the bundle of the running scenario's failing step (its truth tables,
// the flows the observer has from the step's start until now, the objects applied, the feature file)
// into <ReportDir>/bundles/ and returns the line the failure report prints: where the bundle is,
// or why there is none. Nothing is written when the Env does not bundle failures.
func (w *World) writeFailureBundle(ctx context.Context, fs failingStep) string {
	e := w.Env
	if !e.BundleFailures {
		return ""
	}
	w.stepBundled = true
	rec, err := w.failureRecord(ctx, fs)
	if err != nil {
		return fmt.Sprintf("failure bundle: not written: %v\n", err)
	}
	dir := filepath.Join(e.ReportDir, "bundles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Sprintf("failure bundle: not written: %v\n", err)
	}
	name := slug(rec.Scenario.Name)
	if name == "" {
		name = "scenario"
	}
	out := filepath.Join(dir, fmt.Sprintf("%s-%s.tar.gz", name, time.Now().UTC().Format("150405.000")))
	res, err := bundle.Write(context.WithoutCancel(ctx), bundle.Options{
		Lab: e.LabName, Kubeconfig: e.Kubeconfig, Output: out, Since: 15 * time.Minute, Record: rec, Logger: e.Log,
	})
	if err != nil && res.Path == "" {
		return fmt.Sprintf("failure bundle: not written: %v\n", err)
	}
	e.recordBundle(res.Path)
	what := fmt.Sprintf("%d wrong cells", len(rec.WrongCells()))
	if len(rec.Cells) == 0 {
		what = "the step's error, objects and flows"
	}
	return fmt.Sprintf("failure bundle: %s (%s; replay it with `starlab replay %s`, reproduce it with `starlab repro %s`)\n",
		res.Path, what, res.Path, res.Path)
}

// failureRecord is the record of the running scenario's failing step.
func (w *World) failureRecord(ctx context.Context, fs failingStep) (*bundle.Record, error) {
	e := w.Env
	if w.scenario == nil {
		return nil, fmt.Errorf("no running scenario (the suite's Before hook did not run)")
	}
	feature, err := e.readFeature(w.scenario.Uri)
	if err != nil {
		return nil, err
	}
	line, err := scenarioLine(feature, w.scenario.Name)
	if err != nil {
		return nil, fmt.Errorf("feature %s: %w", w.scenario.Uri, err)
	}
	var tags []string
	for _, t := range w.scenario.Tags {
		tags = append(tags, t.Name)
	}
	step := bundle.StepRef{Started: w.stepStart, Ended: time.Now()}
	if w.step != nil {
		step.Text = w.step.Text
	}
	flows, err := e.flowsBetween(ctx, step.Started, step.Ended)
	if err != nil {
		e.Log.Warn("failure bundle: the step's flows", "err", err)
	}
	rec := &bundle.Record{
		Kind:     bundle.RecordScenario,
		Scenario: &bundle.ScenarioRef{FeaturePath: featureFilePath(w.scenario.Uri), Name: w.scenario.Name, Line: line, Tags: tags},
		Step:     step, Cells: fs.cells, Tables: fs.tables,
		Objects: e.AppliedObjects(), Flows: flows, Feature: feature,
	}
	if fs.err != nil {
		rec.Error = fs.err.Error()
		if len(rec.Error) > maxFailureText {
			rec.Error = rec.Error[:maxFailureText] + "\n[cut at 64 KiB]"
		}
		if rec.Tables == "" {
			rec.Tables = "step failed without a truth table: " + step.Text + "\n" + rec.Error + "\n"
		}
	}
	return rec, nil
}

// readFeature reads a feature file as the suite was given it (the embedded features or disk); a
// run filtered to a line (path:line, as `starlab repro` runs one scenario) names the file with it.
func (e *Env) readFeature(uri string) ([]byte, error) {
	uri = featureFilePath(uri)
	if e.featureFS != nil {
		if data, err := fs.ReadFile(e.featureFS, uri); err == nil {
			return data, nil
		}
	}
	data, err := os.ReadFile(uri)
	if err != nil {
		return nil, fmt.Errorf("read the feature file %s: %w", uri, err)
	}
	return data, nil
}

// featureFilePath is uri without a godog line filter (":7", ":7:12").
func featureFilePath(uri string) string {
	for {
		i := strings.LastIndexByte(uri, ':')
		if i < 0 || i == len(uri)-1 {
			return uri
		}
		if _, err := strconv.Atoi(uri[i+1:]); err != nil {
			return uri
		}
		uri = uri[:i]
	}
}

// scenarioLine is the line of the Scenario (or Scenario Outline) named name in a feature file.
func scenarioLine(feature []byte, name string) (int, error) {
	doc, err := gherkin.ParseGherkinDocument(bytes.NewReader(feature), (&messages.Incrementing{}).NewId)
	if err != nil {
		return 0, fmt.Errorf("parse: %w", err)
	}
	if doc.Feature == nil {
		return 0, fmt.Errorf("no Feature")
	}
	var find func(children []*messages.FeatureChild) int
	find = func(children []*messages.FeatureChild) int {
		for _, c := range children {
			if c.Scenario != nil && strings.TrimSpace(c.Scenario.Name) == strings.TrimSpace(name) {
				return int(c.Scenario.Location.Line)
			}
			if c.Rule != nil {
				var rc []*messages.FeatureChild
				for _, r := range c.Rule.Children {
					rc = append(rc, &messages.FeatureChild{Scenario: r.Scenario})
				}
				if l := find(rc); l > 0 {
					return l
				}
			}
		}
		return 0
	}
	if l := find(doc.Feature.Children); l > 0 {
		return l, nil
	}
	return 0, fmt.Errorf("no scenario named %q", name)
}

// flowsBetween reads the observer's flows from since until until.
func (e *Env) flowsBetween(ctx context.Context, since, until time.Time) ([]*flow.Flow, error) {
	var out []*flow.Flow
	err := e.withObserver(ctx, func(c *observer.Client) error {
		return c.Flows(ctx, flow.Query{Since: since, Until: until}, func(f *flow.Flow) error {
			out = append(out, f)
			return nil
		})
	})
	return out, err
}

// recordBundle remembers a failure bundle written during the run.
func (e *Env) recordBundle(path string) {
	e.bundlesMu.Lock()
	defer e.bundlesMu.Unlock()
	e.bundles = append(e.bundles, path)
}

// Bundles are the failure bundles written so far, in order.
func (e *Env) Bundles() []string {
	e.bundlesMu.Lock()
	defer e.bundlesMu.Unlock()
	return slices.Clone(e.bundles)
}

// matrixTruthCells turns a checked matrix into truth cells: expected, probed (connections) and
// observed (flows); wrong when either differs from the expectation.
func matrixTruthCells(expected, probes, byFlows *Matrix, why map[[2]string][]string) []bundle.TruthCell {
	var out []bundle.TruthCell
	for _, r := range expected.Rows {
		for _, c := range expected.Cols {
			exp := expected.Get(r, c)
			cell := bundle.TruthCell{From: r, To: c, Expected: string(exp), Probed: string(probes.Get(r, c)), Observed: string(byFlows.Get(r, c))}
			if exp == Ignored {
				cell.Expected, cell.Probed, cell.Observed = bundle.CellIgnored, bundle.CellIgnored, bundle.CellIgnored
			} else {
				cell.Wrong = probes.Get(r, c) != exp || byFlows.Get(r, c) != exp
			}
			cell.Why = why[[2]string{r, c}]
			out = append(out, cell)
		}
	}
	return out
}

// scenarioHooks tracks the running scenario and step in w (what a failure bundle names), starts
// each scenario's applied-objects log afresh, and makes every failing step write a failure bundle:
// a step that checks a truth table writes its own (with the cells); any other failing step gets
// one with its error, named in the step's failure.
func scenarioHooks(sc *godog.ScenarioContext, w *World) {
	sc.Before(func(ctx context.Context, s *godog.Scenario) (context.Context, error) {
		w.scenario = s
		w.Env.applied.reset()
		return ctx, nil
	})
	sc.StepContext().Before(func(ctx context.Context, st *godog.Step) (context.Context, error) {
		w.step, w.stepStart, w.stepBundled = st, time.Now(), false
		return ctx, nil
	})
	sc.StepContext().After(func(ctx context.Context, st *godog.Step, status godog.StepResultStatus, err error) (context.Context, error) {
		return ctx, w.afterStep(ctx, status, err)
	})
}

// afterStep writes the failure bundle of a failed step that wrote none itself; the returned error
// (joined to the step's by godog) names it.
func (w *World) afterStep(ctx context.Context, status godog.StepResultStatus, err error) error {
	if status != godog.StepFailed || err == nil || w.stepBundled {
		return nil
	}
	line := strings.TrimSpace(w.writeFailureBundle(ctx, failingStep{err: err}))
	if line == "" {
		return nil
	}
	return errors.New(line)
}

// matrixReport is the report of a checked matrix, with the failure bundle's line when it failed.
func (w *World) matrixReport(ctx context.Context, res *MatrixCheck) string {
	if res.OK {
		return res.Report
	}
	return res.Report + w.writeFailureBundle(ctx, failingStep{cells: res.Cells, tables: res.Report})
}
