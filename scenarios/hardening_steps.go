package scenarios

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/flow"
)

// hardNamespace holds the hardening feature's workloads (testdata/hardening.yaml).
const hardNamespace = "hard-e2e"

// Ports of the hardening workloads (testdata/hardening.yaml).
const (
	hardHTTPPort    = 8080
	hardEchoTCPPort = 7000
	hardEchoUDPPort = 7001
	// streamInterval is the time between two lines of a stream.
	streamInterval = 50 * time.Millisecond
)

// hardeningSteps are the steps of features/hardening.feature (issue 11's end-to-end checks), one
// value per scenario.
type hardeningSteps struct {
	w *World
	e *Env
	// streams are the streams the scenario opened, stopped by its cleanup.
	streams []*PodStream
	// applied is when the last hardening policy's apply returned (the API server accepted it).
	applied    time.Time
	policyName string
	// holds are the NodePort connections this host keeps, stop ends them.
	holds []*nodePortHold
	stop  context.CancelFunc
	wg    sync.WaitGroup
	// restart is what the restart step saw.
	restart *restartRecord
}

// restartRecord is what the continuous probes recorded while the agents restarted.
type restartRecord struct {
	began, ended time.Time // agent pods deleted .. every new agent ready
	from, until  time.Time // the probes ran
	deniedIPs    []string  // the denied probes' destinations (the client pods)

	mu             sync.Mutex
	allowed        int      // allowed probes made
	allowedFailed  []string // allowed probes that failed
	denied         int      // denied probes made
	deniedAnswered []string // denied probes that got through
	final          []demo.StreamStatus
}

func (r *restartRecord) note(list *[]string, count *int, bad bool, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*count++
	if bad {
		*list = append(*list, fmt.Sprintf(format, args...))
	}
}

func newHardeningSteps(w *World) *hardeningSteps { return &hardeningSteps{w: w, e: w.Env} }

// steps lists the steps of features/hardening.feature and their methods.
func (s *hardeningSteps) steps() []step {
	return []step{
		{`^the hardening test workloads are running$`, s.workloadsRunning},
		{`^a "client" pod on another node than "server" holds a TCP stream and a UDP stream to the "server" pod$`, s.crossNodeStreams},
		{`^I apply the hardening NetworkPolicy "([^"]*)"$`, s.applyPolicy},
		{`^the hardening NetworkPolicy "([^"]*)" is applied$`, s.applyPolicy},
		{`^both streams stop getting answers within 1 second of the policy being applied and keep sending$`, s.streamsStopWithin1s},
		{`^the observer shows both streams DROPPED POLICY_DENIED INGRESS denied by "([^"]*)"$`, s.observerShowsStreamsDenied},
		{`^every "client" pod holds a TCP stream and a UDP stream to the "server" pod and to the Service "server"$`, s.everyClientStreams},
		{`^this host holds a keep-alive HTTP connection to NodePort (\d+) on every node$`, s.holdNodePorts},
		{`^I restart every starlab agent while probing allowed and denied connections continuously$`, s.restartWhileProbing},
		{`^no held stream broke, lost a line or a segment, stalled for 3 seconds or more, or stopped getting answers$`, s.noStreamBroke},
		{`^no held NodePort connection failed or was opened again$`, s.noNodePortHoldBroke},
		{`^every allowed probe during the restart got through$`, s.everyAllowedProbePassed},
		{`^no denied probe during the restart got through$`, s.noDeniedProbePassed},
		{`^the observer shows no dropped flow in hard-e2e during the restart other than the denied probes$`, s.noDropsDuringRestart},
	}
}

func (s *hardeningSteps) workloadsRunning(ctx context.Context) error {
	t := godog.T(ctx)
	_, err := s.e.applyWorkloads(ctx, "hardening.yaml")
	require.NoError(t, err)
	require.NoError(t, s.e.WaitDeploymentsAvailable(ctx, 3*time.Minute, hardNamespace))
	s.w.Cleanup(s.cleanup)
	return nil
}

