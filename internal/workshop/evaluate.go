package workshop

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// flowsSlack is how far before a key press the step's flows start (clock differences between nodes).
const flowsSlack = time.Second

// evaluate fills res for the step it landed on: the check, or the expected and probed matrices, and
// the flows since the key press.
func (r *Runner) evaluate(ctx context.Context, res *StepResult) error {
	p := &r.parts[res.Part]
	st := &p.Steps[res.Step]
	r.setPhase(res, PhaseProbing)
	start := time.Now()
	if st.Check != "" {
		lines, err := r.cluster.Check(ctx, st.Check)
		if err != nil {
			return fmt.Errorf("check %s: %w", st.Check, err)
		}
		res.Checks = lines
	}
	exp, err := Expected(p, r.manifests, res.Step)
	if err != nil {
		return err
	}
	if exp != nil {
		res.Expected = exp
		res.Probed, err = r.probe(ctx, p, exp)
		if err != nil {
			return err
		}
		res.Diffs = exp.Diff(res.Probed)
	}
	res.ProbedMs = ms(time.Since(start))
	flows, err := r.cluster.Flows(ctx, res.Started.Add(-flowsSlack), p.Namespaces)
	if err != nil {
		r.log.Warn("flows of the step unavailable", "err", err)
	}
	res.Flows = ViewFlows(flows)
	return nil
}

// probe connects every cell of exp that is not Ignored or Absent, all at once (a denied connection
// costs the probe timeout).
func (r *Runner) probe(ctx context.Context, p *Part, exp *Matrix) (*Matrix, error) {
	got := NewMatrix(exp.Rows, exp.Cols, Absent)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i, row := range exp.Rows {
		for j, col := range exp.Cols {
			if c := exp.Cells[i][j]; c == Ignored || c == Absent {
				got.Cells[i][j] = c
				continue
			}
			src, _ := p.Workload(row)
			dst, _ := p.Workload(col)
			wg.Go(func() {
				pr, err := r.cluster.Probe(ctx, src, dst.Target())
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					got.Cells[i][j] = "error"
					if firstErr == nil {
						firstErr = fmt.Errorf("probe %s -> %s: %w", row, col, err)
					}
					return
				}
				got.Cells[i][j] = map[bool]string{true: Yes, false: No}[pr.Reachable]
			})
		}
	}
	wg.Wait()
	return got, firstErr
}
