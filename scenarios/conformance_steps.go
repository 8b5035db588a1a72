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
	"regexp"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/starlab-dev/starlab/internal/agent"
	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/helmrelease"
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
	np, err := npclient.NewForConfig(e.RESTConfig)
	if err != nil {
		return "", nil, fmt.Errorf("clusternetworkpolicy client: %w", err)
	}
	c := &conformance.LiveCheck{
		Client: e.Client, PolicyClient: np, Namespaces: namespaces, Forward: conformance.PortForwarder(e.RESTConfig),
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
	// skipNode is the node whose agent was told to skip enforcement.
	skipNode string
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
		{`^the agent on the node of pod "([^"]*)" skips enforcement$`, s.agentSkipsEnforcement},
		{`^I run starlab conformance with the "([^"]*)" profile, keeping the pods$`, s.runProfileKeep},
		{`^starlab conformance failed, naming every wrong cell, each decided on that node$`, s.failedOnThatNode},
		{`^its failure names the failure bundle of its first failed case, with that case's wrong cells, objects and flows$`, s.failureNamesBundle},
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
		report += s.w.writeFailureBundle(ctx, failingStep{cells: conformance.TruthCells(res.Cells), tables: report})
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
	np, err := npclient.NewForConfig(s.e.RESTConfig)
	if err != nil {
		return fmt.Errorf("clusternetworkpolicy client: %w", err)
	}
	rv, changed, err := conformance.ApplyState(ctx, s.e.Client, np, u, prev, next)
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
	return s.runConformance(ctx, profile)
}

func (s *conformanceSteps) runProfileKeep(ctx context.Context, profile string) error {
	return s.runConformance(ctx, profile, "--keep")
}

