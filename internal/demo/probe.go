package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// PeerStatus is one entry of GET /status: whether the peer answered at the last probe.
type PeerStatus struct {
	Peer      string    `json:"peer"`
	Reachable bool      `json:"reachable"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checkedAt"`
}

// ProbeResult is the answer of GET /probe: one connection made now from inside the pod.
type ProbeResult struct {
	Target    string  `json:"target"`
	Protocol  string  `json:"protocol"`
	Reachable bool    `json:"reachable"`
	Error     string  `json:"error,omitempty"`
	ElapsedMs float64 `json:"elapsedMs"`
	// ConnectMs is the TCP connect alone, from the socket's creation to the handshake's end or its
	// failure: ElapsedMs without the name's resolution (a Service name under cluster DNS's search
	// path can take several lookups). 0 when no socket was made.
	ConnectMs float64 `json:"connectMs,omitempty"`
	// LocalAddr is the pod's own address:port of the connection (its source port identifies the
	// connection in flows). When a TCP connect fails the address is 0.0.0.0 with the source port the
	// attempt used. Empty when no socket was bound.
	LocalAddr string `json:"localAddr,omitempty"`
	// RemoteAddr is the address the connection was made to (after DNS).
	RemoteAddr string `json:"remoteAddr,omitempty"`
}

// Peer is a probe target: host:port (TCP connect) or an http(s) URL (GET, any status < 500 counts).
type Peer struct {
	Raw string
	URL *url.URL // nil for host:port
}

// ParsePeer validates a --peer value.
func ParsePeer(s string) (Peer, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return Peer{}, fmt.Errorf("peer %q: want host:port or an http(s) URL such as http://frontend.stars:80/", s)
		}
		return Peer{Raw: s, URL: u}, nil
	}
	if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
		return Peer{}, fmt.Errorf("peer %q: want host:port (e.g. backend.stars:6379) or an http(s) URL", s)
	}
	return Peer{Raw: s}, nil
}

// ProbeConfig configures a probe workload.
type ProbeConfig struct {
	// Port serves HTTP (/status, /probe, /healthz); peers connect to it.
	Port int
	// Listen are extra TCP ports that accept (and close) connections.
	Listen []int
	// ListenUDP are UDP ports that echo every datagram (UDP probes see an answer).
	ListenUDP []int
	// ListenSCTP are SCTP ports that accept associations (the node's kernel needs SCTP).
	ListenSCTP []int
	// Echo are TCP ports that echo every byte back and keep connections open (stream peers).
	Echo []int
	// Peers are probed every Interval with Timeout each.
	Peers    []Peer
	Interval time.Duration
	Timeout  time.Duration
	// Addr is the IP to bind (default all).
	Addr string
}

// Prober probes peers and serves the results.
type Prober struct {
	cfg    ProbeConfig
	log    *slog.Logger
	client *http.Client
	mu     sync.Mutex
	status []PeerStatus
}

// NewProber validates cfg.
func NewProber(cfg ProbeConfig, log *slog.Logger) (*Prober, error) {
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("--port %d: want 1..65535", cfg.Port)
	}
	log = pollDefaults(&cfg.Interval, &cfg.Timeout, log)
	p := &Prober{cfg: cfg, log: log, client: newFreshClient(cfg.Timeout)}
	p.status = make([]PeerStatus, len(cfg.Peers))
	for i, peer := range cfg.Peers {
		p.status[i] = PeerStatus{Peer: peer.Raw, Error: "not probed yet"}
	}
	return p, nil
}

// Status returns a copy of the last results, in --peer order.
func (p *Prober) Status() []PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PeerStatus(nil), p.status...)
}

// ProbeOnce probes every peer once, concurrently, and records the results.
func (p *Prober) ProbeOnce(ctx context.Context) {
	results := make([]PeerStatus, len(p.cfg.Peers))
	var wg sync.WaitGroup
	for i, peer := range p.cfg.Peers {
		wg.Go(func() {
			err := p.probePeer(ctx, peer)
			st := PeerStatus{Peer: peer.Raw, Reachable: err == nil, CheckedAt: time.Now().UTC()}
			if err != nil {
				st.Error = err.Error()
			}
			results[i] = st
		})
	}
	wg.Wait()
	p.mu.Lock()
	p.status = results
	p.mu.Unlock()
}

