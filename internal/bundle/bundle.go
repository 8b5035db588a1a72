// Package bundle writes a bug-report bundle of a lab (like `cilium sysdump`, with flows): one tar.gz with
// the lab status, Kubernetes object dumps, starlab pod logs, every agent's status and recent flows, the
// observer's status and graph, per-node network state and journals, versions, and a MANIFEST.json that
// lists every file and every collection step that failed. A failing step never aborts the bundle.
//
//	res, err := bundle.Write(ctx, bundle.Options{Lab: "starlab", Since: 15 * time.Minute})
package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/progress"
)

// Defaults of Options.
const (
	DefaultSince        = 15 * time.Minute
	DefaultNamespace    = observer.DefaultNamespace
	DefaultLogTailLines = 20000
	DefaultStepTimeout  = 2 * time.Minute
)

// Options say which lab to collect and where to write the bundle.
type Options struct {
	Lab          string             // lab (kind cluster) name; required
	Kubeconfig   string             // "" = the lab's default kubeconfig ($HOME/.kube/starlab-<lab>.yaml)
	Output       string             // "" = ./starlab-bundle-<lab>-<UTC time>.tar.gz
	Since        time.Duration      // window of flows and node journals; 0 = DefaultSince
	Namespace    string             // namespace of the starlab agent and observer; "" = DefaultNamespace
	LogTailLines int64              // last lines of each pod log; 0 = DefaultLogTailLines
	StepTimeout  time.Duration      // bound of each collection step; 0 = DefaultStepTimeout
	Progress     *progress.Reporter // per-step progress lines; nil = silent
	Logger       *slog.Logger       // nil = slog.Default()
	// Redact replaces Secret data, and every value of a key in RedactKeys, before anything is
	// written (the values are learnt from the lab first; the bundle is not written when that fails).
	Redact     bool
	RedactKeys []string
	// Record is the failing test's record (a failing `starlab test` or `starlab conformance`);
	// Write completes its Inputs from the lab and writes it under repro/.
	Record *Record
}

// Result describes a written bundle.
type Result struct {
	Path              string        `json:"path"`
	Size              int64         `json:"size"`
	Files             int           `json:"files"` // files in the bundle besides MANIFEST.json
	Steps             int           `json:"steps"`
	Failures          []Failure     `json:"failures"`
	Repro             *ReproIndex   `json:"repro,omitempty"`
	Duration          time.Duration `json:"-"`
	DurationText      string        `json:"duration"`
	StarlabVersion    string        `json:"starlabVersion"`
	KubernetesVersion string        `json:"kubernetesVersion,omitempty"`
}

// Write collects the bundle of opts.Lab into one tar.gz. Collection steps that fail are recorded in
// MANIFEST.json (and Result.Failures) and the bundle goes on; Write returns an error only when the bundle
// itself cannot be written (bad options, absent lab, unwritable output) or ctx ended (the partial bundle
// is still written and returned with the error).
func Write(ctx context.Context, opts Options) (Result, error) {
	start := time.Now()
	if err := opts.defaults(start); err != nil {
		return Result{}, err
	}
	var labOpts []lab.Option
	if opts.Kubeconfig != "" {
		labOpts = append(labOpts, lab.WithKubeconfigPath(opts.Kubeconfig))
	}
	labOpts = append(labOpts, lab.WithLogger(opts.Logger))
	l, err := lab.Open(opts.Lab, labOpts...)
	if err != nil {
		return Result{}, fmt.Errorf("open lab %q for the bundle: %w", opts.Lab, err)
	}
	ex, err := l.Inspect(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("inspect lab %q for the bundle: %w", opts.Lab, err)
	}
	if ex.State == lab.StateAbsent {
		return Result{}, fmt.Errorf("lab %q does not exist: nothing to bundle (create it with `starlab up --name %s`, or pass the name of a running lab with --name)", opts.Lab, opts.Lab)
	}
	var red *Redactor
	if opts.Redact || len(opts.RedactKeys) > 0 {
		if red, err = learnRedactor(ctx, l, opts); err != nil {
			return Result{}, err
		}
	}
	a, err := CreateArchive(opts.Output, archiveRoot(opts.Output), start)
	if err != nil {
		return Result{}, err
	}
	a.SetRedactor(red)
	r := &run{opts: opts, lab: l, archive: a, version: StarlabVersion(), start: start, redact: red, existing: ex}
	r.collect(ctx)

	m := &Manifest{
		Lab: opts.Lab, CreatedAt: start.UTC(), Since: opts.Since.String(),
		StarlabVersion: r.version.String(), KubernetesVersion: r.kubeVersion,
		Steps: r.steps, Failures: r.failures, Repro: r.repro,
		Redacted: red != nil, RedactKeys: opts.RedactKeys,
	}
	m.Duration = time.Since(start).Round(time.Millisecond).String()
	size, err := a.Close(m)
	if err != nil {
		return Result{}, err
	}
	res := Result{
		Path: opts.Output, Size: size, Files: len(m.Files), Steps: len(m.Steps), Failures: m.Failures, Repro: m.Repro,
		Duration: time.Since(start), StarlabVersion: m.StarlabVersion, KubernetesVersion: m.KubernetesVersion,
	}
	res.DurationText = res.Duration.Round(time.Millisecond).String()
	if abs, err := filepath.Abs(res.Path); err == nil {
		res.Path = abs
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bundle of lab %q cut short (partial bundle at %s): %w", opts.Lab, res.Path, err)
	}
	return res, nil
}

