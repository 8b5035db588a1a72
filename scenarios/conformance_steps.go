package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

// ReachabilityFlowWait is how long the reachability step waits for the flows of its probes.
const ReachabilityFlowWait = 5 * time.Second

// observerFlows reads flows from the lab's observer (conformance.FlowSource) over the Env's
// port-forward.
type observerFlows struct{ e *Env }

func (o observerFlows) Flows(ctx context.Context, q flow.Query, emit func(*flow.Flow) error) error {
	return o.e.withObserver(ctx, func(c *observer.Client) error { return c.Flows(ctx, q, emit) })
}

// CheckReachability checks every pod and Service of namespaces against the policies the cluster
// holds now (conformance.LiveCheck): the oracle's verdicts, real connections from inside the pods
// (pod IPs and Service ClusterIPs, every declared TCP and UDP port) and the observer's flows of
// exactly those connections. It returns the truth tables (wrong cells explained) and the result.
func (e *Env) CheckReachability(ctx context.Context, namespaces []string) (string, *conformance.LiveResult, error) {
	c := &conformance.LiveCheck{
		Client: e.Client, Namespaces: namespaces, Forward: conformance.PortForwarder(e.RESTConfig),
		Flows: observerFlows{e}, Timeout: ProbeTimeout, FlowWait: ReachabilityFlowWait,
	}
	res, err := c.Run(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("reachability of namespaces %v: %w", namespaces, err)
	}
	var b strings.Builder
	conformance.WriteLiveTables(&b, res)
	return b.String(), res, nil
}

// conformanceSteps are the steps of features/conformance.feature and the reachability step every
// feature may use, one value per scenario.
type conformanceSteps struct {
	w *World
	e *Env
	// u is the conformance universe once its pods run; state is what was applied last.
	u     *conformance.Universe
	state *conformance.State
	// run is the last `starlab conformance` run.
	run *conformanceRun
}

// conformanceRun is one `starlab conformance` process and what it wrote.
type conformanceRun struct {
	args     []string
	err      error
	stdout   string
	stderr   string
	dir      string
	report   conformance.Report
	junitIDs []string
}

func newConformanceSteps(w *World) *conformanceSteps {
	return &conformanceSteps{w: w, e: w.Env}
}

func (s *conformanceSteps) steps() []step {
	return []step{
		{`^the reachability matches the policies$`, s.reachabilityMatchesPolicies},
		{`^the conformance pods a, b and c run in namespaces x, y and z$`, s.podsRun},
		{`^I apply the generated conformance case "([^"]*)"$`, s.applyCase},
		{`^I run starlab conformance with the "([^"]*)" profile$`, s.runProfile},
		{`^every conformance case passed and the JUnit report lists each one$`, s.everyCasePassed},
	}
}

func (s *conformanceSteps) reachabilityMatchesPolicies(ctx context.Context) error {
	t := godog.T(ctx)
	require.NotEmpty(t, s.w.scope, "no namespaces to check: the feature's Given step sets them (World.SetScope)")
	report, res, err := s.e.CheckReachability(ctx, s.w.scope)
	require.NoError(t, err)
	godog.Logf(ctx, "%d connections checked against policies %v", res.Probes, res.Policies)
	if res.Wrong > 0 {
		if dir, derr := s.e.DumpState(ctx, "reachability "+strings.Join(s.w.scope, " "), map[string][]byte{"reachability.txt": []byte(report)}); derr == nil {
			report += "state dump: " + dir + "\n"
		}
	}
	assert.Zero(t, res.Wrong, "the reachability does not match the policies:\n%s", report)
	return nil
}

func (s *conformanceSteps) podsRun(ctx context.Context) error {
	t := godog.T(ctx)
	image, err := conformance.DiscoverDemoImage(ctx, s.e.Client)
	require.NoError(t, err)
	u := conformance.NewUniverse()
	require.NoError(t, conformance.EnsureWorkloads(ctx, s.e.Client, u, image, 3*time.Minute))
	// Start from the base state: no policies, base labels (an earlier run may have left some), and
	// go back to it afterwards. The pods stay for the next scenario; `starlab conformance` (the
	// feature's last scenario) deletes the namespaces when it is done.
	base := u.StateOf(conformance.Step{})
	require.NoError(t, s.applyState(ctx, u, nil, base))
	s.u, s.state = u, &base
	s.w.Cleanup(func(ctx context.Context) error { return s.applyState(ctx, u, s.state, base) })
	s.w.SetScope(u.Namespaces...)
	return nil
}

