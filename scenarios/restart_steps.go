package scenarios

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// restartSteps are the steps of the agent-restart scenario of features/services.feature (issue 11:
// restart every agent while connections are open and policies are applied; no allowed connection
// breaks and no denied connection gets through, probed continuously), one value per scenario.
type restartSteps struct {
	w *World
	e *Env
	// log holds what the probes saw while the agents restarted, read by the Then steps.
	log *restartLog
}

// restartLog is what the continuous probes recorded during the restart.
type restartLog struct {
	mu             sync.Mutex
	allowed        int      // allowed probes made
	allowedFailed  []string // allowed probes that failed
	denied         int      // denied probes made
	deniedAnswered []string // denied probes that got through
	held           int      // requests on the held connections
	heldFailed     []string // requests on a held connection that failed
	heldRedials    []string // held connections that had to be opened again
}

func (l *restartLog) note(list *[]string, count *int, bad bool, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*count++
	if bad {
		*list = append(*list, fmt.Sprintf(format, args...))
	}
}

// newRestartSteps returns the restart steps for the scenario of w.
func newRestartSteps(w *World) *restartSteps { return &restartSteps{w: w, e: w.Env} }

// steps lists the restart steps and their methods.
func (s *restartSteps) steps() []step {
	return []step{
		{`^the NetworkPolicy "([^"]*)" lets "client" open connections only to "web" on 8080$`, s.applyClientEgress},
		{`^every "client" pod cannot reach the other "client" pods on port (\d+)$`, s.clientsCannotReachEachOther},
		{`^I restart every starlab agent while probing continuously and holding connections through NodePort (\d+)$`, s.restartWhileProbing},
		{`^no held connection broke or had to be opened again$`, s.noHeldConnectionBroke},
		{`^every allowed probe during the restart got through$`, s.everyAllowedProbePassed},
		{`^no denied probe during the restart got through$`, s.noDeniedProbePassed},
	}
}

func (s *restartSteps) applyClientEgress(ctx context.Context, name string) error {
	t := godog.T(ctx)
	doc, err := testdataFile(name + ".yaml")
	require.NoError(t, err)
	rv, err := s.e.Apply(ctx, []byte(doc))
	require.NoError(t, err)
	s.w.Cleanup(func(ctx context.Context) error { return s.e.DeleteNetworkPolicy(ctx, svcNamespace, name) })
	_, err = s.e.WaitProgrammed(ctx, rv)
	require.NoError(t, err)
	return nil
}