// cleanup stops what the scenario left running: the NodePort holds and the streams.
func (s *hardeningSteps) cleanup(ctx context.Context) error {
	s.stopHolds()
	for _, st := range s.streams {
		_, _ = s.e.stopStream(ctx, st) // a pod gone with its streams is fine
	}
	s.streams = nil
	return nil
}

func (s *hardeningSteps) serverPod(ctx context.Context) (*corev1.Pod, error) {
	pods, err := s.e.readyPods(ctx, hardNamespace, "app=server")
	if err != nil {
		return nil, err
	}
	return &pods[0], nil
}

// openStream starts one stream and waits until it got answers (the connection is established and
// allowed), remembering it for the cleanup.
func (s *hardeningSteps) openStream(ctx context.Context, pod *corev1.Pod, name, target, protocol string) (*PodStream, error) {
	st, _, err := s.e.StartStream(ctx, pod, name, target, protocol, streamInterval)
	if err != nil {
		return nil, err
	}
	s.streams = append(s.streams, st)
	err = poll(ctx, 10*time.Second, 50*time.Millisecond, "stream "+name+" answered", func(ctx context.Context) (bool, string, error) {
		got, err := s.e.streamStatus(ctx, st)
		if err != nil {
			return false, "", err
		}
		return got.Answered >= 5, fmt.Sprintf("%d of %d lines answered (%s)", got.Answered, got.Sent, got.LastError), nil
	})
	return st, err
}

func (s *hardeningSteps) crossNodeStreams(ctx context.Context) error {
	t := godog.T(ctx)
	server, err := s.serverPod(ctx)
	require.NoError(t, err)
	clients, err := s.e.readyPods(ctx, hardNamespace, "app=client")
	require.NoError(t, err)
	i := slices.IndexFunc(clients, func(p corev1.Pod) bool { return p.Spec.NodeName != server.Spec.NodeName })
	require.GreaterOrEqual(t, i, 0, "no client pod on another node than the server (%s): the clients should spread over the workers", server.Spec.NodeName)
	client := &clients[i]
	for _, c := range []struct {
		proto string
		port  int
	}{{"tcp", hardEchoTCPPort}, {"udp", hardEchoUDPPort}} {
		target := net.JoinHostPort(server.Status.PodIP, strconv.Itoa(c.port))
		_, err := s.openStream(ctx, client, fmt.Sprintf("%s %s -> %s (%s)", c.proto, client.Name, target, server.Name), target, c.proto)
		require.NoError(t, err)
	}
	return nil
}

func (s *hardeningSteps) applyPolicy(ctx context.Context, name string) error {
	t := godog.T(ctx)
	e := s.e
	doc, err := testdataFile(name + ".yaml")
	require.NoError(t, err)
	rv, err := e.Apply(ctx, []byte(doc))
	require.NoError(t, err)
	s.applied, s.policyName = time.Now(), name
	s.w.Cleanup(func(ctx context.Context) error { return e.DeleteNetworkPolicy(ctx, hardNamespace, name) })
	waited, err := e.WaitProgrammed(ctx, rv)
	require.NoError(t, err)
	e.Log.Info("hardening policy programmed on every node", "policy", name, "after", waited.Round(time.Millisecond))
	return nil
}

func (s *hardeningSteps) streamsStopWithin1s(ctx context.Context) error {
	t := godog.T(ctx)
	require.Len(t, s.streams, 2, "the streams step ran")
	require.False(t, s.applied.IsZero(), "the policy step ran")
	cut := s.applied.Add(time.Second)
	// Read once a second after the cut and once more 2 s later: a stopped stream keeps sending and
	// gets no answer in between.
	sleepUntil(ctx, cut.Add(time.Second))
	first := make([]demo.StreamStatus, len(s.streams))
	for i, st := range s.streams {
		var err error
		first[i], err = s.e.streamStatus(ctx, st)
		require.NoError(t, err)
	}
	sleepUntil(ctx, cut.Add(3*time.Second))
	for i, st := range s.streams {
		now, err := s.e.streamStatus(ctx, st)
		require.NoError(t, err)
		t.Logf("%s: %d sent, %d answered, last answer %s after the apply (line sent %s after it)", st.Name, now.Sent, now.Answered,
			now.LastAnswerAt.Sub(s.applied).Round(time.Millisecond), now.LastAnsweredSentAt.Sub(s.applied).Round(time.Millisecond))
		assert.False(t, now.LastAnswerAt.IsZero(), "%s was answered before the policy", st.Name)
		assert.True(t, now.LastAnswerAt.Before(cut), "%s: last answer at %s, %s after the policy was applied (want < 1 s)",
			st.Name, now.LastAnswerAt.Format(time.StampMilli), now.LastAnswerAt.Sub(s.applied))
		assert.Equal(t, first[i].Answered, now.Answered, "%s got answers again after the cut", st.Name)
		assert.Greater(t, now.Sent, first[i].Sent, "%s keeps sending (it stopped because the datapath cut it, not the sender)", st.Name)
	}
	return nil
}

