package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// observerGet GETs path (with query) from the observer through a port-forward.
func (e *Env) observerGet(ctx context.Context, pathAndQuery string) (*http.Response, error) {
	pod, err := e.observerPod(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		port, err := e.PortForward(ctx, pod, observer.Port)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, pathAndQuery), nil)
		if err != nil {
			return nil, fmt.Errorf("observer request %s: %w", pathAndQuery, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			if resp.StatusCode != http.StatusOK {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				return nil, fmt.Errorf("observer GET %s: %s: %s", pathAndQuery, resp.Status, body)
			}
			return resp, nil
		}
		e.dropForward(pod, observer.Port)
		if attempt == 1 || ctx.Err() != nil {
			return nil, fmt.Errorf("observer GET %s: %w", pathAndQuery, err)
		}
	}
}

// ObserverStatus returns the observer's /api/v1/status.
func (e *Env) ObserverStatus(ctx context.Context) (observer.Status, error) {
	var st observer.Status
	resp, err := e.observerGet(ctx, "/api/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decode observer status: %w", err)
	}
	return st, nil
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
	resp, err := e.observerGet(ctx, "/api/v1/flows?"+q.Values().Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := flow.NewDecoder(resp.Body)
	var out []*flow.Flow
	for {
		f, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read observer flows: %w", err)
		}
		out = append(out, f)
	}
}
