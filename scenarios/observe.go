package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

const observerService = "starlab-observer"

// observerPod finds the pod behind the starlab-observer Service (in whichever namespace the chart
// was installed).
func (e *Env) observerPod(ctx context.Context) (*corev1.Pod, error) {
	svcs, err := e.Client.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", observerService).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("find Service %s: %w", observerService, err)
	}
	if len(svcs.Items) == 0 {
		return nil, fmt.Errorf("no Service %s in any namespace: is the starlab chart installed (starlab up)?", observerService)
	}
	svc := svcs.Items[0]
	return e.Pod(ctx, PodRef{Namespace: svc.Namespace, Selector: labels.SelectorFromSet(svc.Spec.Selector).String()})
}

// withObserver runs fn with a client of the observer through a port-forward. When the forward
// broke (fn failed to reach the observer), it is dropped and fn runs once more over a new one.
func (e *Env) withObserver(ctx context.Context, fn func(*observer.Client) error) error {
	pod, err := e.observerPod(ctx)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		port, err := e.PortForward(ctx, pod, observer.Port)
		if err != nil {
			return err
		}
		err = fn(&observer.Client{Base: fmt.Sprintf("http://127.0.0.1:%d", port)})
		var unreachable *url.Error
		if err == nil || !errors.As(err, &unreachable) {
			return err
		}
		e.dropForward(pod, observer.Port)
		if attempt == 1 || ctx.Err() != nil {
			return err
		}
	}
}

// ObserverStatus returns the observer's /api/v1/status.
func (e *Env) ObserverStatus(ctx context.Context) (observer.Status, error) {
	var st observer.Status
	err := e.withObserver(ctx, func(c *observer.Client) error {
		var err error
		st, err = c.Status(ctx)
		return err
	})
	return st, err
}

// Observe returns the flows the observer holds that match q (q.Follow must be false).
func (e *Env) Observe(ctx context.Context, q flow.Query) ([]*flow.Flow, error) {
	if q.Follow {
		return nil, errors.New("Observe returns buffered flows: use a query without Follow")
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("flow query: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []*flow.Flow
	err := e.withObserver(ctx, func(c *observer.Client) error {
		out = out[:0]
		return c.Flows(ctx, q, func(f *flow.Flow) error {
			out = append(out, f)
			return nil
		})
	})
	return out, err
}

// ObserverMetrics scrapes the observer's /metrics into series -> value (the starlab_ series).
func (e *Env) ObserverMetrics(ctx context.Context) (map[string]float64, error) {
	var text string
	err := e.withObserver(ctx, func(c *observer.Client) error {
		var err error
		text, err = c.Metrics(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return parseMetrics(text)
}

// ObserverGraph fetches the observer's service graph of namespace.
func (e *Env) ObserverGraph(ctx context.Context, namespace string) (observer.GraphView, error) {
	var g observer.GraphView
	err := e.withObserver(ctx, func(c *observer.Client) error {
		var err error
		g, err = c.Graph(ctx, url.Values{"namespace": {namespace}})
		return err
	})
	return g, err
}

// parseMetrics reads the starlab_ series of a Prometheus text exposition into series -> value
// (series as written, labels included).
func parseMetrics(text string) (map[string]float64, error) {
	out := map[string]float64{}
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if !strings.HasPrefix(line, "starlab_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, nil
}
