package scenarios

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cucumber/godog"
)

// scenarioSteps lists every area's steps, bound to a fresh steps value per area for the scenario of
// w. Add one line per scenarios/<area>_steps.go.
func scenarioSteps(w *World) []step {
	return slices.Concat(
		newStarsSteps(w).steps(),
		newShopSteps(w).steps(),
		newServicesSteps(w).steps(),
		newObserverSteps(w).steps(),
		newConformanceSteps(w).steps(),
		newHardeningSteps(w).steps(),
		newAdminSteps(w).steps(),
	)
}

// step is one step definition: its Gherkin expression and the function (usually a method of the
// area's steps type) that runs it.
type step struct {
	expr string
	fn   any
}

// registerSteps registers steps in sc.
func registerSteps(sc *godog.ScenarioContext, steps []step) {
	for _, s := range steps {
		sc.Step(s.expr, s.fn)
	}
}

// InitializeScenario returns the godog scenario initializer for env: a fresh World and steps values
// per scenario, every area's steps, and the per-scenario cleanups.
func InitializeScenario(env *Env) func(*godog.ScenarioContext) {
	return func(sc *godog.ScenarioContext) {
		w := newWorld(env)
		sc.After(func(ctx context.Context, s *godog.Scenario, err error) (context.Context, error) {
			if cerr := w.runCleanups(ctx); cerr != nil {
				return ctx, fmt.Errorf("cleanup after scenario %q: %w", s.Name, cerr)
			}
			return ctx, nil
		})
		scenarioHooks(sc, w)
		registerSteps(sc, scenarioSteps(w))
	}
}

// SuiteOptions selects what RunSuite runs and where it reports.
type SuiteOptions struct {
	// Paths are feature files or directories (read from FS when FS is set).
	Paths []string
	// FS, when set, is where Paths are read from (e.g. the embedded features).
	FS fs.FS
	// Tags is a godog tag expression (e.g. "@stars && ~@slow").
	Tags string
	// JUnitFile and CucumberFile default to <Env.ReportDir>/junit.xml and cucumber.json.
	JUnitFile, CucumberFile string
	// Output receives the pretty progress (default os.Stdout).
	Output io.Writer
	// TestingT runs scenarios as subtests of t (go test); nil runs them in-process (starlab test).
	TestingT *testing.T
	// StopOnFailure stops at the first failing scenario.
	StopOnFailure bool
}

// RunSuite runs the features against env and returns godog's exit status (0 = all passed).
func RunSuite(ctx context.Context, env *Env, opts SuiteOptions) (int, error) {
	if len(opts.Paths) == 0 {
		return 1, fmt.Errorf("no feature paths given: pass feature files or a directory such as features/")
	}
	if err := os.MkdirAll(env.ReportDir, 0o755); err != nil {
		return 1, fmt.Errorf("create report dir %s: %w", env.ReportDir, err)
	}
	junit := opts.JUnitFile
	if junit == "" {
		junit = filepath.Join(env.ReportDir, "junit.xml")
	}
	cucumber := opts.CucumberFile
	if cucumber == "" {
		cucumber = filepath.Join(env.ReportDir, "cucumber.json")
	}
	for _, f := range []string{junit, cucumber} {
		if strings.Contains(f, ",") {
			return 1, fmt.Errorf("report file %q contains a comma, which godog's format list cannot carry: choose another path", f)
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return 1, fmt.Errorf("create directory for %s: %w", f, err)
		}
	}
	env.featureFS = opts.FS
	out := opts.Output
	if out == nil {
		out = os.Stdout
	}
	out, restore, err := suiteOutput(out, opts.TestingT == nil)
	if err != nil {
		return 1, err
	}
	defer restore()
	suite := godog.TestSuite{
		Name:                "starlab",
		ScenarioInitializer: InitializeScenario(env),
		Options: &godog.Options{
			TestingT:       opts.TestingT,
			Strict:         true,
			Paths:          opts.Paths,
			FS:             opts.FS,
			Tags:           opts.Tags,
			StopOnFailure:  opts.StopOnFailure,
			Output:         out,
			DefaultContext: ctx,
			Format:         "pretty,junit:" + junit + ",cucumber:" + cucumber,
		},
	}
	status := suite.Run()
	env.Log.Info("scenario reports written", "junit", junit, "cucumber", cucumber, "bundle", env.ReportDir)
	return status, nil
}

// suiteOutput returns the writer the suite prints to, outside go test also os.Stdout until restore:
// there godog prints what a step logs through godog.T(ctx) or godog.Logf, failed assertions among them,
// with fmt.Printf (godog's testingt.go). `starlab repro -o json` owns its stdout for the JSON answer,
// and those lines belong with the rest of the scenario's report, in order. A writer that is not a file
// gets one pipe that godog's formatter and fmt.Printf share, copied to it by one goroutine.
func suiteOutput(out io.Writer, outsideGoTest bool) (suiteOut io.Writer, restore func(), err error) {
	if !outsideGoTest || out == io.Writer(os.Stdout) {
		return out, func() {}, nil
	}
	saved := os.Stdout
	if f, ok := out.(*os.File); ok {
		os.Stdout = f
		return f, func() { os.Stdout = saved }, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("pipe for the suite's output: %w", err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r)
		_ = r.Close()
	}()
	os.Stdout = w
	return w, func() {
		os.Stdout = saved
		_ = w.Close()
		<-copied
	}, nil
}