// sleepUntil waits until t or ctx's end.
func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

func (s *hardeningSteps) observerShowsStreamsDenied(ctx context.Context, policy string) error {
	t := godog.T(ctx)
	require.Len(t, s.streams, 2, "the streams step ran")
	ns, name, _ := strings.Cut(policy, "/")
	want := flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: ns, Name: name}
	for _, st := range s.streams {
		status, err := s.e.streamStatus(ctx, st)
		require.NoError(t, err)
		src, sport, err := splitHostPort(status.LocalAddr)
		require.NoError(t, err)
		dst, dport, err := splitHostPort(status.RemoteAddr)
		require.NoError(t, err)
		q := flow.Query{Since: s.applied.Add(-time.Second), Allow: []flow.Filter{{
			SourceIP: []string{src}, SourcePort: []uint16{sport}, DestinationIP: []string{dst}, DestinationPort: []uint16{dport},
			Protocol: []string{strings.ToUpper(status.Protocol)},
		}}}
		var got []*flow.Flow
		var found *flow.Flow
		err = poll(ctx, 10*time.Second, 250*time.Millisecond, "a POLICY_DENIED flow of "+st.Name, func(ctx context.Context) (bool, string, error) {
			fl, err := s.e.Observe(ctx, q)
			if err != nil {
				return false, "", err
			}
			got = fl
			for _, f := range fl {
				if f.Verdict == flow.VerdictDropped && f.DropReasonDesc == "POLICY_DENIED" && f.TrafficDirection == flow.DirectionIngress &&
					!f.IsReply && slices.ContainsFunc(f.DeniedBy, want.SamePolicy) {
					found = f
					return true, "", nil
				}
			}
			return false, fmt.Sprintf("%d flows of the stream, none DROPPED POLICY_DENIED INGRESS denied by %s", len(fl), policy), nil
		})
		_ = s.e.AppendFlows(got)
		if !assert.NoError(t, err) {
			for _, f := range got {
				t.Logf("  %s", FormatFlow(f))
			}
			continue
		}
		t.Logf("%s: %s", st.Name, FormatFlow(found))
	}
	return nil
}

// splitHostPort splits "ip:port" of a stream's address.
func splitHostPort(addr string) (string, uint16, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: port: %w", addr, err)
	}
	return h, uint16(n), nil
}

func (s *hardeningSteps) everyClientStreams(ctx context.Context) error {
	t := godog.T(ctx)
	server, err := s.serverPod(ctx)
	require.NoError(t, err)
	svc, err := s.e.Client.CoreV1().Services(hardNamespace).Get(ctx, "server", metav1.GetOptions{})
	require.NoError(t, err)
	clients, err := s.e.readyPods(ctx, hardNamespace, "app=client")
	require.NoError(t, err)
	require.Len(t, clients, 2)
	for i := range clients {
		c := &clients[i]
		for _, to := range []struct{ what, ip string }{{"pod " + server.Name, server.Status.PodIP}, {"Service server", svc.Spec.ClusterIP}} {
			for _, p := range []struct {
				proto string
				port  int
			}{{"tcp", hardEchoTCPPort}, {"udp", hardEchoUDPPort}} {
				target := net.JoinHostPort(to.ip, strconv.Itoa(p.port))
				where := "same node"
				if c.Spec.NodeName != server.Spec.NodeName {
					where = "other node"
				}
				_, err := s.openStream(ctx, c, fmt.Sprintf("%s %s -> %s %s (%s)", p.proto, c.Name, to.what, target, where), target, p.proto)
				require.NoError(t, err)
			}
		}
	}
	return nil
}