func (p *Prober) probePeer(ctx context.Context, peer Peer) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if peer.URL == nil {
		res := Dial(ctx, "tcp", peer.Raw)
		if !res.Reachable {
			return errors.New(res.Error)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peer.URL.String(), nil)
	if err != nil {
		return fmt.Errorf("request %s: %w", peer.Raw, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", peer.Raw, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("GET %s: status %s", peer.Raw, resp.Status)
	}
	return nil
}

// Run serves HTTP on Port (with the streams API, stream.go), accepts on Listen, echoes on
// ListenUDP and Echo, and probes until ctx ends.
func (p *Prober) Run(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, p.Status()) })
	RegisterCommon(mux)
	newStreamRegistry(ctx).register(mux)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, port := range p.cfg.Listen {
		l, err := net.Listen("tcp", net.JoinHostPort(p.cfg.Addr, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("listen on extra port %d: %w", port, err)
		}
		listeners = append(listeners, l)
		go acceptAndClose(l)
	}
	for _, port := range p.cfg.ListenUDP {
		if err := ListenUDPEcho(ctx, p.cfg.Addr, port); err != nil {
			return err
		}
	}
	for _, port := range p.cfg.ListenSCTP {
		if err := ListenSCTP(ctx, p.cfg.Addr, port); err != nil {
			return err
		}
	}
	for _, port := range p.cfg.Echo {
		if err := ListenTCPEcho(ctx, p.cfg.Addr, port); err != nil {
			return err
		}
	}
	p.log.Info("probe serving", "port", p.cfg.Port, "listen", p.cfg.Listen, "echo", p.cfg.Echo, "peers", len(p.cfg.Peers), "interval", p.cfg.Interval)
	return serveEvery(ctx, net.JoinHostPort(p.cfg.Addr, strconv.Itoa(p.cfg.Port)), mux, p.cfg.Interval, p.ProbeOnce)
}

// acceptAndClose accepts connections and keeps each open until the peer closes it (or 10 s), so a
// TCP connect succeeds and any bytes sent are drained.
func acceptAndClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
}

// Dial makes one connection to target now from a source port of the kernel's choice (DialFrom).
func Dial(ctx context.Context, protocol, target string) ProbeResult {
	return DialFrom(ctx, nil, protocol, target)
}

// validProtocol reports whether a probe can dial protocol.
func validProtocol(protocol string) bool {
	return protocol == "tcp" || protocol == "udp" || protocol == "sctp"
}

// DialFrom makes one connection to target now, from the next source port of ports (nil: the
// kernel's choice). TCP: reachable when the handshake completes. UDP: a datagram is sent and
// reachable when any answer arrives before the deadline. SCTP: reachable when the association is
// established (INIT, INIT-ACK, COOKIE-ECHO, COOKIE-ACK).
func DialFrom(ctx context.Context, ports *SourcePorts, protocol, target string) ProbeResult {
	start := time.Now()
	res := ProbeResult{Target: target, Protocol: protocol}
	finish := func(err error) ProbeResult {
		res.ElapsedMs = float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			res.Error = err.Error()
		} else {
			res.Reachable = true
		}
		return res
	}
	var d net.Dialer
	switch protocol {
	case "tcp", "":
		res.Protocol = "tcp"
		var srcPort int
		var connectStart atomic.Int64 // unix ns; the dialer may race two address families
		bind := ports.bind(&srcPort)
		d.Control = func(network, address string, c syscall.RawConn) error {
			connectStart.Store(time.Now().UnixNano())
			return bind(network, address, c)
		}
		c, err := d.DialContext(ctx, "tcp", target)
		if at := connectStart.Load(); at != 0 {
			res.ConnectMs = float64(time.Since(time.Unix(0, at)).Microseconds()) / 1000
		}
		if err != nil {
			if srcPort != 0 {
				// The source IP is chosen at connect time; the port identifies the attempt.
				res.LocalAddr = net.JoinHostPort("0.0.0.0", strconv.Itoa(srcPort))
			}
			return finish(fmt.Errorf("tcp connect %s: %w", target, err))
		}
		res.LocalAddr, res.RemoteAddr = c.LocalAddr().String(), c.RemoteAddr().String()
		c.Close()
		return finish(nil)
	case "udp":
		var srcPort int
		d.Control = ports.bind(&srcPort)
		c, err := d.DialContext(ctx, "udp", target)
		if err != nil {
			return finish(fmt.Errorf("udp socket to %s: %w", target, err))
		}
		defer c.Close()
		res.LocalAddr, res.RemoteAddr = c.LocalAddr().String(), c.RemoteAddr().String()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		if _, err := c.Write([]byte("starlab-probe\n")); err != nil {
			return finish(fmt.Errorf("udp send to %s: %w", target, err))
		}
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil {
			return finish(fmt.Errorf("udp answer from %s: %w", target, err))
		}
		return finish(nil)
	case "sctp":
		local, err := dialSCTP(ctx, ports, target)
		res.LocalAddr = local
		if err != nil {
			return finish(err)
		}
		res.RemoteAddr = target
		return finish(nil)
	default:
		return finish(fmt.Errorf("protocol %q: want tcp, udp or sctp", protocol))
	}
}

