package bundle

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/portforward"
)

const (
	// AgentPort is the agent's HTTP port (hostNetwork) and the observer's.
	AgentPort      = observer.Port
	maxFetchBytes  = 256 << 20
	requestTimeout = 45 * time.Second
)

// fetch GETs base+path?q and returns the body (at most maxFetchBytes).
func fetch(ctx context.Context, base, path string, q url.Values) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBytes))
	if err != nil {
		return nil, fmt.Errorf("read GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(data[:min(len(data), 512)])))
	}
	return data, nil
}

// collectAgents port-forwards to every agent pod's :4245 (in parallel) and saves its status, recent flows and metrics
// under agents/<node>/.
func (r *run) collectAgents(ctx context.Context, s *stepCtx) error {
	cs, err := r.clients()
	if err != nil {
		return err
	}
	ns := r.opts.Namespace
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: AgentSelector})
	if err != nil {
		return fmt.Errorf("list agent pods (%s) in %s: %w", AgentSelector, ns, err)
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("no agent pods (%s) in namespace %s: is the chart installed?", AgentSelector, ns)
	}
	flowQuery := flow.Query{Since: time.Now().Add(-r.opts.Since)}.Values()
	var wg sync.WaitGroup
	for i := range pods.Items {
		p := &pods.Items[i]
		wg.Go(func() { r.collectAgent(ctx, s, p, flowQuery) })
	}
	wg.Wait()
	return nil
}

// collectAgent saves one agent's status, flows and metrics through a port-forward to its pod.
func (r *run) collectAgent(ctx context.Context, s *stepCtx, p *corev1.Pod, flowQuery url.Values) {
	ns := p.Namespace
	dir := "agents/" + podNode(p)
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		s.fail(dir, fmt.Errorf("agent pod %s/%s is %s, not running: its API cannot be reached", ns, p.Name, p.Status.Phase))
		return
	}
	f, err := portforward.Open(ctx, r.cfg, ns, p.Name, AgentPort, 0)
	if err != nil {
		s.fail(dir, err)
		return
	}
	defer f.Close()
	for _, g := range []struct {
		file, path string
		q          url.Values
	}{
		{"status.json", "/v1/status", nil},
		{"flows.ndjson", "/v1/flows", flowQuery},
		{"metrics.txt", "/metrics", nil},
	} {
		data, err := fetch(ctx, f.URL(), g.path, g.q)
		if err != nil {
			s.fail(dir+"/"+g.file, fmt.Errorf("agent %s/%s: %w", ns, p.Name, err))
			continue
		}
		s.add(dir+"/"+g.file, data)
		if g.file == "flows.ndjson" {
			s.ps.Logf("%s: %d flows in the last %s", podNode(p), bytes.Count(data, []byte{'\n'}), r.opts.Since)
		}
	}
}

// collectObserver port-forwards to the observer and saves its status, graph, metrics and merged recent
// flows (time-ordered across nodes, as `starlab observe` shows them) under observer/.
func (r *run) collectObserver(ctx context.Context, s *stepCtx) error {
	if _, err := r.clients(); err != nil {
		return err
	}
	fw, err := observer.PortForward(ctx, r.cfg, r.opts.Namespace, 0)
	if err != nil {
		return fmt.Errorf("reach the observer: %w", err)
	}
	defer fw.Close()
	for _, g := range []struct {
		file, path string
		q          url.Values
	}{
		{"status.json", "/api/v1/status", nil},
		{"graph.json", "/api/v1/graph", nil},
		{"metrics.txt", "/metrics", nil},
		{"flows.ndjson", "/api/v1/flows", flow.Query{Since: time.Now().Add(-r.opts.Since)}.Values()},
	} {
		data, err := fetch(ctx, fw.URL(), g.path, g.q)
		if err != nil {
			s.fail("observer/"+g.file, fmt.Errorf("observer %s: %w", fw.Pod, err))
			continue
		}
		s.add("observer/"+g.file, data)
		if g.file == "flows.ndjson" {
			s.ps.Logf("%d flows merged across nodes in the last %s", bytes.Count(data, []byte{'\n'}), r.opts.Since)
		}
	}
	return nil
}
