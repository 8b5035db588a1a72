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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

const (
	// AgentPort is the agent's HTTP port (hostNetwork) and the observer's.
	AgentPort      = observer.Port
	maxFetchBytes  = 256 << 20
	requestTimeout = 45 * time.Second
)

// forward is a client-go port-forward from 127.0.0.1:<any> to a pod port.
type forward struct {
	url  string
	stop chan struct{}
	done chan struct{}
}

func (f *forward) close() {
	close(f.stop)
	<-f.done
}

// portForward forwards a free local port to port of pod ns/name through the API server.
func portForward(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, ns, name string, port int) (*forward, error) {
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward transport: %w", err)
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	f := &forward{stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	var errOut strings.Builder
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, f.stop, ready, io.Discard, &errOut)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s/%s:%d: %w", ns, name, port, err)
	}
	var fwdErr error
	go func() {
		defer close(f.done)
		fwdErr = pf.ForwardPorts()
	}()
	select {
	case <-ready:
	case <-f.done:
		return nil, fmt.Errorf("port-forward to %s/%s:%d ended before it was ready: %v %s", ns, name, port, fwdErr, errOut.String())
	case <-ctx.Done():
		close(f.stop)
		<-f.done
		return nil, fmt.Errorf("port-forward to %s/%s:%d: %w", ns, name, port, ctx.Err())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) == 0 {
		f.close()
		return nil, fmt.Errorf("port-forward to %s/%s:%d: local port unknown: %v", ns, name, port, err)
	}
	f.url = fmt.Sprintf("http://127.0.0.1:%d", ports[0].Local)
	return f, nil
}

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
		wg.Go(func() { r.collectAgent(ctx, s, cs, p, flowQuery) })
	}
	wg.Wait()
	return nil
}

// collectAgent saves one agent's status, flows and metrics through a port-forward to its pod.
func (r *run) collectAgent(ctx context.Context, s *stepCtx, cs kubernetes.Interface, p *corev1.Pod, flowQuery url.Values) {
	ns := p.Namespace
	dir := "agents/" + podNode(p)
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		s.fail(dir, fmt.Errorf("agent pod %s/%s is %s, not running: its API cannot be reached", ns, p.Name, p.Status.Phase))
		return
	}
	f, err := portForward(ctx, r.cfg, cs, ns, p.Name, AgentPort)
	if err != nil {
		s.fail(dir, err)
		return
	}
	defer f.close()
	for _, g := range []struct {
		file, path string
		q          url.Values
	}{
		{"status.json", "/v1/status", nil},
		{"flows.ndjson", "/v1/flows", flowQuery},
		{"metrics.txt", "/metrics", nil},
	} {
		data, err := fetch(ctx, f.url, g.path, g.q)
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
		data, err := fetch(ctx, fw.URL, g.path, g.q)
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
