package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/starlab-dev/starlab/datapath/lb"
)

// healthChecks serves the healthCheckNodePort of every externalTrafficPolicy Local Service, as
// kube-proxy does: on every node address, 200 with the number of this node's ready endpoints when
// there is one, 503 when there is none (only terminating ones count as none). A load balancer
// sends external traffic only to the nodes that answer 200. Not safe for concurrent use (the
// services part calls it with its lock held); the handlers read their state under hc.mu.
type healthChecks struct {
	log    *slog.Logger
	listen func(port uint16) (net.Listener, error)

	mu      sync.Mutex
	servers map[uint16]*hcServer
}

type hcServer struct {
	srv   *http.Server
	state lb.HealthCheck
}

func newHealthChecks(log *slog.Logger) *healthChecks {
	return &healthChecks{
		log:     log,
		listen:  func(port uint16) (net.Listener, error) { return net.Listen("tcp", ":"+strconv.Itoa(int(port))) },
		servers: map[uint16]*hcServer{},
	}
}

// sync makes the served ports those of want: new ports are opened, gone ones closed, the others get
// their new counts. A port that cannot be opened is logged and retried on the next sync.
func (h *healthChecks) sync(want []lb.HealthCheck) {
	h.mu.Lock()
	defer h.mu.Unlock()
	keep := map[uint16]bool{}
	for _, hc := range want {
		keep[hc.Port] = true
		if s, ok := h.servers[hc.Port]; ok {
			s.state = hc
			continue
		}
		l, err := h.listen(hc.Port)
		if err != nil {
			h.log.Warn("healthCheckNodePort not served", "service", hc.Namespace+"/"+hc.Name, "port", hc.Port, "err", err)
			continue
		}
		s := &hcServer{state: hc}
		port := hc.Port
		s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { h.serve(w, port) }), ReadHeaderTimeout: 5 * time.Second}
		h.servers[port] = s
		go func() {
			if err := s.srv.Serve(l); err != nil && err != http.ErrServerClosed {
				h.log.Warn("healthCheckNodePort server stopped", "port", port, "err", err)
			}
		}()
		h.log.Info("serving healthCheckNodePort", "service", hc.Namespace+"/"+hc.Name, "port", port)
	}
	for port, s := range h.servers {
		if !keep[port] {
			_ = s.srv.Close()
			delete(h.servers, port)
			h.log.Info("stopped healthCheckNodePort", "port", port)
		}
	}
}

// serve answers one health check with kube-proxy's body and headers.
func (h *healthChecks) serve(w http.ResponseWriter, port uint16) {
	h.mu.Lock()
	s, ok := h.servers[port]
	var st lb.HealthCheck
	if ok {
		st = s.state
	}
	h.mu.Unlock()
	if !ok {
		http.Error(w, "no service on this health check port", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(st.LocalEndpoints))
	if st.LocalEndpoints == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	fmt.Fprintf(w, "{\n\t\"service\": {\n\t\t\"namespace\": %q,\n\t\t\"name\": %q\n\t},\n\t\"localEndpoints\": %d,\n\t\"serviceProxyHealthy\": true\n}",
		st.Namespace, st.Name, st.LocalEndpoints)
}

// close stops every health check server.
func (h *healthChecks) close(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for port, s := range h.servers {
		_ = s.srv.Shutdown(ctx)
		delete(h.servers, port)
	}
}
