package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/starlab-dev/starlab/internal/flow"
)

// LoadConfig configures the load mode: a UDP sink on SinkPorts and, on request, a generator of new
// flows (POST /flowload), so the datapath emits one NEW flow event per packet at each hook it crosses,
// and a follow client of a flow stream that counts what it decodes (POST/GET/DELETE /follow).
type LoadConfig struct {
	Port      int // HTTP control port (/healthz, POST /flowload, GET /flowload/stats)
	SinkFirst int // first UDP port the sink reads (and the generator's default target port)
	SinkCount int // how many consecutive UDP ports
	Addr      string
}

// FlowLoadRequest is the body of POST /flowload: send Rate datagrams per second for Duration to Target on
// ports [Port, Port+Ports) from Sockets sockets (each its own source port). Every (socket, port)
// pair is one 5-tuple, used in turn: with more tuples than conntrack keeps, each datagram is a new
// flow to the datapath.
type FlowLoadRequest struct {
	Target   string `json:"target"`
	Port     int    `json:"port"`
	Ports    int    `json:"ports"`
	Sockets  int    `json:"sockets"`
	Rate     int    `json:"rate"`
	Duration string `json:"duration"`
	// Senders is how many goroutines send (default 1): more than one where one CPU cannot send Rate.
	Senders int `json:"senders,omitempty"`
}

// FlowLoadResult is the answer of POST /flowload.
type FlowLoadResult struct {
	Sent    uint64  `json:"sent"`
	Errors  uint64  `json:"errors"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"` // datagrams sent per second
	Tuples  int     `json:"tuples"`
}

// LoadStats is the answer of GET /flowload/stats: datagrams the sink received since it started.
type LoadStats struct {
	Received uint64 `json:"received"`
}

// Loader is the load mode.
type Loader struct {
	cfg      LoadConfig
	log      *slog.Logger
	received atomic.Uint64
	busy     sync.Mutex // one generator run at a time

	followMu sync.Mutex
	follow   *follower
}

// FollowRequest is the body of POST /follow: follow the flow stream at URL (an observer's or
// agent's follow query) and count the flows decoded, until DELETE /follow or the next POST.
type FollowRequest struct {
	URL string `json:"url"`
}