// nodePortHold is one keep-alive HTTP connection from this host to a node's NodePort.
type nodePortHold struct {
	node, addr string
	dials      atomic.Int32

	mu       sync.Mutex
	requests int
	failed   []string
}

func (s *hardeningSteps) holdNodePorts(ctx context.Context, port int) error {
	t := godog.T(ctx)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	for node, ip := range ips {
		h := &nodePortHold{node: node, addr: net.JoinHostPort(ip, strconv.Itoa(port))}
		s.holds = append(s.holds, h)
		s.wg.Go(func() { h.run(hctx) })
	}
	require.NoError(t, poll(ctx, 10*time.Second, 100*time.Millisecond, "the NodePort holds answered", func(context.Context) (bool, string, error) {
		for _, h := range s.holds {
			h.mu.Lock()
			n, bad := h.requests, len(h.failed)
			h.mu.Unlock()
			if n-bad < 3 {
				return false, fmt.Sprintf("node %s: %d requests, %d failed", h.node, n, bad), nil
			}
		}
		return true, "", nil
	}))
	for _, h := range s.holds {
		h.mu.Lock()
		failed := slices.Clone(h.failed)
		h.mu.Unlock()
		require.Empty(t, failed, "NodePort requests to %s that failed before the restart", h.addr)
		require.EqualValues(t, 1, h.dials.Load(), "the NodePort hold of %s keeps one connection", h.addr)
	}
	return nil
}

// stopHolds ends the NodePort holds and waits for them.
func (s *hardeningSteps) stopHolds() {
	if s.stop != nil {
		s.stop()
		s.wg.Wait()
		s.stop = nil
	}
}

// run sends GET /healthz every 100 ms on one keep-alive connection until ctx ends, reading each
// answer to its end (an unread body makes the transport close the connection), and records failed
// requests and every dial (the connection must never be opened again).
func (h *nodePortHold) run(ctx context.Context) {
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			h.dials.Add(1)
			return dialer.DialContext(ctx, network, a)
		},
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := h.get(ctx, hc)
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		h.requests++
		if err != nil {
			h.failed = append(h.failed, fmt.Sprintf("%s node %s (%s): %v", time.Now().Format(time.StampMilli), h.node, h.addr, err))
		}
		h.mu.Unlock()
	}
}

