package observer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/flow"
)

// Peer states.
const (
	StateConnecting  = "connecting"
	StateConnected   = "connected"
	StateUnavailable = "unavailable"
)

// NodeStatus is one node's agent connection, as /api/v1/status reports it.
type NodeStatus struct {
	Name           string    `json:"name"`
	Address        string    `json:"address,omitempty"`
	State          string    `json:"state"`
	Error          string    `json:"error,omitempty"`
	Flows          uint64    `json:"flows"`
	LastFlow       time.Time `json:"last_flow,omitzero"`
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	Reconnects     uint64    `json:"reconnects"`
	LostEvents     uint64    `json:"lost_events"`
	// AgentStages is the agent's own count of its flow events at each stage (its last status read;
	// cumulative since the agent started).
	AgentStages agentapi.FlowStages `json:"agent_stages"`
	// LateFlows is how many of this node's flows reached the merge later than its window and were
	// delivered out of time order to live followers (history answers stay in time order).
	LateFlows uint64 `json:"late_flows"`
	// Backfilled is how many buffered flows were read from the agent on first connect (history).
	Backfilled uint64 `json:"backfilled"`
}

// peer keeps a follow stream to one node's agent, reconnecting with backoff.
type peer struct {
	node string
	out  chan *flow.Flow // merged by the observer; closed when the peer stops
	// backfill stores the agent's buffered flows read on first connect (history, not live flows).
	backfill func(*flow.Flow)
	agent    func(addr string) *agentapi.Client // a client of the agent at addr
	log      *slog.Logger
	onLost   func(node, stage string, n uint64)
	// initialLast is how many buffered flows to ask for on the first connection.
	initialLast int
	statusEvery time.Duration

	mu       sync.Mutex
	addr     string // host:port; "" when the node has no agent pod
	why      string // reason the node is unavailable without an address
	status   NodeStatus
	lastTime time.Time
	// historyDone is set once a read of the agent's buffered flows completed (mu).
	historyDone bool
	lastLost    agentapi.FlowStages
	kick        chan struct{} // address changed: reconnect now
}

// maxBackoff bounds the wait before reconnecting to an agent: flows of the gap are replayed (late),
// so the wait is part of their delay.
const maxBackoff = time.Second

func newPeer(node string, agent func(addr string) *agentapi.Client, log *slog.Logger, initialLast int, statusEvery time.Duration,
	onLost func(node, stage string, n uint64), backfill func(*flow.Flow)) *peer {
	return &peer{statusEvery: statusEvery, backfill: backfill,
		node: node, out: make(chan *flow.Flow, 1024), agent: agent, log: log.With("node", node),
		onLost: onLost, initialLast: initialLast, kick: make(chan struct{}, 1),
		status: NodeStatus{Name: node, State: StateConnecting},
	}
}

