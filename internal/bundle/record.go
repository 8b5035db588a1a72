package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/internal/flow"
)

// Record kinds.
const (
	RecordScenario    = "scenario"    // a failing step of a Gherkin scenario (`starlab test`, the e2e suite)
	RecordConformance = "conformance" // a failing case of `starlab conformance`
)

// Files of the repro section, under the bundle root.
const (
	ReproRecordFile  = "repro/record.json"
	ReproObjectsFile = "repro/objects.json"
	ReproTablesFile  = "repro/tables.txt"
	ReproFlowsFile   = "repro/flows.ndjson"
	reproFeatureDir  = "repro/feature/"
)

// ReproIndex is MANIFEST.json's repro section: what failed and where its files are.
type ReproIndex struct {
	Kind    string `json:"kind"`
	Test    string `json:"test"` // "<feature file>: <scenario>" or the conformance case
	Step    string `json:"step"`
	Wrong   int    `json:"wrongCells"`
	Record  string `json:"record"`
	Objects string `json:"objects"`
	Tables  string `json:"tables"`
	Flows   string `json:"flows"`
	Feature string `json:"feature,omitempty"`
}

// Record is what a failing test leaves for `starlab repro` and `starlab replay`: the exact inputs,
// the test and its failing step, the step's truth tables and its flows.
type Record struct {
	Kind     string       `json:"kind"`
	Inputs   Inputs       `json:"inputs"`
	Scenario *ScenarioRef `json:"scenario,omitempty"`
	Case     *CaseRef     `json:"case,omitempty"`
	Step     StepRef      `json:"step"`
	// Cells are the failing step's truth tables: every cell with its expected, probed and observed value.
	Cells []TruthCell `json:"cells"`
	// Error is how the step failed, as the failure output printed it (a step that checks no truth
	// table fails with an error only; "" when the wrong cells say it all).
	Error string `json:"error,omitempty"`

	// Objects are the workload and policy objects as applied, in order (repro/objects.json).
	Objects []AppliedObject `json:"-"`
	// Tables is the text form of Cells as the failure printed it (repro/tables.txt).
	Tables string `json:"-"`
	// Flows are the flows of the failing step (repro/flows.ndjson).
	Flows []*flow.Flow `json:"-"`
	// Feature is the feature file's content (repro/feature/<name>), for scenarios.
	Feature []byte `json:"-"`
}

// Inputs are what made the lab and the test: enough to build the same lab again.
type Inputs struct {
	Starlab           Version `json:"starlab"`
	KubernetesVersion string  `json:"kubernetesVersion"`
	NodeImage         string  `json:"nodeImage"`    // the node image reference (its tag ends in the content key)
	NodeImageKey      string  `json:"nodeImageKey"` // the content key part of the tag
	Workers           int     `json:"workers"`
	// ChartValues are the values the starlab release was installed with.
	ChartValues map[string]any `json:"chartValues"`
}

// ScenarioRef names a Gherkin scenario.
type ScenarioRef struct {
	FeaturePath string   `json:"featurePath"` // as the run was given it
	FeatureFile string   `json:"featureFile"` // the copy in the bundle
	Name        string   `json:"name"`
	Line        int      `json:"line"` // of the Scenario keyword
	Tags        []string `json:"tags,omitempty"`
}

// CaseRef names a conformance case and how the run probed it.
type CaseRef struct {
	Name  string   `json:"name"`
	Tags  []string `json:"tags,omitempty"`
	Modes []string `json:"modes"`
}

// StepRef is the failing step.
type StepRef struct {
	Text    string    `json:"text"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
}

// AppliedObject is one object as a test applied (Op "apply") or deleted (Op "delete") it, without
// the fields the API server sets.
type AppliedObject struct {
	Op     string         `json:"op"`
	Object map[string]any `json:"object"`
}

// Cell values of TruthCell.
const (
	CellYes     = "yes"
	CellNo      = "no"
	CellUnknown = "?"
	CellIgnored = "ignored"
)

// TruthCell is one cell of the truth tables: a connection, what the policies say (expected), what a
// real connection did (probed) and what the flows showed (observed).
type TruthCell struct {
	Mode     string   `json:"mode,omitempty"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Port     int32    `json:"port,omitempty"`
	Protocol string   `json:"protocol,omitempty"`
	Expected string   `json:"expected"`
	Probed   string   `json:"probed"`
	Observed string   `json:"observed"`
	Wrong    bool     `json:"wrong,omitempty"`
	Why      []string `json:"why,omitempty"`
}

// Key identifies the cell across runs: mode, source, target, protocol and port.
func (c TruthCell) Key() string {
	k := c.From + " -> " + c.To
	if c.Mode != "" {
		k = c.Mode + " " + k
	}
	if c.Protocol != "" || c.Port != 0 {
		k += fmt.Sprintf(" %s/%d", c.Protocol, c.Port)
	}
	return k
}

