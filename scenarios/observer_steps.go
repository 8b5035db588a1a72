package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

// obsNamespace holds the observer feature's workloads.
const obsNamespace = "obs-e2e"

// obsConn is a connection a step made, remembered for the steps that check its flows.
type obsConn struct {
	app     string
	start   time.Time
	done    time.Time
	srcPort uint16
	flows   []*flow.Flow // the flows found for it
}

// filter selects the connection's flows.
func (c *obsConn) filter() flow.Filter {
	f := flow.Filter{SourcePod: []string{obsNamespace + "/" + c.app}}
	if c.srcPort != 0 {
		f.SourcePort = []uint16{c.srcPort}
	}
	return f
}

// observerSteps are the steps of features/observer.feature, one value per scenario.
type observerSteps struct {
	w *World
	e *Env
	// metrics0 and t0 are the observer metrics remembered by a step, and when.
	metrics0 map[string]float64
	t0       time.Time
	// conns are the connections made, by client app.
	conns map[string]*obsConn
}

// newObserverSteps returns the steps of features/observer.feature for the scenario of w.
func newObserverSteps(w *World) *observerSteps {
	return &observerSteps{w: w, e: w.Env, conns: map[string]*obsConn{}}
}

// steps lists the steps of features/observer.feature and their methods.
func (s *observerSteps) steps() []step {
	return []step{
		{`^the observer test workloads are running$`, s.workloadsRunning},
		{`^I remember the observer metrics$`, s.rememberMetrics},
		{`^"([^"]*)" connects to "([^"]*)"$`, s.connects},
		{`^"([^"]*)" fails to connect to "([^"]*)"$`, s.failsToConnect},
		{`^within 1 second the observer has the connection from "([^"]*)" as (FORWARDED|DROPPED)(?: ([A-Z_]+))? (INGRESS|EGRESS) (allowed|denied) by "([^"]*)"$`, s.observerHasConnectionWithin1s},
		{"^`starlab observe -o json` returns the flows of the connection from \"([^\"]*)\"$", s.starlabObserveReturnsConnection},
		{`^the observer graph has a (forwarded|dropped) edge from "([^"]*)" to "([^"]*)"(?: decided by "([^"]*)")?$`, s.graphHasEdge},
		{`^the observer metrics grew by the observed flows on the server's node$`, s.metricsGrewOnServerNode},
		{`^the observer UI in headless Chromium draws "([^"]*)" and a dropped edge from "([^"]*)"$`, s.uiDrawsDroppedEdge},
	}
}

func (s *observerSteps) workloadsRunning(ctx context.Context) error {
	t := godog.T(ctx)
	rv, err := s.e.applyWorkloads(ctx, "observer.yaml")
	require.NoError(t, err)
	require.NoError(t, s.e.WaitDeploymentsAvailable(ctx, 3*time.Minute, obsNamespace))
	// The pods' labels and the policy are programmed on every node, and the observer streams from
	// every node, before any traffic.
	_, err = s.e.WaitProgrammed(ctx, rv)
	require.NoError(t, err)
	return nil
}

func (s *observerSteps) rememberMetrics(ctx context.Context) error {
	m, err := s.e.ObserverMetrics(ctx)
	require.NoError(godog.T(ctx), err)
	s.metrics0, s.t0 = m, time.Now()
	return nil
}

func (s *observerSteps) connects(ctx context.Context, app, target string) error {
	return s.connect(ctx, app, target, true)
}

func (s *observerSteps) failsToConnect(ctx context.Context, app, target string) error {
	return s.connect(ctx, app, target, false)
}

// connect makes one connection from app to target, checks it is reachable as wanted, and remembers it.
func (s *observerSteps) connect(ctx context.Context, app, target string, wantReachable bool) error {
	t := godog.T(ctx)
	start := time.Now()
	res, err := s.e.Probe(ctx, PodRef{Namespace: obsNamespace, Selector: "app=" + app}, target, "tcp")
	require.NoError(t, err)
	done := time.Now()
	require.Equal(t, wantReachable, res.Reachable, "probe %s -> %s: %s", app, target, res.Error)
	c := &obsConn{app: app, start: start, done: done}
	// The source port identifies the connection's flows; a probe image that does not report it for a
	// failed connection leaves the pod and the time window to do that (the pod dials nothing else).
	if _, port, err := net.SplitHostPort(res.LocalAddr); err == nil {
		p, err := strconv.ParseUint(port, 10, 16)
		require.NoError(t, err, "probe source address %q", res.LocalAddr)
		c.srcPort = uint16(p)
	}
	s.conns[app] = c
	return nil
}