// clientPairs returns every (client pod, other client pod's IP:port) pair.
func (s *restartSteps) clientPairs(ctx context.Context, port int) ([]*corev1.Pod, []string, error) {
	list, err := s.e.Client.CoreV1().Pods(svcNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=client"})
	if err != nil {
		return nil, nil, fmt.Errorf("list client pods: %w", err)
	}
	var from []*corev1.Pod
	var to []string
	for i := range list.Items {
		a := &list.Items[i]
		if a.Status.PodIP == "" || a.DeletionTimestamp != nil {
			continue
		}
		for j := range list.Items {
			b := &list.Items[j]
			if i == j || b.Status.PodIP == "" || b.DeletionTimestamp != nil {
				continue
			}
			from = append(from, a)
			to = append(to, net.JoinHostPort(b.Status.PodIP, strconv.Itoa(port)))
		}
	}
	if len(from) == 0 {
		return nil, nil, fmt.Errorf("fewer than two client pods in %s", svcNamespace)
	}
	return from, to, nil
}

func (s *restartSteps) clientsCannotReachEachOther(ctx context.Context, port int) error {
	t := godog.T(ctx)
	from, to, err := s.clientPairs(ctx, port)
	require.NoError(t, err)
	for i := range from {
		res, err := s.e.probeFromPod(ctx, from[i], to[i])
		require.NoError(t, err)
		assert.False(t, res.Reachable, "%s -> %s must be denied", from[i].Name, to[i])
	}
	return nil
}

// restartWhileProbing holds one keep-alive HTTP connection from this host to NodePort port on every
// node, and probes without pause, from inside the client pods, the allowed Service and the denied
// client pods, while every agent is deleted and its replacement becomes ready; then it probes for 5 s
// more (the new agents' first programming).
func (s *restartSteps) restartWhileProbing(ctx context.Context, port int) error {
	t := godog.T(ctx)
	s.log = &restartLog{}
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	from, to, err := s.clientPairs(ctx, 9000)
	require.NoError(t, err)
	client, err := s.e.Pod(ctx, PodRef{Namespace: svcNamespace, Selector: "app=client"})
	require.NoError(t, err)

	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for node, ip := range ips {
		wg.Add(1)
		go func() { defer wg.Done(); s.hold(pctx, node, net.JoinHostPort(ip, strconv.Itoa(port))) }()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for pctx.Err() == nil {
			res, err := s.e.probeFromPod(pctx, client, "web."+svcNamespace+":8080")
			if pctx.Err() != nil {
				return
			}
			s.log.note(&s.log.allowedFailed, &s.log.allowed, err != nil || !res.Reachable, "%s %s -> web: %v %s", time.Now().Format(time.StampMilli), client.Name, err, res.Error)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; pctx.Err() == nil; i = (i + 1) % len(from) {
			res, err := s.e.probeFromPod(pctx, from[i], to[i])
			if pctx.Err() != nil {
				return
			}
			if err != nil {
				continue // the probe itself could not run: neither a pass nor a denial
			}
			s.log.note(&s.log.deniedAnswered, &s.log.denied, res.Reachable, "%s %s -> %s answered", time.Now().Format(time.StampMilli), from[i].Name, to[i])
		}
	}()

	time.Sleep(2 * time.Second) // probes and held connections running before the restart
	restartErr := newServicesSteps(s.w).restartAgents(ctx)
	time.Sleep(5 * time.Second)
	stop()
	wg.Wait()
	require.NoError(t, restartErr)
	t.Logf("during the restart: %d allowed probes, %d denied probes, %d requests on held connections", s.log.allowed, s.log.denied, s.log.held)
	return nil
}

// hold sends GET /healthz every 100 ms on one keep-alive connection to addr until ctx ends, and
// records failed requests and any connection that had to be dialled again.
func (s *restartSteps) hold(ctx context.Context, node, addr string) {
	var dials atomic.Int32
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if n := dials.Add(1); n > 1 {
				s.log.note(&s.log.heldRedials, new(int), true, "%s node %s (%s): connection opened again (dial %d)", time.Now().Format(time.StampMilli), node, addr, n)
			}
			return dialer.DialContext(ctx, network, a)
		},
	}}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
		if err != nil {
			return
		}
		resp, err := hc.Do(req)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			resp.Body.Close()
		}
		s.log.note(&s.log.heldFailed, &s.log.held, err != nil || resp.StatusCode != http.StatusOK, "%s node %s (%s): %v", time.Now().Format(time.StampMilli), node, addr, err)
	}
}

func (s *restartSteps) noHeldConnectionBroke(ctx context.Context) error {
	t := godog.T(ctx)
	require.NotNil(t, s.log, "the restart step ran")
	assert.NotZero(t, s.log.held, "requests were sent on the held connections")
	assert.Empty(t, s.log.heldFailed, "requests on held connections that failed")
	assert.Empty(t, s.log.heldRedials, "held connections that had to be opened again")
	return nil
}

func (s *restartSteps) everyAllowedProbePassed(ctx context.Context) error {
	t := godog.T(ctx)
	require.NotNil(t, s.log, "the restart step ran")
	assert.NotZero(t, s.log.allowed, "allowed probes were made")
	assert.Empty(t, s.log.allowedFailed, "allowed probes that failed during the restart")
	return nil
}

func (s *restartSteps) noDeniedProbePassed(ctx context.Context) error {
	t := godog.T(ctx)
	require.NotNil(t, s.log, "the restart step ran")
	assert.NotZero(t, s.log.denied, "denied probes were made")
	assert.Empty(t, s.log.deniedAnswered, "denied probes that got through during the restart")
	return nil
}
