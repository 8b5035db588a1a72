package scenarios

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/manifests"
)

func starsWorkloads() []Workload {
	return []Workload{
		{Name: "management-ui", Ref: PodRef{"management-ui", "role=management-ui"}, Target: "management-ui.management-ui:9001"},
		{Name: "client", ID: "C", Ref: PodRef{"client", "role=client"}, Target: "client.client:9000", Peers: []string{"frontend", "backend"}},
		{Name: "frontend", ID: "F", Ref: PodRef{"stars", "role=frontend"}, Target: "frontend.stars:80", Peers: []string{"frontend", "backend", "client"}},
		{Name: "backend", ID: "B", Ref: PodRef{"stars", "role=backend"}, Target: "backend.stars:6379", Peers: []string{"frontend", "backend", "client"}},
	}
}

func lookupStarsWorkload(name string) (Workload, error) {
	return findWorkload("stars", starsWorkloads(), name)
}

// starsNamespaces are the namespaces of the stars demo.
func starsNamespaces() []string { return []string{"stars", "client", "management-ui"} }

// starsSteps are the steps of features/stars.feature, one value per scenario.
type starsSteps struct {
	w *World
	e *Env
	// expected is the last reachability matrix asserted (the UI step draws it).
	expected *Matrix
}

// newStarsSteps returns the steps of features/stars.feature for the scenario of w.
func newStarsSteps(w *World) *starsSteps {
	return &starsSteps{w: w, e: w.Env}
}

// steps lists the steps of features/stars.feature and their methods.
func (s *starsSteps) steps() []step {
	return []step{
		{`^the stars demo is running without policies$`, s.demoRunningWithoutPolicies},
		{`^I apply the stars policy "([^"]*)"$`, s.applyPolicy},
		{`^I delete the stars policies$`, s.deletePolicies},
		{`^the stars reachability is:$`, s.reachabilityIs},
		{`^"([^"]*)" (can|cannot) reach the "([^"]*)" pod on TCP (\d+)$`, s.podPortReachability},
		{`^the management UI draws the stars reachability$`, s.uiDrawsReachability},
	}
}

func (s *starsSteps) demoRunningWithoutPolicies(ctx context.Context) error {
	t := godog.T(ctx)
	require.NoError(t, s.e.WaitDeploymentsAvailable(ctx, 3*time.Minute, starsNamespaces()...),
		"the stars demo is deployed by `starlab up` (manifests/stars)")
	require.NoError(t, s.e.deleteStarsPolicies(ctx))
	s.w.Cleanup(s.e.deleteStarsPolicies)
	s.w.SetScope(starsNamespaces()...)
	return nil
}

func (s *starsSteps) applyPolicy(ctx context.Context, name string) error {
	t := godog.T(ctx)
	file, err := starsPolicyFile(name)
	require.NoError(t, err)
	rv, waited, err := s.e.applyPolicyFile(ctx, file)
	require.NoError(t, err, "stars policy %s", name)
	godog.Logf(ctx, "policy %s (resourceVersion %d) programmed on every node %s after apply", name, rv, waited.Round(time.Millisecond))
	return nil
}

func (s *starsSteps) deletePolicies(ctx context.Context) error {
	require.NoError(godog.T(ctx), s.e.deleteStarsPolicies(ctx))
	return nil
}

func (s *starsSteps) reachabilityIs(ctx context.Context, table *godog.Table) error {
	t := godog.T(ctx)
	expected, err := MatrixFromTable(table)
	require.NoError(t, err)
	for _, n := range append(slices.Clone(expected.Rows), expected.Cols...) {
		_, err := lookupStarsWorkload(n)
		require.NoError(t, err)
	}
	s.expected = expected
	res, err := s.e.CheckMatrix(ctx, expected, lookupStarsWorkload)
	require.NoError(t, err)
	assert.True(t, res.OK, s.w.matrixReport(ctx, res))
	return nil
}

func (s *starsSteps) podPortReachability(ctx context.Context, from, verb, to string, port int) error {
	t := godog.T(ctx)
	report, ok, err := s.e.checkPodPort(ctx, from, to, port, verb == "can")
	require.NoError(t, err)
	assert.True(t, ok, report)
	return nil
}

func (s *starsSteps) uiDrawsReachability(ctx context.Context) error {
	t := godog.T(ctx)
	require.NotNil(t, s.expected, "assert a stars reachability table before checking the UI")
	want := expectedUIGraph(s.expected)
	got, err := s.e.waitUIGraph(ctx, want, 45*time.Second)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	return nil
}

