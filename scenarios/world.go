package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/cucumber/godog"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/starlab-dev/starlab/internal/kubeclient"
	"github.com/starlab-dev/starlab/internal/lab"
)

// Env is the lab a whole run of scenarios shares: clients, where the report bundle goes, and the
// helpers (Apply, Delete, WaitProgrammed, Probe, Observe). It is safe for use by one scenario at a time.
type Env struct {
	// LabName is the kind cluster name of the lab.
	LabName string
	// Kubeconfig is the path of a kubeconfig file for the lab.
	Kubeconfig string
	// RESTConfig and Client talk to the lab's API server.
	RESTConfig *rest.Config
	Client     kubernetes.Interface
	// ReportDir is where the report bundle is written (junit, cucumber json, flows, object dumps).
	ReportDir string
	// Log receives progress lines.
	Log *slog.Logger

	fwd              forwards
	applyMu          sync.Mutex
	apply            *lab.Applier
	latMu            sync.Mutex
	programLatencies []time.Duration

	// BundleFailures makes a step that finds wrong cells write a failure bundle (default true).
	BundleFailures bool
	applied        appliedLog
	featureFS      fs.FS // where the suite read its features (nil: disk)
	bundlesMu      sync.Mutex
	bundles        []string
}

// NewEnv connects to the lab whose kubeconfig is at kubeconfig and writes reports under reportDir.
func NewEnv(labName, kubeconfig, reportDir string, log *slog.Logger) (*Env, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", kubeconfig, err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Env{LabName: labName, Kubeconfig: kubeconfig, RESTConfig: cfg, Client: client, ReportDir: reportDir, Log: log, BundleFailures: true}, nil
}

// World is one scenario: the shared Env and the cleanups to run after it. What a scenario's steps
// remember between steps lives in the area's steps type (servicesSteps, observerSteps, ...), made
// fresh for each scenario.
type World struct {
	Env      *Env
	cleanups []func(context.Context) error
	// scope are the namespaces whose pods and Services "the reachability matches the policies"
	// checks (set by the feature's Given step).
	scope []string
	// scenario, step and stepStart are the running scenario and step (a failure bundle names them);
	// stepBundled is set once the running step wrote its failure bundle.
	scenario    *godog.Scenario
	step        *godog.Step
	stepStart   time.Time
	stepBundled bool
}

// SetScope sets the namespaces the reachability step checks.
func (w *World) SetScope(namespaces ...string) { w.scope = namespaces }

func newWorld(env *Env) *World {
	return &World{Env: env}
}

// Cleanup registers fn to run after the scenario, last registered first.
func (w *World) Cleanup(fn func(context.Context) error) {
	w.cleanups = append(w.cleanups, fn)
}

func (w *World) runCleanups(ctx context.Context) error {
	var errs []error
	for i := len(w.cleanups) - 1; i >= 0; i-- {
		if err := w.cleanups[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	w.cleanups = nil
	return errors.Join(errs...)
}

// restConfig loads the lab's kubeconfig (never the in-cluster config) with a client rate for a test run.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return nil, fmt.Errorf("no kubeconfig given: set STARLAB_KUBECONFIG or let the suite create a lab")
	}
	cfg, err := kubeclient.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// RecordProgramLatency records one policy-applied -> programmed-everywhere latency (from the API
// server accepting the object to WaitProgrammed returning).
func (e *Env) RecordProgramLatency(d time.Duration) {
	e.latMu.Lock()
	defer e.latMu.Unlock()
	e.programLatencies = append(e.programLatencies, d)
}

// ProgramLatencies returns the latencies recorded so far.
func (e *Env) ProgramLatencies() []time.Duration {
	e.latMu.Lock()
	defer e.latMu.Unlock()
	return append([]time.Duration(nil), e.programLatencies...)
}
