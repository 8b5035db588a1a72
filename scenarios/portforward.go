package scenarios

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/internal/portforward"
)

// forwards keeps one port-forward per (pod UID, port) for the whole run. A port-forward enters the
// pod's network namespace from the node (kubelet), so the test's own requests are not subject to
// NetworkPolicy, unlike the API server proxy.
type forwards struct {
	mu sync.Mutex
	m  map[string]*portforward.Forward
}

// PortForward returns a 127.0.0.1 port forwarded to port of pod, reusing a live forward.
func (e *Env) PortForward(ctx context.Context, pod *corev1.Pod, port int) (int, error) {
	key := fmt.Sprintf("%s/%d", pod.UID, port)
	e.fwd.mu.Lock()
	defer e.fwd.mu.Unlock()
	if e.fwd.m == nil {
		e.fwd.m = map[string]*portforward.Forward{}
	}
	if f, ok := e.fwd.m[key]; ok && f.Alive() {
		return f.LocalPort(), nil
	}
	f, err := portforward.Open(ctx, e.RESTConfig, pod.Namespace, pod.Name, port, 0)
	if err != nil {
		return 0, err
	}
	e.fwd.m[key] = f
	return f.LocalPort(), nil
}

// dropForward forgets a forward that failed, so the next PortForward makes a new one.
func (e *Env) dropForward(pod *corev1.Pod, port int) {
	key := fmt.Sprintf("%s/%d", pod.UID, port)
	e.fwd.mu.Lock()
	f, ok := e.fwd.m[key]
	delete(e.fwd.m, key)
	e.fwd.mu.Unlock()
	if ok {
		f.Close()
	}
}

// Close stops every port-forward.
func (e *Env) Close() {
	e.fwd.mu.Lock()
	fs := e.fwd.m
	e.fwd.m = nil
	e.fwd.mu.Unlock()
	for _, f := range fs {
		f.Close()
	}
}
