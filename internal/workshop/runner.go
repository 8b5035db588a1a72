package workshop

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/starlab-dev/starlab/internal/lab"
)

// Errors of a key press the page shows as is.
var (
	ErrBusy  = errors.New("a step is still running: wait for it (the timer shows how long it has run)")
	ErrEnd   = errors.New("this is the last step of the last part: press ← to go back or r to reset the part")
	ErrStart = errors.New("this is the first step: press → to go on")
)

// DefaultStepTimeout bounds one step (apply, programming, probing).
const DefaultStepTimeout = 90 * time.Second

// Runner is the script's state machine: the current part and step, what each step applied, and the
// result of the last key press. Safe for concurrent use; one step runs at a time.
type Runner struct {
	parts     []Part
	manifests fs.FS
	cluster   Cluster
	log       *slog.Logger
	timeout   time.Duration

	mu     sync.Mutex
	part   int
	step   int // -1 before Start
	busy   bool
	result StepResult
}

// NewRunner returns a Runner over parts, reading workload manifests from manifestsFS.
func NewRunner(parts []Part, manifestsFS fs.FS, c Cluster, log *slog.Logger) *Runner {
	return &Runner{parts: parts, manifests: manifestsFS, cluster: c, log: log, timeout: DefaultStepTimeout, step: -1}
}

// SetTimeout changes the bound of one step.
func (r *Runner) SetTimeout(d time.Duration) { r.timeout = d }

// Parts returns the script.
func (r *Runner) Parts() []Part { return r.parts }

// Position returns the current part and step indexes, whether a step runs, and its result.
func (r *Runner) Position() (part, step int, busy bool, res StepResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.part, r.step, r.busy, r.result
}

// Start undoes every step's objects (a clean lab), then runs the first step of the first part.
func (r *Runner) Start(ctx context.Context) (StepResult, error) {
	return r.act(ctx, "start", func(ctx context.Context, res *StepResult) (int, int, error) {
		if err := r.clean(ctx, res); err != nil {
			return 0, 0, fmt.Errorf("clean up what an earlier run left: %w", err)
		}
		if err := r.applyStep(ctx, res, 0, 0); err != nil {
			return 0, 0, err
		}
		return 0, 0, nil
	})
}

// Clean deletes every step's objects, last step first, and waits until every node has programmed
// the change: the lab as it was before the walk.
func (r *Runner) Clean(ctx context.Context) error {
	r.mu.Lock()
	if r.busy {
		r.mu.Unlock()
		return ErrBusy
	}
	r.busy = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.busy = false
		r.mu.Unlock()
	}()
	var res StepResult
	return r.clean(ctx, &res)
}

func (r *Runner) clean(ctx context.Context, res *StepResult) error {
	var objs []*unstructured.Unstructured
	for pi := len(r.parts) - 1; pi >= 0; pi-- {
		for si := len(r.parts[pi].Steps) - 1; si >= 0; si-- {
			o, err := stepObjects(&r.parts[pi].Steps[si])
			if err != nil {
				return err
			}
			objs = append(objs, o...)
		}
	}
	return r.change(ctx, res, objs, true)
}

// Next applies the next step (the first of the next part after a part's last).
func (r *Runner) Next(ctx context.Context) (StepResult, error) {
	return r.act(ctx, "next", func(ctx context.Context, res *StepResult) (int, int, error) {
		p, s := r.part, r.step+1
		if s >= len(r.parts[p].Steps) {
			if p+1 >= len(r.parts) {
				return 0, 0, ErrEnd
			}
			p, s = p+1, 0
		}
		return p, s, r.applyStep(ctx, res, p, s)
	})
}

// Back undoes the current step's objects and shows the step before (the previous part's last step
// from a part's first).
func (r *Runner) Back(ctx context.Context) (StepResult, error) {
	return r.act(ctx, "back", func(ctx context.Context, res *StepResult) (int, int, error) {
		p, s := r.part, r.step
		if p == 0 && s <= 0 {
			return 0, 0, ErrStart
		}
		if err := r.undoStep(ctx, res, p, s); err != nil {
			return 0, 0, err
		}
		if s == 0 {
			return p - 1, len(r.parts[p-1].Steps) - 1, nil
		}
		return p, s - 1, nil
	})
}

// Reset undoes every step of the current part after its first and shows the first.
func (r *Runner) Reset(ctx context.Context) (StepResult, error) {
	return r.act(ctx, "reset", func(ctx context.Context, res *StepResult) (int, int, error) {
		p := r.part
		for s := r.step; s > 0; s-- {
			if err := r.undoStep(ctx, res, p, s); err != nil {
				return 0, 0, err
			}
		}
		return p, 0, nil
	})
}

