package observer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/flow"
)

// agent is a real HTTP server speaking the agent's flow API from a store, as the agent does.
type agent struct {
	store *flow.Store
	srv   *httptest.Server
	lost  atomic.Uint64
}

func newAgent(t *testing.T) *agent { return newAgentBuffer(t, 1000) }

func newAgentBuffer(t *testing.T, capacity int) *agent {
	a := &agent{store: flow.NewStore(capacity)}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/flows", flow.Handler(a.store, nil))
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		n := a.lost.Load() // lost in the ring buffer
		_ = json.NewEncoder(w).Encode(agentapi.Status{LostEvents: n, FlowStages: agentapi.FlowStages{RingbufLost: n}})
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *agent) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

func podFlow(node, uuid string, verdict flow.Verdict, dir flow.TrafficDirection) *flow.Flow {
	f := &flow.Flow{
		Time: time.Now(), UUID: uuid, Verdict: verdict, EventType: flow.EventNew, NodeName: node,
		IP: flow.IP{Source: "10.244.1.5", Destination: "10.244.2.7"},
		L4: flow.L4{Protocol: flow.ProtoTCP, SourcePort: 40000, DestinationPort: 6379, Flags: &flow.TCPFlags{SYN: true}},
		Source: flow.Endpoint{Identity: 256, Namespace: "client", PodName: "client-abc", Labels: []string{"role=client"},
			Workload: &flow.Workload{Name: "client", Kind: "Deployment"}, IP: "10.244.1.5"},
		Destination: flow.Endpoint{Identity: 300, Namespace: "stars", PodName: "backend-xyz", Labels: []string{"role=backend"},
			Workload: &flow.Workload{Name: "backend", Kind: "Deployment"}, IP: "10.244.2.7"},
		DestinationService: &flow.Service{Namespace: "stars", Name: "backend"},
		TrafficDirection:   dir,
	}
	if verdict == flow.VerdictDropped {
		f.EventType = flow.EventDrop
		f.DropReasonDesc = flow.DropPolicyDenied
		f.DeniedBy = []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}, {Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "default-deny"}}
	} else {
		f.AllowedBy = []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "allow-client"}}
	}
	return f
}