func (s *observerSteps) observerHasConnectionWithin1s(ctx context.Context, app, verdict, reason, dir, decision, policy string) error {
	t := godog.T(ctx)
	c := s.conns[app]
	require.NotNil(t, c, "no connection from %q was made in this scenario", app)
	ns, name, _ := strings.Cut(policy, "/")
	want := flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: ns, Name: name}
	q := flow.Query{Since: c.start.Add(-500 * time.Millisecond), Allow: []flow.Filter{c.filter()}}
	match := func(f *flow.Flow) bool {
		if string(f.Verdict) != verdict || string(f.TrafficDirection) != dir || f.IsReply {
			return false
		}
		if reason != "" && f.DropReasonDesc != reason {
			return false
		}
		if f.Destination.Namespace != obsNamespace || !strings.HasPrefix(f.Destination.PodName, "server-") {
			return false
		}
		by := f.AllowedBy
		if decision == "denied" {
			by = f.DeniedBy
		}
		for _, p := range by {
			if want.SamePolicy(p) { // its tier, rule and action are not this step's to check
				return true
			}
		}
		return false
	}
	var got []*flow.Flow
	var found *flow.Flow
	var checkedAt time.Time
	for {
		checkedAt = time.Now()
		fl, err := s.e.Observe(ctx, q)
		require.NoError(t, err)
		got = fl
		for _, f := range fl {
			if match(f) {
				found = f
				break
			}
		}
		if found != nil || checkedAt.Sub(c.done) > time.Second {
			break
		}
		if time.Since(c.done) > time.Second {
			break // the next check would start too late
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = s.e.AppendFlows(got)
	var seen []string
	for _, f := range got {
		seen = append(seen, FormatFlow(f))
	}
	require.LessOrEqual(t, checkedAt.Sub(c.done), time.Second,
		"the first check for the connection from %s started %s after it: put this step right after the connection", app, checkedAt.Sub(c.done))
	require.NotNil(t, found, "no %s %s %s flow from %s (source port %d) to obs-e2e/server %s by %s within 1 s of the connection; the observer has:\n%s",
		verdict, reason, dir, app, c.srcPort, decision, policy, strings.Join(seen, "\n"))
	s.e.Log.Info("flow observed", "from", app, "verdict", verdict,
		"query_started_after_connection", checkedAt.Sub(c.done).Round(time.Millisecond),
		"answered_after_connection", time.Since(c.done).Round(time.Millisecond))
	c.flows = got
	return nil
}

func (s *observerSteps) starlabObserveReturnsConnection(ctx context.Context, app string) error {
	t := godog.T(ctx)
	c := s.conns[app]
	require.NotNil(t, c, "no connection from %q was made in this scenario", app)
	require.NotEmpty(t, c.flows, "check the observer has the connection's flows first")
	bin, err := starlabBinary()
	require.NoError(t, err)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args := []string{"--name", s.e.LabName, "observe", "--kubeconfig", s.e.Kubeconfig, "-o", "json",
		"--from-pod", obsNamespace + "/" + app, "--since", c.start.Add(-500 * time.Millisecond).UTC().Format(time.RFC3339Nano)}
	if c.srcPort != 0 {
		args = append(args, "--from-port", strconv.Itoa(int(c.srcPort)))
	}
	cmd := exec.CommandContext(cctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s: %s", bin, strings.Join(args, " "), stderr.String())
	dec := flow.NewDecoder(bytes.NewReader(out))
	uuids := map[string]bool{}
	for {
		f, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "starlab observe -o json printed a line that is not a flow")
		assert.Equal(t, obsNamespace, f.Source.Namespace)
		assert.True(t, strings.HasPrefix(f.Source.PodName, app+"-"), "flow from %s", f.Source.PodName)
		if c.srcPort != 0 {
			assert.Equal(t, c.srcPort, f.L4.SourcePort)
		}
		uuids[f.UUID] = true
	}
	for _, f := range c.flows {
		assert.True(t, uuids[f.UUID], "starlab observe misses flow %s", FormatFlow(f))
	}
	return nil
}

func (s *observerSteps) graphHasEdge(ctx context.Context, kind, from, to, policy string) error {
	t := godog.T(ctx)
	g, err := s.e.ObserverGraph(ctx, obsNamespace)
	require.NoError(t, err)
	var edge *observer.GraphEdge
	for _, ed := range g.Edges {
		if ed.Source == from && ed.Target == to {
			edge = ed
		}
	}
	var ids []string
	for _, ed := range g.Edges {
		ids = append(ids, fmt.Sprintf("%s (%s, %d forwarded, %d dropped)", ed.ID, ed.Verdict, ed.Forwarded, ed.Dropped))
	}
	require.NotNil(t, edge, "no edge %s -> %s in the graph; edges: %s", from, to, strings.Join(ids, "; "))
	if kind == "forwarded" {
		assert.Positive(t, edge.Forwarded, "edge %s", edge.ID)
	} else {
		assert.Positive(t, edge.Dropped, "edge %s", edge.ID)
		assert.Positive(t, edge.DropReasons[flow.DropPolicyDenied], "edge %s drop reasons %v", edge.ID, edge.DropReasons)
	}
	if policy != "" {
		ns, name, _ := strings.Cut(policy, "/")
		ok := false
		for _, p := range edge.Policies {
			if p.Namespace == ns && p.Name == name && (kind == "forwarded") == (p.Decision == "allowed") {
				ok = true
			}
		}
		assert.True(t, ok, "edge %s does not name policy %s: %+v", edge.ID, policy, edge.Policies)
	}
	assert.Contains(t, edge.Ports, "TCP/8080")
	return nil
}

func (s *observerSteps) metricsGrewOnServerNode(ctx context.Context) error {
	t := godog.T(ctx)
	require.NotNil(t, s.metrics0, "remember the observer metrics first")
	denied := s.conns["denied"]
	require.NotNil(t, denied, "make a denied connection first")
	var node string
	nDropped := 0
	for _, f := range denied.flows {
		if f.Verdict == flow.VerdictDropped && f.TrafficDirection == flow.DirectionIngress && f.DropReasonDesc == flow.DropPolicyDenied {
			node = f.NodeName
			nDropped++
		}
	}
	require.NotEmpty(t, node, "the denied connection has no ingress drop flow")
	m1, err := s.e.ObserverMetrics(ctx)
	require.NoError(t, err)
	// Every DROPPED flow on that node the observer ingested since the first scrape (other
	// features' traffic too): the counters cannot have grown by more.
	all, err := s.e.Observe(ctx, flow.Query{Since: s.t0.Add(-2 * time.Second), Allow: []flow.Filter{{
		NodeName: []string{node}, Verdict: []flow.Verdict{flow.VerdictDropped}}}})
	require.NoError(t, err)
	upper := float64(len(all))
	for _, c := range []struct {
		series string
		min    float64
	}{
		{fmt.Sprintf(`starlab_flows_processed_total{node=%q,verdict="DROPPED"}`, node), float64(nDropped)},
		{fmt.Sprintf(`starlab_drop_total{node=%q,reason="POLICY_DENIED"}`, node), float64(nDropped)},
		{fmt.Sprintf(`starlab_policy_verdicts_total{action="dropped",direction="ingress",match="default-deny",node=%q}`, node), float64(nDropped)},
	} {
		d := m1[c.series] - s.metrics0[c.series]
		assert.GreaterOrEqual(t, d, c.min, "%s grew by %v, the denied connection alone made %v", c.series, d, c.min)
		assert.LessOrEqual(t, d, upper, "%s grew by %v, more than the %v dropped flows the observer holds for %s since", c.series, d, upper, node)
	}
	if allowed := s.conns["allowed"]; allowed != nil {
		nFwd := 0
		anode := ""
		for _, f := range allowed.flows {
			if f.Verdict == flow.VerdictForwarded && f.TrafficDirection == flow.DirectionIngress && len(f.AllowedBy) > 0 && !f.IsReply {
				nFwd++
				anode = f.NodeName
			}
		}
		if nFwd > 0 {
			series := fmt.Sprintf(`starlab_policy_verdicts_total{action="forwarded",direction="ingress",match="network-policy",node=%q}`, anode)
			d := m1[series] - s.metrics0[series]
			assert.GreaterOrEqual(t, d, float64(nFwd), "%s grew by %v", series, d)
		}
	}
	return nil
}

func (s *observerSteps) uiDrawsDroppedEdge(ctx context.Context, node, from string) error {
	t := godog.T(ctx)
	pod, err := s.e.observerPod(ctx)
	require.NoError(t, err)
	port, err := s.e.PortForward(ctx, pod, observer.Port)
	require.NoError(t, err)
	edgeID := from + "->" + node
	url := fmt.Sprintf("http://127.0.0.1:%d/?select=%s", port, strings.ReplaceAll(edgeID, ">", "%3E"))
	shot := filepath.Join(s.e.ReportDir, "observer-ui.png")
	dom, err := chromiumPolledPage(ctx, url, shot)
	require.NoError(t, err)
	assert.Contains(t, dom, fmt.Sprintf(`data-id="%s"`, node), "node drawn")
	assert.Regexp(t, regexp.MustCompile(`class="edge (dropped|mixed)[^"]*" data-id="`+regexp.QuoteMeta(strings.ReplaceAll(edgeID, ">", "&gt;"))+`"`), dom, "dropped edge drawn")
	assert.Contains(t, dom, `data-namespace="obs-e2e"`, "namespace box drawn")
	assert.Contains(t, dom, "server-from-allowed", "the deciding policy is shown for the selected edge")
	return nil
}