func (h *nodePortHold) get(ctx context.Context, hc *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// restartWhileProbing probes without pause, from inside the client pods, an allowed Service and pod
// (new connections each) and the other client pod (denied by client-egress-server-only), while every
// agent is deleted and its replacement becomes ready; then it probes for 5 s more (the new agents'
// first programming), and reads the streams' final status.
func (s *hardeningSteps) restartWhileProbing(ctx context.Context) error {
	t := godog.T(ctx)
	server, err := s.serverPod(ctx)
	require.NoError(t, err)
	clients, err := s.e.readyPods(ctx, hardNamespace, "app=client")
	require.NoError(t, err)
	require.Len(t, clients, 2)
	r := &restartRecord{}
	s.restart = r
	allowedTargets := []string{
		net.JoinHostPort("server."+hardNamespace, strconv.Itoa(hardHTTPPort)),
		net.JoinHostPort(server.Status.PodIP, strconv.Itoa(hardHTTPPort)),
	}

	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }() // also when a step assertion ends the step early
	for i := range clients {
		from, other := &clients[i], &clients[1-i]
		wg.Go(func() {
			for n := 0; pctx.Err() == nil; n++ {
				target := allowedTargets[n%len(allowedTargets)]
				res, err := s.e.probeFromPod(pctx, from, target)
				if pctx.Err() != nil {
					return
				}
				r.note(&r.allowedFailed, &r.allowed, err != nil || !res.Reachable, "%s %s -> %s: %v %s",
					time.Now().Format(time.StampMilli), from.Name, target, err, res.Error)
			}
		})
		wg.Go(func() {
			target := net.JoinHostPort(other.Status.PodIP, strconv.Itoa(hardHTTPPort))
			for pctx.Err() == nil {
				res, err := s.e.probeFromPod(pctx, from, target)
				if pctx.Err() != nil {
					return
				}
				if err != nil {
					continue // the probe itself could not run: neither a pass nor a denial
				}
				r.note(&r.deniedAnswered, &r.denied, res.Reachable, "%s %s -> %s (%s) answered",
					time.Now().Format(time.StampMilli), from.Name, other.Name, target)
			}
		})
	}

	r.from = time.Now()
	for _, c := range clients {
		r.deniedIPs = append(r.deniedIPs, c.Status.PodIP)
	}
	time.Sleep(2 * time.Second) // probes, streams and holds running before the restart
	r.began = time.Now()
	restartErr := newServicesSteps(s.w).restartAgents(ctx)
	r.ended = time.Now()
	time.Sleep(5 * time.Second)
	stop()
	wg.Wait()
	r.until = time.Now()
	s.stopHolds()
	require.NoError(t, restartErr)
	for _, st := range s.streams {
		final, err := s.e.stopStream(ctx, st)
		require.NoError(t, err)
		r.final = append(r.final, final)
	}
	s.streams = nil
	t.Logf("agents restarted in %s; during it and 5 s after: %d allowed probes, %d denied probes", r.ended.Sub(r.began).Round(time.Millisecond), r.allowed, r.denied)
	return nil
}

// noStreamBroke checks the held streams after the restart. A datapath that lets a connection
// down drops its packets: a UDP line lost, a TCP segment sent again (or the connection broken).
// Those are asserted exactly. A gap in answers with nothing lost is the host not scheduling the
// pods (three agents verifying their programs at once on two vCPUs stall every process for up to
// 1.25 s, both nodes alike, sender included); it is bounded loosely and printed next to the
// sender's own longest gap.
func (s *hardeningSteps) noStreamBroke(ctx context.Context) error {
	t := godog.T(ctx)
	r := s.restart
	require.NotNil(t, r, "the restart step ran")
	require.NotEmpty(t, r.final, "streams were held")
	for _, st := range r.final {
		t.Logf("%s %s -> %s: %d sent, %d answered, %d lost, %d segments sent again (%d of them reported back as duplicates), longest gap %.0f ms from %s, the sender's own longest gap %.0f ms",
			st.Protocol, st.LocalAddr, st.Target, st.Sent, st.Answered, st.Lost, st.Retransmits, st.SpuriousRetransmits, st.MaxGapMs, st.MaxGapFrom.Format(time.StampMilli), st.MaxSendGapMs)
		assert.False(t, st.Broken, "%s %s -> %s broke at %s: %s", st.Protocol, st.LocalAddr, st.Target, st.BrokenAt.Format(time.StampMilli), st.Error)
		assert.Zero(t, st.Lost, "%s %s -> %s: lines lost (the restart: agent pods deleted at %s, new agents ready at %s)",
			st.Protocol, st.LocalAddr, st.Target, r.began.Format(time.StampMilli), r.ended.Format(time.StampMilli))
		assert.Zero(t, st.DroppedSegments(), "%s %s -> %s: segments dropped on the way (sent again, not reported back as duplicates; the restart: agent pods deleted at %s, new agents ready at %s)",
			st.Protocol, st.LocalAddr, st.Target, r.began.Format(time.StampMilli), r.ended.Format(time.StampMilli))
		assert.Less(t, st.MaxGapMs, 3000.0, "%s %s -> %s went %.0f ms without an answer from %s (the restart: agent pods deleted at %s, new agents ready at %s)",
			st.Protocol, st.LocalAddr, st.Target, st.MaxGapMs, st.MaxGapFrom.Format(time.StampMilli), r.began.Format(time.StampMilli), r.ended.Format(time.StampMilli))
		assert.True(t, st.LastAnswerAt.After(r.ended.Add(4*time.Second)), "%s %s -> %s: last answer at %s, the agents were back at %s",
			st.Protocol, st.LocalAddr, st.Target, st.LastAnswerAt.Format(time.StampMilli), r.ended.Format(time.StampMilli))
	}
	return nil
}

