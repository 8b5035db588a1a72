package conformance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/starlab-dev/starlab/internal/oracle"
)

// Wait modes: how the runner knows a state is programmed.
const (
	WaitRevision = "revision" // Starlab: every node's policy-revision annotation
	WaitStable   = "stable"   // any CNI: the probed matrix is the same twice in a row
)

// Options configure a run.
type Options struct {
	Timeout        time.Duration // per connection
	ProgramTimeout time.Duration // per state
	FlowWait       time.Duration // how long to wait for conclusive flows
	Wait           string        // WaitRevision or WaitStable
	StableRounds   int           // WaitStable: identical matrices in a row (default 2)
	Modes          []string      // probe modes (default pod-ip)
	Progress       io.Writer
	Log            *slog.Logger
}

// Runner runs cases against one cluster.
type Runner struct {
	Client kubernetes.Interface
	// Policies applies the cases' ClusterNetworkPolicies (nil: cases with some fail).
	Policies npclient.Interface
	Universe *Universe
	Prober   Prober
	Flows    FlowSource // nil: no flow comparison
	Opts     Options
	state    *State
}

// Run runs every case in order; a case that errors is a failed case, the run goes on (unless ctx
// ends).
func (r *Runner) Run(ctx context.Context, cases []Case, report *Report) error {
	if r.Opts.StableRounds < 2 {
		r.Opts.StableRounds = 2
	}
	for i, c := range cases {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("run stopped before case %s: %w", c.Name, err)
		}
		res := r.runCase(ctx, c)
		report.Cases = append(report.Cases, res)
		status := "PASS"
		if !res.Passed {
			status = "FAIL"
		}
		wrong := 0
		for _, s := range res.Steps {
			wrong += s.Wrong
		}
		line := fmt.Sprintf("[%d/%d] %s %s (%s", i+1, len(cases), status, c.Name, res.Duration.Round(10*time.Millisecond))
		if wrong > 0 {
			line += fmt.Sprintf(", %d wrong cells", wrong)
		}
		if res.Error != "" {
			line += ", error: " + res.Error
		}
		fmt.Fprintln(r.progress(), line+")")
	}
	report.Tally()
	return nil
}

func (r *Runner) modes() []string {
	if len(r.Opts.Modes) == 0 {
		return []string{ModePodIP}
	}
	return r.Opts.Modes
}

func (r *Runner) progress() io.Writer {
	if r.Opts.Progress == nil {
		return io.Discard
	}
	return r.Opts.Progress
}

func (r *Runner) runCase(ctx context.Context, c Case) CaseResult {
	start := time.Now()
	res := CaseResult{Name: c.Name, Tags: c.Tags, Passed: true}
	for _, s := range c.Steps {
		stepStart := time.Now()
		sr, err := r.runStep(ctx, s)
		sr.Started, sr.Ended = stepStart, time.Now()
		if err != nil {
			sr.Error = err.Error()
			res.Error = fmt.Sprintf("step %q: %v", s.Name, err)
			res.Passed = false
			r.state = nil // unknown now: read it back at the next step
		}
		if sr.Wrong > 0 {
			res.Passed = false
		}
		res.Steps = append(res.Steps, sr)
		if err != nil {
			break
		}
	}
	res.Duration = time.Since(start)
	return res
}

