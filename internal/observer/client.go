package observer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/kubeready"
	"github.com/starlab-dev/starlab/internal/portforward"
)

// Where the chart runs the observer.
const (
	DefaultNamespace = "starlab-system"
	PodSelector      = "app.kubernetes.io/name=starlab-observer"
)

// API paths of the observer.
const (
	PathFlows   = "/api/v1/flows"  // flows answering a flow.Query (flow.Query.Values): NDJSON, or the wire form when asked
	PathGraph   = "/api/v1/graph"  // GraphView as JSON
	PathStatus  = "/api/v1/status" // Status as JSON
	PathMetrics = "/metrics"       // Prometheus text exposition
)

// Forward is a running port-forward to the observer pod: URL(), Close(), Done() and Err() come from
// portforward.Forward.
type Forward struct {
	*portforward.Forward
	Pod string
}

// FindPod returns the name of a running, ready observer pod in namespace.
func FindPod(ctx context.Context, cs kubernetes.Interface, namespace string) (string, error) {
	p, err := findPod(ctx, cs, namespace)
	if err != nil {
		return "", err
	}
	return p.Name, nil
}

func findPod(ctx context.Context, cs kubernetes.Interface, namespace string) (*corev1.Pod, error) {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: PodSelector})
	if err != nil {
		return nil, fmt.Errorf("list observer pods (%s) in namespace %s: %w", PodSelector, namespace, err)
	}
	var seen []string
	for i := range pods.Items {
		p := &pods.Items[i]
		seen = append(seen, p.Name+" ("+string(p.Status.Phase)+")")
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && kubeready.Pod(p) {
			return p, nil
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("no observer pod (%s) in namespace %s: is the lab up? (starlab up, then starlab status)", PodSelector, namespace)
	}
	return nil, fmt.Errorf("no ready observer pod in namespace %s: %s", namespace, strings.Join(seen, ", "))
}

// PortForward forwards 127.0.0.1:localPort (0: any free port) to Port of a ready observer pod,
// through the API server. ctx bounds the setup only. Close it when done.
func PortForward(ctx context.Context, cfg *rest.Config, namespace string, localPort int) (*Forward, error) {
	return portForward(ctx, cfg, namespace, localPort, func(*corev1.Pod) (int, error) { return Port, nil })
}

// HubblePortName names the observer container's port of Hubble's gRPC API (chart
// observer.hubblePort).
const HubblePortName = "hubble-grpc"

// PortForwardHubble forwards 127.0.0.1:localPort (0: any free port) to the Hubble gRPC port of a
// ready observer pod (its container port named HubblePortName); Forward.LocalPort is then the
// address's port. ctx bounds the setup only. Close it when done.
func PortForwardHubble(ctx context.Context, cfg *rest.Config, namespace string, localPort int) (*Forward, error) {
	return portForward(ctx, cfg, namespace, localPort, func(p *corev1.Pod) (int, error) {
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == HubblePortName {
					return int(cp.ContainerPort), nil
				}
			}
		}
		return 0, fmt.Errorf("observer pod %s/%s has no %s port: the chart serves Hubble's API only with observer.hubblePort set (default 4244); upgrade the lab (starlab up) or use --transport ndjson",
			p.Namespace, p.Name, HubblePortName)
	})
}

func portForward(ctx context.Context, cfg *rest.Config, namespace string, localPort int, remote func(*corev1.Pod) (int, error)) (*Forward, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	pod, err := findPod(ctx, cs, namespace)
	if err != nil {
		return nil, err
	}
	port, err := remote(pod)
	if err != nil {
		return nil, err
	}
	f, err := portforward.Open(ctx, cfg, namespace, pod.Name, port, localPort)
	if err != nil {
		return nil, err
	}
	return &Forward{Forward: f, Pod: pod.Name}, nil
}

// Client talks to an observer's HTTP API (directly or through a Forward).
type Client struct {
	Base string // e.g. http://127.0.0.1:4245
	HTTP *http.Client
	// NDJSON reads flows as NDJSON, as curl does, instead of asking for the binary wire form.
	NDJSON bool
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// Get starts GET path?q and returns the body of a 200 answer; the caller closes it.
func (c *Client) Get(ctx context.Context, path string, q url.Values) (io.ReadCloser, error) {
	resp, err := c.get(ctx, path, q, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// get starts GET path?q, with an Accept header when accept is set, and returns a 200 answer.
func (c *Client) get(ctx context.Context, path string, q url.Values, accept string) (*http.Response, error) {
	u := strings.TrimSuffix(c.Base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("observer request %s: %w", path, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("observer %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("observer %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// Flows streams the flows answering q to emit until the answer ends (or, when following, ctx ends).
// It asks for the binary wire form (unless c.NDJSON) and reads NDJSON from an observer that answers that.
func (c *Client) Flows(ctx context.Context, q flow.Query, emit func(*flow.Flow) error) error {
	accept := flow.WireContentType
	if c.NDJSON {
		accept = flow.ContentType
	}
	resp, err := c.get(ctx, PathFlows, q.Values(), accept)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := flow.NewStreamDecoder(resp.Header.Get("Content-Type"), resp.Body)
	for {
		f, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("observer flows: %w", err)
		}
		if err := emit(f); err != nil {
			return err
		}
	}
}

// Graph fetches the service graph.
func (c *Client) Graph(ctx context.Context, q url.Values) (GraphView, error) {
	var g GraphView
	return g, c.getJSON(ctx, PathGraph, q, &g)
}

// Status fetches the observer status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.getJSON(ctx, PathStatus, nil, &s)
}

// Metrics fetches the Prometheus text exposition.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.get(ctx, PathMetrics, nil, "")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read observer metrics: %w", err)
	}
	return string(b), nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.get(ctx, path, q, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode observer %s: %w", path, err)
	}
	return nil
}

// WaitConnected polls the status until every node is connected (and at least minNodes exist).
func (c *Client) WaitConnected(ctx context.Context, minNodes int) (Status, error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var last Status
	var lastErr error
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Unavailable == 0 && st.Connected >= minNodes && st.Connected > 0 {
			return st, nil
		}
		last, lastErr = st, err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("wait for the observer to connect to every node: %w (last error: %v)", ctx.Err(), lastErr)
			}
			var down []string
			for _, n := range last.Nodes {
				if n.State != StateConnected {
					down = append(down, n.Name+": "+n.Error)
				}
			}
			return last, fmt.Errorf("wait for the observer to connect to every node: %w (connected %d, unavailable: %s)",
				ctx.Err(), last.Connected, strings.Join(down, "; "))
		case <-t.C:
		}
	}
}