func (s *hardeningSteps) noNodePortHoldBroke(ctx context.Context) error {
	t := godog.T(ctx)
	require.NotEmpty(t, s.holds, "the NodePort hold step ran")
	for _, h := range s.holds {
		h.mu.Lock()
		n, failed := h.requests, slices.Clone(h.failed)
		h.mu.Unlock()
		t.Logf("NodePort %s (node %s): %d requests, %d failed, %d dials", h.addr, h.node, n, len(failed), h.dials.Load())
		assert.Positive(t, n, "requests were sent to %s", h.addr)
		assert.Empty(t, failed, "requests to %s that failed", h.addr)
		assert.EqualValues(t, 1, h.dials.Load(), "connections opened to %s (the held one must carry every request)", h.addr)
	}
	return nil
}

func (s *hardeningSteps) everyAllowedProbePassed(ctx context.Context) error {
	t := godog.T(ctx)
	r := s.restart
	require.NotNil(t, r, "the restart step ran")
	assert.NotZero(t, r.allowed, "allowed probes were made")
	assert.Empty(t, r.allowedFailed, "allowed probes that failed during the restart")
	return nil
}

func (s *hardeningSteps) noDeniedProbePassed(ctx context.Context) error {
	t := godog.T(ctx)
	r := s.restart
	require.NotNil(t, r, "the restart step ran")
	assert.NotZero(t, r.denied, "denied probes were made")
	assert.Empty(t, r.deniedAnswered, "denied probes that got through during the restart")
	return nil
}

// noDropsDuringRestart checks the observer's flows of the probing window: every DROPPED flow from or
// to a hard-e2e pod must be a denied probe (a client pod to the other client's HTTP port). A drop of
// anything else (a Service without backends while an agent restarts, an unknown endpoint, a stream's
// packet) is a break even when no probe happened to see it.
func (s *hardeningSteps) noDropsDuringRestart(ctx context.Context) error {
	t := godog.T(ctx)
	r := s.restart
	require.NotNil(t, r, "the restart step ran")
	q := flow.Query{Since: r.from, Until: r.until, Allow: []flow.Filter{
		{SourceNamespace: []string{hardNamespace}, Verdict: []flow.Verdict{flow.VerdictDropped}},
		{DestinationNamespace: []string{hardNamespace}, Verdict: []flow.Verdict{flow.VerdictDropped}},
	}}
	var fl []*flow.Flow
	// The new agents' flows reach the observer once it reconnected: wait for the window's end to be
	// covered by every node (the drops of the denied probes run until the end).
	err := poll(ctx, 20*time.Second, 500*time.Millisecond, "the observer's flows of the restart", func(ctx context.Context) (bool, string, error) {
		var err error
		fl, err = s.e.Observe(ctx, q)
		if err != nil {
			return false, "", err
		}
		st, err := s.e.ObserverStatus(ctx)
		if err != nil {
			return false, "", err
		}
		return st.Unavailable == 0, fmt.Sprintf("observer: %d nodes unavailable", st.Unavailable), nil
	})
	require.NoError(t, err)
	_ = s.e.AppendFlows(fl)
	var bad []string
	denied := 0
	for _, f := range fl {
		if f.DropReasonDesc == "POLICY_DENIED" && f.L4.DestinationPort == hardHTTPPort && slices.Contains(r.deniedIPs, f.IP.Destination) &&
			slices.Contains(r.deniedIPs, f.IP.Source) {
			denied++
			continue
		}
		bad = append(bad, FormatFlow(f))
	}
	t.Logf("observer: %d dropped flows of the denied probes during the restart window", denied)
	assert.Positive(t, denied, "the denied probes' drops were observed")
	assert.Empty(t, bad, "dropped flows during the restart that no denied probe explains")
	return nil
}
