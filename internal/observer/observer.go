// Package observer is Starlab's cluster observer: it discovers every node's agent, keeps a follow stream
// to each, merges them in time order into its own flow store, and serves the merged flow API, the
// service dependency graph, status, Prometheus metrics and the embedded UI.
package observer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/hubbleapi"
)

// Port is the observer's HTTP port (the same number as the agents' agentapi.Port, on its own pod).
const Port = 4245

// Config configures an Observer.
type Config struct {
	Capacity    int           // flows kept in the store (default 100000)
	MergeWindow time.Duration // reorder window of the live merge (default 200ms)
	InitialLast int           // buffered flows asked from each agent on first connect (default 10000)
	StatusEvery time.Duration // how often each agent's /v1/status (lost events) is read (default 5s)
	Graph       GraphOptions
	Client      *http.Client // to reach agents (default: no overall timeout, 5s dial, AgentTLS)
	// AgentTLS, when set, makes the observer dial the agents with HTTPS and this configuration
	// (agentapi.ClientTLSConfig: its client certificate and the agents' CA). A Client given too
	// must carry it in its transport.
	AgentTLS *tls.Config
	Log      *slog.Logger
}

// Observer merges the agents' flow streams and serves the APIs.
type Observer struct {
	cfg     Config
	log     *slog.Logger
	store   *flow.Store
	graph   *Graph
	metrics *Metrics
	rate    *rateMeter

	mu      sync.Mutex
	peers   map[string]*peer
	cancels map[string]context.CancelFunc
	add     chan (<-chan *flow.Flow)
	// Late flows (delivered by the merge out of time order) per node, and the most one lay behind.
	// Their own lock: the merge goroutine counts them, and SetAgent holds mu while it feeds the merge.
	lateMu  sync.Mutex
	late    map[string]uint64
	lateMax time.Duration
	wg      sync.WaitGroup
	ctx     context.Context
}

// New returns an observer; Start starts its merge loop, then nodes can be set.
func New(cfg Config) (*Observer, error) {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 100000
	}
	if cfg.MergeWindow <= 0 {
		cfg.MergeWindow = 200 * time.Millisecond
	}
	if cfg.InitialLast <= 0 {
		cfg.InitialLast = 10000
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConnsPerHost:   2,
			TLSClientConfig:       cfg.AgentTLS,
		}}
	}
	m, err := NewMetrics()
	if err != nil {
		return nil, err
	}
	return &Observer{
		cfg: cfg, log: cfg.Log, store: flow.NewStore(cfg.Capacity), graph: NewGraph(cfg.Graph), metrics: m,
		rate: newRateMeter(10), peers: map[string]*peer{}, late: map[string]uint64{}, cancels: map[string]context.CancelFunc{},
		add: make(chan (<-chan *flow.Flow), 16),
	}, nil
}

// agentClient is a client of the agent at addr (host:port): HTTPS when AgentTLS is set.
func (o *Observer) agentClient(addr string) *agentapi.Client {
	if o.cfg.AgentTLS != nil {
		return agentapi.NewClientURL("https://"+addr, o.cfg.Client)
	}
	return agentapi.NewClient(addr, o.cfg.Client)
}

// Store is the observer's merged flow store.
func (o *Observer) Store() *flow.Store { return o.store }

// Graph is the observer's service graph.
func (o *Observer) Graph() *Graph { return o.graph }

// Ingest adds one flow to the store, graph, metrics and rate (the merge loop does this for agent flows).
func (o *Observer) Ingest(f *flow.Flow) {
	o.store.Add(f)
	o.graph.Add(f)
	o.metrics.Observe(f)
	o.rate.add(time.Now(), 1)
}

// backfill stores a flow an agent had buffered before the observer connected: in the store (time
// order, not offered to followers), the graph and the metrics.
func (o *Observer) backfill(f *flow.Flow) {
	o.store.Backfill(f)
	o.graph.Add(f)
	o.metrics.Observe(f)
}