// setAddr points the peer at a new agent address ("" = the node has no agent now, with reason why).
func (p *peer) setAddr(addr, why string) {
	p.mu.Lock()
	changed := p.addr != addr
	p.addr, p.why = addr, why
	if addr == "" {
		p.status.State, p.status.Error, p.status.Address = StateUnavailable, why, ""
	}
	p.mu.Unlock()
	if changed {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

func (p *peer) snapshot() NodeStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *peer) setState(state string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.State = state
	p.status.Error = ""
	if err != nil {
		p.status.Error = err.Error()
	}
	if state == StateConnected {
		p.status.ConnectedSince = time.Now()
	} else {
		p.status.ConnectedSince = time.Time{}
	}
}

// run streams until ctx ends, then closes p.out.
func (p *peer) run(ctx context.Context) {
	defer close(p.out)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pollStatus(ctx)
	}()
	defer wg.Wait()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		p.mu.Lock()
		addr, why := p.addr, p.why
		p.mu.Unlock()
		if addr == "" {
			p.mu.Lock()
			p.status.State, p.status.Error = StateUnavailable, why
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-p.kick:
				continue
			}
		}
		connCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-p.kick:
				cancel()
			case <-connCtx.Done():
			}
		}()
		started := time.Now()
		err := p.stream(connCtx, addr)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("agent closed the stream")
		}
		p.setState(StateUnavailable, err)
		p.mu.Lock()
		p.status.Reconnects++
		p.mu.Unlock()
		p.log.Warn("agent stream ended", "addr", addr, "err", err)
		if time.Since(started) > 10*time.Second {
			backoff = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// stream opens one follow stream and forwards flows until it ends. On the first connection the
// agent's buffered flows are read first with a finite `last` query and stored as history (backfill:
// in time order, not through the live merge, where a whole history would be "late"); the follow
// stream then resumes right after the newest of them. A reconnect resumes with `since` the newest flow
// seen: the flows of the gap are live flows that come late, and the merge delivers and counts them.
func (p *peer) stream(ctx context.Context, addr string) error {
	p.mu.Lock()
	p.status.Address = addr
	p.status.State = StateConnecting
	since, history := p.lastTime, !p.historyDone
	p.mu.Unlock()
	if history && p.backfill != nil {
		if err := p.readHistory(ctx, addr, since); err != nil {
			return err
		}
		p.mu.Lock()
		since = p.lastTime
		p.mu.Unlock()
	}
	q := flow.Query{Follow: true}
	if since.IsZero() {
		q.Last = p.initialLast // nothing buffered a moment ago: all of it is new
	} else {
		q.Since = since.Add(time.Nanosecond)
	}
	flows, err := p.agent(addr).Flows(ctx, q)
	if err != nil {
		return err
	}
	defer flows.Close()
	p.setState(StateConnected, nil)
	p.log.Info("streaming flows from agent", "addr", addr)
	for {
		f, err := flows.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		p.seen(f)
		select {
		case p.out <- f:
		case <-ctx.Done():
			return nil
		}
	}
}

// readHistory stores the agent's newest initialLast buffered flows (newer than since, where an
// earlier read was cut) through backfill; every flow stored counts as backfilled, a cut read's too.
// Until one read completes, a reconnect reads history again rather than following.
func (p *peer) readHistory(ctx context.Context, addr string, since time.Time) error {
	q := flow.Query{Last: p.initialLast}
	if !since.IsZero() {
		q.Since = since.Add(time.Nanosecond)
	}
	flows, err := p.agent(addr).Flows(ctx, q)
	if err != nil {
		return err
	}
	defer flows.Close()
	n := uint64(0)
	defer func() {
		p.mu.Lock()
		p.status.Backfilled += n
		p.mu.Unlock()
	}()
	for {
		f, err := flows.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read buffered flows (%d stored): %w", n, err)
		}
		p.seen(f)
		p.backfill(f)
		n++
	}
	p.mu.Lock()
	p.historyDone = true
	p.mu.Unlock()
	p.log.Info("read buffered flows from agent", "addr", addr, "flows", n)
	return nil
}

// seen counts a flow from the agent and remembers the newest time (where a reconnect resumes).
func (p *peer) seen(f *flow.Flow) {
	if f.NodeName == "" {
		f.NodeName = p.node
	}
	p.mu.Lock()
	p.status.Flows++
	p.status.LastFlow = time.Now()
	if f.Time.After(p.lastTime) {
		p.lastTime = f.Time
	}
	p.mu.Unlock()
}

// increase is how much a cumulative counter grew from prev to now (all of now when it went back: the
// agent restarted and its counters reset).
func increase(prev, now uint64) uint64 {
	if now >= prev {
		return now - prev
	}
	return now
}

// pollStatus reads the agent's lost-event counter every few seconds and reports increases.
func (p *peer) pollStatus(ctx context.Context) {
	t := time.NewTicker(p.statusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		if addr == "" {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := p.agent(addr).Status(sctx)
		cancel()
		if err != nil {
			p.log.Debug("agent status", "err", err)
			continue
		}
		p.mu.Lock()
		prev := p.lastLost
		p.lastLost = st.FlowStages
		p.status.AgentStages = st.FlowStages
		deltas := map[string]uint64{
			StageRingbuf:         increase(prev.RingbufLost, st.FlowStages.RingbufLost),
			StageAgentQueue:      increase(prev.QueueLost, st.FlowStages.QueueLost),
			StageAgentSubscriber: increase(prev.SubscriberLost, st.FlowStages.SubscriberLost),
		}
		for _, d := range deltas {
			p.status.LostEvents += d
		}
		p.mu.Unlock()
		for stage, d := range deltas {
			if d > 0 && p.onLost != nil {
				p.onLost(p.node, stage, d)
			}
		}
	}
}