func startObserver(t *testing.T) (*Observer, *httptest.Server) {
	obs, err := New(Config{MergeWindow: 50 * time.Millisecond, StatusEvery: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	obs.Start(ctx)
	t.Cleanup(func() { cancel(); obs.Wait() })
	srv := httptest.NewServer(obs.Handler())
	t.Cleanup(srv.Close)
	return obs, srv
}

func getJSON(t *testing.T, url string, v any) {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

func TestObserverMergesAgentsAndSurvivesOneDown(t *testing.T) {
	a1, a2 := newAgent(t), newAgent(t)
	old := podFlow("node-1", "history", flow.VerdictForwarded, flow.DirectionIngress)
	old.Time = time.Now().Add(-time.Minute)
	a1.store.Add(old) // buffered before the observer connects: fetched with `last`
	obs, srv := startObserver(t)
	require.NoError(t, obs.SetAgent("node-1", a1.addr(), ""))
	require.NoError(t, obs.SetAgent("node-2", a2.addr(), ""))
	require.NoError(t, obs.SetAgent("node-3", "", "no starlab-agent pod on this node"))

	require.Eventually(t, func() bool { return obs.Status().Connected == 2 }, 5*time.Second, 10*time.Millisecond)
	a1.store.Add(podFlow("node-1", "f1", flow.VerdictForwarded, flow.DirectionIngress))
	a2.store.Add(podFlow("node-2", "d1", flow.VerdictDropped, flow.DirectionIngress))
	require.Eventually(t, func() bool { return obs.Store().Total() == 3 }, 5*time.Second, 10*time.Millisecond)

	// Flows API: merged, filtered, in time order.
	resp, err := http.Get(srv.URL + "/api/v1/flows?verdict=DROPPED")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), `"uuid":"d1"`)
	assert.NotContains(t, string(body), `"uuid":"f1"`)
	resp, err = http.Get(srv.URL + "/api/v1/flows?last=10")
	require.NoError(t, err)
	dec := flow.NewDecoder(resp.Body)
	var got []string
	for {
		f, err := dec.Decode()
		if err != nil {
			break
		}
		got = append(got, f.UUID)
	}
	resp.Body.Close()
	assert.Equal(t, "history", got[0])
	assert.ElementsMatch(t, []string{"history", "f1", "d1"}, got)

	// Status: node-3 unavailable with the reason.
	var st Status
	getJSON(t, srv.URL+"/api/v1/status", &st)
	assert.Equal(t, 2, st.Connected)
	assert.Equal(t, 1, st.Unavailable)
	assert.Equal(t, "no starlab-agent pod on this node", st.Nodes[2].Error)

	// One agent goes down: it is reported unavailable, the other keeps streaming.
	a2.srv.CloseClientConnections()
	a2.srv.Close()
	require.Eventually(t, func() bool {
		for _, n := range obs.Status().Nodes {
			if n.Name == "node-2" {
				return n.State == StateUnavailable
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	a1.store.Add(podFlow("node-1", "f2", flow.VerdictForwarded, flow.DirectionIngress))
	require.Eventually(t, func() bool { return obs.Store().Total() == 4 }, 5*time.Second, 10*time.Millisecond)

	// Agent lost-event counters become metrics.
	a1.lost.Store(7)
	require.Eventually(t, func() bool {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `starlab_lost_events_total{node="node-1"} 7`) &&
			strings.Contains(string(b), `starlab_lost_events_by_stage_total{node="node-1",stage="ringbuf"} 7`)
	}, 10*time.Second, 100*time.Millisecond)
	st = obs.Status()
	assert.Equal(t, uint64(7), st.LostByStage[StageRingbuf], "status shows where the events were lost")
	assert.Equal(t, uint64(7), st.LostEvents)
}

func TestObserverReconnectResumesWithoutDuplicates(t *testing.T) {
	a := newAgent(t)
	obs, _ := startObserver(t)
	require.NoError(t, obs.SetAgent("node-1", a.addr(), ""))
	require.Eventually(t, func() bool { return obs.Status().Connected == 1 }, 5*time.Second, 10*time.Millisecond)
	a.store.Add(podFlow("node-1", "a", flow.VerdictForwarded, flow.DirectionIngress))
	require.Eventually(t, func() bool { return obs.Store().Total() == 1 }, 5*time.Second, 10*time.Millisecond)
	a.srv.CloseClientConnections() // the stream breaks; the observer reconnects with since=
	time.Sleep(5 * time.Millisecond)
	a.store.Add(podFlow("node-1", "b", flow.VerdictForwarded, flow.DirectionIngress))
	require.Eventually(t, func() bool { return obs.Store().Total() == 2 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, uint64(2), obs.Store().Total(), "no flow twice after reconnect")
}

func TestGraphAndMetrics(t *testing.T) {
	obs, srv := startObserver(t)
	// One allowed connection seen at both hooks, its reply, and two denied SYNs.
	egress := podFlow("node-1", "e", flow.VerdictForwarded, flow.DirectionEgress)
	egress.AllowedBy = nil
	obs.Ingest(egress)
	obs.Ingest(podFlow("node-2", "i", flow.VerdictForwarded, flow.DirectionIngress))
	reply := podFlow("node-2", "r", flow.VerdictForwarded, flow.DirectionIngress)
	reply.IsReply = true
	obs.Ingest(reply)
	obs.Ingest(podFlow("node-2", "d1", flow.VerdictDropped, flow.DirectionIngress))
	obs.Ingest(podFlow("node-2", "d2", flow.VerdictDropped, flow.DirectionIngress))
	world := podFlow("node-1", "w", flow.VerdictForwarded, flow.DirectionEgress)
	world.Destination = flow.Endpoint{Identity: flow.IdentityWorld, IP: "1.1.1.1"}
	world.DestinationService = nil
	obs.Ingest(world)

	var g GraphView
	getJSON(t, srv.URL+"/api/v1/graph?recent=true", &g)
	require.Len(t, g.Edges, 2)
	e := g.Edges[1]
	assert.Equal(t, "client/client->stars/backend", e.ID)
	assert.Equal(t, uint64(1), e.Forwarded, "one connection, counted once")
	assert.Equal(t, uint64(2), e.Dropped)
	assert.Equal(t, "mixed", e.Verdict)
	assert.Equal(t, []string{"TCP/6379"}, e.Ports)
	assert.Equal(t, map[string]uint64{"POLICY_DENIED": 2}, e.DropReasons)
	require.Len(t, e.Policies, 3)
	assert.Equal(t, "allowed", e.Policies[0].Decision)
	assert.Equal(t, "allow-client", e.Policies[0].Name)
	assert.Len(t, e.Recent, 4)
	assert.Equal(t, "d2", e.Recent[3].UUID)
	assert.Equal(t, "reserved:world", g.Edges[0].Target)
	assert.Equal(t, []string{"client", "stars"}, g.Namespaces)
	ids := []string{}
	for _, n := range g.Nodes {
		ids = append(ids, n.ID)
	}
	assert.Equal(t, []string{"client/client", "reserved:world", "stars/backend"}, ids)

	var only GraphView
	getJSON(t, srv.URL+"/api/v1/graph?namespace=stars", &only)
	assert.Len(t, only.Edges, 1)
	assert.Empty(t, only.Edges[0].Recent)

	resp, err := http.Get(srv.URL + "/api/v1/graph?bogus=1")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	resp, err = http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(b)
	for _, want := range []string{
		`starlab_flows_processed_total{node="node-2",verdict="DROPPED"} 2`,
		`starlab_flows_processed_total{node="node-1",verdict="FORWARDED"} 2`,
		`starlab_drop_total{node="node-2",reason="POLICY_DENIED"} 2`,
		`starlab_policy_verdicts_total{action="dropped",direction="ingress",match="default-deny",node="node-2"} 2`,
		`starlab_policy_verdicts_total{action="forwarded",direction="ingress",match="network-policy",node="node-2"} 1`,
	} {
		assert.Contains(t, m, want)
	}
}

func TestAgentTargets(t *testing.T) {
	node := func(n string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}} }
	pod := func(name, node string, phase corev1.PodPhase, ip string, age time.Duration) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Now().Add(-age))},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{Phase: phase, PodIP: ip},
		}
	}
	now := metav1.Now()
	terminating := pod("agent-old", "w1", corev1.PodRunning, "172.18.0.3", time.Hour)
	terminating.DeletionTimestamp = &now
	got := AgentTargets(
		[]*corev1.Node{node("cp"), node("w1"), node("w2"), node("w3")},
		[]*corev1.Pod{
			pod("agent-cp", "cp", corev1.PodRunning, "172.18.0.2", time.Hour),
			terminating, pod("agent-new", "w1", corev1.PodRunning, "172.18.0.3", time.Minute),
			pod("agent-w2", "w2", corev1.PodPending, "", time.Minute),
		}, 4245)
	assert.Equal(t, map[string]AgentTarget{
		"cp": {Addr: "172.18.0.2:4245"},
		"w1": {Addr: "172.18.0.3:4245"},
		"w2": {Why: "agent pod agent-w2 is Pending"},
		"w3": {Why: "no starlab-agent pod on this node"},
	}, got)
}

