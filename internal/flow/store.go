package flow

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Store is a bounded ring of the most recent flows with follow subscriptions. Add is O(1) and never
// blocks. A subscriber gets new flows through a channel; one that falls behind until its channel is full
// goes on reading from the ring itself (as Hubble's ring readers do), so it loses a flow only when the
// ring has overwritten it before it was read, and that loss is counted.
type Store struct {
	mu       sync.RWMutex
	ring     []packed // the buffered flows, packed (packed.go)
	in       *interner
	next     int // index the next insert writes
	full     bool
	total    uint64 // flows ever inserted (added or backfilled): the seq of the newest
	maxShift int    // the farthest any insert moved back past newer flows (late flows)

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
	return s.lenLocked()
}

func (s *Store) lenLocked() int {
	if s.full {
		return len(s.ring)
	}
	return s.next
}

// at is the i-th oldest (by time) buffered flow.
func (s *Store) at(i int) *packed {
	if s.full {
		return &s.ring[(s.next+i)%len(s.ring)]
	}
	return &s.ring[i]
}

// Total is the number of flows ever added.
func (s *Store) Total() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.total
}

// Lost is the number of flows subscribers lost: the ring overwrote them before they were read.
func (s *Store) Lost() uint64 { return s.lost.Load() }

// Add stores a flow (subscribers get the pointer: do not modify the flow afterwards) in time order
// and offers it to every subscriber without blocking. Subscribers get flows in the order they are
// added; the buffer stays sorted by time whatever the order of arrival, so history answers are in
// time order and `last` means the newest by time.
func (s *Store) Add(f *Flow) {
	s.mu.Lock()
	s.insertLocked(f, false)
	// Deliver under the ring lock so a Query that snapshots and subscribes atomically sees each flow
	// exactly once, and a subscriber reading the ring sees a flow either there or in its channel.
	s.subMu.Lock()
	defer s.mu.Unlock()
	defer s.subMu.Unlock()
	for sub := range s.subs {
		if sub.behind.Load() {
			continue // it reads this flow from the ring
		}
		if sub.match != nil && !sub.match.Match(f) {
			continue
		}
		select {
		case sub.ch <- f:
		default:
			sub.cursor = s.total
			sub.behind.Store(true)
		}
	}
}

// Backfill stores a flow in time order without offering it to subscribers: history that predates
// the followers (e.g. the buffered flows a new peer had before it was connected).
func (s *Store) Backfill(f *Flow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insertLocked(f, true)
}

// insertLocked appends f, evicting the oldest flow when the ring is full, then moves it back past
// every newer flow: O(1) for flows that arrive in time order, O(distance) for a late one.
func (s *Store) insertLocked(f *Flow, backfilled bool) {
	s.total++
	s.ring[s.next] = s.in.pack(f)
	s.ring[s.next].seq, s.ring[s.next].backfilled = s.total, backfilled
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
	n := s.lenLocked()
	shift := 0
	for i := n - 1; i > 0; i-- {
		prev, cur := s.at(i-1), s.at(i)
		if !prev.time.After(f.Time) {
			break
		}
		*prev, *cur = *cur, *prev
		shift++
	}
	s.maxShift = max(s.maxShift, shift)
}

// Snapshot returns the buffered flows, oldest first (by time), that match m (nil: all); last > 0 keeps only the
// newest last of them.
func (s *Store) Snapshot(m *Matcher, last int) []*Flow {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snapshotLocked(m, last)
}