// RegisterCommon adds GET /healthz, GET /hostname, GET /probe, POST /probe/batch and POST /load (load.go) to
// mux. The probes take their source ports in turn from one SourcePorts, so no 5-tuple is reused soon.
func RegisterCommon(mux *http.ServeMux) {
	ports := NewEphemeralSourcePorts()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /hostname", handleHostname)
	mux.HandleFunc("GET /probe", func(w http.ResponseWriter, r *http.Request) { handleProbe(w, r, ports) })
	mux.HandleFunc("POST /probe/batch", func(w http.ResponseWriter, r *http.Request) { handleProbeBatch(w, r, ports) })
	mux.HandleFunc("POST /load", handleLoad)
}

// handleHostname answers the server's host name (a pod's name; a hostNetwork pod's node), as agnhost
// netexec's /hostname does: a client outside the cluster learns which backend a Service sent it to.
func handleHostname(w http.ResponseWriter, _ *http.Request) {
	name, err := os.Hostname()
	if err != nil {
		http.Error(w, fmt.Sprintf("host name: %v", err), http.StatusInternalServerError)
		return
	}
	_, _ = io.WriteString(w, name+"\n")
}

func handleProbe(w http.ResponseWriter, r *http.Request, ports *SourcePorts) {
	q := r.URL.Query()
	target := q.Get("target")
	if _, _, err := net.SplitHostPort(target); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("target %q: want host:port, e.g. /probe?target=backend.stars:6379", target)})
		return
	}
	protocol := q.Get("protocol")
	if protocol == "" {
		protocol = "tcp"
	}
	if !validProtocol(protocol) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("protocol %q: want tcp, udp or sctp", protocol)})
		return
	}
	timeout := time.Second
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > time.Minute {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("timeout %q: want a duration up to 1m such as 1s", s)})
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	writeJSON(w, http.StatusOK, DialFrom(ctx, ports, protocol, target))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// pollDefaults fills the polling defaults the probe and the management UI share: every 2 s, 1 s per
// request, and the default logger when log is nil (returned).
func pollDefaults(interval, timeout *time.Duration, log *slog.Logger) *slog.Logger {
	if *interval <= 0 {
		*interval = 2 * time.Second
	}
	if *timeout <= 0 {
		*timeout = time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return log
}

// serveEvery serves handler on addr until ctx ends, running tick now and then every interval meanwhile.
// It returns the server's error (nil after ctx ends and the server has shut down).
func serveEvery(ctx context.Context, addr string, handler http.Handler, interval time.Duration, tick func(context.Context)) error {
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, addr, handler) }()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	tick(ctx)
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case err := <-errc:
			return err
		case <-ticker.C:
			tick(ctx)
		}
	}
}

// Serve serves handler on addr until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, addr string, handler http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ServeListener(ctx, l, handler)
}

// ServeListener serves handler on l until ctx ends.
func ServeListener(ctx context.Context, l net.Listener, handler http.Handler) error {
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", l.Addr(), err)
	}
	return nil
}

func newCommonMux() *http.ServeMux {
	mux := http.NewServeMux()
	RegisterCommon(mux)
	return mux
}

// newFreshClient returns an HTTP client that opens a new connection for every request: a kept-alive
// connection would survive a policy change (conntrack keeps established flows), so the graph would
// show reachability the current policy no longer grants to new connections.
func newFreshClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return &http.Client{Timeout: timeout, Transport: tr}
}