// TestObserverOrdersSlowNodeAndCountsLateFlows reproduces the ordering bug with real HTTP agents: both
// nodes had buffered history before the observer connected, one node's live flows reach the observer
// 100-150 ms after their time (in batches), the other's at once. History answers must be in time
// order; live follow output must be in time order within the merge window; a flow later than the
// window must still reach the follower, and be counted late in /api/v1/status.
func TestObserverOrdersSlowNodeAndCountsLateFlows(t *testing.T) {
	// Agents first: their servers close (waiting for the observer's streams) after the observer stops.
	fast, slow, quiet := newAgentBuffer(t, 10000), newAgentBuffer(t, 10000), newAgent(t)
	histStart := time.Now().Add(-time.Minute)
	for i := range 200 { // interleaved history: even milliseconds on fast, odd on slow
		f := podFlow("fast", fmt.Sprintf("hist-fast-%d", i), flow.VerdictForwarded, flow.DirectionIngress)
		f.Time = histStart.Add(time.Duration(2*i) * time.Millisecond)
		fast.store.Add(f)
		s := podFlow("slow", fmt.Sprintf("hist-slow-%d", i), flow.VerdictForwarded, flow.DirectionIngress)
		s.Time = histStart.Add(time.Duration(2*i+1) * time.Millisecond)
		slow.store.Add(s)
	}

	obs, err := New(Config{MergeWindow: 200 * time.Millisecond, StatusEvery: time.Hour})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	obs.Start(ctx)
	t.Cleanup(func() { cancel(); obs.Wait() })
	srv := httptest.NewServer(obs.Handler())
	t.Cleanup(srv.Close)
	require.NoError(t, obs.SetAgent("fast", fast.addr(), ""))
	require.NoError(t, obs.SetAgent("slow", slow.addr(), ""))
	require.NoError(t, obs.SetAgent("quiet", quiet.addr(), "")) // connected, never a flow
	require.Eventually(t, func() bool { return obs.Status().Connected == 3 && obs.Store().Total() == 400 },
		5*time.Second, 10*time.Millisecond)

	// A live follower of the observer.
	fctx, fcancel := context.WithCancel(context.Background())
	defer fcancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, srv.URL+"/api/v1/flows?follow=true&no-history=true", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Eventually(t, func() bool { return obs.Store().Subscribers() == 1 }, 2*time.Second, time.Millisecond)
	followed := make(chan *flow.Flow, 10000)
	go func() {
		_ = flow.ReadStream(fctx, flow.NewDecoder(resp.Body), followed)
	}()

	// Live traffic for 1 s: fast flows at once, slow flows in 50 ms batches 100-150 ms after their time.
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; time.Since(start) < time.Second; i++ {
			fast.store.Add(podFlow("fast", fmt.Sprintf("live-fast-%d", i), flow.VerdictForwarded, flow.DirectionIngress))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var pending []*flow.Flow
	next := time.Now()
	for i := 0; time.Since(start) < time.Second; i++ {
		pending = append(pending, podFlow("slow", fmt.Sprintf("live-slow-%d", i), flow.VerdictForwarded, flow.DirectionIngress))
		time.Sleep(3 * time.Millisecond)
		if time.Now().After(next) {
			cut, j := time.Now().Add(-100*time.Millisecond), 0
			for ; j < len(pending) && pending[j].Time.Before(cut); j++ {
				slow.store.Add(pending[j])
			}
			pending, next = pending[j:], time.Now().Add(50*time.Millisecond)
		}
	}
	<-done
	time.Sleep(300 * time.Millisecond)
	veryLate := podFlow("slow", "very-late", flow.VerdictForwarded, flow.DirectionIngress)
	veryLate.Time = time.Now().Add(-3 * time.Second)
	slow.store.Add(veryLate)

	var live []*flow.Flow
	deadline := time.After(5 * time.Second)
	for gotLate := false; !gotLate; {
		select {
		case f := <-followed:
			if f.UUID == "very-late" {
				gotLate = true
				continue
			}
			live = append(live, f)
		case <-deadline:
			t.Fatalf("the late flow never reached the follower (%d live flows)", len(live))
		}
	}
	byNode := map[string]int{}
	inversions := 0
	for i, f := range live {
		byNode[f.NodeName]++
		if i > 0 && f.Time.Before(live[i-1].Time) {
			inversions++
		}
	}
	assert.Greater(t, byNode["fast"], 100)
	assert.Greater(t, byNode["slow"], 100)
	assert.Zero(t, inversions, "live follow output in time order within the merge window")

	var st Status
	getJSON(t, srv.URL+"/api/v1/status", &st)
	assert.Equal(t, uint64(1), st.LateFlows, "only the flow beyond the window is late (history is not)")
	assert.InDelta(t, 3, st.LateMaxSeconds, 1)
	for _, n := range st.Nodes {
		want := map[string]uint64{"slow": 1}[n.Name]
		assert.Equal(t, want, n.LateFlows, n.Name)
		assert.Equal(t, map[string]uint64{"fast": 200, "slow": 200}[n.Name], n.Backfilled, n.Name)
	}

	// History answers (every flow, and `last`) are in time order, late flow included.
	for _, q := range []string{"", "?last=100", "?last=100000"} {
		hresp, err := http.Get(srv.URL + "/api/v1/flows" + q)
		require.NoError(t, err)
		dec := flow.NewDecoder(hresp.Body)
		var prev time.Time
		n, backwards, sawLate := 0, 0, false
		for {
			f, err := dec.Decode()
			if err != nil {
				require.ErrorIs(t, err, io.EOF)
				break
			}
			n++
			if f.Time.Before(prev) {
				backwards++
			}
			prev = f.Time
			sawLate = sawLate || f.UUID == "very-late"
		}
		hresp.Body.Close()
		assert.Zero(t, backwards, "history %q in time order", q)
		if q != "?last=100" {
			assert.True(t, sawLate, "history %q holds the late flow", q)
			assert.Equal(t, 400+len(live)+1, n, "history %q holds every flow", q)
		}
	}
}

// TestObserverRereadsACutHistory serves the first history read cut in the middle of its third
// line: the observer stores the two whole flows, reads the rest as history again (not as late live
// flows) and counts all of them as backfilled.
func TestObserverRereadsACutHistory(t *testing.T) {
	store := flow.NewStore(1000)
	start := time.Now().Add(-time.Minute)
	for i := range 10 {
		f := podFlow("node-1", fmt.Sprintf("hist-%d", i), flow.VerdictForwarded, flow.DirectionIngress)
		f.Time = start.Add(time.Duration(i) * time.Millisecond)
		store.Add(f)
	}
	handler := flow.Handler(store, nil)
	var cut atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") == "" && cut.CompareAndSwap(false, true) {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, r)
			lines := bytes.SplitAfter(rec.Body.Bytes(), []byte("\n"))
			_, _ = w.Write(bytes.Join(lines[:2], nil))
			_, _ = w.Write(lines[2][:len(lines[2])/2]) // the third line, cut
			return
		}
		handler.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(agentapi.Status{})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	obs, _ := startObserver(t)
	require.NoError(t, obs.SetAgent("node-1", strings.TrimPrefix(srv.URL, "http://"), ""))
	require.Eventually(t, func() bool { return obs.Status().Connected == 1 && obs.Store().Total() == 10 }, 5*time.Second, 10*time.Millisecond)
	require.True(t, cut.Load(), "the first history read was cut")
	st := obs.Status()
	require.Len(t, st.Nodes, 1)
	assert.Equal(t, uint64(10), st.Nodes[0].Backfilled, "2 flows of the cut read and 8 of the second")
	assert.Zero(t, st.LateFlows, "history read again is history, not late live flows")
}