func (s *Store) snapshotLocked(m *Matcher, last int) []*Flow {
	n, at := s.lenLocked(), s.at
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

// Subscription receives flows added after it was created, in the order they were added: from its
// channel while it keeps up, from the store's ring once it fell behind.
type Subscription struct {
	ch    chan *Flow
	match *Matcher
	store *Store
	once  sync.Once
	lost  atomic.Uint64

	// Reading from the ring: behind is set when the channel was full and cleared once caught up, both
	// under store.mu and store.subMu (read anywhere); cursor is guarded by the same locks.
	behind  atomic.Bool
	cursor  uint64  // seq of the next insert to read from the ring
	backlog []*Flow // read from the ring (reader's goroutine only); next to return: backlog[taken]
	taken   int
}

// RingReadChunk is how many flows a subscriber that fell behind reads from the ring at a time.
const RingReadChunk = 4096

// Lost is how many flows this subscriber lost: the ring overwrote them before it read them (for a
// filtered subscriber, every flow overwritten counts: whether it would have matched is gone with it).
func (sub *Subscription) Lost() uint64 { return sub.lost.Load() }

// Pending reports whether Next has a flow without waiting (a streaming writer flushes when not).
func (sub *Subscription) Pending() bool {
	return sub.taken < len(sub.backlog) || len(sub.ch) > 0 || sub.behind.Load()
}

// Next returns the next flow, waiting until one is added or ctx ends (then it returns ctx's error).
// One goroutine at a time reads a subscription.
func (sub *Subscription) Next(ctx context.Context) (*Flow, error) { return sub.NextBefore(ctx, nil) }

// NextBefore is Next that also stops waiting when timeout fires: then it returns nil, nil.
func (sub *Subscription) NextBefore(ctx context.Context, timeout <-chan time.Time) (*Flow, error) {
	for {
		if sub.taken < len(sub.backlog) {
			f := sub.backlog[sub.taken]
			sub.backlog[sub.taken] = nil
			sub.taken++
			return f, nil
		}
		select {
		case f := <-sub.ch:
			return f, nil
		default:
		}
		// The channel is empty: every flow it held came before the first one the subscriber missed.
		if sub.behind.Load() && sub.readRing() {
			continue
		}
		select {
		case f := <-sub.ch:
			return f, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, nil
		}
	}
}

// readRing moves the next flows of a subscriber that fell behind (up to RingReadChunk, in the order
// they were added) from the ring into its backlog, counts those the ring overwrote as lost, and once
// it has caught up sends it new flows through its channel again. It reports whether the subscriber
// was behind (then the caller reads on, whether this chunk matched any flow or not).
func (sub *Subscription) readRing() bool {
	got, ok := sub.takeFromRing()
	if !ok {
		return false
	}
	// Unpacked without the locks (Add waits for none of it): packed flows point only at interned
	// values, which never change. The backlog was all taken: its array is reused.
	sub.backlog, sub.taken = sub.backlog[:0], 0
	for i := range got {
		sub.backlog = append(sub.backlog, got[i].flow())
	}
	return true
}

// takeFromRing copies the packed flows of readRing's next chunk, in the order they were added, and
// moves the subscriber's cursor past them. ok is false when the subscriber was not behind.
func (sub *Subscription) takeFromRing() (got []packed, ok bool) {
	s := sub.store
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if !sub.behind.Load() {
		return nil, false
	}
	lo, hi := sub.cursor, min(sub.cursor+RingReadChunk, s.total+1)
	// Insert lo went at most maxShift places back from the end, and each of the total-lo inserts
	// after it moved it at most one place further from the end.
	n := s.lenLocked()
	from := max(0, n-1-s.maxShift-int(min(s.total-lo, uint64(n))))
	var scratch Flow
	var flags TCPFlags
	found := 0
	for i := from; i < n; i++ {
		p := s.at(i)
		if p.seq < lo || p.seq >= hi {
			continue
		}
		found++
		if !p.backfilled && p.matches(sub.match, &scratch, &flags) {
			got = append(got, *p)
		}
	}
	slices.SortFunc(got, func(a, b packed) int { return cmp.Compare(a.seq, b.seq) })
	if missed := hi - lo - uint64(found); missed > 0 {
		sub.lost.Add(missed)
		s.lost.Add(missed)
	}
	sub.cursor = hi
	if hi > s.total { // caught up: later flows come through the channel again
		sub.behind.Store(false)
	}
	return got, true
}

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

// SubscriberBuffer is the channel size of the subscriptions Query opens: 8,192 flows (~0.16 s of a
// node at 50,000 flows/s); a subscriber that falls further behind reads from the ring (the store's
// capacity) instead, so its lag costs no memory of its own.
const SubscriberBuffer = 8192

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
	if flush == nil {
		for {
			f, err := sub.Next(ctx)
			if err != nil {
				return err
			}
			if err := emit(f); err != nil {
				return err
			}
		}
	}
	// Flushed when idle, but no sooner than FlushDelay after the first flow not yet flushed: a flow
	// a few microseconds behind another must not cost a write (and a read) of its own.
	timer := time.NewTimer(FlushDelay)
	defer timer.Stop()
	unflushed := false
	var due time.Time
	for {
		var f *Flow
		var err error
		if unflushed && !sub.Pending() {
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				f, err = sub.NextBefore(ctx, timer.C)
				timer.Stop()
			}
			if f == nil && err == nil {
				flush()
				unflushed = false
				continue
			}
		} else {
			f, err = sub.Next(ctx)
		}
		if err != nil {
			return err
		}
		if err := emit(f); err != nil {
			return err
		}
		if !unflushed {
			unflushed, due = true, time.Now().Add(FlushDelay)
		}
	}
}

// FlushDelay is the longest a followed flow waits in Query's stream before flush, when the stream
// is idle after it.
const FlushDelay = 5 * time.Millisecond
