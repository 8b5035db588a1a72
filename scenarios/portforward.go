package scenarios

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// forwards keeps one client-go port-forward per (pod UID, port) for the whole run. A port-forward
// enters the pod's network namespace from the node (kubelet), so the test's own requests are not
// subject to NetworkPolicy, unlike the API server proxy.
type forwards struct {
	mu sync.Mutex
	m  map[string]*forward
}

type forward struct {
	local int
	stop  chan struct{}
	done  chan struct{}
}

func (f *forward) alive() bool {
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

// PortForward returns a 127.0.0.1 port forwarded to port of pod, reusing a live forward.
func (e *Env) PortForward(ctx context.Context, pod *corev1.Pod, port int) (int, error) {
	key := fmt.Sprintf("%s/%d", pod.UID, port)
	e.fwd.mu.Lock()
	defer e.fwd.mu.Unlock()
	if e.fwd.m == nil {
		e.fwd.m = map[string]*forward{}
	}
	if f, ok := e.fwd.m[key]; ok && f.alive() {
		return f.local, nil
	}
	f, err := e.newForward(ctx, pod, port)
	if err != nil {
		return 0, err
	}
	e.fwd.m[key] = f
	return f.local, nil
}

// dropForward forgets a forward that failed, so the next PortForward makes a new one.
func (e *Env) dropForward(pod *corev1.Pod, port int) {
	key := fmt.Sprintf("%s/%d", pod.UID, port)
	e.fwd.mu.Lock()
	defer e.fwd.mu.Unlock()
	if f, ok := e.fwd.m[key]; ok {
		close(f.stop)
		delete(e.fwd.m, key)
	}
}

func (e *Env) newForward(ctx context.Context, pod *corev1.Pod, port int) (*forward, error) {
	what := fmt.Sprintf("port-forward to %s/%s:%d", pod.Namespace, pod.Name, port)
	url := e.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(e.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("%s: spdy transport: %w", what, err)
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	wsDialer, err := portforward.NewSPDYOverWebsocketDialer(url, e.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("%s: websocket dialer: %w", what, err)
	}
	dialer := portforward.NewFallbackDialer(wsDialer, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	f := &forward{stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, f.stop, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	errc := make(chan error, 1)
	go func() {
		defer close(f.done)
		errc <- pf.ForwardPorts()
	}()
	select {
	case <-ready:
	case err := <-errc:
		return nil, fmt.Errorf("%s: %w", what, err)
	case <-ctx.Done():
		close(f.stop)
		return nil, fmt.Errorf("%s: %w", what, ctx.Err())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		close(f.stop)
		return nil, fmt.Errorf("%s: local port: %v", what, err)
	}
	f.local = int(ports[0].Local)
	return f, nil
}

// Close stops every port-forward.
func (e *Env) Close() {
	e.fwd.mu.Lock()
	defer e.fwd.mu.Unlock()
	for k, f := range e.fwd.m {
		close(f.stop)
		delete(e.fwd.m, k)
	}
}
