package bundle

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/portforward"
)

const (
	maxFetchBytes  = 256 << 20
	requestTimeout = 45 * time.Second
)

// readAll runs one GET of a collection under its own timeout and returns the answer (at most
// maxFetchBytes of it).
func readAll(ctx context.Context, path string, get func(context.Context) (io.ReadCloser, error)) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	body, err := get(ctx)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxFetchBytes))
	if err != nil {
		return nil, fmt.Errorf("read GET %s: %w", path, err)
	}
	return data, nil
}

// collectAgents port-forwards to every agent pod's API (agentapi.Port), in parallel, and saves its status,
// recent flows and metrics under agents/<node>/.
func (r *run) collectAgents(ctx context.Context, s *stepCtx) error {
	cs, err := r.clients()
	if err != nil {
		return err
	}
	ns := r.opts.Namespace
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector})
	if err != nil {
		return fmt.Errorf("list agent pods (%s) in %s: %w", agentapi.PodSelector, ns, err)
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("no agent pods (%s) in namespace %s: is the chart installed?", agentapi.PodSelector, ns)
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
	f, err := portforward.Open(ctx, r.cfg, ns, p.Name, agentapi.Port, 0)
	if err != nil {
		s.fail(dir, err)
		return
	}
	defer f.Close()
	c := agentapi.NewClientURL(f.URL(), nil)
	for _, g := range []struct {
		file, path string
		q          url.Values
	}{
		{"status.json", agentapi.PathStatus, nil},
		{"flows.ndjson", agentapi.PathFlows, flowQuery},
		{"metrics.txt", agentapi.PathMetrics, nil},
	} {
		data, err := readAll(ctx, g.path, func(ctx context.Context) (io.ReadCloser, error) { return c.Get(ctx, g.path, g.q) })
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
	c := &observer.Client{Base: fw.URL()}
	for _, g := range []struct {
		file, path string
		q          url.Values
	}{
		{"status.json", observer.PathStatus, nil},
		{"graph.json", observer.PathGraph, nil},
		{"metrics.txt", observer.PathMetrics, nil},
		{"flows.ndjson", observer.PathFlows, flow.Query{Since: time.Now().Add(-r.opts.Since)}.Values()},
	} {
		data, err := readAll(ctx, g.path, func(ctx context.Context) (io.ReadCloser, error) { return c.Get(ctx, g.path, g.q) })
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