// countLate counts a flow the merge delivered after a newer one (it came later than the merge window).
func (o *Observer) countLate(f *flow.Flow, behind time.Duration) {
	o.lateMu.Lock()
	o.late[f.NodeName]++
	o.lateMax = max(o.lateMax, behind)
	o.lateMu.Unlock()
	o.metrics.AddLate(f.NodeName)
}

// Start begins merging the peers' streams into the store until ctx ends; SetAgent and RemoveNode work
// from then on. Wait returns once everything has stopped.
func (o *Observer) Start(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx != nil {
		return
	}
	o.ctx = ctx
	merged := flow.MergeStreams(ctx, flow.MergeOptions{Window: o.cfg.MergeWindow, OnLate: o.countLate}, o.add)
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var lostSeen uint64 // store subscriber losses already counted in metrics
		for {
			select {
			case f, ok := <-merged:
				if !ok {
					return
				}
				o.Ingest(f)
			case <-tick.C:
				if lost := o.store.Lost(); lost > lostSeen {
					o.metrics.AddLost("observer", StageObserverSubscriber, lost-lostSeen)
					lostSeen = lost
				}
			case <-ctx.Done():
				return
			}
		}
	}()
}

// Wait blocks until the merge loop and every peer stream have stopped (after Start's ctx ended).
func (o *Observer) Wait() { o.wg.Wait() }

// SetAgent points a node at its agent address (host:port). addr "" marks the node unavailable with
// reason why (e.g. its agent pod is gone) while keeping it listed.
func (o *Observer) SetAgent(node, addr, why string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx == nil {
		return errors.New("observer is not running: call Start first")
	}
	p, ok := o.peers[node]
	if !ok {
		p = newPeer(node, o.agentClient, o.log, o.cfg.InitialLast, o.cfg.StatusEvery, o.metrics.AddLost, o.backfill)
		pctx, cancel := context.WithCancel(o.ctx)
		o.peers[node], o.cancels[node] = p, cancel
		p.setAddr(addr, why)
		select {
		case o.add <- p.out:
		case <-o.ctx.Done():
			cancel()
			return o.ctx.Err()
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			p.run(pctx)
		}()
		return nil
	}
	p.setAddr(addr, why)
	return nil
}

// RemoveNode forgets a node (it left the cluster).
func (o *Observer) RemoveNode(node string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.cancels[node]; ok {
		c()
		delete(o.cancels, node)
		delete(o.peers, node)
	}
}

// Status is the observer's /api/v1/status answer.
type Status struct {
	Nodes          []NodeStatus `json:"nodes"`
	Connected      int          `json:"connected"`
	Unavailable    int          `json:"unavailable"`
	FlowsTotal     uint64       `json:"flows_total"`
	FlowsPerSecond float64      `json:"flows_per_second"`
	LostEvents     uint64       `json:"lost_events"` // agents' and the observer's own slow readers
	// LostByStage splits LostEvents by stage (StageRingbuf, StageAgentQueue, StageAgentSubscriber,
	// StageObserverSubscriber). The merge itself never drops: it holds an agent's stream back, so a
	// slow merge shows as that node's agent_subscriber losses.
	LostByStage map[string]uint64 `json:"lost_by_stage"`
	Buffered    int               `json:"buffered"`
	Capacity    int               `json:"capacity"`
	Subscribers int               `json:"subscribers"`
	// LateFlows is how many flows reached the merge later than its window (MergeWindow) and were
	// delivered to live followers out of time order; LateMaxSeconds is the most one lay behind.
	LateFlows      uint64  `json:"late_flows"`
	LateMaxSeconds float64 `json:"late_max_seconds"`
	MergeWindowMs  int64   `json:"merge_window_ms"`
}

