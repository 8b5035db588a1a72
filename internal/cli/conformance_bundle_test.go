package cli

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/flow"
)

// flowsOf serves fixed flows and remembers the query.
type flowsOf struct {
	flows []*flow.Flow
	q     flow.Query
}

func (f *flowsOf) Flows(_ context.Context, q flow.Query, emit func(*flow.Flow) error) error {
	f.q = q
	for _, fl := range f.flows {
		if err := emit(fl); err != nil {
			return err
		}
	}
	return nil
}

// The record of a failed conformance run: the first failed case, its first failing step, the
// objects of every state up to that step in order, its truth cells and the step's flows.
func TestConformanceFailureRecord(t *testing.T) {
	u := conformance.NewUniverse()
	cases := conformance.Generate(u)
	i := slices.IndexFunc(cases, func(c conformance.Case) bool { return len(c.Steps) >= 2 && len(c.Steps[1].Policies) > 0 })
	require.GreaterOrEqual(t, i, 0, "a generated case with two steps and policies")
	c := cases[i]
	t0 := time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC)
	wrong := conformance.Cell{Mode: conformance.ModePodIP, From: "x/a", To: "x/b", Protocol: "TCP", Port: 80,
		Probe: &conformance.Probe{Reachable: true}, Wrong: true, Why: []string{"probe: connected"}}
	report := &conformance.Report{Target: `lab "t"`, Flows: "starlab", Cases: []conformance.CaseResult{
		{Name: cases[0].Name, Passed: true},
		{Name: c.Name, Tags: c.Tags, Steps: []conformance.StepResult{
			{Name: c.Steps[0].Name, Started: t0, Ended: t0.Add(time.Second)},
			{Name: c.Steps[1].Name, Started: t0.Add(2 * time.Second), Ended: t0.Add(3 * time.Second), Cells: []conformance.Cell{wrong}, Wrong: 1},
		}},
	}}
	src := &flowsOf{flows: []*flow.Flow{{UUID: "f1", Time: t0.Add(2500 * time.Millisecond)}}}
	rec, err := conformanceFailure(context.Background(), u, cases, []string{conformance.ModePodIP}, report, src)
	require.NoError(t, err)
	assert.Equal(t, bundle.RecordConformance, rec.Kind)
	assert.Equal(t, c.Name, rec.Case.Name)
	assert.Equal(t, []string{conformance.ModePodIP}, rec.Case.Modes)
	assert.Equal(t, c.Steps[1].Name, rec.Step.Text)
	require.Len(t, rec.WrongCells(), 1)
	assert.Equal(t, "pod-ip x/a -> x/b TCP/80: expected no, probed yes, observed ?", rec.WrongCells()[0].String())
	assert.Equal(t, []string{"pod-ip x/a -> x/b TCP/80: expected no, probed yes, observed ?"}, rec.Failure())
	assert.Equal(t, t0.Add(2*time.Second), src.q.Since, "the flows of the failing step only")
	assert.Equal(t, t0.Add(3*time.Second), src.q.Until)
	require.Len(t, rec.Flows, 1)
	assert.Contains(t, rec.Tables, c.Name, "the tables name the case")
	var policies []string
	for _, o := range rec.Objects {
		if o.Object["kind"] == "NetworkPolicy" {
			md, _ := o.Object["metadata"].(map[string]any)
			policies = append(policies, md["namespace"].(string)+"/"+md["name"].(string))
		}
	}
	for _, p := range c.Steps[1].Policies {
		assert.Contains(t, policies, p.Namespace+"/"+p.Name, "the failing step's policies are among the objects")
	}

	// A case that failed before its first step still gets a record: its name and error.
	report.Cases[1].Steps, report.Cases[1].Error = nil, "create namespace x: forbidden"
	rec, err = conformanceFailure(context.Background(), u, cases, []string{conformance.ModePodIP}, report, src)
	require.NoError(t, err)
	assert.Equal(t, c.Name, rec.Case.Name)
	assert.Equal(t, "create namespace x: forbidden", rec.Error)
	assert.Empty(t, rec.Objects)
	assert.Equal(t, []string{"failed outside its steps"}, rec.Failure())
	assert.Contains(t, rec.Tables, "failed before its first step")

	report.Cases[1].Passed = true
	_, err = conformanceFailure(context.Background(), u, cases, nil, report, nil)
	require.Error(t, err, "no failed case, no record")
}