func (s *conformanceSteps) runConformance(ctx context.Context, profile string, extra ...string) error {
	t := godog.T(ctx)
	bin, err := starlabBinary()
	require.NoError(t, err)
	dir := filepath.Join(s.e.ReportDir, "conformance", slug(profile+" "+time.Now().UTC().Format("150405")))
	args := append([]string{"--name", s.e.LabName, "conformance", "--profile", profile, "--report-dir", dir, "-o", "json"}, extra...)
	r := &conformanceRun{dir: dir, args: args}
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

// agentSkipsEnforcement turns on the agent's test-only switch on the node of pod ref (a file in
// its state directory, agent.TestSkipEnforcementFile) and waits until the agent says it
// recompiled without enforcement; the scenario's cleanup turns it off the same way.
func (s *conformanceSteps) agentSkipsEnforcement(ctx context.Context, ref string) error {
	t := godog.T(ctx)
	ns, name, _ := strings.Cut(ref, "/")
	pod, err := s.e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	node := pod.Spec.NodeName
	cfg := agent.DefaultConfig() // the chart keeps the default state directory
	path := cfg.TestSkipEnforcementPath()
	s.w.Cleanup(func(ctx context.Context) error {
		since := time.Now()
		if _, err := nodeExec(ctx, node, "rm -f "+path); err != nil {
			return err
		}
		return s.e.waitAgentLog(ctx, node, since, "skip_enforcement=false")
	})
	since := time.Now()
	_, err = nodeExec(ctx, node, "touch "+path)
	require.NoError(t, err)
	require.NoError(t, s.e.waitAgentLog(ctx, node, since, "skip_enforcement=true"))
	s.skipNode = node
	godog.Logf(ctx, "the agent on %s enforces nothing now (%s)", node, path)
	return nil
}

// waitAgentLog waits until the agent pod on node logs a line containing want after since.
func (e *Env) waitAgentLog(ctx context.Context, node string, since time.Time, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		pods, err := e.Client.CoreV1().Pods(helmrelease.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector,
			FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
		if err == nil && len(pods.Items) == 1 {
			st := metav1.NewTime(since.Add(-time.Second))
			b, lerr := e.Client.CoreV1().Pods(helmrelease.DefaultNamespace).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{SinceTime: &st}).DoRaw(ctx)
			if lerr == nil && strings.Contains(string(b), want) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the agent on %s did not log %q: %w", node, want, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// failedOnThatNode: the run failed, every wrong cell is a connection the oracle denies on the
// side of a pod on the node that enforces nothing (the probe got through, or the flows show the
// drop on the other side), and the truth tables name each one.
func (s *conformanceSteps) failedOnThatNode(ctx context.Context) error {
	t := godog.T(ctx)
	r := s.run
	require.NotNil(t, r, "run starlab conformance first")
	require.NotEmpty(t, s.skipNode, "turn the skip-enforcement switch on first")
	require.Error(t, r.err, "starlab conformance must fail when a node enforces nothing")
	assert.Positive(t, r.report.Failed)
	truth, err := os.ReadFile(filepath.Join(r.dir, "truth-tables.txt"))
	require.NoError(t, err)
	onNode := map[string]bool{}
	pods, err := s.e.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", s.skipNode).String()})
	require.NoError(t, err)
	for _, p := range pods.Items {
		onNode[p.Namespace+"/"+p.Name] = true
	}
	wrong, probed := 0, 0
	for _, c := range r.report.Cases {
		for _, st := range c.Steps {
			for _, cell := range st.Cells {
				if !cell.Wrong {
					continue
				}
				wrong++
				id := fmt.Sprintf("%s %s -> %s %s/%d", cell.Mode, cell.From, cell.To, cell.Protocol, cell.Port)
				require.NotEmpty(t, cell.Why, id)
				assert.False(t, cell.Expected, "%s: only denials can go wrong when enforcement is off: %v", id, cell.Why)
				if strings.HasPrefix(cell.Why[0], "probe: ") {
					probed++
				}
				decider := cell.To
				if strings.Contains(cell.Reason, "denied on egress") {
					decider = cell.From
				}
				assert.True(t, onNode[decider], "%s is denied by %s, which is not on %s: %s", id, decider, s.skipNode, cell.Reason)
				assert.Contains(t, string(truth), "WRONG "+id+":", "the truth tables name every wrong cell")
			}
		}
	}
	assert.Positive(t, probed, "connections the policies deny got through")
	godog.Logf(ctx, "%d cases failed with %d wrong cells (%d got through), each denied on %s", r.report.Failed, wrong, probed, s.skipNode)
	return nil
}

// conformanceBundleRE is how a failing `starlab conformance` names its failure bundle.
var conformanceBundleRE = regexp.MustCompile("failure bundle of case (\\S+): (\\S+\\.tar\\.gz)")

// failureNamesBundle: the failed run wrote a failure bundle by itself, in its report directory,
// and named it in its error; the bundle holds the first failed case, its first failing step with
// the same wrong cells as the report, the objects applied and the step's flows.
func (s *conformanceSteps) failureNamesBundle(ctx context.Context) error {
	t := godog.T(ctx)
	r := s.run
	require.NotNil(t, r, "run starlab conformance first")
	require.Error(t, r.err, "the run must have failed")
	m := conformanceBundleRE.FindStringSubmatch(r.stderr)
	require.NotNil(t, m, "the failure names its bundle:\n%s", tail(r.stderr, 20))
	caseName, path := m[1], m[2]
	assert.Equal(t, r.dir, filepath.Dir(path), "the bundle is in the run's report directory")
	var first *conformance.CaseResult
	for i := range r.report.Cases {
		if !r.report.Cases[i].Passed {
			first = &r.report.Cases[i]
			break
		}
	}
	require.NotNil(t, first)
	assert.Equal(t, first.Name, caseName, "the bundle is the first failed case's")

	b, err := bundle.Open(path)
	require.NoError(t, err)
	rec, err := b.Record()
	require.NoError(t, err)
	assert.Equal(t, bundle.RecordConformance, rec.Kind)
	require.NotNil(t, rec.Case)
	assert.Equal(t, first.Name, rec.Case.Name)
	assert.NotEmpty(t, rec.Inputs.KubernetesVersion)
	assert.NotEmpty(t, rec.Inputs.NodeImageKey)
	assert.NotEmpty(t, rec.Inputs.ChartValues)
	var want []string
	for _, st := range first.Steps {
		if st.Name != rec.Step.Text {
			continue
		}
		for _, c := range conformance.TruthCells(st.Cells) {
			if c.Wrong {
				want = append(want, c.String())
			}
		}
	}
	require.NotEmpty(t, want, "step %q of case %s has wrong cells in report.json", rec.Step.Text, first.Name)
	assert.ElementsMatch(t, want, rec.Failure(), "the bundle's wrong cells are the report's")
	assert.NotEmpty(t, rec.Objects, "the objects of the case's states")
	assert.NotEmpty(t, rec.Flows, "the failing step's flows")
	assert.Contains(t, rec.Tables, first.Name)
	godog.Logf(ctx, "failure bundle %s: case %s, step %q, %d wrong cells, %d objects, %d flows", path, rec.Case.Name, rec.Step.Text, len(want), len(rec.Objects), len(rec.Flows))
	return nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