// act runs one key press: move changes the lab and says where it lands; the landing step is then
// evaluated. The result is kept (and returned) even when the step failed.
func (r *Runner) act(ctx context.Context, action string, move func(context.Context, *StepResult) (int, int, error)) (StepResult, error) {
	r.mu.Lock()
	if r.busy {
		r.mu.Unlock()
		return StepResult{}, ErrBusy
	}
	if r.step < 0 && action != "start" {
		r.mu.Unlock()
		return StepResult{}, errors.New("the script has not started yet")
	}
	r.busy = true
	prev := r.result
	now := time.Now()
	res := StepResult{Part: r.part, Step: max(r.step, 0), Action: action, Phase: PhaseApplying, Started: now, PhaseStarted: now}
	r.result = res
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	p, s, err := move(ctx, &res)
	if errors.Is(err, ErrEnd) || errors.Is(err, ErrStart) {
		r.mu.Lock()
		r.busy = false
		r.result = prev
		r.mu.Unlock()
		return prev, err
	}
	if err == nil {
		r.mu.Lock()
		r.part, r.step = p, s
		r.mu.Unlock()
		res.Part, res.Step = p, s
		err = r.evaluate(ctx, &res)
	}
	res.PartName, res.StepName = r.parts[res.Part].Name, r.parts[res.Part].Steps[res.Step].Name
	res.TotalMs = ms(time.Since(res.Started))
	if err != nil {
		res.Phase, res.Error = PhaseFailed, err.Error()
	} else if len(res.Diffs) > 0 || failedCheck(res.Checks) {
		res.Phase = PhaseFailed
	} else {
		res.Phase = PhaseDone
	}
	r.mu.Lock()
	r.busy = false
	r.result = res
	r.mu.Unlock()
	r.log.Info("step", "action", action, "part", res.PartName, "step", res.StepName, "phase", res.Phase,
		"programmedMs", res.ProgrammedMs, "probedMs", res.ProbedMs, "totalMs", res.TotalMs, "diffs", len(res.Diffs), "err", res.Error)
	return res, err
}

func failedCheck(lines []CheckLine) bool {
	for _, l := range lines {
		if !l.OK {
			return true
		}
	}
	return false
}

// setPhase publishes a new phase of the running step to Position.
func (r *Runner) setPhase(res *StepResult, ph Phase) {
	res.Phase, res.PhaseStarted = ph, time.Now()
	r.mu.Lock()
	r.result.Phase, r.result.PhaseStarted = ph, res.PhaseStarted
	r.mu.Unlock()
}

func (r *Runner) applyStep(ctx context.Context, res *StepResult, p, s int) error {
	objs, err := stepObjects(&r.parts[p].Steps[s])
	if err != nil {
		return err
	}
	return r.change(ctx, res, objs, false)
}

func (r *Runner) undoStep(ctx context.Context, res *StepResult, p, s int) error {
	objs, err := stepObjects(&r.parts[p].Steps[s])
	if err != nil {
		return err
	}
	for i, j := 0, len(objs)-1; i < j; i, j = i+1, j-1 {
		objs[i], objs[j] = objs[j], objs[i]
	}
	return r.change(ctx, res, objs, true)
}

// change applies (or deletes) objs and waits until every node has programmed them.
func (r *Runner) change(ctx context.Context, res *StepResult, objs []*unstructured.Unstructured, del bool) error {
	if len(objs) == 0 {
		return nil
	}
	r.setPhase(res, PhaseApplying)
	var rv int64
	var err error
	if del {
		rv, err = r.cluster.Delete(ctx, objs)
	} else {
		rv, err = r.cluster.Apply(ctx, objs)
	}
	if err != nil {
		return err
	}
	if rv == 0 {
		return nil
	}
	r.setPhase(res, PhaseProgramming)
	start := time.Now()
	if err := r.cluster.WaitProgrammed(ctx, rv); err != nil {
		return fmt.Errorf("policy not programmed on every node after %s: %w (starlab status shows the agents)", time.Since(start).Round(time.Millisecond), err)
	}
	res.ProgrammedMs += ms(time.Since(start))
	return nil
}

// stepObjects decodes the objects a step applies, in file order.
func stepObjects(s *Step) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, f := range s.Objects {
		objs, err := lab.DecodeManifests([]byte(f.YAML))
		if err != nil {
			return nil, fmt.Errorf("step %s: %s: %w", s.Name, f.Path, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