// FollowStats is the answer of GET /follow.
type FollowStats struct {
	URL     string  `json:"url"`
	Flows   uint64  `json:"flows"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

type follower struct {
	url    string
	start  time.Time
	flows  atomic.Uint64
	cancel context.CancelFunc
	errMu  sync.Mutex
	err    error
}

func (f *follower) stats() FollowStats {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	st := FollowStats{URL: f.url, Flows: f.flows.Load(), Seconds: time.Since(f.start).Seconds()}
	if f.err != nil {
		st.Error = f.err.Error()
	}
	return st
}

// run reads the stream as starlab observe does: in the binary wire form, or NDJSON from an observer
// that answers that.
func (f *follower) run(ctx context.Context) {
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
		if err != nil {
			return fmt.Errorf("follow %s: %w", f.url, err)
		}
		req.Header.Set("Accept", flow.WireContentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("follow %s: %w", f.url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("follow %s: %s", f.url, resp.Status)
		}
		dec := flow.NewStreamDecoder(resp.Header.Get("Content-Type"), resp.Body)
		for {
			if _, err := dec.Decode(); err != nil {
				return fmt.Errorf("follow %s: %w", f.url, err)
			}
			f.flows.Add(1)
		}
	}()
	if ctx.Err() == nil {
		f.errMu.Lock()
		f.err = err
		f.errMu.Unlock()
	}
}

func (l *Loader) handleFollow(w http.ResponseWriter, r *http.Request) {
	l.followMu.Lock()
	defer l.followMu.Unlock()
	switch r.Method {
	case http.MethodPost:
		var req FollowRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.URL == "" {
			http.Error(w, "follow request: want {\"url\": \"http://...\"}", http.StatusBadRequest)
			return
		}
		if l.follow != nil {
			l.follow.cancel()
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.follow = &follower{url: req.URL, start: time.Now(), cancel: cancel}
		go l.follow.run(ctx)
		writeJSON(w, http.StatusOK, l.follow.stats())
	case http.MethodDelete:
		if l.follow != nil {
			l.follow.cancel()
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		if l.follow == nil {
			http.Error(w, "no follower: POST /follow first", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, l.follow.stats())
	}
}

// NewLoader checks cfg.
func NewLoader(cfg LoadConfig, log *slog.Logger) (*Loader, error) {
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("load: --port %d: use 1-65535", cfg.Port)
	}
	if cfg.SinkFirst <= 0 || cfg.SinkCount < 0 || cfg.SinkFirst+cfg.SinkCount > 65536 {
		return nil, fmt.Errorf("load: sink ports %d+%d: use a range within 1-65535", cfg.SinkFirst, cfg.SinkCount)
	}
	return &Loader{cfg: cfg, log: log}, nil
}

// Run serves the sink and the control API until ctx ends.
func (l *Loader) Run(ctx context.Context) error {
	for i := range l.cfg.SinkCount {
		port := l.cfg.SinkFirst + i
		pc, err := net.ListenPacket("udp4", net.JoinHostPort(l.cfg.Addr, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("load sink: listen on udp port %d: %w", port, err)
		}
		go func() { <-ctx.Done(); _ = pc.Close() }()
		go l.sink(pc)
	}
	l.log.Info("load serving", "port", l.cfg.Port, "sink", fmt.Sprintf("%d+%d", l.cfg.SinkFirst, l.cfg.SinkCount))
	return Serve(ctx, net.JoinHostPort(l.cfg.Addr, strconv.Itoa(l.cfg.Port)), l.mux())
}

// mux is the control API: the common endpoints (RegisterCommon, whose POST /load is the connection
// load of starlab bench) plus POST /flowload, /follow and GET /flowload/stats.
func (l *Loader) mux() *http.ServeMux {
	mux := newCommonMux()
	mux.HandleFunc("POST /flowload", l.handleLoad)
	mux.HandleFunc("/follow", l.handleFollow)
	mux.HandleFunc("GET /flowload/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, LoadStats{Received: l.received.Load()})
	})
	return mux
}

// sink counts the datagrams pc receives, up to 64 per recvmmsg(2), until pc is closed.
func (l *Loader) sink(pc net.PacketConn) {
	batch := make([]ipv4.Message, 64)
	for i := range batch {
		batch[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	c := ipv4.NewPacketConn(pc)
	for {
		n, err := c.ReadBatch(batch, 0)
		if err != nil {
			return
		}
		l.received.Add(uint64(n))
	}
}

func (l *Loader) handleLoad(w http.ResponseWriter, r *http.Request) {
	var req FlowLoadRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "load request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !l.busy.TryLock() {
		http.Error(w, "load: a run is in progress; wait for its answer", http.StatusConflict)
		return
	}
	defer l.busy.Unlock()
	res, err := Generate(r.Context(), req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// MaxFlowLoadSenders bounds FlowLoadRequest.Senders.
const MaxFlowLoadSenders = 16

// Generate sends the datagrams of req, paced every millisecond (a late tick sends what it owes), from
// req.Senders goroutines (default 1), each with its share of the sockets and of the rate.
func Generate(ctx context.Context, req FlowLoadRequest) (FlowLoadResult, error) {
	addr, err := netip.ParseAddr(req.Target)
	if err != nil || !addr.Is4() {
		return FlowLoadResult{}, fmt.Errorf("load target %q: want an IPv4 address", req.Target)
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil || d <= 0 {
		return FlowLoadResult{}, fmt.Errorf("load duration %q: want a positive Go duration such as 60s", req.Duration)
	}
	if req.Rate <= 0 || req.Port <= 0 || req.Ports <= 0 || req.Port+req.Ports > 65536 || req.Sockets <= 0 || req.Sockets > 16384 {
		return FlowLoadResult{}, fmt.Errorf("load: rate %d, ports %d+%d, sockets %d: want rate > 0, a port range within 1-65535, 1-16384 sockets",
			req.Rate, req.Port, req.Ports, req.Sockets)
	}
	senders := max(req.Senders, 1)
	if senders > MaxFlowLoadSenders || senders > req.Sockets || senders > req.Rate {
		return FlowLoadResult{}, fmt.Errorf("load: senders %d: want 1-%d, at most the sockets (%d) and the rate (%d)",
			req.Senders, MaxFlowLoadSenders, req.Sockets, req.Rate)
	}
	conns := make([]*net.UDPConn, 0, req.Sockets)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range req.Sockets {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{})
		if err != nil {
			return FlowLoadResult{}, fmt.Errorf("load: open socket %d of %d: %w (raise the open-file limit or ask for fewer sockets)", len(conns)+1, req.Sockets, err)
		}
		conns = append(conns, c)
	}
	dsts := make([]netip.AddrPort, req.Ports)
	for i := range dsts {
		dsts[i] = netip.AddrPortFrom(addr, uint16(req.Port+i))
	}
	res := FlowLoadResult{Tuples: req.Sockets * req.Ports}
	parts := make([]flowSender, senders)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range parts {
		// sender i: sockets i, i+senders, ...; its rate floor((Rate+i)/senders), the shares add up to Rate
		part := &parts[i]
		for j := i; j < len(conns); j += senders {
			part.conns = append(part.conns, conns[j])
		}
		part.rate = (req.Rate + i) / senders
		wg.Go(func() { part.run(ctx, dsts, start, d) })
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	for _, part := range parts {
		res.Sent += part.sent
		res.Errors += part.errors
	}
	res.Rate = float64(res.Sent) / res.Seconds
	if ctx.Err() != nil {
		return res, errors.Join(errors.New("load: canceled"), ctx.Err())
	}
	return res, nil
}

// flowSender is one goroutine of Generate: its sockets, its rate and what it sent.
type flowSender struct {
	conns        []*net.UDPConn
	rate         int
	sent, errors uint64
}

// run sends s.rate datagrams/s from start until d has passed (or ctx ends), every (socket, port)
// tuple in turn, each socket to all the ports before the next socket, up to one sendmmsg(2) per
// socket and millisecond (one syscall for up to len(dsts) new flows: the sender's CPU goes to the
// datapath, not to syscalls).
func (s *flowSender) run(ctx context.Context, dsts []netip.AddrPort, start time.Time, d time.Duration) {
	payload := []byte("starlab-load")
	batch := make([]ipv4.Message, len(dsts))
	for i := range batch {
		batch[i] = ipv4.Message{Buffers: [][]byte{payload}, Addr: net.UDPAddrFromAddrPort(dsts[i])}
	}
	pconns := make([]*ipv4.PacketConn, len(s.conns))
	for i, c := range s.conns {
		pconns[i] = ipv4.NewPacketConn(c)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sock, port := 0, 0
	for {
		elapsed := time.Since(start)
		if elapsed >= d {
			return
		}
		owed := int(elapsed.Seconds()*float64(s.rate)) - int(s.sent+s.errors)
		for owed > 0 {
			n := min(owed, len(dsts)-port)
			sent, err := pconns[sock].WriteBatch(batch[port:port+n], 0)
			if err != nil {
				sent = max(sent, 0)
			}
			s.sent += uint64(sent)
			s.errors += uint64(n - sent)
			owed -= n
			if port += n; port == len(dsts) {
				port, sock = 0, (sock+1)%len(pconns)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
