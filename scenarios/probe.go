package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/internal/demo"
)

// ProbeTimeout is how long one probe connection may take before it counts as unreachable.
const ProbeTimeout = time.Second

// Probe makes one real connection from inside the pod of from to target (host:port) with protocol
// (tcp or udp), through the demo's /probe endpoint reached by port-forward.
func (e *Env) Probe(ctx context.Context, from PodRef, target, protocol string) (demo.ProbeResult, error) {
	pod, err := e.Pod(ctx, from)
	if err != nil {
		return demo.ProbeResult{}, err
	}
	port, err := containerPort(pod)
	if err != nil {
		return demo.ProbeResult{}, err
	}
	for attempt := 0; ; attempt++ {
		local, err := e.PortForward(ctx, pod, port)
		if err != nil {
			return demo.ProbeResult{}, err
		}
		res, err := demo.RequestProbe(ctx, fmt.Sprintf("http://127.0.0.1:%d", local), target, protocol, ProbeTimeout)
		if err == nil {
			return res, nil
		}
		e.dropForward(pod, port)
		if attempt == 1 || ctx.Err() != nil {
			return demo.ProbeResult{}, fmt.Errorf("probe %s -> %s from pod %s/%s: %w", from, target, pod.Namespace, pod.Name, err)
		}
	}
}

// probeFromPod makes one connection from inside pod to target (its demo /probe endpoint).
func (e *Env) probeFromPod(ctx context.Context, pod *corev1.Pod, target string) (demo.ProbeResult, error) {
	return e.probeFromPodWithin(ctx, pod, target, ProbeTimeout)
}

// probeFromPodWithin is probeFromPod with a connect timeout of its own.
func (e *Env) probeFromPodWithin(ctx context.Context, pod *corev1.Pod, target string, timeout time.Duration) (demo.ProbeResult, error) {
	port, err := containerPort(pod)
	if err != nil {
		return demo.ProbeResult{}, err
	}
	local, err := e.PortForward(ctx, pod, port)
	if err != nil {
		return demo.ProbeResult{}, err
	}
	res, err := demo.RequestProbe(ctx, fmt.Sprintf("http://127.0.0.1:%d", local), target, "tcp", timeout)
	if err != nil {
		e.dropForward(pod, port)
	}
	return res, err
}

// httpStatus GETs u from this host and returns the answer's status code.
func httpStatus(ctx context.Context, u string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("request %s: %w", u, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