func starsPolicyFile(name string) (string, error) {
	if f, ok := policyStepFile(manifests.StarsPolicySteps(), name); ok {
		return f, nil
	}
	return "", fmt.Errorf("unknown stars policy %q: use default-deny, allow-ui, backend-policy or frontend-policy", name)
}

// deleteStarsPolicies deletes every stars policy step and waits until the deletions are programmed.
func (e *Env) deleteStarsPolicies(ctx context.Context) error {
	return e.deletePolicyFiles(ctx, manifests.StarsPolicySteps())
}

// expectedUIGraph is what the management UI should draw for matrix m: a star is present when the UI
// can reach it; an edge X->Y when X probes Y itself and the matrix says X reaches Y.
func expectedUIGraph(m *Matrix) UIGraph {
	g := UIGraph{Present: map[string]bool{}}
	for _, w := range starsWorkloads() {
		if w.ID == "" {
			continue
		}
		present := m.Get("management-ui", w.Name) == Yes
		g.Present[w.ID] = present
		if !present {
			continue
		}
		for _, p := range w.Peers {
			peer, _ := lookupStarsWorkload(p)
			if peer.ID != w.ID && m.Get(w.Name, p) == Yes {
				g.Edges = append(g.Edges, w.ID+"->"+peer.ID)
			}
		}
	}
	slices.Sort(g.Edges)
	return g
}

// UIGraph is the part of the management UI's drawing the scenarios compare.
type UIGraph struct {
	Present map[string]bool
	Edges   []string // "C->F", sorted
}

func uiGraphFromDemo(g demo.Graph) UIGraph {
	out := UIGraph{Present: map[string]bool{}}
	for _, n := range g.Nodes {
		out.Present[n.ID] = n.Present
	}
	for _, e := range g.Edges {
		out.Edges = append(out.Edges, e.From+"->"+e.To)
	}
	slices.Sort(out.Edges)
	return out
}

// checkPodPort probes the pod of to directly on port (no Service) from the pod of from and checks the
// connection's flows like CheckMatrix does for one cell.
func (e *Env) checkPodPort(ctx context.Context, from, to string, port int, want bool) (string, bool, error) {
	fw, err := lookupStarsWorkload(from)
	if err != nil {
		return "", false, err
	}
	tw, err := lookupStarsWorkload(to)
	if err != nil {
		return "", false, err
	}
	src, err := e.Pod(ctx, fw.Ref)
	if err != nil {
		return "", false, err
	}
	dst, err := e.Pod(ctx, tw.Ref)
	if err != nil {
		return "", false, err
	}
	c := Connection{From: from, To: to, Expected: map[bool]Cell{true: Yes, false: No}[want], SrcIP: src.Status.PodIP, DstPod: dst.Namespace + "/" + dst.Name}
	nps, err := e.Client.NetworkingV1().NetworkPolicies(dst.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", false, fmt.Errorf("list NetworkPolicies in %s: %w", dst.Namespace, err)
	}
	for _, np := range nps.Items {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err == nil && sel.Matches(labels.Set(dst.Labels)) {
			c.DeniedBy = append(c.DeniedBy, np.Namespace+"/"+np.Name)
		}
	}
	start := time.Now()
	target := net.JoinHostPort(dst.Status.PodIP, strconv.Itoa(port))
	if c.Result, err = e.Probe(ctx, fw.Ref, target, "tcp"); err != nil {
		return "", false, err
	}
	cells, problems, flows, err := e.FlowVerdicts(ctx, []Connection{c}, start, 20*time.Second)
	if err != nil {
		return "", false, err
	}
	if err := e.AppendFlows(flows); err != nil {
		return "", false, err
	}
	ok := c.Result.Reachable == want && cells[0] == c.Expected && len(problems[0]) == 0
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s (%s) on TCP %d: expected %s; connection reachable=%v %s; flows say %s\n",
		from, to, target, port, c.Expected, c.Result.Reachable, c.Result.Error, cells[0])
	for _, p := range problems[0] {
		b.WriteString("  flows: " + p + "\n")
	}
	for _, f := range c.flowsOf(flows) {
		b.WriteString("  " + FormatFlow(f) + "\n")
	}
	return b.String(), ok, nil
}