// Status reports every node's connection and the flow rates.
func (o *Observer) Status() Status {
	o.mu.Lock()
	peers := make([]*peer, 0, len(o.peers))
	for _, p := range o.peers {
		peers = append(peers, p)
	}
	o.mu.Unlock()
	o.lateMu.Lock()
	late := maps.Clone(o.late)
	lateMax := o.lateMax
	o.lateMu.Unlock()
	st := Status{Nodes: []NodeStatus{}, FlowsTotal: o.store.Total(), FlowsPerSecond: o.rate.perSecond(time.Now()),
		LostEvents: o.store.Lost(), Buffered: o.store.Len(), Capacity: o.store.Capacity(), Subscribers: o.store.Subscribers(),
		LateMaxSeconds: lateMax.Seconds(), MergeWindowMs: o.cfg.MergeWindow.Milliseconds(),
		LostByStage: map[string]uint64{StageRingbuf: 0, StageAgentQueue: 0, StageAgentSubscriber: 0, StageObserverSubscriber: o.store.Lost()}}
	for _, n := range late {
		st.LateFlows += n
	}
	for _, p := range peers {
		ns := p.snapshot()
		ns.LateFlows = late[ns.Name]
		st.Nodes = append(st.Nodes, ns)
		st.LostEvents += ns.LostEvents
		st.LostByStage[StageRingbuf] += ns.AgentStages.RingbufLost
		st.LostByStage[StageAgentQueue] += ns.AgentStages.QueueLost
		st.LostByStage[StageAgentSubscriber] += ns.AgentStages.SubscriberLost
		if ns.State == StateConnected {
			st.Connected++
		} else {
			st.Unavailable++
		}
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })
	return st
}

// HubbleServer is Hubble's gRPC API (observer.Observer) over the same flow store as the HTTP API, with
// the agents as its nodes.
func (o *Observer) HubbleServer(version string) *hubbleapi.Server {
	nodes := func() []hubbleapi.Node {
		st := o.Status()
		out := make([]hubbleapi.Node, 0, len(st.Nodes))
		for _, n := range st.Nodes {
			out = append(out, hubbleapi.Node{Name: n.Name, Address: n.Address, Connected: n.State == StateConnected, Flows: n.Flows})
		}
		return out
	}
	return hubbleapi.NewServer(o.store, nodes, func() float64 { return o.rate.perSecond(time.Now()) }, version)
}

// Handler serves /api/v1/flows, /api/v1/graph, /api/v1/connections, /api/v1/status, /metrics, /healthz and the UI at /.
func (o *Observer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/flows", flow.Handler(o.store, o.log))
	mux.HandleFunc("GET /api/v1/graph", func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseGraphQuery(r.URL.Query(), time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeCompactJSON(w, o.graph.View(q, time.Now())) // large at scale (5,000 edges): no indentation
	})
	mux.HandleFunc("GET /api/v1/connections", func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseConnectionsQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, o.Connections(q))
	})
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, o.Status())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.metrics.Registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /", uiHandler())
	return mux
}

// writeCompactJSON writes v without indentation, for answers that are large at scale.
func writeCompactJSON(w http.ResponseWriter, v any) { encodeJSON(w, v, "") }

func writeJSON(w http.ResponseWriter, v any) { encodeJSON(w, v, "  ") }

func encodeJSON(w http.ResponseWriter, v any, indent string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		slog.Debug("write json", "err", err)
	}
}

// Serve listens on addr and serves Handler until ctx ends.
func (o *Observer) Serve(ctx context.Context, addr string) error {
	srv := &http.Server{Addr: addr, Handler: o.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("observer listen %s: %w", addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("observer serve %s: %w", addr, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

// rateMeter counts events in one-second buckets over a sliding window.
type rateMeter struct {
	mu      sync.Mutex
	buckets []uint64
	secs    []int64
}

func newRateMeter(window int) *rateMeter {
	return &rateMeter{buckets: make([]uint64, window), secs: make([]int64, window)}
}

func (r *rateMeter) add(now time.Time, n uint64) {
	s := now.Unix()
	i := int(s % int64(len(r.buckets)))
	r.mu.Lock()
	if r.secs[i] != s {
		r.secs[i], r.buckets[i] = s, 0
	}
	r.buckets[i] += n
	r.mu.Unlock()
}

// perSecond averages the complete seconds of the window.
func (r *rateMeter) perSecond(now time.Time) float64 {
	s := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	var sum uint64
	w := int64(len(r.buckets))
	for i, sec := range r.secs {
		if sec < s && sec >= s-w+1 {
			sum += r.buckets[i]
		}
	}
	return float64(sum) / float64(w-1)
}