func (s *conformanceSteps) applyState(ctx context.Context, u *conformance.Universe, prev *conformance.State, next conformance.State) error {
	rv, changed, err := conformance.ApplyState(ctx, s.e.Client, u, prev, next)
	if err != nil || !changed {
		return err
	}
	_, err = s.e.WaitProgrammed(ctx, rv)
	return err
}

func (s *conformanceSteps) applyCase(ctx context.Context, name string) error {
	t := godog.T(ctx)
	require.NotNil(t, s.u, "run the conformance pods first")
	var c *conformance.Case
	for _, gc := range conformance.Generate(s.u) {
		if gc.Name == name {
			c = &gc
			break
		}
	}
	require.NotNil(t, c, "no generated case %q: see `starlab conformance --list`", name)
	for _, st := range c.Steps {
		next := s.u.StateOf(st)
		require.NoError(t, s.applyState(ctx, s.u, s.state, next), "case %s step %s", name, st.Name)
		s.state = &next
		godog.Logf(ctx, "applied %s step %q: policies %v", name, st.Name, next.PolicyNames())
	}
	return nil
}

func (s *conformanceSteps) runProfile(ctx context.Context, profile string) error {
	t := godog.T(ctx)
	bin, err := starlabBinary()
	require.NoError(t, err)
	dir := filepath.Join(s.e.ReportDir, "conformance", slug(profile+" "+time.Now().UTC().Format("150405")))
	r := &conformanceRun{dir: dir, args: []string{"--name", s.e.LabName, "conformance", "--profile", profile, "--report-dir", dir, "-o", "json"}}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, r.args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r.err = cmd.Run()
	r.stdout, r.stderr = stdout.String(), stderr.String()
	var exit *exec.ExitError
	require.True(t, r.err == nil || errors.As(r.err, &exit), "%s %s: %v\n%s", bin, strings.Join(r.args, " "), r.err, r.stderr)
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err, "starlab conformance wrote no report.json:\n%s", r.stderr)
	require.NoError(t, json.Unmarshal(data, &r.report), "report.json")
	junit, err := os.ReadFile(filepath.Join(dir, "junit.xml"))
	require.NoError(t, err, "starlab conformance wrote no junit.xml")
	r.junitIDs, err = junitCaseNames(junit)
	require.NoError(t, err)
	godog.Logf(ctx, "starlab conformance --profile %s: %d passed, %d failed in %s (reports in %s)", profile, r.report.Passed, r.report.Failed, r.report.Duration.Round(time.Second), dir)
	s.run = r
	return nil
}

// junitCaseNames lists the test case names of a JUnit XML report.
func junitCaseNames(data []byte) ([]string, error) {
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
		Cases []struct {
			Name string `xml:"name,attr"`
		} `xml:"testcase"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse junit.xml: %w", err)
	}
	var out []string
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			out = append(out, c.Name)
		}
	}
	for _, c := range doc.Cases {
		out = append(out, c.Name)
	}
	return out, nil
}

func (s *conformanceSteps) everyCasePassed(ctx context.Context) error {
	t := godog.T(ctx)
	r := s.run
	require.NotNil(t, r, "run starlab conformance first")
	truth, _ := os.ReadFile(filepath.Join(r.dir, "truth-tables.txt"))
	require.NoError(t, r.err, "starlab conformance failed:\n%s\n%s", r.stderr, truth)
	require.NotEmpty(t, r.report.Cases)
	assert.Equal(t, len(r.report.Cases), r.report.Passed, "%s", truth)
	var names []string
	for _, c := range r.report.Cases {
		names = append(names, c.Name)
	}
	assert.ElementsMatch(t, names, r.junitIDs, "junit.xml lists one test case per conformance case")
	return nil
}
