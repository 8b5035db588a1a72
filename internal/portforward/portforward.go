// Package portforward forwards a 127.0.0.1 port to a pod port through the Kubernetes API server, as
// `kubectl port-forward` does (WebSocket, falling back to SPDY). The forwarded connection enters the
// pod's network namespace from its node (kubelet), so it is not subject to NetworkPolicy.
package portforward

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Forward is a running port-forward from 127.0.0.1:LocalPort() to a pod port.
type Forward struct {
	what     string // "port-forward to ns/pod:port", the prefix of every error
	local    int
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	err      error // set before done is closed
}

// Open forwards 127.0.0.1:localPort (0: any free port) to remotePort of pod in namespace. It returns
// once the local port listens. Like net.Dialer.DialContext, ctx bounds only the setup: once Open has
// returned, the forward runs until Close, or until the pod or the connection to it goes (see Done and Err).
func Open(ctx context.Context, cfg *rest.Config, namespace, pod string, remotePort, localPort int) (*Forward, error) {
	what := fmt.Sprintf("port-forward to %s/%s:%d", namespace, pod, remotePort)
	if namespace == "" || pod == "" {
		return nil, fmt.Errorf("%s: namespace and pod name are required", what)
	}
	if remotePort < 1 || remotePort > 65535 || localPort < 0 || localPort > 65535 {
		return nil, fmt.Errorf("%s: ports must be 1-65535 (local: 0-65535 where 0 picks a free one), got remote %d local %d",
			what, remotePort, localPort)
	}
	dialer, err := newDialer(cfg, namespace, pod)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	f := &Forward{what: what, stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	var errOut syncBuilder
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("%d:%d", localPort, remotePort)},
		f.stop, ready, io.Discard, &errOut)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	go func() {
		defer close(f.done)
		if err := pf.ForwardPorts(); err != nil {
			f.err = fmt.Errorf("%s: %w", what, err)
		}
	}()
	stopOnCancel := context.AfterFunc(ctx, f.halt)
	select {
	case <-ready:
		if !stopOnCancel() {
			f.Close() // ctx ended as the forward became ready
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
	case <-f.done:
		stopOnCancel()
		if f.err == nil {
			f.err = fmt.Errorf("%s: ended before it was ready: %s", what, strings.TrimSpace(errOut.String()))
		}
		return nil, f.err
	case <-ctx.Done():
		// f.halt has run. client-go's dial takes no context, so do not wait for f.done: the forwarder
		// goroutine ends as soon as the dial returns and it sees the stop channel closed.
		return nil, fmt.Errorf("%s: %w", what, ctx.Err())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		f.Close()
		return nil, fmt.Errorf("%s: local port unknown (%d ports): %v", what, len(ports), err)
	}
	f.local = int(ports[0].Local)
	return f, nil
}

// newDialer dials the pod's portforward subresource: WebSocket first, SPDY when the server does not upgrade.
func newDialer(cfg *rest.Config, namespace, pod string) (httpstream.Dialer, error) {
	if cfg == nil {
		return nil, fmt.Errorf("no REST config: load the lab's kubeconfig first")
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("API server URL %q: %w", cfg.Host, err)
	}
	u := subresourceURL(base, namespace, pod)
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("spdy transport: %w", err)
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	wsDialer, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		return nil, fmt.Errorf("websocket dialer: %w", err)
	}
	return portforward.NewFallbackDialer(wsDialer, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	}), nil
}

// subresourceURL is the API server URL of pod's portforward subresource (base may carry a proxy path prefix).
func subresourceURL(base *url.URL, namespace, pod string) *url.URL {
	return base.JoinPath("api", "v1", "namespaces", namespace, "pods", pod, "portforward")
}

func (f *Forward) halt() { f.stopOnce.Do(func() { close(f.stop) }) }

// LocalPort is the 127.0.0.1 port that forwards to the pod.
func (f *Forward) LocalPort() int { return f.local }

// URL is http://127.0.0.1:<LocalPort>.
func (f *Forward) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", f.local) }

// Close stops the port-forward and waits for it to end. It is safe to call more than once.
func (f *Forward) Close() {
	f.halt()
	<-f.done
}

// Done is closed when the port-forward has ended (Close, pod gone, or connection lost); Err says why.
func (f *Forward) Done() <-chan struct{} { return f.done }

// Alive reports whether the port-forward still runs.
func (f *Forward) Alive() bool {
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

// Err is why the port-forward ended (nil while it runs and after Close).
func (f *Forward) Err() error {
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}

// syncBuilder is a strings.Builder safe for the forwarder's goroutines to write while Open reads it.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
