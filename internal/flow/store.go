package flow

import (
	"context"
	"sync"
	"sync/atomic"
)

// Store is a bounded ring of the most recent flows with follow subscriptions. Add is O(1) and never
// blocks: a subscriber whose channel is full loses the event, and the loss is counted.
type Store struct {
	mu    sync.RWMutex
	ring  []packed // the buffered flows, packed (packed.go)
	in    *interner
	next  int // index the next Add writes
	full  bool
	total uint64 // flows ever added

	subMu sync.Mutex
	subs  map[*Subscription]struct{}
	lost  atomic.Uint64
}

// NewStore returns a store keeping the last capacity flows (capacity >= 1).
func NewStore(capacity int) *Store {
	if capacity < 1 {
		capacity = 1
	}
	return &Store{ring: make([]packed, capacity), in: newInterner(), subs: map[*Subscription]struct{}{}}
}

// Capacity is the number of flows the store keeps.
func (s *Store) Capacity() int { return len(s.ring) }

// Len is the number of flows buffered now.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.full {
		return len(s.ring)
	}
	return s.next
}

// Total is the number of flows ever added.
func (s *Store) Total() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.total
}

// Lost is the number of events subscribers lost because they read too slowly.
func (s *Store) Lost() uint64 { return s.lost.Load() }

// Add stores a flow (subscribers get the pointer: do not modify the flow afterwards) in time order
// and offers it to every subscriber without blocking. Subscribers get flows in the order they are
// added; the buffer stays sorted by time whatever the order of arrival, so history answers are in
// time order and `last` means the newest by time.
func (s *Store) Add(f *Flow) {
	s.mu.Lock()
	s.insertLocked(f)
	// Deliver under the ring lock so a Query that snapshots and subscribes atomically sees each flow
	// exactly once.
	s.subMu.Lock()
	defer s.mu.Unlock()
	defer s.subMu.Unlock()
	for sub := range s.subs {
		if sub.match != nil && !sub.match.Match(f) {
			continue
		}
		select {
		case sub.ch <- f:
		default:
			sub.lost.Add(1)
			s.lost.Add(1)
		}
	}
}

// Backfill stores a flow in time order without offering it to subscribers: history that predates
// the followers (e.g. the buffered flows a new peer had before it was connected).
func (s *Store) Backfill(f *Flow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insertLocked(f)
}

// insertLocked appends f, evicting the oldest flow when the ring is full, then moves it back past
// every newer flow: O(1) for flows that arrive in time order, O(distance) for a late one.
func (s *Store) insertLocked(f *Flow) {
	s.ring[s.next] = s.in.pack(f)
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
	s.total++
	n, phys := s.next, func(i int) int { return i }
	if s.full {
		n = len(s.ring)
		phys = func(i int) int { return (s.next + i) % len(s.ring) }
	}
	for i := n - 1; i > 0; i-- {
		prev, cur := phys(i-1), phys(i)
		if !s.ring[prev].time.After(f.Time) {
			break
		}
		s.ring[prev], s.ring[cur] = s.ring[cur], s.ring[prev]
	}
}

// Snapshot returns the buffered flows, oldest first (by time), that match m (nil: all); last > 0 keeps only the
// newest last of them.
func (s *Store) Snapshot(m *Matcher, last int) []*Flow {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snapshotLocked(m, last)
}

func (s *Store) snapshotLocked(m *Matcher, last int) []*Flow {
	n := s.next
	if s.full {
		n = len(s.ring)
	}
	at := func(i int) *packed { // i-th oldest
		if s.full {
			return &s.ring[(s.next+i)%len(s.ring)]
		}
		return &s.ring[i]
	}
	var scratch Flow
	var flags TCPFlags
	if last > 0 {
		out := make([]*Flow, 0, min(last, n))
		for i := n - 1; i >= 0 && len(out) < last; i-- {
			if p := at(i); p.matches(m, &scratch, &flags) {
				out = append(out, p.flow())
			}
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out
	}
	var out []*Flow
	for i := 0; i < n; i++ {
		if p := at(i); p.matches(m, &scratch, &flags) {
			out = append(out, p.flow())
		}
	}
	return out
}

// Subscription receives flows added after it was created.
type Subscription struct {
	ch    chan *Flow
	match *Matcher
	lost  atomic.Uint64
	store *Store
	once  sync.Once
}

// C is the channel of new flows. It is never closed; stop reading after Close.
func (sub *Subscription) C() <-chan *Flow { return sub.ch }

// Lost is how many flows this subscriber lost because its channel was full.
func (sub *Subscription) Lost() uint64 { return sub.lost.Load() }

// Close stops the subscription.
func (sub *Subscription) Close() {
	sub.once.Do(func() {
		sub.store.subMu.Lock()
		delete(sub.store.subs, sub)
		sub.store.subMu.Unlock()
	})
}

// Subscribe returns a subscription to new flows matching m (nil: all) with a channel of size buffer.
func (s *Store) Subscribe(m *Matcher, buffer int) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	sub := &Subscription{ch: make(chan *Flow, buffer), match: m, store: s}
	s.subMu.Lock()
	s.subs[sub] = struct{}{}
	s.subMu.Unlock()
	return sub
}

// Subscribers is the number of open subscriptions.
func (s *Store) Subscribers() int {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	return len(s.subs)
}

// SubscriberBuffer is the channel size of the subscriptions Query opens: 32,768 flows, ~0.8 s of a node
// at 40,000 flows/s (with 4,096 the observer's stream from a node lost 137k of 2.5M flows at 42k/s on the
// lab, docs/BENCHMARKS.md "On the lab"); a full queue holds its flows alive, ~1 KiB each.
const SubscriberBuffer = 32768

// Query answers q: the matching buffered flows (per Last/Since/Until), then, when q.Follow, every new
// matching flow until ctx ends. emit is called from this goroutine only; flush (optional) is called
// after the buffered flows and whenever the followed stream has nothing more queued, so a streaming
// writer can batch. It returns ctx's error when a followed stream ends by cancellation, or emit's error.
func (s *Store) Query(ctx context.Context, q Query, emit func(*Flow) error, flush func()) error {
	m, err := q.Matcher()
	if err != nil {
		return err
	}
	var sub *Subscription
	var history []*Flow
	// Subscribe and snapshot under the ring lock so no flow is missed or sent twice.
	s.mu.RLock()
	if q.Follow {
		sub = s.Subscribe(m, SubscriberBuffer)
		defer sub.Close()
	}
	if !q.NoHistory {
		history = s.snapshotLocked(m, q.Last)
	}
	s.mu.RUnlock()
	for _, f := range history {
		if err := emit(f); err != nil {
			return err
		}
	}
	if flush != nil {
		flush()
	}
	if sub == nil {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f := <-sub.ch:
			if err := emit(f); err != nil {
				return err
			}
			if flush != nil && len(sub.ch) == 0 {
				flush()
			}
		}
	}
}
