package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/flow"
)

// conformanceFailure is the first failing case of a run, its failing step, and everything the
// failure bundle records of it.
func conformanceFailure(ctx context.Context, u *conformance.Universe, cases []conformance.Case, modes []string, report *conformance.Report, flows conformance.FlowSource) (*bundle.Record, error) {
	var cr *conformance.CaseResult
	for i := range report.Cases {
		if !report.Cases[i].Passed {
			cr = &report.Cases[i]
			break
		}
	}
	if cr == nil {
		return nil, fmt.Errorf("no failed case in the report")
	}
	i := slices.IndexFunc(cases, func(c conformance.Case) bool { return c.Name == cr.Name })
	if i < 0 {
		return nil, fmt.Errorf("case %s is not among the generated cases", cr.Name)
	}
	c := cases[i]
	rec := &bundle.Record{
		Kind:  bundle.RecordConformance,
		Case:  &bundle.CaseRef{Name: c.Name, Tags: c.Tags, Modes: modes},
		Error: cr.Error,
	}
	failed := slices.IndexFunc(cr.Steps, func(s conformance.StepResult) bool { return s.Wrong > 0 || s.Error != "" })
	if failed < 0 {
		failed = len(cr.Steps) - 1
	}
	if failed >= len(c.Steps) {
		return nil, fmt.Errorf("case %s reports step %d of %d", c.Name, failed+1, len(c.Steps))
	}
	if failed < 0 {
		// The case failed before its first step ran (no state applied): the record names the case
		// and its error, with no objects, cells or flows.
		rec.Tables = fmt.Sprintf("case %s failed before its first step: %s\n", c.Name, cr.Error)
		return rec, nil
	}
	sr := cr.Steps[failed]
	rec.Step = bundle.StepRef{Text: sr.Name, Started: sr.Started, Ended: sr.Ended}
	rec.Cells = conformance.TruthCells(sr.Cells)
	if sr.Error != "" {
		rec.Error = sr.Error
	}
	for _, st := range c.Steps[:failed+1] {
		state := u.StateOf(st)
		if slices.Contains(modes, conformance.ModeServiceName) {
			state = conformance.WithDNSEgress(state)
		}
		objs, err := conformance.StateObjects(u, state)
		if err != nil {
			return nil, err
		}
		rec.Objects = append(rec.Objects, objs...)
	}
	var b strings.Builder
	conformance.WriteText(&b, &conformance.Report{Target: report.Target, Flows: report.Flows, Profile: report.Profile, Started: report.Started, Cases: []conformance.CaseResult{*cr}}, true)
	rec.Tables = b.String()
	if flows != nil && !sr.Started.IsZero() {
		err := flows.Flows(ctx, flow.Query{Since: sr.Started, Until: sr.Ended}, func(f *flow.Flow) error {
			rec.Flows = append(rec.Flows, f)
			return nil
		})
		if err != nil {
			return rec, fmt.Errorf("flows of step %s: %w", sr.Name, err)
		}
	}
	return rec, nil
}

// writeConformanceBundle writes the failure bundle of a failed run into dir and returns its path.
func writeConformanceBundle(ctx context.Context, labName, dir string, rec *bundle.Record) (bundle.Result, error) {
	out := filepath.Join(dir, fmt.Sprintf("bundle-%s-%s.tar.gz", slugName(rec.Case.Name), time.Now().UTC().Format("150405")))
	return bundle.Write(context.WithoutCancel(ctx), bundle.Options{Lab: labName, Output: out, Record: rec})
}

// slugName keeps letters, digits and dashes.
func slugName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}