// String is the cell as the reports print a wrong one.
func (c TruthCell) String() string {
	return fmt.Sprintf("%s: expected %s, probed %s, observed %s", c.Key(), c.Expected, c.Probed, c.Observed)
}

// Failure names what failed for a comparison across runs: each wrong cell, or, for a step that
// failed without wrong cells, the step itself.
func (r *Record) Failure() []string {
	var out []string
	for _, c := range r.WrongCells() {
		out = append(out, c.String())
	}
	if len(out) == 0 && (r.Error != "" || r.Step.Text != "") {
		out = append(out, StepFailure(r.Step.Text))
	}
	return out
}

// StepFailure is how Failure names a step that failed without wrong cells.
func StepFailure(step string) string {
	if step == "" {
		return "failed outside its steps"
	}
	return fmt.Sprintf("step %q failed", step)
}

// WrongCells are the cells that did not match.
func (r *Record) WrongCells() []TruthCell {
	var out []TruthCell
	for _, c := range r.Cells {
		if c.Wrong {
			out = append(out, c)
		}
	}
	return out
}

// Test names the failing test: "<feature file>: <scenario>" or "conformance case <name>".
func (r *Record) Test() string {
	switch {
	case r.Scenario != nil:
		return r.Scenario.FeaturePath + ": " + r.Scenario.Name
	case r.Case != nil:
		return "conformance case " + r.Case.Name
	}
	return r.Kind
}

// check refuses a record the repro commands could not use.
func (r *Record) check() error {
	switch r.Kind {
	case RecordScenario:
		if r.Scenario == nil || r.Scenario.Name == "" || len(r.Feature) == 0 {
			return fmt.Errorf("scenario record without its scenario or feature file")
		}
	case RecordConformance:
		if r.Case == nil || r.Case.Name == "" {
			return fmt.Errorf("conformance record without its case")
		}
	default:
		return fmt.Errorf("record kind %q: want %s or %s", r.Kind, RecordScenario, RecordConformance)
	}
	return nil
}

// featureFileName is the bundle name of the feature file copy.
func featureFileName(featurePath string) string {
	base := path.Base(strings.ReplaceAll(featurePath, `\`, "/"))
	if base == "" || base == "." || base == "/" {
		base = "scenario.feature"
	}
	return reproFeatureDir + base
}

// writeRecord adds the repro files of rec to the bundle (objects redacted) and returns the index.
func writeRecord(s *stepCtx, rec *Record, red *Redactor) (*ReproIndex, error) {
	if err := rec.check(); err != nil {
		return nil, err
	}
	idx := &ReproIndex{
		Kind: rec.Kind, Test: rec.Test(), Step: rec.Step.Text, Wrong: len(rec.WrongCells()),
		Record: ReproRecordFile, Objects: ReproObjectsFile, Tables: ReproTablesFile, Flows: ReproFlowsFile,
	}
	if rec.Scenario != nil {
		rec.Scenario.FeatureFile = featureFileName(rec.Scenario.FeaturePath)
		idx.Feature = rec.Scenario.FeatureFile
		s.add(idx.Feature, rec.Feature)
	}
	objs := make([]AppliedObject, len(rec.Objects))
	for i, o := range rec.Objects {
		obj := deepCopyJSON(o.Object)
		red.Object(obj)
		objs[i] = AppliedObject{Op: o.Op, Object: obj}
	}
	s.addJSON(ReproObjectsFile, objs)
	s.add(ReproTablesFile, []byte(rec.Tables))
	var buf bytes.Buffer
	enc := flow.NewEncoder(&buf)
	for _, f := range rec.Flows {
		if err := enc.Encode(f); err != nil {
			return nil, fmt.Errorf("encode the step's flows: %w", err)
		}
	}
	s.add(ReproFlowsFile, buf.Bytes())
	s.addJSON(ReproRecordFile, rec)
	return idx, nil
}

// deepCopyJSON copies a JSON-shaped object (maps, slices, scalars).
func deepCopyJSON(obj map[string]any) map[string]any {
	b, err := json.Marshal(obj)
	if err != nil {
		return map[string]any{}
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return map[string]any{}
	}
	return out
}

// NodeImageKey is the content key part of a node image reference (the tag after the Kubernetes version).
func NodeImageKey(ref string) string {
	i := strings.LastIndex(ref, ":")
	if i < 0 {
		return ""
	}
	tag := ref[i+1:]
	if j := strings.LastIndex(tag, "-"); j >= 0 {
		return tag[j+1:]
	}
	return tag
}