func (r *Runner) runStep(ctx context.Context, s Step) (StepResult, error) {
	u := r.Universe
	st := u.StateOf(s)
	if slices.Contains(r.modes(), ModeServiceName) {
		st = WithDNSEgress(st)
	}
	sr := StepResult{Name: s.Name, Policies: st.PolicyNames()}
	o, err := u.Oracle(st)
	if err != nil {
		return sr, err
	}
	rv, changed, err := ApplyState(ctx, r.Client, r.Policies, u, r.state, st)
	if err != nil {
		return sr, err
	}
	r.state = &st
	probes := MatrixProbes(u, r.modes())
	var start time.Time
	switch {
	case r.Opts.Wait == WaitRevision && changed:
		if sr.ProgramWait, err = WaitProgrammed(ctx, r.Client, rv, r.Opts.ProgramTimeout); err != nil {
			return sr, err
		}
		start = time.Now()
		if sr.ProbeTime, err = RunProbes(ctx, r.Prober, u, probes, r.Opts.Timeout); err != nil {
			return sr, err
		}
	case r.Opts.Wait == WaitRevision:
		start = time.Now()
		if sr.ProbeTime, err = RunProbes(ctx, r.Prober, u, probes, r.Opts.Timeout); err != nil {
			return sr, err
		}
	default:
		if probes, sr.Convergence, sr.ProbeTime, err = r.probeUntilStable(ctx); err != nil {
			return sr, err
		}
		start = time.Now().Add(-sr.ProbeTime)
	}
	sr.Probes = len(probes)
	n, err := Reconfirm(ctx, r.Prober, probes, o, r.Opts.Timeout)
	if err != nil {
		return sr, err
	}
	sr.Probes += n
	var obs map[cellKey]Observation
	if r.Flows != nil {
		if obs, err = r.observe(ctx, probes, start); err != nil {
			return sr, err
		}
	}
	sr.Cells, sr.Wrong, err = Compare(o, u.Pods(), r.modes(), probes, obs)
	return sr, err
}

// probeUntilStable probes the matrix until StableRounds results in a row agree (or the program
// timeout passes: then the last matrix counts). It returns the last matrix, the convergence time
// and the last matrix's probe time.
func (r *Runner) probeUntilStable(ctx context.Context) ([]Probe, time.Duration, time.Duration, error) {
	start := time.Now()
	var last []Probe
	same := 0
	for {
		probes := MatrixProbes(r.Universe, r.modes())
		took, err := RunProbes(ctx, r.Prober, r.Universe, probes, r.Opts.Timeout)
		if err != nil {
			return nil, 0, 0, err
		}
		if last != nil && sameMatrix(last, probes) {
			same++
		} else {
			same = 1
		}
		last = probes
		if same >= r.Opts.StableRounds || time.Since(start) > r.Opts.ProgramTimeout {
			return last, time.Since(start) - took*time.Duration(same-1), took, nil
		}
	}
}

func sameMatrix(a, b []Probe) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Reachable != b[i].Reachable {
			return false
		}
	}
	return true
}

// observe reads the flows of probes made since start (ObserveProbes).
func (r *Runner) observe(ctx context.Context, probes []Probe, start time.Time) (map[cellKey]Observation, error) {
	return ObserveProbes(ctx, r.Prober, r.Flows, r.Universe.Namespaces, probes, start, r.Opts.FlowWait, r.Opts.Timeout)
}

// ObserveProbes reads the flows of probes (made since start, from pods of namespaces);
// connections whose flows stay inconclusive (no NEW event: the kernel reused the source port of an
// earlier connection still in conntrack) are probed once more with a new socket and observed again.
func ObserveProbes(ctx context.Context, prober Prober, src FlowSource, namespaces []string, probes []Probe, start time.Time, flowWait, timeout time.Duration) (map[cellKey]Observation, error) {
	// Flows of new connections arrive within a few hundred ms; a connection without NEW events
	// never becomes conclusive, so the first pass waits briefly and the reprobe gets the full wait.
	obs, err := Observe(ctx, src, namespaces, probes, start, min(flowWait, 2*time.Second))
	if err != nil {
		return nil, err
	}
	var idx []int
	for i, p := range probes {
		k := keyOf(p.Mode, p.From, p.To, oracle.PortProto{Port: p.Port, Protocol: p.Protocol})
		if ob, ok := obs[k]; !ok || ob.Verdict != verdictWord(p.Reachable) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return obs, nil
	}
	again := time.Now()
	if _, err := ReprobeAt(ctx, prober, probes, idx, timeout); err != nil {
		return nil, err
	}
	subset := make([]Probe, len(idx))
	for k, i := range idx {
		subset[k] = probes[i]
	}
	second, err := Observe(ctx, src, namespaces, subset, again, flowWait)
	if err != nil {
		return nil, err
	}
	for k, ob := range second {
		obs[k] = ob
	}
	return obs, nil
}