func (o *Options) defaults(now time.Time) error {
	if o.Lab == "" {
		return errors.New("bundle: no lab name: set Options.Lab (the CLI's --name)")
	}
	if o.Since < 0 {
		return fmt.Errorf("bundle: since %s is negative: use a positive window such as 15m", o.Since)
	}
	if o.Since == 0 {
		o.Since = DefaultSince
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.LogTailLines <= 0 {
		o.LogTailLines = DefaultLogTailLines
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = DefaultStepTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Output == "" {
		o.Output = DefaultOutput(o.Lab, now)
	}
	if !strings.HasSuffix(o.Output, ".tar.gz") && !strings.HasSuffix(o.Output, ".tgz") {
		return fmt.Errorf("bundle output %q: the bundle is a gzipped tar, name it *.tar.gz or *.tgz", o.Output)
	}
	return nil
}

// DefaultOutput is the bundle file name used when Options.Output is empty.
func DefaultOutput(labName string, now time.Time) string {
	return fmt.Sprintf("starlab-bundle-%s-%s.tar.gz", labName, now.UTC().Format("20060102-150405"))
}

// archiveRoot is the directory every entry lives under: the output's base name without its extension.
func archiveRoot(output string) string {
	base := filepath.Base(output)
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".tar.gz"), ".tgz")
	if base == "" || base == "." || base == ".." {
		return "starlab-bundle"
	}
	return base
}

// run is one bundle collection in progress.
type run struct {
	opts     Options
	lab      *lab.Lab
	archive  *Archive
	version  Version
	start    time.Time
	redact   *Redactor    // nil: nothing redacted
	existing lab.Existing // what docker holds for the lab

	// set by the connect step; nil when the API server cannot be reached
	cfg *rest.Config
	cs  kubernetes.Interface
	dyn dynamic.Interface

	mu          sync.Mutex
	steps       []StepRecord
	failures    []Failure
	kubeVersion string
	repro       *ReproIndex
}

// collect runs every collection step in order.
func (r *run) collect(ctx context.Context) {
	r.step(ctx, "starlab and kubernetes versions", r.collectVersions)
	if r.opts.Record != nil {
		r.step(ctx, "repro: the failing test, its inputs, truth tables and flows", r.collectRecord)
	}
	r.step(ctx, "lab status", r.collectStatus)
	r.step(ctx, "kubernetes objects", r.collectObjects)
	r.step(ctx, "starlab pod logs", r.collectLogs)
	r.step(ctx, "agents: status, flows, metrics", r.collectAgents)
	r.step(ctx, "observer: status, graph, metrics, merged flows", r.collectObserver)
	r.step(ctx, "nodes: routes, addresses, iptables, bpffs, journals", r.collectNodes)
}

// stepCtx is what a collection step writes through; safe for concurrent use by the step's goroutines.
type stepCtx struct {
	r     *run
	name  string
	files atomic.Int32
	fails atomic.Int32
	ps    *progress.Step
}

// add writes a file; a write failure is recorded as a failure of the step.
func (s *stepCtx) add(name string, data []byte) {
	if err := s.r.archive.Add(s.name, name, data); err != nil {
		s.fail(name, err)
		return
	}
	s.files.Add(1)
}

// addJSON writes v as indented JSON.
func (s *stepCtx) addJSON(name string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		s.fail(name, fmt.Errorf("encode %s: %w", name, err))
		return
	}
	s.add(name, append(b, '\n'))
}

// fail records that item (or the whole step, item "") could not be collected.
func (s *stepCtx) fail(item string, err error) {
	s.fails.Add(1)
	s.r.mu.Lock()
	s.r.failures = append(s.r.failures, Failure{Step: s.name, Item: item, Error: err.Error()})
	s.r.mu.Unlock()
	if item != "" {
		s.ps.Logf("failed: %s: %v", item, err)
	}
	s.r.opts.Logger.Debug("bundle step failed", "step", s.name, "item", item, "err", err)
}

// step runs fn under the step timeout, records its outcome and prints its progress.
func (r *run) step(ctx context.Context, name string, fn func(context.Context, *stepCtx) error) {
	start := time.Now()
	s := &stepCtx{r: r, name: name, ps: r.opts.Progress.Start(name)}
	if err := ctx.Err(); err != nil {
		s.fail("", fmt.Errorf("not run: %w", err))
	} else {
		sctx, cancel := context.WithTimeout(ctx, r.opts.StepTimeout)
		err := fn(sctx, s)
		if err == nil && sctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("step timed out after %s", r.opts.StepTimeout)
		}
		cancel()
		if err != nil {
			s.fail("", err)
		}
	}
	files, fails := int(s.files.Load()), int(s.fails.Load())
	rec := StepRecord{Name: name, Duration: time.Since(start).Round(time.Millisecond).String(), Files: files, Failures: fails}
	r.mu.Lock()
	r.steps = append(r.steps, rec)
	r.mu.Unlock()
	if fails > 0 {
		_ = s.ps.Fail(fmt.Errorf("%d file(s) written, %d failure(s) recorded in %s", files, fails, ManifestName))
		return
	}
	s.ps.Logf("%d file(s)", files)
	s.ps.Done()
}

// started is when the bundle began.
func (r *run) started() time.Time { return r.start }

// clients returns the Kubernetes client, or why there is none (the versions step could not connect).
func (r *run) clients() (kubernetes.Interface, error) {
	if r.cs == nil {
		return nil, fmt.Errorf("no Kubernetes client for lab %q (see the failure of the first step)", r.opts.Lab)
	}
	return r.cs, nil
}
